#include "harness/daemon/transfer.h"

#include <string>
#include <vector>

#include "harness/daemon/files.h"
#include "images/oci/tar_reader.h"
#include "images/oci/tar_writer.h"
#include "runtime/proto/fileops.h"

namespace airlock::daemon {
namespace {

constexpr size_t kMaxDepth = 256;
constexpr size_t kMaxEntries = 1000000;

proto::FileOpRequest Op(const proto::FileOpRequest& base, proto::FileOp kind, const std::string& path) {
  proto::FileOpRequest r = base;
  r.op = kind;
  r.path = path;
  r.path2.clear();
  r.flags = 0;
  r.mode = 0;
  r.offset = r.length = 0;
  return r;
}

images::TarMeta Meta(const proto::StatRecord& r) {
  return images::TarMeta{r.mode & 0777, r.uid, r.gid, r.mtime_ns / 1000000000};
}

class Downloader {
 public:
  Downloader(Live& live, const proto::FileOpRequest& base, const std::function<bool(std::string_view)>& sink)
      : live_(live), base_(base), tar_(sink) {}

  ApiResult<void> Run() {
    std::string data = TRY(FileOpToString(live_, Op(base_, proto::FileOp::kStat, base_.path), 64 * 1024,
                                          "download " + base_.path));
    auto root = proto::DecodeStatRecords(data, 1);
    if (!root || root->size() != 1) return ApiFail(Code::kInternal, "download: airlock-init sent a malformed record");
    const proto::StatRecord& r = (*root)[0];
    if (r.type == proto::FileType::kDirectory) {
      TRY(Walk(base_.path, "", 0));
    } else {
      TRY(Entry(base_.path, r.name, r, 0));
    }
    if (auto done = tar_.Finish(); !done) return FromError(done.error(), "download");
    return {};
  }

 private:
  ApiResult<void> Walk(const std::string& dir, const std::string& prefix, size_t depth) {
    if (depth > kMaxDepth) return ApiFail(Code::kFailedPrecondition, "download: deeper than " + std::to_string(kMaxDepth) + " levels at " + dir);
    std::string data = TRY(FileOpToString(live_, Op(base_, proto::FileOp::kList, dir), 256 << 20, "download: list " + dir));
    auto records = proto::DecodeStatRecords(data, proto::kMaxListEntries);
    if (!records) return ApiFail(Code::kInternal, "download: list " + dir + ": " + records.error().Message());
    for (const auto& r : *records) TRY(Entry(dir + "/" + r.name, prefix + r.name, r, depth));
    return {};
  }

  ApiResult<void> Entry(const std::string& path, const std::string& name, const proto::StatRecord& r, size_t depth) {
    if (++entries_ > kMaxEntries) return ApiFail(Code::kResourceExhausted, "download: more than a million entries");
    Result<void> wrote;
    switch (r.type) {
      case proto::FileType::kDirectory:
        wrote = tar_.Directory(name, Meta(r));
        if (!wrote) return FromError(wrote.error(), "download");
        return Walk(path, name + "/", depth + 1);
      case proto::FileType::kSymlink:
        wrote = tar_.Symlink(name, r.link_target, Meta(r));
        break;
      case proto::FileType::kRegular:
        return File(path, name, r);
      default:
        return {};  // devices, fifos, sockets: not content
    }
    if (!wrote) return FromError(wrote.error(), "download");
    return {};
  }

  ApiResult<void> File(const std::string& path, const std::string& name, const proto::StatRecord& r) {
    // The size was stated before the read: a file that grows or shrinks
    // meanwhile is cut or zero-padded, so the archive stays well-formed.
    if (auto b = tar_.BeginFile(name, r.size, Meta(r)); !b) return FromError(b.error(), "download");
    bool sink_failed = false;
    FileOpIo io;
    io.sink = [&](std::string_view d) {
      d = d.substr(0, std::min<uint64_t>(d.size(), tar_.remaining()));
      if (!d.empty() && !tar_.Data(d)) {
        sink_failed = true;
        return false;
      }
      return tar_.remaining() > 0;
    };
    proto::FileOpRequest read = Op(base_, proto::FileOp::kRead, path);
    read.length = r.size;
    TRY(RunFileOp(live_, read, io, "download " + path));
    if (sink_failed || !tar_.PadMember()) return ApiFail(Code::kCancelled, "download: the caller went away");
    return {};
  }

  Live& live_;
  const proto::FileOpRequest& base_;
  images::TarWriter tar_;
  size_t entries_ = 0;
};

// A tar entry's name as a relative, normalized path, or an error.
ApiResult<std::string> CleanName(const std::string& raw) {
  std::string name = raw;
  while (name.starts_with("./")) name.erase(0, 2);
  while (name.ends_with('/')) name.pop_back();
  if (name.empty() || name == ".") return std::string();
  if (name.starts_with('/')) return BadField("upload.tar", "absolute entry name \"" + raw.substr(0, 200) + "\"");
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t end = name.find('/', pos);
    if (end == std::string::npos) end = name.size();
    std::string_view part(name.data() + pos, end - pos);
    if (part.empty() || part == "." || part == "..")
      return BadField("upload.tar", "entry name \"" + raw.substr(0, 200) + "\" is not a clean relative path");
    pos = end + 1;
  }
  return name;
}

}  // namespace

ApiResult<void> DownloadTree(Live& live, const proto::FileOpRequest& base,
                             const std::function<bool(std::string_view)>& sink) {
  Downloader d(live, base, sink);
  return d.Run();
}

ApiResult<void> UploadTree(Live& live, const proto::FileOpRequest& base, images::ByteSource& src) {
  proto::FileOpRequest mk = Op(base, proto::FileOp::kMkdir, base.path);
  mk.flags = proto::kParents;
  TRY(RunFileOp(live, mk, {}, "upload: mkdir " + base.path));
  images::TarReader tar(src);
  size_t count = 0;
  for (;;) {
    auto next = tar.Next();
    if (!next) return BadField("upload.tar", next.error().Message());
    if (!*next) return {};
    const images::TarEntry& e = **next;
    if (++count > kMaxEntries) return ApiFail(Code::kResourceExhausted, "upload: more than a million entries");
    std::string name = TRY(CleanName(e.name));
    if (name.empty()) continue;
    const std::string path = base.path + "/" + name;
    const uint32_t mode = e.mode & 0777;  // no setuid, setgid or sticky from an archive
    proto::FileOpRequest op;
    switch (e.type) {
      case images::TarEntry::Type::kDir:
        op = Op(base, proto::FileOp::kMkdir, path);
        op.flags = proto::kParents | proto::kModeSet | proto::kNoSymlinks;
        op.mode = mode ? mode : 0755;
        TRY(RunFileOp(live, op, {}, "upload " + name));
        break;
      case images::TarEntry::Type::kSymlink:
        op = Op(base, proto::FileOp::kSymlink, path);
        op.path2 = e.linkname;
        op.flags = proto::kParents | proto::kNoSymlinks;
        TRY(RunFileOp(live, op, {}, "upload " + name));
        break;
      case images::TarEntry::Type::kFile: {
        op = Op(base, proto::FileOp::kWrite, path);
        op.flags = proto::kWriteCreate | proto::kWriteTruncate | proto::kParents | proto::kModeSet | proto::kNoSymlinks;
        op.mode = mode;
        std::string read_error;
        FileOpIo io;
        io.source = [&](std::string* chunk) {
          chunk->resize(64 * 1024);
          auto n = tar.ReadData(chunk->data(), chunk->size());
          if (!n) {
            read_error = n.error().Message();
            return false;
          }
          chunk->resize(*n);
          return *n > 0;
        };
        TRY(RunFileOp(live, op, io, "upload " + name));
        if (!read_error.empty()) return BadField("upload.tar", read_error);
        break;
      }
      default:
        return BadField("upload.tar", "entry \"" + name + "\": only files, directories and symlinks can be uploaded (type '" +
                                          std::string(1, e.typeflag) + "')");
    }
  }
}

}  // namespace airlock::daemon

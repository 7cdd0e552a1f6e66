// `airlock cp SRC DST`: exactly one side is ID:PATH. Into a sandbox, a file
// goes by WriteFile and a directory as a tar stream by Upload; out of it, a
// file comes by ReadFile and a directory by Download, whose tar is treated
// as hostile (safe_extract.h). As with cp(1) and docker cp, a DST that is an
// existing directory receives SRC under its own name.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "harness/client/commands.h"
#include "harness/client/safe_extract.h"
#include "harness/client/tree_tar.h"
#include "images/oci/tar_reader.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

constexpr const char* kCpUsage =
    "usage: airlock cp [--json] SRC DST\n"
    "\n"
    "Copies a file or a directory into a sandbox (DST is ID:PATH) or out of one\n"
    "(SRC is ID:PATH). PATH is absolute, or relative to the sandbox's workspace.\n"
    "A DST that is an existing directory receives SRC under its own name. Files\n"
    "keep their permission bits (never setuid/setgid); what comes out of a sandbox\n"
    "never lands outside DST: links in it are created as links, never followed;\n"
    "devices and fifos are skipped.\n";

constexpr size_t kChunk = 64 * 1024;

struct CopySummary {
  std::string type;  // "file" or "directory"
  uint64_t bytes = 0, files = 0, dirs = 0, symlinks = 0;
  std::vector<std::string> skipped;
};

// The Download stream as bytes for the tar reader.
class ChunkSource : public images::ByteSource {
 public:
  explicit ChunkSource(grpc::ClientReader<v1::FileChunk>* reader) : reader_(reader) {}
  Result<size_t> Read(void* buf, size_t n) override {
    while (pos_ >= chunk_.data().size()) {
      if (ended_ || !reader_->Read(&chunk_)) {
        ended_ = true;
        return size_t{0};
      }
      pos_ = 0;
    }
    size_t k = std::min(n, chunk_.data().size() - pos_);
    memcpy(buf, chunk_.data().data() + pos_, k);
    pos_ += k;
    return k;
  }
  bool ended() const { return ended_; }
  // Reads what follows the archive's end marker, so the call can finish.
  void Drain() {
    while (!ended_ && reader_->Read(&chunk_)) {
    }
    ended_ = true;
  }

 private:
  grpc::ClientReader<v1::FileChunk>* reader_;
  v1::FileChunk chunk_;
  size_t pos_ = 0;
  bool ended_ = false;
};

v1::FileRequest Ref(const CopyOperand& op, const std::string& path) {
  v1::FileRequest f;
  f.set_sandbox_id(op.sandbox_id);
  f.set_path(path);
  return f;
}

std::string NameFor(const std::string& path) {
  std::string base = BaseName(path);
  return base == "." || base == ".." ? "" : base;
}

// A sandbox path's directory and last component ("a/b" -> "a", "b";
// "b" -> ".", "b"; "/b" -> "/", "b").
std::pair<std::string, std::string> SplitRemote(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

Result<void> WriteFileIn(Connection& conn, const std::string& host, const struct stat& st, const CopyOperand& dst,
                         const std::string& target, CopySummary* sum) {
  UniqueFd fd(open(host.c_str(), O_RDONLY | O_NOCTTY | O_CLOEXEC));
  if (!fd) return Errno("open", host);
  grpc::ClientContext ctx;
  v1::FileInfo info;
  auto w = conn.stub().WriteFile(&ctx, &info);
  v1::WriteFileRequest header;
  auto* h = header.mutable_header();
  *h->mutable_file() = Ref(dst, target);
  h->set_write_mode(v1::WRITE_MODE_ATOMIC);
  h->set_mode(st.st_mode & 0777);
  bool sending = w->Write(header);
  std::string buf(kChunk, '\0');
  Result<void> local;
  while (sending) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      local = Errno("read", host);
      ctx.TryCancel();
      break;
    }
    if (n == 0) break;
    v1::WriteFileRequest part;
    part.set_data(buf.data(), static_cast<size_t>(n));
    sending = w->Write(part);  // false: the daemon ended the call; Finish says why
    sum->bytes += static_cast<uint64_t>(n);
  }
  if (sending) w->WritesDone();
  grpc::Status status = w->Finish();
  if (!local) return local;
  if (!status.ok()) return Fail("", StatusMessage(status, conn.socket()));
  sum->files = 1;
  return {};
}

Result<void> UploadDir(Connection& conn, const std::string& host, const CopyOperand& dst, const std::string& target,
                       CopySummary* sum) {
  auto [parent, name] = SplitRemote(target);
  if (name.empty() || name == "." || name == "..") return Fail("cp", "name the destination directory, not \"" + target + "\"");
  grpc::ClientContext ctx;
  v1::Empty empty;
  auto w = conn.stub().Upload(&ctx, &empty);
  v1::UploadRequest first;
  *first.mutable_directory() = Ref(dst, parent);
  bool open = w->Write(first);
  images::TarWriter tar([&](std::string_view chunk) {
    v1::UploadRequest r;
    r.set_tar(chunk.data(), chunk.size());
    open = open && w->Write(r);
    return open;
  });
  auto tree = open ? WriteTreeTar(host, name, tar) : Result<TreeReport>(Fail("write tar", "the receiver stopped"));
  if (open) w->WritesDone();
  else ctx.TryCancel();
  grpc::Status status = w->Finish();
  // When the daemon ended the call, its status says why; our side's error
  // ("the receiver stopped") would say nothing.
  if (!status.ok() && (!tree || status.error_code() != grpc::StatusCode::CANCELLED))
    return Fail("", StatusMessage(status, conn.socket()));
  if (!tree) return std::unexpected(tree.error());
  sum->bytes = tree->bytes;
  sum->files = tree->files;
  sum->dirs = tree->dirs;
  sum->symlinks = tree->symlinks;
  sum->skipped = tree->skipped;
  return {};
}

Result<void> CopyIn(Connection& conn, const std::string& host, const CopyOperand& dst, CopySummary* sum) {
  struct stat st;
  if (stat(host.c_str(), &st) != 0) return Errno("stat", host);
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return Fail("cp", host + ": not a regular file or directory");
  sum->type = S_ISDIR(st.st_mode) ? "directory" : "file";
  // Where it lands: inside DST when DST is a directory.
  std::string target = dst.path;
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    *req.mutable_file() = Ref(dst, dst.path);
    req.set_follow_symlinks(true);
    v1::FileInfo info;
    grpc::Status status = conn.stub().Stat(&ctx, req, &info);
    if (status.ok() && info.type() == v1::FILE_TYPE_DIRECTORY) {
      std::string name = NameFor(host);
      if (name.empty()) return Fail("cp", "name the source directory, not \"" + host + "\"");
      target = JoinPath(dst.path, name);
    } else if (status.ok() && S_ISDIR(st.st_mode)) {
      return Fail("cp", "cannot copy directory " + host + " over the non-directory " + dst.sandbox_id + ":" + dst.path);
    } else if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) {
      return Fail("", StatusMessage(status, conn.socket()));
    }
  }
  if (S_ISREG(st.st_mode)) return WriteFileIn(conn, host, st, dst, target, sum);
  return UploadDir(conn, host, dst, target, sum);
}

Result<void> ReadFileOut(Connection& conn, const CopyOperand& src, const v1::FileInfo& info, const std::string& target,
                         CopySummary* sum) {
  // A temporary file next to the target, renamed over it when complete:
  // an interrupted copy leaves the old file (or none).
  std::string dir = target.rfind('/') == std::string::npos ? "." : target.substr(0, target.rfind('/') + 1);
  std::string tmpl = JoinPath(dir, "." + BaseName(target) + ".airlock-XXXXXX");
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  UniqueFd fd(mkostemp(name.data(), O_CLOEXEC));
  if (!fd) return Errno("create", tmpl);
  const std::string tmp = name.data();
  grpc::ClientContext ctx;
  v1::ReadFileRequest req;
  *req.mutable_file() = Ref(src, src.path);
  auto r = conn.stub().ReadFile(&ctx, req);
  v1::FileChunk chunk;
  Result<void> local;
  SparseWriter out(fd.get(), target);
  while (local && r->Read(&chunk)) {
    local = out.Write(chunk.data().data(), chunk.data().size());
    if (!local) ctx.TryCancel();
    sum->bytes += chunk.data().size();
  }
  if (local) local = out.Finish();
  grpc::Status status = r->Finish();
  if (local && !status.ok()) local = Fail("", StatusMessage(status, conn.socket()));
  // Permission bits only: the sandbox's setuid bit never reaches the host.
  if (local && fchmod(fd.get(), info.mode() & 0777) != 0) local = Errno("chmod", target);
  if (local && rename(tmp.c_str(), target.c_str()) != 0) local = Errno("rename", target);
  if (!local) unlink(tmp.c_str());
  if (local) sum->files = 1;
  return local;
}

Result<void> DownloadDir(Connection& conn, const CopyOperand& src, const v1::FileInfo& info, const std::string& target,
                         CopySummary* sum) {
  if (mkdir(target.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", target);
  UniqueFd dir(open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return Errno("open", target);
  grpc::ClientContext ctx;
  auto r = conn.stub().Download(&ctx, Ref(src, src.path));
  ChunkSource source(r.get());
  images::TarReader tar(source);
  auto report = SafeExtract(tar, dir.get());
  if (!report) {
    // A stream that ended before the archive did: the daemon's status
    // names the reason better than "truncated archive".
    if (!source.ended()) ctx.TryCancel();
    source.Drain();
    grpc::Status status = r->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED)
      return Fail("", StatusMessage(status, conn.socket()));
    return Fail("cp", src.sandbox_id + ":" + src.path + ": " + report.error().Message());
  }
  source.Drain();
  grpc::Status status = r->Finish();
  if (!status.ok()) return Fail("", StatusMessage(status, conn.socket()));
  if (fchmod(dir.get(), info.mode() & 0777) != 0) return Errno("chmod", target);
  sum->bytes = report->bytes;
  sum->files = report->files + report->hardlinks;
  sum->dirs = report->dirs;
  sum->symlinks = report->symlinks;
  sum->skipped = report->skipped;
  return {};
}

Result<void> CopyOut(Connection& conn, const CopyOperand& src, const std::string& host, CopySummary* sum) {
  v1::FileInfo info;
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    *req.mutable_file() = Ref(src, src.path);
    req.set_follow_symlinks(true);
    grpc::Status status = conn.stub().Stat(&ctx, req, &info);
    if (!status.ok()) return Fail("", StatusMessage(status, conn.socket()));
  }
  const bool is_dir = info.type() == v1::FILE_TYPE_DIRECTORY;
  if (!is_dir && info.type() != v1::FILE_TYPE_FILE)
    return Fail("cp", src.sandbox_id + ":" + src.path + ": not a regular file or directory");
  sum->type = is_dir ? "directory" : "file";
  std::string target = host;
  struct stat st;
  if (stat(host.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      std::string name = NameFor(src.path);
      if (name.empty()) return Fail("cp", "name the source directory, not \"" + src.path + "\"");
      target = JoinPath(host, name);
    } else if (is_dir) {
      return Fail("cp", "cannot copy directory " + src.sandbox_id + ":" + src.path + " over the non-directory " + host);
    }
  } else if (errno != ENOENT) {
    return Errno("stat", host);
  }
  if (is_dir) return DownloadDir(conn, src, info, target, sum);
  return ReadFileOut(conn, src, info, target, sum);
}

}  // namespace

int CpCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, {}, kCpUsage, false, &g, &a, &code)) return code;
  if (a.positional.size() != 2) return Failed("usage: airlock cp SRC DST (one of them ID:PATH; see --help)");
  CopyOperand src = ParseCopyOperand(a.positional[0]), dst = ParseCopyOperand(a.positional[1]);
  if (src.remote() == dst.remote())
    return Failed("cp: exactly one of SRC and DST must be ID:PATH (a host path with ':' is written ./a:b)");
  for (const auto* op : {&src, &dst})
    if (op->path.empty()) return Failed("cp: empty path in \"" + (op->remote() ? op->sandbox_id + ":" : "") + "\"");
  Connection conn(g.socket);
  CopySummary sum;
  Result<void> done = dst.remote() ? CopyIn(conn, src.path, dst, &sum) : CopyOut(conn, src, dst.path, &sum);
  if (!done) return Failed(done.error().op.empty() ? done.error().detail : done.error().Message());
  if (g.json) {
    nlohmann::json j = {{"source", a.positional[0]}, {"destination", a.positional[1]}, {"type", sum.type},
                        {"bytes", sum.bytes},         {"files", sum.files},              {"directories", sum.dirs},
                        {"symlinks", sum.symlinks},   {"skipped", sum.skipped}};
    printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    for (const auto& s : sum.skipped) fprintf(stderr, "airlock: cp: %s\n", s.c_str());
  }
  return 0;
}

}  // namespace airlock::client

#include "harness/daemon/snapshot_archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <vector>

#include "images/oci/export.h"
#include "images/oci/layer_extract.h"
#include "images/oci/tar_reader.h"
#include "harness/daemon/checkpoint_seal.h"
#include "runtime/core/hex.h"
#include "runtime/core/io.h"
#include "runtime/core/sha256.h"

namespace airlock::daemon {

namespace {

constexpr char kLayerMember[] = "layer.tar";
constexpr char kManifestMember[] = "airlock-snapshot.json";
constexpr char kImagesPrefix[] = "criu/";
constexpr uint64_t kMaxManifest = 1 << 20;

Result<std::string> Unhex(const std::string& hex) {
  if (hex.size() % 2) return Fail("snapshot archive", "request: odd-length hex");
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto v = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = v(hex[i]), lo = v(hex[i + 1]);
    if (hi < 0 || lo < 0) return Fail("snapshot archive", "request: not lower-case hex");
    out += static_cast<char>(hi << 4 | lo);
  }
  return out;
}

// The current member's data as a byte source.
class MemberSource : public images::ByteSource {
 public:
  explicit MemberSource(images::TarReader& r) : r_(r) {}
  Result<size_t> Read(void* buf, size_t n) override { return r_.ReadData(buf, n); }

 private:
  images::TarReader& r_;
};

// A process image's file name as an archive may carry it: one plain name.
bool PlainName(const std::string& n) {
  if (n.empty() || n == "." || n == ".." || n.size() > 200) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '/'; });
}

// Writes `fd`'s content (`size` bytes) as member `name`; returns its sha256.
Result<std::string> CopyMember(images::TarWriter& out, const std::string& name, int fd, uint64_t size, const char* what) {
  images::TarWriter::Header h;
  h.name = name;
  h.size = size;
  h.mode = 0600;
  TRY(out.Begin(h));
  Sha256 sha;
  std::string buf(images::TarWriter::kChunk, '\0');
  for (off_t off = 0; static_cast<uint64_t>(off) < size;) {
    ssize_t n = pread(fd, buf.data(), std::min<uint64_t>(buf.size(), size - static_cast<uint64_t>(off)), off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("read", what);
    std::string_view chunk(buf.data(), static_cast<size_t>(n));
    sha.Update(chunk);
    TRY(out.Data(chunk));
    off += n;
  }
  return sha.HexFinal();
}

}  // namespace

Result<void> ExportSnapshotArchive(const std::string& snapshot_path, const std::string& tmp_dir,
                                   const nlohmann::json& meta, const std::string& request,
                                   const std::string& images_dir, const images::TarSink& sink) {
  UniqueFd tmp(open(tmp_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!tmp) return Errno("open O_TMPFILE", tmp_dir);
  auto to_tmp = [&](std::string_view d) { return WriteAll(tmp.get(), d, "the snapshot's layer tar").has_value(); };
  images::LayerTarInfo layer = TRY(images::WriteLayerTar(snapshot_path + "/upper", to_tmp));
  images::TarWriter out(sink);
  TRY(CopyMember(out, kLayerMember, tmp.get(), layer.size, "the snapshot's layer tar"));
  // A full snapshot's process images (their seal among them), each checksummed.
  nlohmann::json process_images = nlohmann::json::object();
  if (!images_dir.empty()) {
    std::vector<std::string> names;
    if (DIR* listing = opendir(images_dir.c_str())) {
      while (dirent* e = readdir(listing))
        if (PlainName(e->d_name) && !IsCriuOutput(e->d_name)) names.push_back(e->d_name);
      closedir(listing);
    } else {
      return Errno("opendir", images_dir);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      UniqueFd fd(open((images_dir + "/" + n).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st;
      if (!fd || fstat(fd.get(), &st) < 0) return Errno("open", images_dir + "/" + n);
      if (!S_ISREG(st.st_mode)) continue;
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      std::string digest = TRY(CopyMember(out, kImagesPrefix + n, fd.get(), size, "a process image"));
      process_images[n] = {{"digest", "sha256:" + digest}, {"size", size}};
    }
  }
  nlohmann::json manifest = {{"format", kSnapshotFormat},
                             {"layer", {{"digest", layer.digest}, {"size", layer.size}}},
                             {"snapshot", meta},
                             {"request", HexEncode(request)}};
  if (!process_images.empty()) manifest["process_images"] = process_images;
  const std::string text = manifest.dump(2) + "\n";
  images::TarWriter::Header h;
  h.mode = 0600;
  h.name = kManifestMember;
  h.size = text.size();
  TRY(out.Begin(h));
  TRY(out.Data(text));
  TRY(out.Finish());
  return {};
}

Result<ImportedSnapshot> ImportSnapshotArchive(images::ByteSource& src, storage::Pool& pool,
                                               const std::string& staging, int images_dir_fd) {
  storage::Subvolume sub = TRY(pool.CreateSubvolume(staging, std::nullopt));
  auto imported = [&]() -> Result<ImportedSnapshot> {
    if (mkdirat(sub.dir.get(), "upper", 0755) < 0) return Errno("mkdir", sub.path + "/upper");
    if (mkdirat(sub.dir.get(), "work", 0700) < 0) return Errno("mkdir", sub.path + "/work");
    UniqueFd upper(openat(sub.dir.get(), "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!upper) return Errno("open", sub.path + "/upper");

    images::TarReader outer(src);
    auto first = TRY(outer.Next());
    if (!first || first->name != kLayerMember || first->typeflag != '0')
      return Fail("snapshot archive", std::string("the first member must be ") + kLayerMember + " (is this an airlock snapshot?)");
    MemberSource member(outer);
    images::HashingSource hashed(member);
    images::TarReader inner(hashed);
    // Setuid bits are cleared rather than refused: a sandbox's layer may
    // hold them (mounted nosuid), and they grant nothing there.
    TRY(images::ExtractLayer(inner, upper.get(), {.strip_setid = true, .chown = true}));
    TRY(images::Drain(hashed));
    const std::string digest = hashed.Digest();
    const uint64_t size = hashed.count();

    // Process images, if any: written as they come, checked against the
    // manifest (which comes last) before anything is kept.
    std::map<std::string, std::pair<std::string, uint64_t>> images_read;
    auto second = TRY(outer.Next());
    while (second && second->name.starts_with(kImagesPrefix)) {
      const std::string name = second->name.substr(sizeof(kImagesPrefix) - 1);
      if (second->typeflag != '0' || !PlainName(name) || images_read.count(name))
        return Fail("snapshot archive", "a bad process image member: " + second->name);
      if (images_dir_fd < 0) return Fail("snapshot archive", "process images where none may be");
      UniqueFd f(openat(images_dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640));
      if (!f) return Errno("create", "process image " + name);
      Sha256 sha;
      uint64_t got = 0;
      std::string buf(1 << 20, '\0');
      for (;;) {
        size_t n = TRY(outer.ReadData(buf.data(), buf.size()));
        if (n == 0) break;
        sha.Update(std::string_view(buf.data(), n));
        TRY(WriteAll(f.get(), std::string_view(buf.data(), n), "process image " + name));
        got += n;
      }
      if (got != second->size) return Fail("snapshot archive", "process image " + name + " cut short (truncated?)");
      images_read[name] = {"sha256:" + sha.HexFinal(), got};
      second = TRY(outer.Next());
    }
    if (!second || second->name != kManifestMember || second->typeflag != '0')
      return Fail("snapshot archive", std::string("no ") + kManifestMember + " after the layer (truncated?)");
    if (second->size > kMaxManifest) return Fail("snapshot archive", std::string(kManifestMember) + " is too large");
    std::string text(second->size, '\0');
    for (size_t got = 0; got < text.size();) {
      size_t n = TRY(outer.ReadData(text.data() + got, text.size() - got));
      if (n == 0) return Fail("snapshot archive", std::string(kManifestMember) + " cut short");
      got += n;
    }
    if (auto third = TRY(outer.Next()); third)
      return Fail("snapshot archive", "an unexpected member after the manifest: " + third->name);
    // After the end-of-archive blocks only zeros may follow (tar pads to a
    // record size), and not many.
    char tail[4096];
    uint64_t trailing = 0;
    for (;;) {
      size_t n = TRY(src.Read(tail, sizeof(tail)));
      if (n == 0) break;
      trailing += n;
      for (size_t i = 0; i < n; ++i)
        if (tail[i] != 0) return Fail("snapshot archive", "data after the end of the archive");
      if (trailing > (1u << 20)) return Fail("snapshot archive", "more than 1 MiB after the end of the archive");
    }
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Fail("snapshot archive", "the manifest is not a JSON object");
    if (j.value("format", "") != kSnapshotFormat)
      return Fail("snapshot archive", "format: not " + std::string(kSnapshotFormat));
    if (!j.contains("layer") || !j["layer"].is_object() || j["layer"].value("digest", "") != digest ||
        j["layer"].value("size", uint64_t{0}) != size)
      return Fail("snapshot archive", "the layer's checksum doesn't match the manifest (" + digest + ", " +
                                          std::to_string(size) + " bytes read): the archive is corrupt");
    const nlohmann::json listed = j.value("process_images", nlohmann::json::object());
    if (!listed.is_object() || listed.size() != images_read.size())
      return Fail("snapshot archive", "the process images don't match the manifest's list: the archive is corrupt");
    for (const auto& [name, got] : images_read) {
      if (!listed.contains(name) || !listed[name].is_object() || listed[name].value("digest", "") != got.first ||
          listed[name].value("size", uint64_t{0}) != got.second)
        return Fail("snapshot archive", "process image " + name + "'s checksum doesn't match the manifest: the "
                                        "archive is corrupt");
    }
    ImportedSnapshot out;
    out.process_images = !images_read.empty();
    out.meta = j.value("snapshot", nlohmann::json::object());
    if (!out.meta.is_object()) return Fail("snapshot archive", "snapshot: not an object");
    out.request = TRY(Unhex(j.value("request", "")));
    return out;
  }();
  if (!imported) (void)pool.DeleteSubvolume(staging);
  return imported;
}

}  // namespace airlock::daemon

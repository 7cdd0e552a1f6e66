#include "images/oci/export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "images/host/host_image.h"
#include "images/store/fs_util.h"
#include "images/store/image_store.h"
#include "runtime/core/sha256.h"
#include "runtime/core/unique_fd.h"

namespace airlock::images {

namespace {

using nlohmann::json;

constexpr uint32_t kMaxCanonicalId = 65535;
constexpr const char* kOpaqueMarker = ".wh..wh..opq";
constexpr const char* kLayerMediaType = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* kConfigMediaType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kIndexMediaType = "application/vnd.oci.image.index.v1+json";
constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";

// One member of a layer tar. A regular file's data is read again when the
// tar is written, by `rel` beneath the layer root, and must still be the
// inode (dev, ino) and size seen when the layer was scanned.
struct Entry {
  TarWriter::Header h;
  std::string rel;
  dev_t dev = 0;
  ino_t ino = 0;
};

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

// Whiteout and opaque markers carry no metadata overlay or the importer
// reads; fixed values keep the tar independent of when the layer was
// extracted (the importer doesn't set a whiteout device's times).
TarWriter::Header Marker(const std::string& name) {
  TarWriter::Header h;
  h.name = name;
  h.typeflag = '0';
  h.mode = 0600;
  return h;
}

// Walks a layer directory into the canonical member list (export.h).
class LayerScan {
 public:
  explicit LayerScan(int rootfd) : rootfd_(rootfd) {}

  Result<std::vector<Entry>> Run() {
    struct stat st;
    if (fstat(rootfd_, &st) != 0) return Errno("stat", "/");
    TRY(CheckIds(st, "/"));
    // An implicit root is 0755 0:0 and its mtime is the import's; only a
    // root that says something else is written.
    if ((st.st_mode & 07777) != 0755 || st.st_uid != 0 || st.st_gid != 0)
      out_.push_back(Entry{DirHeader("./", st), "", 0, 0});
    TRY(Dir(rootfd_, ""));
    return std::move(out_);
  }

 private:
  struct Child {
    std::string tar_name;  // base name as written (".wh.NAME" for a whiteout)
    std::string name;      // base name on disk
    struct stat st;
  };

  static Result<void> CheckIds(const struct stat& st, const std::string& rel) {
    if (st.st_uid > kMaxCanonicalId || st.st_gid > kMaxCanonicalId)
      return Fail("owner", rel + ": uid/gid " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid) +
                               " outside the canonical range 0-65535");
    return {};
  }

  static TarWriter::Header Meta(const std::string& name, char type, const struct stat& st) {
    TarWriter::Header h;
    h.name = name;
    h.typeflag = type;
    h.mode = st.st_mode & 07777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime = st.st_mtim.tv_sec;
    return h;
  }
  static TarWriter::Header DirHeader(const std::string& name, const struct stat& st) { return Meta(name, '5', st); }

  // overlayfs reads "user.overlay.opaque" when mounted with userxattr (as
  // the runtime mounts it, and as the importer writes it), the trusted.*
  // form otherwise: either marks the directory opaque.
  static Result<bool> Opaque(int dirfd, const std::string& rel) {
    for (const char* key : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
      char v[4];
      ssize_t n = fgetxattr(dirfd, key, v, sizeof v);
      if (n == 1 && v[0] == 'y') return true;
      if (n < 0 && errno != ENODATA && errno != ENOTSUP && errno != ERANGE && errno != EPERM)
        return Errno(std::string("getxattr ") + key, rel.empty() ? "/" : rel);
    }
    return false;
  }

  static Result<std::string> ReadLink(int dirfd, const std::string& name, const struct stat& st,
                                      const std::string& rel) {
    std::string buf(static_cast<size_t>(st.st_size) + 1, '\0');
    for (;;) {
      ssize_t n = readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
      if (n < 0) return Errno("readlink", rel);
      if (static_cast<size_t>(n) < buf.size()) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
      if (buf.size() > (1u << 16)) return Fail("readlink", rel + ": target too long");
      buf.resize(buf.size() * 2);
    }
  }

  // A second name of an inode already written becomes a hardlink to the
  // first name (depth-first, sorted order, so always the same one).
  bool AsHardlink(Entry* e, const struct stat& st) {
    if (st.st_nlink < 2) return false;
    auto [it, fresh] = links_.try_emplace({st.st_dev, st.st_ino}, e->h.name);
    if (fresh) return false;
    e->h.typeflag = '1';
    e->h.linkname = it->second;
    e->h.size = 0;
    e->rel.clear();
    return true;
  }

  Result<void> Dir(int dirfd, const std::string& rel) {
    const std::string prefix = rel.empty() ? "" : rel + "/";
    if (TRY(Opaque(dirfd, rel))) out_.push_back(Entry{Marker(prefix + kOpaqueMarker), "", 0, 0});
    std::vector<Child> kids;
    for (auto& name : TRY(fsutil::ListDir(dirfd, rel.empty() ? "/" : rel))) {
      Child c;
      if (fstatat(dirfd, name.c_str(), &c.st, AT_SYMLINK_NOFOLLOW) != 0) return Errno("stat", prefix + name);
      // The importer turns every ".wh." member into a whiteout or a
      // marker, so a stored file of that name would be read back as one.
      if (name.starts_with(".wh."))
        return Fail("export", prefix + name + ": a stored file named .wh.* can't be written (it would read as a "
                                                  "whiteout)");
      c.tar_name = IsWhiteout(c.st) ? ".wh." + name : name;
      c.name = std::move(name);
      kids.push_back(std::move(c));
    }
    std::sort(kids.begin(), kids.end(), [](const Child& a, const Child& b) { return a.tar_name < b.tar_name; });
    for (const Child& c : kids) {
      const std::string path = prefix + c.name;
      const struct stat& st = c.st;
      if (IsWhiteout(st)) {
        out_.push_back(Entry{Marker(prefix + c.tar_name), "", 0, 0});
        continue;
      }
      TRY(CheckIds(st, path));
      Entry e;
      if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(openat(dirfd, c.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) return Errno("open", path);
        struct stat again;
        if (fstat(sub.get(), &again) != 0) return Errno("stat", path);
        if (again.st_dev != st.st_dev || again.st_ino != st.st_ino)
          return Fail("export", path + ": replaced while the layer was read");
        out_.push_back(Entry{DirHeader(path + "/", again), "", 0, 0});
        TRY(Dir(sub.get(), path));
        continue;
      }
      if (S_ISREG(st.st_mode)) {
        e.h = Meta(path, '0', st);
        e.h.size = static_cast<uint64_t>(st.st_size);
        e.rel = path;
        e.dev = st.st_dev;
        e.ino = st.st_ino;
      } else if (S_ISLNK(st.st_mode)) {
        e.h = Meta(path, '2', st);
        e.h.linkname = TRY(ReadLink(dirfd, c.name, st, path));
      } else if (S_ISFIFO(st.st_mode)) {
        e.h = Meta(path, '6', st);
      } else {
        // The importer refuses devices and never makes sockets.
        const char* what = S_ISCHR(st.st_mode)   ? "a character device"
                           : S_ISBLK(st.st_mode) ? "a block device"
                                                 : "a socket";
        return Fail("export", path + ": " + what + " can't be exported (an imported layer never holds one)");
      }
      AsHardlink(&e, st);
      out_.push_back(std::move(e));
    }
    return {};
  }

  int rootfd_;
  std::vector<Entry> out_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

// Writes `entries` as a tar to `sink` (none: only hashed and counted),
// reading file data beneath `rootfd`.
Result<LayerTarInfo> EmitLayer(const std::vector<Entry>& entries, int rootfd, const TarSink& sink) {
  Sha256 sha(Sha256::kBulk);
  uint64_t count = 0;
  TarWriter tw([&](std::string_view chunk) {
    sha.Update(chunk);
    count += chunk.size();
    return sink ? sink(chunk) : true;
  });
  std::string buf(1 << 17, '\0');
  for (const Entry& e : entries) {
    TRY(tw.Begin(e.h));
    if (e.h.typeflag != '0' || e.h.size == 0) continue;
    // By descriptor, beneath the layer root, following no symlink
    // (decision 2): the path was a regular file when scanned.
    UniqueFd fd(fsutil::OpenBeneath(rootfd, e.rel, O_RDONLY | O_NOCTTY | O_NOFOLLOW));
    if (!fd) return Errno("open", e.rel);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return Errno("stat", e.rel);
    if (st.st_dev != e.dev || st.st_ino != e.ino || static_cast<uint64_t>(st.st_size) != e.h.size)
      return Fail("export", e.rel + ": changed while the layer was read");
    for (uint64_t left = e.h.size; left > 0;) {
      ssize_t n = read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(left, buf.size())));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("read", e.rel);
      if (n == 0) return Fail("export", e.rel + ": shrank while the layer was read");
      TRY(tw.Data(std::string_view(buf.data(), static_cast<size_t>(n))));
      left -= static_cast<uint64_t>(n);
    }
  }
  TRY(tw.Finish());
  return LayerTarInfo{"sha256:" + sha.HexFinal(), count};
}

std::string HostArch() {
  struct utsname u;
  if (uname(&u) != 0) return "amd64";
  const std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m.starts_with("armv")) return "arm";
  if (m == "i686" || m == "i386") return "386";
  return m;
}

// docker load takes a RepoTag only if its name is a valid reference path
// component: [a-z0-9]+ joined by ".", "_", "__" or runs of "-".
bool DockerRepoComponent(const std::string& n) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (n.empty() || !alnum(n.front()) || !alnum(n.back())) return false;
  std::string sep;
  for (char c : n) {
    if (alnum(c)) {
      if (!sep.empty() && sep != "." && sep != "_" && sep != "__" && sep.find_first_not_of('-') != std::string::npos)
        return false;
      sep.clear();
    } else {
      sep += c;
    }
  }
  return true;
}

// Compact, sorted keys: the same image gives the same bytes, hence digests.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string ConfigJson(const StoredImage& img, const std::vector<std::string>& diff_ids) {
  json c = json::object();
  const ImageConfig& ic = img.config;
  if (!ic.env.empty()) c["Env"] = ic.env;
  if (!ic.entrypoint.empty()) c["Entrypoint"] = ic.entrypoint;
  if (!ic.cmd.empty()) c["Cmd"] = ic.cmd;
  if (!ic.workdir.empty()) c["WorkingDir"] = ic.workdir;
  if (!ic.user.empty()) c["User"] = ic.user;
  if (!ic.labels.empty()) c["Labels"] = ic.labels;
  // The store doesn't record the image's platform: the import took the
  // host's (or the only one there was).
  json cfg{{"architecture", HostArch()}, {"os", "linux"}, {"config", c},
           {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return Dump(cfg);
}

std::string BlobName(const std::string& digest) { return "blobs/sha256/" + digest.substr(7); }

std::string LayerWhat(size_t i, const std::string& diff_id) {
  return "layer " + std::to_string(i) + " (" + diff_id + ")";
}

struct LayerWork {
  size_t position = 0;  // first place in the image, bottom first
  std::string stored_diff_id;
  std::string dir;
  UniqueFd pin;  // the layer root, flocked shared: the collector skips it
  std::vector<Entry> entries;
  LayerTarInfo info;
};

}  // namespace

Result<LayerTarInfo> WriteLayerTar(const std::string& layer_dir, const TarSink& sink) {
  UniqueFd root(open(layer_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return Errno("open", layer_dir);
  auto entries = LayerScan(root.get()).Run();
  if (!entries) return Fail("export layer", layer_dir + ": " + entries.error().Message());
  auto info = EmitLayer(*entries, root.get(), sink);
  if (!info) return Fail("export layer", layer_dir + ": " + info.error().Message());
  return info;
}

Result<ExportResult> ExportImage(const std::string& store_root, const std::string& name, const TarSink& sink) {
  if (name == "host")
    return Fail("export",
                "image \"host\" is built in (a view of the host's /usr, not stored layers) and can't be exported");
  StoredImage img = TRY(LoadImage(store_root, name));
  const std::string who = "image \"" + name + "\"";
  const size_t n = img.diff_ids.size();

  // Scan and hash every distinct layer first: a blob's name is its digest,
  // which the outer tar needs before the blob's bytes.
  std::vector<LayerWork> work;
  std::map<std::string, size_t> by_stored;
  std::vector<size_t> index_of(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& d = img.diff_ids[i];
    if (auto it = by_stored.find(d); it != by_stored.end()) {
      index_of[i] = it->second;
      continue;
    }
    LayerWork w;
    w.position = i;
    w.stored_diff_id = d;
    w.dir = img.layer_dirs[n - 1 - i];  // layer_dirs is uppermost first
    auto pin = PinImageLayer(w.dir);
    if (!pin) return Fail("export", who + ": " + LayerWhat(i, d) + ": " + pin.error().Message());
    w.pin = std::move(*pin);
    auto entries = LayerScan(w.pin.get()).Run();
    if (!entries) return Fail("export", who + ": " + LayerWhat(i, d) + ": " + entries.error().Message());
    w.entries = std::move(*entries);
    auto info = EmitLayer(w.entries, w.pin.get(), nullptr);
    if (!info) return Fail("export", who + ": " + LayerWhat(i, d) + ": " + info.error().Message());
    w.info = *info;
    by_stored[d] = work.size();
    index_of[i] = work.size();
    work.push_back(std::move(w));
  }

  ExportResult res;
  res.name = name;
  std::vector<std::string> diff_ids;
  json layer_descs = json::array();
  for (size_t i = 0; i < n; ++i) {
    const LayerWork& w = work[index_of[i]];
    res.layers.push_back(ExportedLayer{img.diff_ids[i], w.info.digest, w.info.size});
    diff_ids.push_back(w.info.digest);
    layer_descs.push_back({{"mediaType", kLayerMediaType}, {"digest", w.info.digest}, {"size", w.info.size}});
  }
  const std::string config = ConfigJson(img, diff_ids);
  res.config_digest = "sha256:" + Sha256Hex(config);
  const std::string manifest = Dump(json{
      {"schemaVersion", 2},
      {"mediaType", kManifestMediaType},
      {"config", {{"mediaType", kConfigMediaType}, {"digest", res.config_digest}, {"size", config.size()}}},
      {"layers", layer_descs}});
  res.manifest_digest = "sha256:" + Sha256Hex(manifest);
  const std::string index = Dump(json{
      {"schemaVersion", 2},
      {"mediaType", kIndexMediaType},
      {"manifests", json::array({{{"mediaType", kManifestMediaType},
                                  {"digest", res.manifest_digest},
                                  {"size", manifest.size()},
                                  {"annotations", {{kRefNameAnnotation, name}}}}})}});
  json docker_entry{{"Config", BlobName(res.config_digest)}, {"Layers", json::array()}};
  for (const auto& d : diff_ids) docker_entry["Layers"].push_back(BlobName(d));
  // Without a valid tag docker load refuses the whole archive; untagged, it
  // loads the image by id (podman names it from index.json either way).
  docker_entry["RepoTags"] = DockerRepoComponent(name) ? json::array({name + ":latest"}) : json::array();
  const std::string docker_manifest = Dump(json::array({docker_entry}));

  TarWriter out([&](std::string_view chunk) {
    res.bytes += chunk.size();
    return sink(chunk);
  });
  const TarMeta dir_meta{.mode = 0755};
  const TarMeta file_meta{.mode = 0644};
  auto small = [&](const std::string& member, const std::string& data) -> Result<void> {
    TRY(out.BeginFile(member, data.size(), file_meta));
    return out.Data(data);
  };
  TRY(out.Directory("blobs", dir_meta));
  TRY(out.Directory("blobs/sha256", dir_meta));
  std::map<std::string, bool> written;  // distinct stored layers may re-create the same tar
  for (const LayerWork& w : work) {
    if (written[w.info.digest]) continue;
    written[w.info.digest] = true;
    TRY(out.BeginFile(BlobName(w.info.digest), w.info.size, file_meta));
    Result<void> outer_err;
    auto again = EmitLayer(w.entries, w.pin.get(), [&](std::string_view chunk) {
      outer_err = out.Data(chunk);
      return outer_err.has_value();
    });
    if (!outer_err) return std::unexpected(outer_err.error());
    const std::string what = who + ": " + LayerWhat(w.position, w.stored_diff_id);
    if (!again) return Fail("export", what + ": " + again.error().Message());
    if (again->digest != w.info.digest || again->size != w.info.size)
      return Fail("export", what + ": the layer changed while it was exported (" + w.info.digest + ", then " +
                                again->digest + ")");
  }
  TRY(small(BlobName(res.config_digest), config));
  TRY(small(BlobName(res.manifest_digest), manifest));
  TRY(small("index.json", index));
  TRY(small("manifest.json", docker_manifest));
  TRY(small("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  TRY(out.Finish());
  return res;
}

namespace {

// Writes everything it is given to `fd`; remembers the first errno.
struct FdSink {
  int fd;
  int err = 0;
  bool operator()(std::string_view chunk) {
    while (!chunk.empty()) {
      ssize_t w = write(fd, chunk.data(), chunk.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        err = errno;
        return false;
      }
      chunk.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }
};

}  // namespace

Result<ExportResult> ExportImageToFile(const std::string& store_root, const std::string& name,
                                       const std::string& path) {
  if (path == "-") {
    if (isatty(STDOUT_FILENO))
      return Fail("export", "refusing to write image \"" + name + "\" to a terminal; give a FILE or redirect stdout");
    FdSink out{STDOUT_FILENO};
    auto r = ExportImage(store_root, name, std::ref(out));
    if (!r && out.err) return ErrnoValue(out.err, "export", "write image \"" + name + "\" to stdout");
    return r;
  }
  if (path.empty() || path.ends_with('/')) return Fail("export", "\"" + path + "\" is not a file name");
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  // Beside the target, so the rename is atomic (one filesystem).
  const std::string tmp = (dir == "/" ? "" : dir) + "/." + base + ".airlock-export-" + fsutil::RandomSuffix();
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
  if (!fd) return Errno("export", "create a temporary file for " + path + " (" + tmp + ")");
  auto fail = [&](Error e) -> Result<ExportResult> {
    unlink(tmp.c_str());
    return std::unexpected(std::move(e));
  };
  FdSink out{fd.get()};
  auto r = ExportImage(store_root, name, std::ref(out));
  if (!r) {
    if (out.err) return fail(Error{out.err, "export", "write " + path});
    return fail(r.error());
  }
  if (fsync(fd.get()) != 0) return fail(Error{errno, "export", "fsync " + path});
  if (close(fd.Release()) != 0) return fail(Error{errno, "export", "close " + path});
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail(Error{errno, "export", "rename " + tmp + " to " + path});
  // The rename itself reaches the disk with the directory.
  UniqueFd d(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d) (void)fsync(d.get());
  return r;
}

}  // namespace airlock::images

#include "images/store/image_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "images/oci/layer_extract.h"
#include "images/store/flatten.h"
#include "runtime/core/paths.h"
#include "images/oci/tar_reader.h"
#include "images/store/fs_util.h"

namespace airlock::images {

namespace {

using nlohmann::json;
constexpr time_t kStaleTempSeconds = 3600;

struct Store {
  std::string root;
  UniqueFd rootfd, layers, images, lock;
};

Result<Store> OpenStore(const std::string& root, int lock_op) {
  Store s;
  s.root = root;
  TRY(MakeDirs(root));  // mkdir -p, 0700
  s.rootfd.Reset(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s.rootfd) return Errno("open", root);
  for (const char* d : {"layers", "layers/sha256", "images"})
    if (mkdirat(s.rootfd.get(), d, 0700) != 0 && errno != EEXIST) return Errno("mkdir", root + "/" + d);
  s.layers.Reset(fsutil::OpenBeneath(s.rootfd.get(), "layers/sha256", O_RDONLY | O_DIRECTORY));
  if (!s.layers) return Errno("open", root + "/layers/sha256");
  s.images.Reset(fsutil::OpenBeneath(s.rootfd.get(), "images", O_RDONLY | O_DIRECTORY));
  if (!s.images) return Errno("open", root + "/images");
  s.lock.Reset(openat(s.rootfd.get(), ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!s.lock) return Errno("open", root + "/.lock");
  while (flock(s.lock.get(), lock_op) != 0)
    if (errno != EINTR) return Errno("flock", root + "/.lock");
  return s;
}

std::string Hex(const std::string& digest) { return digest.substr(7); }

// Removes a layer directory: renamed aside first, so a pinner arriving now
// finds nothing rather than a half-removed tree.
void DropLayer(int layersfd, const std::string& name) {
  std::string trash = ".trash-" + name.substr(0, 16) + "-" + fsutil::RandomSuffix();
  if (renameat(layersfd, name.c_str(), layersfd, trash.c_str()) != 0) return;
  (void)fsutil::RemoveTree(layersfd, trash);
}

// Passes bytes through and reports how many went by, every 4 MiB.
class CountingSource : public ByteSource {
 public:
  CountingSource(ByteSource& inner, std::function<void(uint64_t)> report)
      : inner_(inner), report_(std::move(report)) {}
  Result<size_t> Read(void* buf, size_t n) override {
    size_t got = TRY(inner_.Read(buf, n));
    count_ += got;
    if (report_ && (count_ - reported_ >= (4u << 20) || got == 0)) {
      reported_ = count_;
      report_(count_);
    }
    return got;
  }

 private:
  ByteSource& inner_;
  std::function<void(uint64_t)> report_;
  uint64_t count_ = 0, reported_ = 0;
};

// Reads, verifies and (unless already stored) extracts one layer. Sets
// *created when this call added the layer directory.
Result<void> ImportLayer(const ArchiveFiles& files, const LayerRef& l, size_t index, size_t count, int layersfd,
                         const ExtractOptions& xo, const ImportProgressFn& progress, bool* created) {
  *created = false;
  const std::string what = "layer " + std::to_string(index) + " (" + l.member + ")";
  const std::string hex = Hex(l.diff_id);
  struct stat st;
  const bool exists = fstatat(layersfd, hex.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);

  uint8_t head[2] = {0, 0};
  {
    auto peek = TRY(files.Stream(l.member));
    size_t got = TRY(peek->Read(head, 2));
    if (got == 1) got += TRY(peek->Read(head + 1, 1));
  }
  auto stream = TRY(files.Stream(l.member));
  const uint64_t total = l.size.value_or(0);
  CountingSource raw(*stream, progress ? std::function<void(uint64_t)>([&](uint64_t done) {
    progress(index, count, done, total);
  })
                                       : std::function<void(uint64_t)>());
  HashingSource blob(raw);
  // An uncompressed layer's blob is its tar: one hash gives both digests
  // (SHA-256 is ~150 ms per 45 MB here; hashing it twice showed).
  std::unique_ptr<GzipSource> gz;
  std::optional<HashingSource> uncompressed;
  if (LooksGzip(head, 2)) {
    gz = TRY(GzipSource::Make(blob, what));
    uncompressed.emplace(*gz);
  }
  HashingSource& diff = uncompressed ? *uncompressed : blob;

  std::string tmp;
  UniqueFd tmpfd;
  auto cleanup = [&] {
    if (!tmp.empty()) (void)fsutil::RemoveTree(layersfd, tmp);
  };
  if (!exists) {
    tmp = ".tmp-" + hex.substr(0, 16) + "-" + fsutil::RandomSuffix();
    if (mkdirat(layersfd, tmp.c_str(), 0700) != 0) return Errno("mkdir", tmp);
    tmpfd.Reset(openat(layersfd, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!tmpfd) {
      int err = errno;
      cleanup();
      return ErrnoValue(err, "open", tmp);
    }
    TarReader tar(diff);
    auto r = ExtractLayer(tar, tmpfd.get(), xo);
    if (!r) {
      cleanup();
      return Fail("import", what + ": " + r.error().Message());
    }
  }
  auto drained = Drain(diff);
  if (!drained) {
    cleanup();
    return Fail("import", what + ": " + drained.error().Message());
  }
  std::string blob_digest = blob.Digest();  // finalizes: once per object
  std::string diff_id = uncompressed ? uncompressed->Digest() : blob_digest;
  std::string bad;
  if (l.size && *l.size != blob.count())
    bad = "size mismatch: descriptor says " + std::to_string(*l.size) + " bytes, blob has " + std::to_string(blob.count());
  else if (!l.blob_digest.empty() && blob_digest != l.blob_digest)
    bad = "digest mismatch: archive names " + l.blob_digest + ", content is " + blob_digest;
  else if (diff_id != l.diff_id)
    bad = "diff_id mismatch: config says " + l.diff_id + ", uncompressed content is " + diff_id;
  if (!bad.empty()) {
    cleanup();
    return Fail("import", what + ": " + bad);
  }
  if (exists) return {};
  // A concurrent import of the same layer may have won: keep its copy.
  if (renameat2(layersfd, tmp.c_str(), layersfd, hex.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    cleanup();
    if (err == EEXIST) return {};
    return ErrnoValue(err, "rename", tmp);
  }
  *created = true;
  return {};
}

json ConfigToJson(const ImageConfig& c) {
  return json{{"env", c.env}, {"workdir", c.workdir}, {"user", c.user},
              {"entrypoint", c.entrypoint}, {"cmd", c.cmd}, {"labels", c.labels}};
}

Result<std::vector<std::string>> StrArray(const json& o, const char* key, const std::string& what) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end()) return out;
  if (!it->is_array()) return Fail("image record", what + ": \"" + key + "\" is not an array");
  for (const auto& v : *it) {
    if (!v.is_string()) return Fail("image record", what + ": \"" + key + "\" holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::string StrField(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<StoredImage> LoadFrom(const Store& s, const std::string& name) {
  if (!IsValidImageName(name)) return Fail("image", "invalid image name \"" + name + "\"");
  const std::string path = s.root + "/images/" + name + ".json";
  auto text = fsutil::ReadFileAt(s.images.get(), name + ".json", 1 << 20, path);
  if (!text) {
    if (text.error().err == ENOENT) return ErrnoValue(ENOENT, "image", "no image \"" + name + "\" in " + s.root);
    return std::unexpected(text.error());
  }
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Fail("image record", path + ": not a JSON object");
  StoredImage img;
  img.name = StrField(j, "name");
  if (img.name != name) return Fail("image record", path + ": \"name\" is \"" + img.name + "\"");
  img.digest = StrField(j, "digest");
  img.diff_ids = TRY(StrArray(j, "layers", path));
  if (img.diff_ids.empty()) return Fail("image record", path + ": no layers");
  for (auto it = img.diff_ids.rbegin(); it != img.diff_ids.rend(); ++it) {
    if (!IsSha256Digest(*it)) return Fail("image record", path + ": bad layer \"" + *it + "\"");
    struct stat st;
    if (fstatat(s.layers.get(), Hex(*it).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
      return ErrnoValue(ENOENT, "image", "layer " + *it + " of image \"" + name + "\" is missing");
    img.layer_dirs.push_back(s.root + "/layers/sha256/" + Hex(*it));
  }
  auto c = j.find("config");
  if (c != j.end() && c->is_object()) {
    img.config.env = TRY(StrArray(*c, "env", path));
    img.config.workdir = StrField(*c, "workdir");
    img.config.user = StrField(*c, "user");
    img.config.entrypoint = TRY(StrArray(*c, "entrypoint", path));
    img.config.cmd = TRY(StrArray(*c, "cmd", path));
    auto labels = c->find("labels");
    if (labels != c->end() && labels->is_object())
      for (const auto& [k, v] : labels->items())
        if (v.is_string()) img.config.labels[k] = v.get<std::string>();
  }
  return img;
}

// Drops layer directories no image references, stale temporaries and
// trash. Runs under the exclusive store lock.
Result<void> Collect(const Store& s) {
  std::set<std::string> referenced, flats;
  for (const auto& f : TRY(fsutil::ListDir(s.images.get(), s.root + "/images"))) {
    if (!f.ends_with(".json") || f.starts_with(".")) continue;
    auto text = fsutil::ReadFileAt(s.images.get(), f, 1 << 20, f);
    if (!text) continue;
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      // An unreadable record keeps everything: never collect on a guess.
      return Fail("collect layers", s.root + "/images/" + f + " is not valid JSON");
    }
    auto layers = TRY(StrArray(j, "layers", f));
    for (const auto& d : layers)
      if (IsSha256Digest(d)) referenced.insert(Hex(d));
    // The merged layer an image of many layers mounts (flatten.h).
    if (layers.size() > kMaxMountLayers)
      flats.insert(FlatKey({layers.begin(), layers.end() - static_cast<long>(kMaxMountLayers - 1)}));
  }
  time_t now = time(nullptr);
  if (UniqueFd flat(fsutil::OpenBeneath(s.rootfd.get(), "flat", O_RDONLY | O_DIRECTORY)); flat) {
    for (const auto& n : TRY(fsutil::ListDir(flat.get(), s.root + "/flat"))) {
      struct stat st;
      if (fstatat(flat.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || flats.count(n)) continue;
      if (n.starts_with(".tmp-") && now - st.st_mtime <= kStaleTempSeconds) continue;
      UniqueFd fd(openat(flat.get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd || flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // pinned: mounted by a sandbox
      DropLayer(flat.get(), n);
    }
  }
  // Scratch trees of builds: every build holds the lock shared, so under
  // this exclusive hold they are all left over from killed ones.
  if (UniqueFd scratch(fsutil::OpenBeneath(s.rootfd.get(), "build", O_RDONLY | O_DIRECTORY)); scratch)
    for (const auto& n : TRY(fsutil::ListDir(scratch.get(), s.root + "/build"))) (void)fsutil::RemoveTree(scratch.get(), n);
  for (const auto& n : TRY(fsutil::ListDir(s.layers.get(), s.root + "/layers/sha256"))) {
    struct stat st;
    if (fstatat(s.layers.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (n.starts_with(".trash-") || (n.starts_with(".tmp-") && now - st.st_mtime > kStaleTempSeconds)) {
      (void)fsutil::RemoveTree(s.layers.get(), n);
      continue;
    }
    if (n.starts_with(".") || referenced.count(n)) continue;
    UniqueFd fd(openat(s.layers.get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd || flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // pinned: in use
    DropLayer(s.layers.get(), n);
  }
  return {};
}

}  // namespace

bool IsValidImageName(const std::string& n) {
  if (n.empty() || n.size() > 64 || n == "host") return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(n[0])) return false;
  return std::all_of(n.begin(), n.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

std::string ImageNameFromRef(const std::string& ref) {
  std::string r = ref.substr(0, ref.find('@'));
  size_t slash = r.rfind('/');
  std::string last = slash == std::string::npos ? r : r.substr(slash + 1);
  size_t colon = last.find(':');
  std::string name = colon == std::string::npos ? last : last.substr(0, colon) + "-" + last.substr(colon + 1);
  std::string out;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    out += ok ? c : '-';
  }
  while (!out.empty() && !((out[0] >= 'a' && out[0] <= 'z') || (out[0] >= '0' && out[0] <= '9'))) out.erase(0, 1);
  if (out.size() > 64) out.resize(64);
  return IsValidImageName(out) ? out : std::string();
}

Result<StoredImage> ImportArchive(const std::string& store_root, const std::string& path,
                                  const std::string& name_override) {
  ImportOptions o;
  o.name = name_override;
  return ImportArchive(store_root, path, o);
}

Result<StoredImage> ImportArchive(const std::string& store_root, const std::string& path,
                                  const ImportOptions& opts) {
  if (!opts.name.empty() && !IsValidImageName(opts.name))
    return Fail("import", "invalid image name \"" + opts.name + "\" (want [a-z0-9][a-z0-9._-]{0,63}, not \"host\")");
  auto files = TRY(ArchiveFiles::Open(path));
  ImagePlan plan = TRY(ReadImagePlan(*files));
  std::string name = opts.name.empty() ? ImageNameFromRef(plan.ref_name) : opts.name;
  if (name.empty())
    return Fail("import", path + ": the archive names no usable image (\"" + plan.ref_name + "\"); give a name");
  if (plan.layers.empty()) return Fail("import", path + ": image has no layers");

  Store s = TRY(OpenStore(store_root, LOCK_SH));
  ExtractOptions xo;
  xo.strip_setid = opts.strip_setid;
  xo.chown = geteuid() == 0;
  std::vector<std::string> created;
  auto undo = [&] {
    for (const auto& h : created) DropLayer(s.layers.get(), h);
  };
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    bool made = false;
    auto r = ImportLayer(*files, plan.layers[i], i, plan.layers.size(), s.layers.get(), xo, opts.progress, &made);
    if (!r) {
      undo();
      return std::unexpected(r.error());
    }
    if (made) created.push_back(Hex(plan.layers[i].diff_id));
  }
  // Layers reach the disk before the record that names them.
  if (syncfs(s.layers.get()) != 0) {
    undo();
    return Errno("syncfs", store_root);
  }
  json rec{{"name", name}, {"digest", plan.digest}, {"config", ConfigToJson(plan.config)}};
  json layers = json::array();
  for (const auto& l : plan.layers) layers.push_back(l.diff_id);
  rec["layers"] = layers;
  auto w = fsutil::WriteFileAtomic(s.images.get(), name + ".json", rec.dump(2) + "\n", 0600);
  if (!w) {
    undo();
    return std::unexpected(w.error());
  }
  return LoadFrom(s, name);
}

Result<StoredImage> LoadImage(const std::string& store_root, const std::string& name) {
  Store s = TRY(OpenStore(store_root, LOCK_SH));
  return LoadFrom(s, name);
}

Result<std::vector<StoredImage>> ListImages(const std::string& store_root) {
  Store s = TRY(OpenStore(store_root, LOCK_SH));
  std::vector<StoredImage> out;
  for (const auto& f : TRY(fsutil::ListDir(s.images.get(), store_root + "/images"))) {
    if (!f.ends_with(".json") || f.starts_with(".")) continue;
    out.push_back(TRY(LoadFrom(s, f.substr(0, f.size() - 5))));
  }
  return out;
}

Result<void> RemoveImage(const std::string& store_root, const std::string& name) {
  if (!IsValidImageName(name)) return Fail("rmi", "invalid image name \"" + name + "\"");
  Store s = TRY(OpenStore(store_root, LOCK_EX));
  if (unlinkat(s.images.get(), (name + ".json").c_str(), 0) != 0) {
    if (errno == ENOENT) return ErrnoValue(ENOENT, "rmi", "no image \"" + name + "\" in " + store_root);
    return Errno("unlink", store_root + "/images/" + name + ".json");
  }
  return Collect(s);
}

}  // namespace airlock::images

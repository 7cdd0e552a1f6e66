#include "images/store/store_build.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "images/oci/export.h"
#include "images/store/fs_util.h"
#include "runtime/core/paths.h"

namespace airlock::images {

namespace {

using nlohmann::json;

Result<UniqueFd> OpenDir(const std::string& store_root, const std::string& sub) {
  TRY(MakeDirs(store_root + "/" + sub));
  UniqueFd fd(open((store_root + "/" + sub).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno("open", store_root + "/" + sub);
  return fd;
}

bool IsHexKey(const std::string& k) {
  if (k.size() != 64) return false;
  for (char c : k)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

Result<StoreLease> StoreLease::Take(const std::string& store_root) {
  TRY(MakeDirs(store_root));
  StoreLease l;
  l.root_ = store_root;
  l.lock_.Reset(open((store_root + "/.lock").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!l.lock_) return Errno("open", store_root + "/.lock");
  while (flock(l.lock_.get(), LOCK_SH) != 0)
    if (errno != EINTR) return Errno("flock", store_root + "/.lock");
  return l;
}

Result<LayerDraft> LayerDraft::Create(const std::string& store_root) {
  LayerDraft d;
  d.root_ = store_root;
  d.layers_ = TRY(OpenDir(store_root, "layers/sha256"));
  d.name_ = ".tmp-build-" + fsutil::RandomSuffix();
  if (mkdirat(d.layers_.get(), d.name_.c_str(), 0755) != 0) return Errno("mkdir", store_root + "/layers/sha256/" + d.name_);
  d.path_ = store_root + "/layers/sha256/" + d.name_;
  d.dir_.Reset(openat(d.layers_.get(), d.name_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.dir_) {
    int err = errno;
    unlinkat(d.layers_.get(), d.name_.c_str(), AT_REMOVEDIR);
    return ErrnoValue(err, "open", d.path_);
  }
  return d;
}

LayerDraft::~LayerDraft() {
  if (!done_ && layers_ && !name_.empty()) (void)fsutil::RemoveTree(layers_.get(), name_);
}

Result<std::string> LayerDraft::Commit() {
  LayerTarInfo info = TRY(WriteLayerTar(path_, nullptr));
  const std::string hex = info.digest.substr(7);
  // The tree reaches the disk before anything names it.
  if (syncfs(dir_.get()) != 0) return Errno("syncfs", path_);
  if (renameat2(layers_.get(), name_.c_str(), layers_.get(), hex.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno != EEXIST) return Errno("rename", path_);
    (void)fsutil::RemoveTree(layers_.get(), name_);  // an identical layer is stored already
  }
  done_ = true;
  return info.digest;
}

bool HasLayer(const std::string& store_root, const std::string& diff_id) {
  if (!IsSha256Digest(diff_id)) return false;
  struct stat st;
  return lstat((store_root + "/layers/sha256/" + diff_id.substr(7)).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<StoredImage> SaveImage(const std::string& store_root, const std::string& name,
                              const std::vector<std::string>& diff_ids, const ImageConfig& c,
                              const std::string& digest) {
  if (!IsValidImageName(name)) return Fail("image", "invalid image name \"" + name + "\"");
  if (diff_ids.empty()) return Fail("image", name + ": no layers");
  for (const auto& d : diff_ids)
    if (!HasLayer(store_root, d)) return ErrnoValue(ENOENT, "image", "layer " + d + " of \"" + name + "\" is not stored");
  UniqueFd images = TRY(OpenDir(store_root, "images"));
  json rec{{"name", name},
           {"digest", digest},
           {"layers", diff_ids},
           {"config",
            {{"env", c.env}, {"workdir", c.workdir}, {"user", c.user}, {"entrypoint", c.entrypoint}, {"cmd", c.cmd},
             {"labels", c.labels}}}};
  TRY(fsutil::WriteFileAtomic(images.get(), name + ".json", rec.dump(2) + "\n", 0600));
  return LoadImage(store_root, name);
}

std::optional<std::string> CacheLookup(const std::string& store_root, const std::string& key) {
  if (!IsHexKey(key)) return std::nullopt;
  UniqueFd dir(open((store_root + "/build-cache").c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return std::nullopt;
  auto text = fsutil::ReadFileAt(dir.get(), key + ".json", 1 << 20, key);
  if (!text) return std::nullopt;
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto d = j.find("diff_id");
  if (d == j.end() || !d->is_string()) return std::nullopt;
  std::string diff_id = d->get<std::string>();
  if (!HasLayer(store_root, diff_id)) return std::nullopt;
  return diff_id;
}

Result<void> CacheRecord(const std::string& store_root, const std::string& key, const std::string& diff_id,
                         const std::string& inputs) {
  if (!IsHexKey(key)) return Fail("build cache", "bad key \"" + key + "\"");
  UniqueFd dir = TRY(OpenDir(store_root, "build-cache"));
  json in = json::parse(inputs, nullptr, false);
  json rec{{"diff_id", diff_id}, {"inputs", in.is_discarded() ? json(inputs) : in},
           {"created", static_cast<int64_t>(time(nullptr))}};
  return fsutil::WriteFileAtomic(dir.get(), key + ".json", rec.dump(2) + "\n", 0600);
}

Result<ScratchDir> ScratchDir::Create(const std::string& store_root, const std::string& prefix) {
  ScratchDir s;
  s.parent_ = TRY(OpenDir(store_root, "build"));
  s.name_ = prefix + "-" + fsutil::RandomSuffix();
  if (mkdirat(s.parent_.get(), s.name_.c_str(), 0700) != 0) return Errno("mkdir", store_root + "/build/" + s.name_);
  s.path_ = store_root + "/build/" + s.name_;
  return s;
}

ScratchDir::~ScratchDir() {
  if (parent_ && !name_.empty()) (void)fsutil::RemoveTree(parent_.get(), name_);
}

}  // namespace airlock::images

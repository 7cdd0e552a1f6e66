// What image builds (images/build) need from the store (image_store.h):
// a shared hold on it for a whole build, layer directories made in place
// and committed under their canonical diff_id, image records, and the
// build cache.
//   <root>/build-cache/<key hex>.json  {"diff_id", "inputs", "created"}:
//        the layer a build step with these inputs made (builder.h says
//        what the key covers)
//   <root>/build/                      scratch trees of running builds
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "images/oci/archive.h"
#include "images/store/image_store.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::images {

// The store's lock held shared, as an import holds it: `airlock rmi` (which
// takes it exclusively to collect) waits until the build has written its
// image record, so no layer the build made or reuses is collected under it.
class StoreLease {
 public:
  static Result<StoreLease> Take(const std::string& store_root);
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  UniqueFd lock_;
};

// A layer being made: an empty directory <root>/layers/sha256/.tmp-…,
// removed with its contents by the destructor unless Commit() succeeded.
class LayerDraft {
 public:
  static Result<LayerDraft> Create(const std::string& store_root);
  LayerDraft(LayerDraft&&) = default;
  LayerDraft& operator=(LayerDraft&&) = default;
  ~LayerDraft();

  int fd() const { return dir_.get(); }
  const std::string& path() const { return path_; }
  // Names the layer by the digest of its canonical tar (export.h, so an
  // export reproduces the diff_id) and renames it into place; if that layer
  // is already stored, this copy is dropped. Returns the diff_id.
  Result<std::string> Commit();

 private:
  LayerDraft() = default;
  std::string root_, name_, path_;
  UniqueFd layers_, dir_;
  bool done_ = false;
};

// Writes the record of image `name` (replacing one of that name) naming
// `diff_ids` (bottom first), each of which must be stored.
Result<StoredImage> SaveImage(const std::string& store_root, const std::string& name,
                              const std::vector<std::string>& diff_ids, const ImageConfig& config,
                              const std::string& digest);

// True if layer `diff_id` is in the store.
bool HasLayer(const std::string& store_root, const std::string& diff_id);

// The layer recorded for cache key `key` (64 hex), if the record exists and
// its layer is still stored.
std::optional<std::string> CacheLookup(const std::string& store_root, const std::string& key);
// Records `diff_id` for `key`; `inputs` (JSON) says what the key covers,
// for people reading the cache.
Result<void> CacheRecord(const std::string& store_root, const std::string& key, const std::string& diff_id,
                         const std::string& inputs);

// A scratch directory <root>/build/<prefix>-<random> (0700) for a build's
// temporary trees, removed by the destructor.
class ScratchDir {
 public:
  static Result<ScratchDir> Create(const std::string& store_root, const std::string& prefix);
  ScratchDir(ScratchDir&&) = default;
  ScratchDir& operator=(ScratchDir&&) = default;
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  ScratchDir() = default;
  UniqueFd parent_;
  std::string name_, path_;
};

}  // namespace airlock::images

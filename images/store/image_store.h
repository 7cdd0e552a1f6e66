// The image store (issue 8, DESIGN.md decision 3): on the host filesystem,
// default /var/lib/airlock/images.
//   <root>/layers/sha256/<diff_id hex>/  an extracted, read-only layer,
//        canonical owners (0-65535) as the archive says; shared by images
//   <root>/images/<name>.json            {"name", "layers" (diff_ids, bottom
//        first), "config" {env, workdir, user, entrypoint, cmd, labels},
//        "digest" (manifest digest)}
//   <root>/.lock                         flock: shared while importing,
//        exclusive while removing (so a collector never takes a layer an
//        import is about to reference)
// Layers are extracted into ".tmp-*" beside their final name and renamed
// into place; a layer pinned with PinImageLayer (host_image.h) is never
// collected.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "images/oci/archive.h"
#include "runtime/core/error.h"

namespace airlock::images {

inline constexpr const char* kDefaultImageStore = "/var/lib/airlock/images";

struct StoredImage {
  std::string name;
  std::vector<std::string> layer_dirs;  // uppermost first, as the runtime wants
  std::vector<std::string> diff_ids;    // bottom first, as stored
  ImageConfig config;
  std::string digest;
};

// Progress of an import, called while a layer's blob is read: `layer` of
// `layers` (0-based), blob bytes read so far of `total` (0: the archive
// declares no size).
using ImportProgressFn = std::function<void(size_t layer, size_t layers, uint64_t done, uint64_t total)>;

struct ImportOptions {
  std::string name;          // overrides the archive's "repo:tag"
  bool strip_setid = false;  // clear setuid/setgid bits instead of refusing the image
  ImportProgressFn progress;  // may be empty
};

// Imports an OCI image layout (directory or tar) or a docker/podman save
// tar. Every digest is verified; hostile layers are refused (see
// layer_extract.h for the policy) and a refused import leaves nothing in
// the store. An existing image of the same name is replaced.
Result<StoredImage> ImportArchive(const std::string& store_root, const std::string& path,
                                  const std::string& name_override = "");
Result<StoredImage> ImportArchive(const std::string& store_root, const std::string& path,
                                  const ImportOptions& opts);

// Reads an image's record; fails if it or one of its layers is missing.
Result<StoredImage> LoadImage(const std::string& store_root, const std::string& name);

// All stored images, by name.
Result<std::vector<StoredImage>> ListImages(const std::string& store_root);

// Removes an image and collects the layers no image references any more
// (skipping pinned ones, which a later removal collects).
Result<void> RemoveImage(const std::string& store_root, const std::string& name);

// True for [a-z0-9][a-z0-9._-]{0,63}, except the built-in "host".
bool IsValidImageName(const std::string& name);

// "docker.io/library/alpine:3.19" → "alpine-3.19"; "" if nothing usable.
std::string ImageNameFromRef(const std::string& ref);

}  // namespace airlock::images

// `airlock image build NAME` (issue 8): a recipe (recipe.h) becomes an image
// in the store, one layer per unit of work:
// - the base: mmdebstrap (debian.h) into a scratch tree, converted into a
//   layer (convert.h);
// - each step: a sandbox (the airlock runtime: user namespace, seccomp, no
//   network) on the layers so far, its writable layer on the pool; a
//   "packages" step installs .debs the host's apt-get downloaded (debian.h
//   says why), a "run" step runs its script as root inside; the writable
//   layer becomes the step's layer.
// Every layer is content-addressed by its diff_id like an imported one, and
// cached: the build cache (store_build.h) maps a key to the layer a unit
// made. A base's key covers the builder's version, the base fields, the
// mirror URI and the architecture; a step's key covers the builder's
// version, its parent layer's diff_id, the step's canonical JSON, the mirror
// URI, the suite and the architecture. A rebuild with unchanged inputs makes
// nothing and reports every layer as cached. A recipe "from" another builds
// (or reuses) that recipe's layers first.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "images/build/apt_sources.h"
#include "images/build/progress.h"
#include "images/store/image_store.h"
#include "runtime/core/error.h"
#include "runtime/launch/state.h"

namespace airlock::images::build {

struct BuildOptions {
  std::string recipes_dir;        // holds NAME/recipe.json
  std::string store_root;         // the image store
  RuntimePaths paths;             // for the steps' sandboxes
  std::optional<Mirror> mirror;   // else the host's (apt_sources.h)
  std::string apt_root = "/";     // where the host's /etc/apt is (tests)
  bool use_cache = true;          // false: rebuild every layer
  std::string image_name;         // the stored image's name; "" = the recipe's
};

struct LayerReport {
  std::string what;     // "debian-bookworm base", "python step 1 (packages)"
  std::string diff_id;
  bool cached = false;
  double seconds = 0;
};

struct BuildReport {
  StoredImage image;
  std::vector<LayerReport> layers;  // bottom first
  std::string mirror;               // the URI used
  size_t cached() const;
  size_t built() const;
};

// Builds recipe `name` into the store as image `opts.image_name` (or
// `name`), reporting progress on `progress`.
Result<BuildReport> BuildImage(const std::string& name, const BuildOptions& opts, Progress& progress);

}  // namespace airlock::images::build

// Image recipes (issue 8): images/NAME/recipe.json, read by
// `airlock image build NAME`. The format is documented in docs/images.md:
//   {
//     "description": "…",                       optional
//     "base": {"suite": "bookworm", "variant": "minbase",
//              "components": ["main"], "include": ["ca-certificates"]},
//     "from": "debian-bookworm",                 instead of "base": another recipe
//     "steps": [ {"packages": ["python3", …]},   Debian packages, one layer
//                {"run": "shell script", "env": ["K=V"], "timeout": 600} ],
//     "config": {"env": ["K=V"], "workdir": "/", "user": "0",
//                "entrypoint": [], "cmd": [], "labels": {"k": "v"}}
//   }
// JSON (nlohmann, header-only) rather than YAML: `airlock` links no
// yaml-cpp (decision 8: the one-shot binary stays light). Unknown fields are
// errors, so a typo never silently drops a step; every error names the
// field ("steps[2].packages[0]: …").
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "images/oci/archive.h"
#include "runtime/core/error.h"

namespace airlock::images::build {

struct BaseSpec {
  std::string suite = "bookworm";
  std::string variant = "minbase";  // mmdebstrap --variant
  std::vector<std::string> components{"main"};
  std::vector<std::string> include;  // extra packages in the mmdebstrap call
};

struct Step {
  enum class Kind { kPackages, kRun };
  Kind kind = Kind::kRun;
  std::vector<std::string> packages;  // kPackages
  std::string run;                    // kRun: a /bin/sh -c script
  std::vector<std::string> env;       // K=V, for this step only
  uint64_t timeout_seconds = 0;       // 0: none
  // The step as canonical JSON (sorted keys, no whitespace): what the
  // build cache keys on, so editing a step rebuilds it and everything above.
  std::string canonical;
};

// A partial image config: fields the recipe sets (a "from" recipe's
// config is inherited, then overridden field by field; env by key).
struct ConfigPatch {
  std::vector<std::string> env;
  std::optional<std::string> workdir, user;
  std::optional<std::vector<std::string>> entrypoint, cmd;
  std::map<std::string, std::string> labels;
};

struct Recipe {
  std::string name;
  std::string description;
  std::optional<BaseSpec> base;  // exactly one of base, from
  std::string from;
  std::vector<Step> steps;
  ConfigPatch config;
};

// Parses recipe text; `name` is the recipe's (directory) name, used in
// errors ("recipe python: steps[0].packages: …").
Result<Recipe> ParseRecipe(const std::string& name, const std::string& text);

// Reads and parses <recipes_dir>/<name>/recipe.json. The name must be a
// valid image name (image_store.h).
Result<Recipe> LoadRecipe(const std::string& recipes_dir, const std::string& name);

// Applies a recipe's config on top of `parent`.
ImageConfig ApplyConfig(const ImageConfig& parent, const ConfigPatch& patch);

// True for a Debian package name, optionally with "=version" or
// "/release" (apt's syntax): [a-z0-9][a-z0-9+.-]+ then [=/][A-Za-z0-9.+~:-]+.
bool IsValidPackageSpec(const std::string& s);

}  // namespace airlock::images::build

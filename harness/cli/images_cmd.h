// The CLI's image commands (airlock images, rmi, image import|inspect) and
// the image `airlock run --image NAME` starts from: the built-in `host`, or
// one from the store (images/store).
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/launch/state.h"

namespace airlock::cli {

struct RunImage {
  std::vector<std::string> layers;  // uppermost first
  struct Bind {
    std::string source, target;
  };
  std::vector<Bind> binds;
  std::vector<std::string> env;  // the image's own (K=V)
  std::string workdir;           // "" for none
  std::string default_user;      // when --user isn't given
  std::vector<UniqueFd> pins;    // layers held against collection while they are mounted
};

// The image store under the runtime's state root.
std::string ImageStore(const RuntimePaths& paths);

// Resolves NAME for `airlock run`: "host" (built or refreshed on demand) or
// a stored image. Pins its layers for as long as the result lives.
Result<RunImage> ResolveRunImage(const RuntimePaths& paths, const std::string& name);

// `airlock images [--json]`, `airlock rmi NAME...`,
// `airlock image import FILE [--name NAME] [--strip-setid]`,
// `airlock image inspect NAME [--json]`. Return the exit status.
int ImagesCommand(const RuntimePaths& paths, const std::vector<std::string>& args);
int RmiCommand(const RuntimePaths& paths, const std::vector<std::string>& args);
int ImageCommand(const RuntimePaths& paths, const std::vector<std::string>& args);

// `airlock image build NAME [--mirror URL] [--recipes DIR] [--name IMAGE]
// [--no-cache]` (images/build/builder.h). Recipes come from --recipes, else
// ../share/airlock/images beside the binary, else `source_recipes` (the
// source tree's images/). Prints one line per layer and a summary:
// "built NAME: N layers, C cached, B built".
int ImageBuildCommand(const RuntimePaths& paths, const std::vector<std::string>& args,
                      const std::string& source_recipes);

}  // namespace airlock::cli

#include "harness/cli/install_paths.h"

#include <unistd.h>

namespace airlock::cli {

std::string ExeDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

RuntimePaths DefaultPaths(const std::string& source_dir) {
  RuntimePaths p;
  std::string dir = ExeDir();
  for (std::string candidate : {dir + "/airlock-init", dir + "/../libexec/airlock/airlock-init"})
    if (access(candidate.c_str(), X_OK) == 0) {
      p.init_binary = candidate;
      break;
    }
  for (std::string candidate : {dir + "/seccomp-profiles", dir + "/../share/airlock/seccomp-profiles",
                                source_dir + "/seccomp-profiles"})
    if (access(candidate.c_str(), F_OK) == 0) {
      p.profiles_dir = candidate;
      break;
    }
  return p;
}

}  // namespace airlock::cli

#include "runtime/core/paths.h"

#include <sys/stat.h>

namespace airlock {

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Result<void> MakeDirs(const std::string& dir) {
  if (dir.empty() || dir == "/" || dir == ".") return {};
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return ErrnoValue(ENOTDIR, "mkdir", dir);
    return {};
  }
  if (errno != ENOENT) return Errno("stat", dir);
  TRY(MakeDirs(ParentDir(dir)));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", dir);
  return {};
}

}  // namespace airlock

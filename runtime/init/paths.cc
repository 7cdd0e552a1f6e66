#include "runtime/init/paths.h"

#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace airlock::init {
namespace {

int Openat2(int dir, const char* path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags);
  // openat2 refuses a mode without O_CREAT (EINVAL), unlike openat.
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_NO_SYMLINKS;
  long fd = syscall(SYS_openat2, dir, path, &how, sizeof(how));
  return fd < 0 ? -errno : static_cast<int>(fd);
}

// Opens the directory `name` in `at` for the walk: O_PATH|O_NOFOLLOW opens
// a symlink (magic links in /proc included) as itself, so it can be refused.
int Step(int at, const std::string& name) {
  UniqueFd fd(openat(at, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return -errno;
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return -errno;
  if (S_ISLNK(st.st_mode)) return -ELOOP;
  if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
  return fd.Release();
}

// OpenNoSymlinks without openat2.
int Walk(int dir, std::string_view path, int flags, mode_t mode) {
  if (path.empty()) return -ENOENT;
  UniqueFd cur;
  int at = dir;
  if (path[0] == '/') {
    cur.Reset(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cur) return -errno;
    at = cur.get();
  }
  const bool slash = path.back() == '/';
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  // The path less its last component, walked first; "/" alone is ".".
  std::string_view parents;
  std::string last = ".";
  if (!path.empty()) {
    size_t cut = path.rfind('/');
    last = std::string(cut == std::string_view::npos ? path : path.substr(cut + 1));
    parents = cut == std::string_view::npos ? std::string_view() : path.substr(0, cut);
  }
  while (!parents.empty()) {
    size_t end = parents.find('/');
    std::string_view comp = parents.substr(0, end);
    parents = end == std::string_view::npos ? std::string_view() : parents.substr(end + 1);
    if (comp.empty()) continue;
    int next = Step(at, std::string(comp));
    if (next < 0) return next;
    cur.Reset(next);
    at = next;
  }
  const int final_flags = flags | O_NOFOLLOW | (slash ? O_DIRECTORY : 0);
  int fd = openat(at, last.c_str(), final_flags, mode);
  if (fd < 0) {
    int err = errno;
    // O_DIRECTORY meets a symlink as ENOTDIR, where openat2 says ELOOP.
    struct stat st;
    if (err == ENOTDIR && fstatat(at, last.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    return -err;
  }
  // O_PATH|O_NOFOLLOW opened a final symlink the caller wanted followed.
  if ((flags & O_PATH) && (!(flags & O_NOFOLLOW) || slash)) {
    struct stat st;
    int err = fstat(fd, &st) < 0 ? errno : S_ISLNK(st.st_mode) ? ELOOP : 0;
    if (err != 0) {
      close(fd);
      return -err;
    }
  }
  return fd;
}

}  // namespace

std::pair<std::string, std::string> Split(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {".", std::string(path)};
  if (path == "/") return {"/", ""};
  return {slash == 0 ? "/" : std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

int OpenNoSymlinks(int dir, std::string_view path, int flags, mode_t mode) {
  // One answer per process: a file operation is a short-lived process
  // under one seccomp filter.
  static bool no_openat2 = false;
  if (!no_openat2) {
    const std::string p(path);
    int fd = Openat2(dir, p.c_str(), flags, mode);
    if (fd != -ENOSYS) return fd;
    no_openat2 = true;
  }
  return Walk(dir, path, flags, mode);
}

int Locate(std::string_view path, bool no_symlinks, Location* out) {
  out->no_symlinks = no_symlinks;
  if (!no_symlinks) {
    out->dir = AT_FDCWD;
    out->name = std::string(path);
    return 0;
  }
  if (path.empty()) return ENOENT;
  auto [dir, name] = Split(path);
  int fd = OpenNoSymlinks(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -fd;
  out->owned.Reset(fd);
  out->dir = fd;
  out->slash = !name.empty() && path.back() == '/';
  out->name = name.empty() ? "." : std::move(name);
  return 0;
}

int OpenAt(const Location& where, int flags, mode_t mode) {
  if (where.no_symlinks) return OpenNoSymlinks(where.dir, where.name + (where.slash ? "/" : ""), flags, mode);
  int fd = openat(where.dir, where.name.c_str(), flags, mode);
  return fd < 0 ? -errno : fd;
}

int MakeDirs(std::string_view path, bool include_last, mode_t last_mode, bool no_symlinks) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (!include_last) {
    size_t slash = path.rfind('/');
    if (slash == std::string_view::npos || slash == 0) return 0;
    path = path.substr(0, slash);
  }
  // Walks by descriptor: each directory is made and entered relative to
  // the one before, so what was checked is what is used.
  UniqueFd cur;
  int at = AT_FDCWD;
  if (!path.empty() && path[0] == '/') {
    cur.Reset(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cur) return errno;
    at = cur.get();
  }
  size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    size_t end = std::min(path.find('/', pos), path.size());
    const std::string comp(path.substr(pos, end - pos));
    const bool last = end == path.size();
    pos = end;
    // mkdir never follows a final symlink: one in the way is EEXIST, and
    // the open below decides whether it is acceptable.
    if (mkdirat(at, comp.c_str(), last && include_last ? last_mode : 0755) < 0 && errno != EEXIST) return errno;
    const int flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    int fd = no_symlinks ? OpenNoSymlinks(at, comp, flags) : openat(at, comp.c_str(), flags);
    if (!no_symlinks && fd < 0) fd = -errno;
    if (fd < 0) return (fd == -ENOTDIR && last) ? EEXIST : -fd;
    cur.Reset(fd);
    at = fd;
  }
  return 0;
}

}  // namespace airlock::init

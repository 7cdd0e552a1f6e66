// Path resolution for airlock-init's file operations: the usual kernel
// resolution, or one that follows no symlink in any component
// (proto::kNoSymlinks), and mkdir -p on top of either.
//
// Like the rest of runtime/init/fileops, these return errnos, not Results:
// a file operation's only report is its exit code.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>

#include "runtime/core/unique_fd.h"

namespace airlock::init {

// A path's directory and last component; trailing slashes are dropped
// ("a/b/" -> "a", "b"; "f" -> ".", "f"; "/" -> "/", "").
std::pair<std::string, std::string> Split(std::string_view path);

// openat2(dir, path, {flags, mode, RESOLVE_NO_SYMLINKS}): a symlink in any
// component, the last one included, is ELOOP — except that O_PATH|O_NOFOLLOW
// opens a final symlink itself, as openat2 does. Where openat2 is refused
// (ENOSYS: the set-id seccomp filter of sandboxes with writable host mounts)
// it walks the path one component at a time with O_NOFOLLOW to the same
// result; each step starts from the descriptor of the last, so a symlink
// swapped in meanwhile is caught either way. Returns the fd or -errno.
int OpenNoSymlinks(int dir, std::string_view path, int flags, mode_t mode = 0);

// Where a path leads: a directory and a name in it, for the *at calls.
// Without no_symlinks that is {AT_FDCWD, the whole path}, and the kernel
// resolves it as ever. With it, the directory is resolved by OpenNoSymlinks
// and the name is the last component ("." for "/"; a trailing slash is
// noted in `slash` and dropped): the caller must not follow the name
// (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), or must go through OpenAt.
struct Location {
  UniqueFd owned;
  int dir = AT_FDCWD;
  std::string name;
  bool no_symlinks = false;
  bool slash = false;
};

// Fills `out` for `path` as described above. Returns 0 or an errno.
int Locate(std::string_view path, bool no_symlinks, Location* out);

// Opens a located path: openat(dir, name, flags, mode), or with
// no_symlinks OpenNoSymlinks (a final symlink is ELOOP unless
// O_PATH|O_NOFOLLOW). Returns the fd or -errno.
int OpenAt(const Location& where, int flags, mode_t mode = 0);

// Creates each missing directory along `path` (0755), its last component
// too (with `last_mode`) only if `include_last`. Existing directories are
// fine, and so are symlinks to them unless `no_symlinks` (ELOOP). A
// non-directory in the way is ENOTDIR, or EEXIST as the last component.
// Returns 0 or an errno.
int MakeDirs(std::string_view path, bool include_last, mode_t last_mode, bool no_symlinks);

}  // namespace airlock::init

// Small descriptor-relative file helpers shared by the image store and the
// layer extractor. None of them follows a symlink.
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::images::fsutil {

// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
// (decision 2); O_CLOEXEC is added. Returns the fd or -1 with errno set.
int OpenBeneath(int dirfd, const std::string& path, int flags);

// Entry names of a directory (without "." and ".."), sorted.
Result<std::vector<std::string>> ListDir(int dirfd, const std::string& what);

// Removes `name` under `parentfd` and everything beneath it. Directories
// without write permission are made writable first (layers can hold 0555
// directories, and unit tests run without CAP_DAC_OVERRIDE).
Result<void> RemoveTree(int parentfd, const std::string& name);

// Reads a whole regular file (at most `max` bytes, else an error).
Result<std::string> ReadFileAt(int dirfd, const std::string& path, size_t max,
                               const std::string& what);

// Writes `data` to `name` under `dirfd` via a temporary file, fsync and
// rename, so readers see the old or the new content, never a torn one.
Result<void> WriteFileAtomic(int dirfd, const std::string& name, const std::string& data, mode_t mode);

// A random suffix for temporary names.
std::string RandomSuffix();

}  // namespace airlock::images::fsutil

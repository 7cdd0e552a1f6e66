// Writing a whole buffer to a descriptor: write(2) may write less than asked
// (pipes, sockets, signals); this loops until all of it is written.
#pragma once

#include <errno.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace airlock {

// Writes all of `data` to `fd`, retrying on EINTR; the error names `what`.
inline Result<void> WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", what);
    if (n == 0) return ErrnoValue(EIO, "write", what + ": no progress");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace airlock

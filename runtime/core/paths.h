// Small host-path helpers shared by the runtime's stores.
#pragma once

#include <string>

#include "runtime/core/error.h"

namespace airlock {

// "/a/b" -> "/a"; "/a" -> "/"; "a" -> ".".
std::string ParentDir(const std::string& path);

// mkdir -p: missing directories are created 0700 (what airlock stores is
// private to host root); existing ones are left as they are. A non-directory
// on the way is ENOTDIR naming it.
Result<void> MakeDirs(const std::string& dir);

}  // namespace airlock

// Where the running airlock binary is, and the files it needs beside it:
// airlock-init and the seccomp profiles, in a build tree or an install.
#pragma once

#include <string>

#include "runtime/launch/state.h"

namespace airlock::cli {

// The directory of /proc/self/exe ("." if unknown).
std::string ExeDir();

// RuntimePaths whose init_binary and profiles_dir are found next to the
// running binary, in an installed layout (../libexec/airlock,
// ../share/airlock), or (profiles only) in `source_dir`. Either stays empty
// when not found; callers say so.
RuntimePaths DefaultPaths(const std::string& source_dir);

}  // namespace airlock::cli

// A second seccomp filter, stacked on the profile when a sandbox has
// read-write host mounts: it refuses to create or chmod files with the setuid
// or setgid bit, so a sandbox can't leave a set-id program in a host
// directory (where a host user could run it). mknod can't make devices in a
// user namespace at all; nodev and nosuid on the mount are a second wall.
#pragma once

#include "runtime/core/error.h"
#include "runtime/security/seccomp.h"

namespace airlock::seccomp {

// Compiles the set-id filter (default allow; EPERM for set-id modes in
// chmod, fchmod, fchmodat, open, openat, creat, mknod, mknodat; ENOSYS for
// openat2 and fchmodat2, whose modes a filter can't see or libseccomp can't name).
Result<Program> CompileSetidFilter();

}  // namespace airlock::seccomp

// airlock-init's file operations (proto::FileOp), run in a process the
// spawner forks for each request: inside the sandbox's mount namespace and
// under its seccomp filter, as the identity the request names, so that no
// path or symlink can resolve outside the sandbox and permissions are the
// sandbox's own.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/proto/channel.h"

namespace airlock::init {

// Takes the identity a command or file operation runs as: supplementary
// groups, then gid, then uid (after which nothing else may change). Raw
// syscalls: init is single-threaded, glibc's all-threads setxid dance is
// not needed. Returns 0 or an errno.
int SetIdentity(uint32_t uid, uint32_t gid, const std::vector<uint32_t>& groups);

// The body of a file operation's process: leads its own process group (so
// kSignal reaches it), drops every descriptor but 0-2 and `data_fd` (-1:
// none), takes the request's identity and cwd, runs the op and exits with
// 0 or the errno it failed with (proto::kFileOpMaxErrno at most). With
// kNoSymlinks the cwd, too, is entered without following a symlink.
[[noreturn]] void RunFileOp(const proto::FileOpRequest& request, int data_fd);

}  // namespace airlock::init

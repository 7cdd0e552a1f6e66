// What CRIU 3.17 can't checkpoint in a sandbox, refused before a dump with
// the process and descriptor named, rather than left to a failed dump (or,
// worse, a restore that comes back broken). From the guest lane: see
// docs/criu.md.
#pragma once

#include <sys/types.h>

#include "runtime/core/error.h"

namespace airlock::checkpoint {

// Walks the tree under `init_pid` (host pid) and refuses: pidfds, inotify
// watches (CRIU 3.17 can't dump watches on overlayfs, the sandbox's root),
// established TCP connections (no repair support here), and descriptors of
// files on a mount outside the process's mount namespace (a host file
// passed in). Files on the sandbox's own mounts, including its host bind
// mounts, pipes, unix sockets, signalfd, eventfd and epoll are fine.
Result<void> CheckCheckpointable(pid_t init_pid);

}  // namespace airlock::checkpoint

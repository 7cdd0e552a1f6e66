// Network setup inside a sandbox's network namespace, over rtnetlink (a raw socket),
// never by running `ip`.
#pragma once

namespace airlock::net {

// Sets the loopback interface up in the calling thread's network namespace.
// Allocation-free (runs in the freshly cloned child). Returns 0 or -errno.
int BringUpLoopback() noexcept;

}  // namespace airlock::net

// The sandbox's network namespace for `--net none`: made on a helper thread
// while the launch prepares everything else, with loopback up, and entered
// by clone3 through a setns() of the launching thread.
//
// It is owned by the host's user namespace, not the sandbox's: root inside
// has no CAP_NET_ADMIN over it, so nothing inside can add interfaces,
// routes or netfilter rules (netfilter code reached from user namespaces has
// been a steady source of kernel escapes). The runtime configures it from
// outside instead.
#pragma once

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::net {

// Creates a network namespace with "lo" up and returns an fd of it. Runs
// unshare(CLONE_NEWNET) on the calling thread: call it on a thread that
// exits afterwards.
Result<UniqueFd> CreateLoopbackNetns();

// Runs `fn` with the calling thread in network namespace `netns`, then
// returns the thread to where it was. For clone3: a child is born in its
// parent thread's namespaces.
class ScopedNetns {
 public:
  static Result<ScopedNetns> Enter(int netns);
  ScopedNetns(ScopedNetns&&) = default;
  ~ScopedNetns();
  // Returns to the original namespace now; an error if that failed (the
  // thread must not go on in the sandbox's namespace).
  Result<void> Leave();

 private:
  ScopedNetns() = default;
  UniqueFd original_;
};

}  // namespace airlock::net

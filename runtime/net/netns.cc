#include "runtime/net/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include "runtime/net/loopback.h"

namespace airlock::net {

Result<UniqueFd> CreateLoopbackNetns() {
  if (unshare(CLONE_NEWNET) < 0) return Errno("unshare", "CLONE_NEWNET");
  if (int r = BringUpLoopback(); r < 0) return ErrnoValue(-r, "rtnetlink", "set lo up");
  UniqueFd fd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd) return Errno("open", "/proc/thread-self/ns/net");
  return fd;
}

Result<ScopedNetns> ScopedNetns::Enter(int netns) {
  ScopedNetns s;
  s.original_.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!s.original_) return Errno("open", "/proc/thread-self/ns/net");
  if (setns(netns, CLONE_NEWNET) < 0) return Errno("setns", "sandbox network namespace");
  return s;
}

Result<void> ScopedNetns::Leave() {
  if (!original_) return {};
  if (setns(original_.get(), CLONE_NEWNET) < 0) return Errno("setns", "back to the host network namespace");
  original_.Reset();
  return {};
}

ScopedNetns::~ScopedNetns() {
  // Staying in the sandbox's namespace would be a silent, lasting mistake.
  if (original_ && !Leave()) abort();
}

}  // namespace airlock::net

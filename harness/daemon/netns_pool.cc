#include "harness/daemon/netns_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "runtime/net/netns.h"

namespace airlock::daemon {

NetnsPool::NetnsPool(size_t target) : target_(target) {
  if (target_ > 0) filler_ = std::thread([this] { Fill(); });
}

NetnsPool::~NetnsPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (filler_.joinable()) filler_.join();
}

UniqueFd NetnsPool::Take() {
  UniqueFd fd;
  {
    std::lock_guard lock(mu_);
    if (ready_.empty()) return fd;
    fd = std::move(ready_.front());
    ready_.pop_front();
  }
  cv_.notify_all();
  return fd;
}

void NetnsPool::Fill() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || ready_.size() < target_; });
      if (stopping_) return;
    }
    // unshare() moves the calling thread: each namespace is made on a
    // thread of its own that ends right after. At nice 19: a refill starts
    // when a create takes a namespace, and on 2 CPUs it would otherwise
    // compete with that create's own steps.
    Result<UniqueFd> made = Fail("netns", "not made");
    std::thread([&made] {
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
      made = net::CreateLoopbackNetns();
    }).join();
    std::unique_lock lock(mu_);
    if (made) {
      ready_.push_back(std::move(*made));
    } else {
      fprintf(stderr, "airlockd: network namespace pool: %s\n", made.error().Message().c_str());
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_; });
    }
  }
}

}  // namespace airlock::daemon

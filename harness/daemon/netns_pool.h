// Network namespaces made ahead of need (DESIGN "Where the time goes"):
// creating one costs ~0.3 ms, with ~100 ms tails when they are made back to
// back. A background thread keeps a few ready, each with loopback up and
// owned by the host's user namespace (net::CreateLoopbackNetns).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "runtime/core/unique_fd.h"

namespace airlock::daemon {

class NetnsPool {
 public:
  explicit NetnsPool(size_t target);
  ~NetnsPool();
  // A ready namespace, or an empty fd when none is (the launch then makes
  // its own).
  UniqueFd Take();

 private:
  void Fill();
  size_t target_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<UniqueFd> ready_;
  bool stopping_ = false;
  std::thread filler_;
};

}  // namespace airlock::daemon

// A zygote: airlock-init started once (`airlock-init --zygote`), which clones
// sandbox launch children on request from its own small address space. A
// runtime that launches many sandboxes (airlockd) saves, per launch, the
// copy of its own page tables in clone3, their teardown in the child's exec,
// and the exec of init itself (runtime/init/zygote.cc says how). The
// children are the runtime's (CLONE_PARENT): it waits for them and holds
// their pidfds as if it had cloned them itself.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/proto/launch.h"

namespace airlock {

class Zygote {
 public:
  // Starts one from airlock-init at `init_binary`, exec'd from a read-only,
  // nosuid copy of its mount (its children's /proc/1/exe). Call it from a
  // thread that lives as long as the zygote is used: the zygote and its
  // children get SIGKILL when that thread ends (until init clears it).
  // Returns once the zygote has said it is ready (kHello), or an error
  // (an airlock-init of another version, or something else, doesn't).
  static Result<std::unique_ptr<Zygote>> Start(const std::string& init_binary);
  ~Zygote();  // kills and reaps the zygote (never the sandboxes it cloned)

  struct Cloned {
    pid_t pid = -1;
    UniqueFd pidfd;
  };
  // clone3 with `req.flags` | CLONE_PARENT | CLONE_PIDFD in the zygote,
  // passing `fds` as `req` lists them. Thread-safe: one clone at a time.
  // A zygote that fails to answer is done with (alive() turns false, and
  // that is logged once): callers clone in-process from then on.
  Result<Cloned> Clone(const proto::CloneRequest& req, std::span<const int> fds);

  bool alive() const { return alive_.load(std::memory_order_relaxed); }
  pid_t pid() const { return pid_; }

 private:
  Zygote() = default;
  void Lost(const Error& why);  // with mu_ held

  std::mutex mu_;
  std::atomic<bool> alive_{true};
  UniqueFd sock_;
  pid_t pid_ = -1;
};

}  // namespace airlock

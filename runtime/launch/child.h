// The sandbox child: the process clone() made in the new namespaces. It runs
// the plan's steps in order and ends in execveat() of airlock-init (or, cloned
// by a zygote, becomes init in place), or sends the parent a fixed-size
// {step, errno, item} record and exits.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>

#include "runtime/proto/channel.h"
#include "runtime/spec/plan.h"
#include "runtime/sys/syscalls.h"

namespace airlock {

struct ChildContext {
  const LaunchPlan* plan = nullptr;
  int sock = -1;            // channel to the parent; becomes fd 3 of init
  int init_exec_fd = -1;    // a read-only detached mount of airlock-init
  const char* stage_path = nullptr;  // an empty host directory the child mounts its stage on
  const sock_fprog* filters = nullptr;  // installed in order, last before exec
  int filter_count = 0;
  char* const* init_argv = nullptr;
  char* const* init_envp = nullptr;
  // A zygote's child becomes init by calling this with init_argv instead of
  // exec'ing airlock-init (init_exec_fd is then -1): it already is that
  // program, started once, in a fresh address space.
  [[noreturn]] void (*become_init)(char* const argv[]) = nullptr;
  bool send_timings = false;

  char* init_cgroup_arg = nullptr;  // a buffer init_argv points at, for "--cgroup-fds=N"
  size_t init_cgroup_arg_size = 0;
  // Network mode proxy: the egress channel's sandbox end, then the relay's
  // listening sockets (runtime/proto/egress.h), placed after init's exec fd
  // and named by "--egress-fd=N" in this buffer init_argv points at.
  int egress_fds[4] = {-1, -1, -1, -1};
  int egress_count = 0;
  char* init_egress_arg = nullptr;
  size_t init_egress_arg_size = 0;

  // Filled in by the steps.
  int fds[proto::kMaxFds] = {};
  int fd_count = 0;
  // cgroup v1 `tasks` files, received in the parent's second message: the
  // sandbox's group, its init child and its workload child, cg_per_list
  // each (one per hierarchy), opened by the parent (their open-time
  // credentials authorize the move). Writing "0" moves the writing thread
  // without the global threadgroup lock a cgroup.procs write takes (which
  // waits for an RCU grace period: ~10 ms here). None on v2, where clone3
  // placed the child with CLONE_INTO_CGROUP.
  int cg_fds[proto::kMaxFds] = {};
  int cg_per_list = 0;
  int stage_fd = -1;
  int root_fd = -1;
  uint64_t step_ns[static_cast<int>(ChildStep::kCount)] = {};
};

struct StepFailure {
  ChildStep step;
  int err;
  int item;  // index into plan.mounts / plan.sources, or -1
};

// Runs every step; returns the first failure, or nothing if exec returned
// (only the fake syscall layer lets it "return" success).
std::optional<StepFailure> RunChildSteps(Syscalls& sys, ChildContext& ctx);

// RunChildSteps, then report the failure to the parent and _exit(125).
[[noreturn]] void RunChild(Syscalls& sys, ChildContext& ctx);

}  // namespace airlock

// cgroups for sandboxes (DESIGN decision 7): one interface, a v1 and a v2
// backend, and detection of where each controller lives — v1, v2, or a hybrid
// host where some controllers sit on v1 hierarchies and the rest on cgroup2.
//
// Each sandbox gets <base>/airlock-<id> in every hierarchy it needs, with two
// children:
//   init  airlock-init alone: no memory limit (a memory bomb in "work" hits
//         work's limit, and the memcg OOM killer only picks victims inside
//         the group that went over it), and pids kept in reserve: the sandbox
//         group allows limit + kInitReservedPids, work allows limit.
//   work  the spawner and every command: memory, pids and cpu limits.
// <base> is the cgroup the caller runs in (per hierarchy: on v1 the path
// differs per controller). On v2 the "no internal processes" rule means a
// non-root cgroup with processes can't hand controllers to children: the
// caller first moves itself into the leaf <base>/airlock.self (shared by
// concurrent runs) and sandboxes become its siblings.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::cgroups {

// pids the sandbox group grants beyond the workload's limit, so airlock-init
// can still fork (its spawner, helpers) when "work" is at pids.max.
inline constexpr uint64_t kInitReservedPids = 8;
// CFS period for the cpu quota (v1 cpu.cfs_period_us, v2 the cpu.max period).
inline constexpr uint64_t kCpuPeriodUs = 100000;
// Name of the v2 leaf the caller moves itself into (see above).
inline constexpr const char* kSelfLeafName = "airlock.self";

// Per-sandbox limits, applied to the work child; an unset field is no limit.
// cpus is a CFS quota in CPUs (0.5 = half of one CPU's time).
struct Limits {
  std::optional<uint64_t> memory_bytes;
  std::optional<uint64_t> pids;
  std::optional<double> cpus;
};

enum class Version { kV1, kV2 };
// The controllers airlock uses. On v2 the freezer is not a controller but
// cgroup.freeze, present in every non-root cgroup.
enum class Controller { kMemory, kPids, kCpu, kFreezer };
inline constexpr std::array<Controller, 4> kControllers = {
    Controller::kMemory, Controller::kPids, Controller::kCpu,
    Controller::kFreezer};
// The kernel's name for a controller: "memory", "pids", "cpu", "freezer".
const char* ControllerName(Controller c);

// One mounted hierarchy that hosts at least one controller airlock uses.
struct Hierarchy {
  Version version = Version::kV1;
  std::string mountpoint;  // with the sysfs prefix, if any
  // Every controller it carries: v1 from the mount options ("cpu",
  // "cpuacct"), v2 the base's cgroup.controllers.
  std::vector<std::string> controllers;
  std::string self_path;  // the caller's path as /proc/self/cgroup gives it
  std::string self_dir;   // the caller's cgroup directory
  // Where sandboxes are created: self_dir, or on v2 the parent of self_dir
  // when the caller already sits in an airlock.self leaf.
  std::string base_dir;
  // The caller's path was not found under the mount (cgroup namespace
  // quirks); self_dir fell back to the mount root.
  bool fell_back_to_mount_root = false;
};

// Where each controller lives for the calling process.
struct Layout {
  std::vector<Hierarchy> hierarchies;  // only those hosting a used controller
  // Index into hierarchies per Controller (memory, pids, cpu, freezer); -1
  // when the controller is unavailable (cpu, freezer are optional).
  std::array<int, 4> index = {-1, -1, -1, -1};

  // The hierarchy hosting `c`, or nullptr.
  const Hierarchy* Find(Controller c) const;
  // True when every hierarchy used is cgroup2 (a pure v2 host).
  bool PureV2() const;
  // One line per hierarchy, for diagnostics ("v1 memory at ...").
  std::string Describe() const;

  // Test seam: called after each directory SandboxCgroup creates, so a fake
  // tree on a plain filesystem can create the control files cgroupfs would.
  // Empty in production.
  std::function<void(const Hierarchy&, const std::string& dir)> after_mkdir;
};

// Reads /proc/self/mountinfo and /proc/self/cgroup and parses them.
Result<Layout> DetectLayout();

// Parses mountinfo and /proc/self/cgroup text. Per controller, its v1
// hierarchy if one is mounted, else cgroup2 if the caller's v2 cgroup lists it
// in cgroup.controllers (read from the filesystem). sysfs_prefix is prepended
// to every mountpoint so a fake tree in a temporary directory can stand in.
// Missing memory or pids is an error naming the controller.
Result<Layout> ParseLayout(std::string_view mountinfo,
                           std::string_view proc_self_cgroup,
                           const std::string& sysfs_prefix = "");

struct Events {
  uint64_t oom_kills = 0;      // processes killed by the OOM killer
  uint64_t pids_max_hits = 0;  // forks refused by a pids.max in the sandbox
};

// What the whole sandbox group uses now.
struct Usage {
  uint64_t cpu_ns = 0;        // CPU time consumed (0 without a cpu accounting controller)
  uint64_t memory_bytes = 0;  // charged memory, page cache included
  uint64_t pids = 0;          // tasks
};

class HierarchyGroup;  // one hierarchy's share of a sandbox (v1.cc, v2.cc)

// One sandbox's cgroup: <base>/airlock-<id>/{init,work} in every hierarchy
// the layout uses. Movable, not copyable; the destructor kills and removes it
// (best effort) unless Release()d.
class SandboxCgroup {
 public:
  // Creates the groups and writes the limits. On v2 this may first move the
  // caller into <base>/airlock.self and enable controllers in <base>. A
  // failure removes whatever was created. sandbox_id: [A-Za-z0-9._-]{1,64}.
  static Result<SandboxCgroup> Create(const Layout& layout,
                                      const std::string& sandbox_id,
                                      const Limits& limits);

  // The groups of a sandbox made earlier by a process since gone (a daemon
  // re-attaching after a restart): nothing is created or written, and every
  // group must exist. Remove() works as after Create().
  static Result<SandboxCgroup> Attach(const Layout& layout, const std::string& sandbox_id);

  SandboxCgroup(SandboxCgroup&&) noexcept;
  SandboxCgroup& operator=(SandboxCgroup&&) noexcept;
  SandboxCgroup(const SandboxCgroup&) = delete;
  SandboxCgroup& operator=(const SandboxCgroup&) = delete;
  ~SandboxCgroup();

  // Moves host_pid (the whole process) into the init child, every hierarchy.
  Result<void> AttachInit(pid_t host_pid);
  // Moves host_pid into the work child, every hierarchy.
  Result<void> MoveToWork(pid_t host_pid);
  // The processes in the init child (cgroup.procs of the pids hierarchy).
  Result<std::vector<pid_t>> InitPids() const;
  // OOM kills and refused forks counted anywhere in the sandbox group.
  Result<Events> ReadEvents() const;
  // Current CPU time, memory and task count of the whole sandbox group.
  Result<Usage> ReadUsage() const;
  // Freezes the whole sandbox and returns once the kernel reports it frozen
  // (v1 freezer.state FROZEN, v2 cgroup.events "frozen 1"); thaws again and
  // fails with ETIMEDOUT if that takes too long.
  Result<void> Freeze();
  // Thaws the sandbox.
  Result<void> Thaw();
  // SIGKILLs every process in the sandbox group (v2 cgroup.kill; v1 freeze,
  // kill each pid of every child, thaw). Does not wait for them to exit.
  Result<void> KillAll();
  // KillAll, then waits (bounded) until the groups are empty and removes the
  // children and the group. Directories already gone are fine.
  Result<void> Remove();
  // Remove() without the kill pass (a v1 freeze and thaw), for a caller that
  // knows every process is gone: after a pid namespace's init was reaped,
  // the kernel has killed and reaped everything in it. A straggler still
  // makes rmdir wait and fail, so nothing is left silently.
  Result<void> RemoveEmptied();
  // Every directory this object created (record them on disk so a later run
  // can RemoveStale them after a crash).
  std::vector<std::string> Paths() const;
  // On a pure v2 layout, an O_DIRECTORY fd of the init child for clone3's
  // CLONE_INTO_CGROUP; -1 otherwise. Owned by this object.
  int InitDirFd() const;
  // Forget the groups: the destructor leaves them alone.
  void Release();

 private:
  SandboxCgroup();
  Result<void> MoveTo(pid_t pid, bool to_work);
  Result<void> RemoveDirs(bool kill_first);
  HierarchyGroup* GroupFor(Controller c) const;

  std::vector<std::unique_ptr<HierarchyGroup>> groups_;
  std::array<int, 4> index_ = {-1, -1, -1, -1};
  std::vector<std::string> created_;  // in creation order
  UniqueFd init_dir_fd_;
  bool released_ = false;
};

// Removes groups left by a run that was killed, given the paths its
// SandboxCgroup::Paths() reported: thaw, kill what is inside, wait, rmdir
// (children first). Each path must lie on a cgroup filesystem and be an
// airlock-<id> group or its init/work child; anything else is refused.
// Paths already gone are fine.
Result<void> RemoveStale(const std::vector<std::string>& paths);

}  // namespace airlock::cgroups

// Internal to runtime/cgroups: control-file helpers and the per-hierarchy
// backend interface that v1.cc and v2.cc implement.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cgroups/cgroup.h"
#include "runtime/core/error.h"

namespace airlock::cgroups {
namespace internal {

// The whole file. Control files are small; read until EOF.
Result<std::string> ReadFile(const std::string& path);
// open(O_WRONLY|O_TRUNC|O_CLOEXEC) + one write + close. Never creates the
// file: on cgroupfs the kernel makes control files, and a missing one means
// the controller isn't there. The error names the path and the value.
Result<void> WriteFile(const std::string& path, std::string_view value);
// True if `path` exists (any type).
bool Exists(const std::string& path);
// The value of `key` in a flat-keyed file ("key value" per line, as in
// memory.events, pids.events, memory.oom_control, cgroup.events), or nullopt
// when the key is absent. A malformed value is an error naming `path`.
Result<std::optional<uint64_t>> ParseKeyed(std::string_view text,
                                           std::string_view key,
                                           const std::string& path);
// ReadFile + ParseKeyed; an absent key reads as 0 (older kernels lack some
// counters, e.g. oom_kill before 4.13).
Result<uint64_t> ReadCounter(const std::string& path, std::string_view key);
// A file holding one unsigned number (memory.current, pids.current).
Result<uint64_t> ReadNumber(const std::string& path);
// The pids listed in <dir>/cgroup.procs.
Result<std::vector<pid_t>> ReadProcs(const std::string& dir);
// SIGKILLs each pid, never this process or pid 1; returns how many were sent.
size_t KillPids(const std::vector<pid_t>& pids);
// mkdir(path, 0755); EEXIST is an error unless eexist_ok.
Result<void> MakeDir(const std::string& path, bool eexist_ok);
// "a/b/c" -> "a/b"; "/" stays "/".
std::string Parent(const std::string& path);
// "a/b/c" -> "c".
std::string Basename(const std::string& path);

// Sleeps with a growing interval (100 µs up to 10 ms) until a budget runs out.
class Backoff {
 public:
  explicit Backoff(std::chrono::milliseconds budget);
  bool Expired() const;
  void Sleep();

 private:
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::microseconds step_{100};
};

// rmdir(dir), retrying while the kernel says EBUSY (processes still exiting,
// or stragglers: those are SIGKILLed again) until `backoff` expires. ENOENT
// is success.
Result<void> RemoveDirWait(const std::string& dir, Backoff& backoff);

// Budgets for the bounded waits.
inline constexpr std::chrono::milliseconds kFreezeBudget{5000};
inline constexpr std::chrono::milliseconds kRemoveBudget{10000};

}  // namespace internal

// One hierarchy's share of a sandbox: <base>/airlock-<id>/{init,work}.
class HierarchyGroup {
 public:
  // hosts[c] says which of airlock's controllers this hierarchy carries.
  HierarchyGroup(const Hierarchy& h, std::array<bool, 4> hosts,
                 const std::string& sandbox_id);
  virtual ~HierarchyGroup() = default;

  virtual Version version() const = 0;
  // Creates the group and its children, appending each new directory to
  // *created as soon as it exists (so a failure can remove it). v2 first
  // makes the base able to hand out controllers.
  virtual Result<void> Create(const Layout& layout,
                              std::vector<std::string>* created) = 0;
  // Writes the limits for the controllers this hierarchy hosts.
  virtual Result<void> ApplyLimits(const Limits& limits) = 0;
  // Adds this hierarchy's counters (memory, pids) to *events.
  virtual Result<void> AddEvents(Events* events) const = 0;
  // Adds this hierarchy's share of the group's usage to *usage.
  virtual Result<void> AddUsage(Usage* usage) const = 0;
  // Only called on the hierarchy hosting the freezer.
  virtual Result<void> Freeze() = 0;
  virtual Result<void> Thaw() = 0;
  // v2: cgroup.kill. v1: SIGKILL every pid in the group and its children
  // (the caller freezes first). Returns the number of pids signalled (v2: 0).
  virtual Result<size_t> Kill() = 0;

  bool Hosts(Controller c) const { return hosts_[static_cast<int>(c)]; }
  const Hierarchy& hierarchy() const { return h_; }
  const std::string& group_dir() const { return group_; }
  const std::string& init_dir() const { return init_; }
  const std::string& work_dir() const { return work_; }

 protected:
  // mkdir of the group, init and work (EEXIST on the group is an error: it
  // belongs to another sandbox or a crashed run), calling the layout hook.
  Result<void> MakeDirs(const Layout& layout,
                        std::vector<std::string>* created);

  Hierarchy h_;
  std::array<bool, 4> hosts_;
  std::string group_, init_, work_;
};

std::unique_ptr<HierarchyGroup> NewV1Group(const Hierarchy& h,
                                           std::array<bool, 4> hosts,
                                           const std::string& sandbox_id);
std::unique_ptr<HierarchyGroup> NewV2Group(const Hierarchy& h,
                                           std::array<bool, 4> hosts,
                                           const std::string& sandbox_id);

// The CFS quota for `cpus` CPUs per kCpuPeriodUs (CFS refuses under 1 ms).
uint64_t CpuQuotaUs(double cpus);

}  // namespace airlock::cgroups

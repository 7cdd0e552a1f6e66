// The cgroup v1 backend: one hierarchy per controller set (memory, pids,
// "cpu,cpuacct" co-mounted, freezer, ...), each with its own copy of the
// sandbox's directories.
#include <chrono>
#include <cmath>
#include <thread>

#include "runtime/cgroups/internal.h"

namespace airlock::cgroups {
namespace {

using internal::Exists;
using internal::ReadCounter;
using internal::ReadNumber;
using internal::WriteFile;

// Freeze attempts between two brief thaws (~0.25 s apart once the backoff
// reaches its 10 ms step).
constexpr int kThawEvery = 32;

class CgroupV1 final : public HierarchyGroup {
 public:
  using HierarchyGroup::HierarchyGroup;

  Version version() const override { return Version::kV1; }

  Result<void> Create(const Layout& layout,
                      std::vector<std::string>* created) override {
    // v1 has no subtree_control and no rule against processes in inner
    // nodes: the directories are all there is. (cpuset, which would need
    // cpus and mems copied down, is never one of ours.)
    return MakeDirs(layout, created);
  }

  Result<void> ApplyLimits(const Limits& limits) override {
    if (Hosts(Controller::kMemory) && limits.memory_bytes) {
      std::string v = std::to_string(*limits.memory_bytes);
      TRY(WriteFile(work_ + "/memory.limit_in_bytes", v));
      // With swap accounting the kernel lets a group swap out past
      // limit_in_bytes unless memsw caps memory+swap too. It must be set
      // after limit_in_bytes (the kernel keeps memsw >= limit).
      std::string memsw = work_ + "/memory.memsw.limit_in_bytes";
      if (Exists(memsw)) TRY(WriteFile(memsw, v));
    }
    if (Hosts(Controller::kPids) && limits.pids) {
      TRY(WriteFile(group_ + "/pids.max",
                    std::to_string(*limits.pids + kInitReservedPids)));
      TRY(WriteFile(work_ + "/pids.max", std::to_string(*limits.pids)));
    }
    if (Hosts(Controller::kCpu) && limits.cpus) {
      uint64_t quota = CpuQuotaUs(*limits.cpus);
      TRY(WriteFile(work_ + "/cpu.cfs_period_us",
                    std::to_string(kCpuPeriodUs)));
      TRY(WriteFile(work_ + "/cpu.cfs_quota_us", std::to_string(quota)));
    }
    return {};
  }

  Result<void> AddEvents(Events* events) const override {
    // v1 counts both events only in the cgroup where they happened (the OOM
    // victim's memcg, the forking task's pids group), never in ancestors:
    // the sandbox's total is the sum over the group and its children.
    for (const std::string* dir : {&group_, &init_, &work_}) {
      if (Hosts(Controller::kMemory))
        events->oom_kills +=
            TRY(ReadCounter(*dir + "/memory.oom_control", "oom_kill"));
      if (Hosts(Controller::kPids))
        events->pids_max_hits += TRY(ReadCounter(*dir + "/pids.events", "max"));
    }
    return {};
  }

  Result<void> AddUsage(Usage* usage) const override {
    // v1 counters are hierarchical: the group's own file covers init and work.
    if (Hosts(Controller::kMemory))
      usage->memory_bytes += TRY(ReadNumber(group_ + "/memory.usage_in_bytes"));
    if (Hosts(Controller::kPids)) usage->pids += TRY(ReadNumber(group_ + "/pids.current"));
    // cpuacct shares the cpu hierarchy where it is mounted as "cpu,cpuacct".
    if (Hosts(Controller::kCpu) && Exists(group_ + "/cpuacct.usage"))
      usage->cpu_ns += TRY(ReadNumber(group_ + "/cpuacct.usage"));
    return {};
  }

  Result<void> Freeze() override {
    std::string state = group_ + "/freezer.state";
    // A write starts freezing; the state reads FREEZING until every task in
    // the subtree has stopped. v1's freezer can stay FREEZING for good when
    // tasks appear while it freezes (a fork racing it: the daemon lane's
    // pause test saw 5 s of it once; runc documents the same kernel bug,
    // which v2 doesn't have). So the write is repeated, which freezes again
    // whatever escaped, and now and then the group is thawed for a moment
    // to let a tree that keeps forking settle.
    internal::Backoff backoff(internal::kFreezeBudget);
    for (int attempt = 1;; ++attempt) {
      if (attempt % kThawEvery == 0) {
        TRY(WriteFile(state, "THAWED"));
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      TRY(WriteFile(state, "FROZEN"));
      std::string s = TRY(internal::ReadFile(state));
      if (s.starts_with("FROZEN")) return {};
      if (backoff.Expired()) {
        (void)Thaw();
        return ErrnoValue(ETIMEDOUT, "freeze", state + " = " + s);
      }
      backoff.Sleep();
    }
  }

  Result<void> Thaw() override {
    return WriteFile(group_ + "/freezer.state", "THAWED");
  }

  Result<size_t> Kill() override {
    size_t sent = 0;
    for (const std::string* dir : {&work_, &init_, &group_}) {
      auto pids = internal::ReadProcs(*dir);
      if (!pids) {
        if (pids.error().err == ENOENT) continue;
        return std::unexpected(pids.error());
      }
      sent += internal::KillPids(*pids);
    }
    return sent;
  }
};

}  // namespace

std::unique_ptr<HierarchyGroup> NewV1Group(const Hierarchy& h,
                                           std::array<bool, 4> hosts,
                                           const std::string& sandbox_id) {
  return std::make_unique<CgroupV1>(h, hosts, sandbox_id);
}

}  // namespace airlock::cgroups

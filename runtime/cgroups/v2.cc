// The cgroup v2 backend: one unified hierarchy. Controllers reach a cgroup
// only when its parent lists them in cgroup.subtree_control, and a non-root
// cgroup that hands controllers to children may hold no processes itself
// ("no internal processes"): the caller moves into a leaf first.
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "runtime/cgroups/internal.h"

namespace airlock::cgroups {
namespace {

using internal::Exists;
using internal::ReadCounter;
using internal::ReadNumber;
using internal::ReadFile;
using internal::WriteFile;

std::vector<std::string> Words(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\n') ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

class CgroupV2 final : public HierarchyGroup {
 public:
  using HierarchyGroup::HierarchyGroup;

  Version version() const override { return Version::kV2; }

  Result<void> Create(const Layout& layout,
                      std::vector<std::string>* created) override {
    std::string enable;
    for (Controller c :
         {Controller::kMemory, Controller::kPids, Controller::kCpu})
      if (Hosts(c))
        enable += std::string(enable.empty() ? "+" : " +") + ControllerName(c);
    if (!enable.empty()) TRY(PrepareBase(layout));
    TRY(MakeDirs(layout, created));
    // The group holds no process (they go to init and work), so it may
    // hand its controllers down.
    if (!enable.empty())
      TRY(WriteFile(group_ + "/cgroup.subtree_control", enable));
    return {};
  }

  Result<void> ApplyLimits(const Limits& limits) override {
    if (Hosts(Controller::kMemory) && limits.memory_bytes) {
      TRY(WriteFile(work_ + "/memory.max",
                    std::to_string(*limits.memory_bytes)));
      // Swap would let the workload hold more than memory.max; the file is
      // absent when swap accounting is off.
      std::string swap = work_ + "/memory.swap.max";
      if (Exists(swap)) TRY(WriteFile(swap, "0"));
    }
    if (Hosts(Controller::kMemory))
      // An OOM in work kills the whole workload, not one random process of
      // a half-broken tree; init stays outside it.
      TRY(WriteFile(work_ + "/memory.oom.group", "1"));
    if (Hosts(Controller::kPids) && limits.pids) {
      TRY(WriteFile(group_ + "/pids.max",
                    std::to_string(*limits.pids + kInitReservedPids)));
      TRY(WriteFile(work_ + "/pids.max", std::to_string(*limits.pids)));
    }
    if (Hosts(Controller::kCpu) && limits.cpus) {
      uint64_t quota = CpuQuotaUs(*limits.cpus);
      TRY(WriteFile(work_ + "/cpu.max", std::to_string(quota) + " " +
                                            std::to_string(kCpuPeriodUs)));
    }
    return {};
  }

  Result<void> AddEvents(Events* events) const override {
    // memory.events and (since 6.10) pids.events are hierarchical; their
    // .local variants count only what happened in that cgroup (the OOM
    // victim's group, the group whose pids.max was hit). Summing the local
    // counters of the group and both children counts each event once; a
    // kernel without .local files counts locally in the plain file (pids
    // before 6.10), except memory.events, read once at the group.
    const std::string* dirs[] = {&group_, &init_, &work_};
    if (Hosts(Controller::kMemory)) {
      if (Exists(work_ + "/memory.events.local")) {
        for (const std::string* d : dirs)
          events->oom_kills +=
              TRY(ReadCounter(*d + "/memory.events.local", "oom_kill"));
      } else {
        events->oom_kills +=
            TRY(ReadCounter(group_ + "/memory.events", "oom_kill"));
      }
    }
    if (Hosts(Controller::kPids)) {
      const char* file = Exists(work_ + "/pids.events.local")
                             ? "/pids.events.local"
                             : "/pids.events";
      for (const std::string* d : dirs)
        events->pids_max_hits += TRY(ReadCounter(*d + file, "max"));
    }
    return {};
  }

  Result<void> AddUsage(Usage* usage) const override {
    if (Hosts(Controller::kMemory)) usage->memory_bytes += TRY(ReadNumber(group_ + "/memory.current"));
    if (Hosts(Controller::kPids)) usage->pids += TRY(ReadNumber(group_ + "/pids.current"));
    // cpu.stat's usage_usec exists in every v2 group, with or without the
    // cpu controller; count it once, on the hierarchy hosting memory.
    if (Hosts(Controller::kMemory))
      usage->cpu_ns += TRY(ReadCounter(group_ + "/cpu.stat", "usage_usec")) * 1000;
    return {};
  }

  Result<void> Freeze() override {
    TRY(WriteFile(group_ + "/cgroup.freeze", "1"));
    // cgroup.freeze asks; "frozen 1" in cgroup.events says every task in
    // the subtree has stopped.
    std::string events = group_ + "/cgroup.events";
    internal::Backoff backoff(internal::kFreezeBudget);
    for (;;) {
      uint64_t frozen = TRY(ReadCounter(events, "frozen"));
      if (frozen == 1) return {};
      if (backoff.Expired()) {
        (void)Thaw();
        return ErrnoValue(ETIMEDOUT, "freeze",
                          events + " never read \"frozen 1\"");
      }
      backoff.Sleep();
    }
  }

  Result<void> Thaw() override {
    return WriteFile(group_ + "/cgroup.freeze", "0");
  }

  Result<size_t> Kill() override {
    // cgroup.kill (5.14+) SIGKILLs the whole subtree atomically with respect
    // to forks, frozen or not.
    auto r = WriteFile(group_ + "/cgroup.kill", "1");
    if (r) return size_t{0};
    if (r.error().err != ENOENT) return std::unexpected(r.error());
    if (!Exists(group_)) return size_t{0};  // already removed
    // An older kernel without cgroup.kill: signal what is listed.
    size_t sent = 0;
    for (const std::string* dir : {&work_, &init_}) {
      auto pids = internal::ReadProcs(*dir);
      if (pids) sent += internal::KillPids(*pids);
    }
    return sent;
  }

 private:
  // Makes base_dir able to give memory/pids/cpu to a new child: enables
  // them in its cgroup.subtree_control, first moving the caller (and, if the
  // kernel still says EBUSY, every other process there) into the leaf
  // base/airlock.self. The true root is exempt from the rule; a cgroup
  // namespace root inside a container is not (it has cgroup.type, the root
  // doesn't).
  Result<void> PrepareBase(const Layout& layout) {
    const std::string& base = h_.base_dir;
    std::string subtree = base + "/cgroup.subtree_control";
    std::vector<std::string> enabled = Words(TRY(ReadFile(subtree)));
    std::string missing;
    for (Controller c :
         {Controller::kMemory, Controller::kPids, Controller::kCpu}) {
      std::string name = ControllerName(c);
      if (Hosts(c) &&
          std::find(enabled.begin(), enabled.end(), name) == enabled.end())
        missing += (missing.empty() ? "+" : " +") + name;
    }
    if (missing.empty()) return {};
    const bool is_root = !Exists(base + "/cgroup.type");
    const std::string leaf = base + "/" + kSelfLeafName;
    if (!is_root && h_.self_dir == base)
      TRY(MoveIntoLeaf(layout, leaf, {::getpid()}));

    // Other processes still in the base (the shell that started a
    // daemonless run, say) make the kernel refuse with EBUSY. They go into
    // the leaf as well, as podman does: they stay under the base, so every
    // limit that applied to them still does. A few rounds cover processes
    // forked meanwhile.
    for (int round = 0;; ++round) {
      auto r = WriteFile(subtree, missing);
      if (r || r.error().err != EBUSY || is_root || round == 5) return r;
      std::vector<pid_t> others = TRY(internal::ReadProcs(base));
      TRY(MoveIntoLeaf(layout, leaf, others));
    }
  }

  Result<void> MoveIntoLeaf(const Layout& layout, const std::string& leaf,
                            const std::vector<pid_t>& pids) {
    // Shared by every run in this base: created once, never removed here.
    if (!Exists(leaf)) {
      TRY(internal::MakeDir(leaf, /*eexist_ok=*/true));
      if (layout.after_mkdir) layout.after_mkdir(h_, leaf);
    }
    for (pid_t pid : pids) {
      auto r = WriteFile(leaf + "/cgroup.procs", std::to_string(pid));
      if (!r && r.error().err != ESRCH) return r;  // ESRCH: it exited
    }
    return {};
  }
};

}  // namespace

std::unique_ptr<HierarchyGroup> NewV2Group(const Hierarchy& h,
                                           std::array<bool, 4> hosts,
                                           const std::string& sandbox_id) {
  return std::make_unique<CgroupV2>(h, hosts, sandbox_id);
}

}  // namespace airlock::cgroups

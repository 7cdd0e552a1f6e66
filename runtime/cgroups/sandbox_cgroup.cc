// SandboxCgroup: one sandbox's groups across every hierarchy the layout uses,
// and RemoveStale for the groups of a run that died.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "runtime/cgroups/cgroup.h"
#include "runtime/cgroups/internal.h"

namespace airlock::cgroups {
namespace {

// The group gets pids + kInitReservedPids, which must stay at or below
// PID_MAX_LIMIT (4194304): pids.max refuses anything larger.
constexpr uint64_t kMaxPids = 4194304 - kInitReservedPids;
constexpr double kMaxCpus = 1u << 16;  // keeps quota within the kernel's range
constexpr size_t kKillPassesNoFreezer = 10;

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64 || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Result<void> ValidateLimits(const Layout& layout, const Limits& l) {
  if (l.memory_bytes && *l.memory_bytes == 0)
    return Fail("limits.memory_bytes", "must be positive");
  if (l.pids && (*l.pids == 0 || *l.pids > kMaxPids))
    return Fail("limits.pids", "must be in 1.." + std::to_string(kMaxPids) +
                                   ", got " + std::to_string(*l.pids));
  if (l.cpus && (!std::isfinite(*l.cpus) || *l.cpus <= 0 || *l.cpus > kMaxCpus))
    return Fail("limits.cpus",
                "must be in (0, 65536], got " + std::to_string(*l.cpus));
  // A limit asked for must be enforced: fail closed rather than run free.
  if (l.cpus && !layout.Find(Controller::kCpu))
    return Fail("limits.cpus",
                "no cpu controller on this host (v1 hierarchy or "
                "cgroup2 cgroup.controllers)");
  return {};
}

bool IsStaleGroupName(std::string_view name) {
  return name.starts_with("airlock-") && ValidId(name.substr(8));
}

}  // namespace

SandboxCgroup::SandboxCgroup() = default;

SandboxCgroup::SandboxCgroup(SandboxCgroup&& o) noexcept
    : groups_(std::exchange(o.groups_, {})),
      index_(o.index_),
      created_(std::exchange(o.created_, {})),
      init_dir_fd_(std::move(o.init_dir_fd_)),
      released_(std::exchange(o.released_, true)) {}

SandboxCgroup& SandboxCgroup::operator=(SandboxCgroup&& o) noexcept {
  if (this != &o) {
    if (!released_) (void)Remove();
    groups_ = std::exchange(o.groups_, {});
    index_ = o.index_;
    created_ = std::exchange(o.created_, {});
    init_dir_fd_ = std::move(o.init_dir_fd_);
    released_ = std::exchange(o.released_, true);
  }
  return *this;
}

SandboxCgroup::~SandboxCgroup() {
  if (!released_ && !created_.empty()) (void)Remove();
}

Result<SandboxCgroup> SandboxCgroup::Attach(const Layout& layout, const std::string& sandbox_id) {
  if (!ValidId(sandbox_id)) return Fail("sandbox_id", "bad id \"" + sandbox_id + "\"");
  SandboxCgroup cg;
  cg.index_ = layout.index;
  for (size_t i = 0; i < layout.hierarchies.size(); ++i) {
    std::array<bool, 4> hosts{};
    for (Controller c : kControllers)
      hosts[static_cast<size_t>(c)] = layout.index[static_cast<size_t>(c)] == static_cast<int>(i);
    const Hierarchy& h = layout.hierarchies[i];
    cg.groups_.push_back(h.version == Version::kV1 ? NewV1Group(h, hosts, sandbox_id) : NewV2Group(h, hosts, sandbox_id));
  }
  for (auto& g : cg.groups_)
    for (const std::string* dir : {&g->group_dir(), &g->init_dir(), &g->work_dir()}) {
      if (!internal::Exists(*dir)) {
        cg.released_ = true;  // none of it is ours to remove
        return ErrnoValue(ENOENT, "attach cgroup", *dir);
      }
      cg.created_.push_back(*dir);
    }
  return cg;
}

Result<SandboxCgroup> SandboxCgroup::Create(const Layout& layout,
                                            const std::string& sandbox_id,
                                            const Limits& limits) {
  if (!ValidId(sandbox_id))
    return Fail("sandbox_id",
                "must match [A-Za-z0-9._-]{1,64} and not start "
                "with '.', got \"" +
                    sandbox_id + "\"");
  for (Controller c : {Controller::kMemory, Controller::kPids})
    if (!layout.Find(c))
      return Fail(
          "create sandbox cgroup",
          std::string("layout has no ") + ControllerName(c) + " controller");
  TRY(ValidateLimits(layout, limits));

  SandboxCgroup cg;
  cg.index_ = layout.index;
  for (size_t i = 0; i < layout.hierarchies.size(); ++i) {
    std::array<bool, 4> hosts{};
    for (Controller c : kControllers)
      hosts[static_cast<size_t>(c)] =
          layout.index[static_cast<size_t>(c)] == static_cast<int>(i);
    const Hierarchy& h = layout.hierarchies[i];
    cg.groups_.push_back(h.version == Version::kV1
                             ? NewV1Group(h, hosts, sandbox_id)
                             : NewV2Group(h, hosts, sandbox_id));
  }
  // On any failure below, cg's destructor removes the directories made so
  // far: a failed create leaves nothing behind.
  for (auto& g : cg.groups_) TRY(g->Create(layout, &cg.created_));
  for (auto& g : cg.groups_) TRY(g->ApplyLimits(limits));
  if (layout.PureV2()) {
    const std::string& init = cg.groups_.front()->init_dir();
    // O_PATH descriptors are refused by clone3's CLONE_INTO_CGROUP on some
    // kernels (fdget, not fdget_raw); a read-only directory fd works on all.
    cg.init_dir_fd_.Reset(
        ::open(init.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.init_dir_fd_) return Errno("open", init);
  }
  return cg;
}

HierarchyGroup* SandboxCgroup::GroupFor(Controller c) const {
  int i = index_[static_cast<size_t>(c)];
  if (i < 0 || static_cast<size_t>(i) >= groups_.size()) return nullptr;
  return groups_[static_cast<size_t>(i)].get();
}

Result<void> SandboxCgroup::MoveTo(pid_t pid, bool to_work) {
  if (pid <= 0)
    return Fail(to_work ? "move to work" : "attach init",
                "bad pid " + std::to_string(pid));
  if (groups_.empty()) return Fail("attach", "sandbox cgroup was removed");
  for (auto& g : groups_) {
    // Writing to cgroup.procs moves every thread of the process.
    TRY(internal::WriteFile(
        (to_work ? g->work_dir() : g->init_dir()) + "/cgroup.procs",
        std::to_string(pid)));
  }
  return {};
}

Result<void> SandboxCgroup::AttachInit(pid_t host_pid) {
  return MoveTo(host_pid, false);
}
Result<void> SandboxCgroup::MoveToWork(pid_t host_pid) {
  return MoveTo(host_pid, true);
}

Result<std::vector<pid_t>> SandboxCgroup::InitPids() const {
  HierarchyGroup* g = GroupFor(Controller::kPids);
  if (!g) return Fail("init pids", "sandbox cgroup was removed");
  return internal::ReadProcs(g->init_dir());
}

Result<Events> SandboxCgroup::ReadEvents() const {
  Events events;
  for (const auto& g : groups_) TRY(g->AddEvents(&events));
  return events;
}

namespace {

// utime + stime + cutime + cstime of /proc/<pid>/stat in ns, 0 if the
// process is gone. Summed over a pid namespace's live processes this counts
// every process once: a reaped one is in its reaper's c-fields.
uint64_t ProcessCpuNs(pid_t pid) {
  auto text = internal::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return 0;
  // The command name may hold spaces and parentheses: fields follow the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return 0;
  std::string_view rest = std::string_view(*text).substr(close + 1);
  uint64_t ticks = 0;
  // Fields 3.. follow; utime is field 14, cstime 17.
  for (int field = 3; field <= 17 && !rest.empty(); ++field) {
    rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
    size_t end = std::min(rest.find(' '), rest.size());
    if (field >= 14) {
      uint64_t v = 0;
      std::from_chars(rest.data(), rest.data() + end, v);
      ticks += v;
    }
    rest.remove_prefix(end);
  }
  static const long hz = sysconf(_SC_CLK_TCK);
  return ticks * (1000000000ull / static_cast<uint64_t>(hz > 0 ? hz : 100));
}

}  // namespace

Result<Usage> SandboxCgroup::ReadUsage() const {
  Usage usage;
  for (const auto& g : groups_) TRY(g->AddUsage(&usage));
  // A v1 host without cpuacct beside cpu (like this project's CI) has no
  // cgroup CPU counter: add up the processes' own accounting instead.
  bool has_cpu_counter = false;
  for (const auto& g : groups_)
    has_cpu_counter |= g->version() == Version::kV2 ||
                       (g->Hosts(Controller::kCpu) && internal::Exists(g->group_dir() + "/cpuacct.usage"));
  if (!has_cpu_counter)
    if (HierarchyGroup* g = GroupFor(Controller::kPids))
      for (const std::string* dir : {&g->init_dir(), &g->work_dir()}) {
        auto pids = internal::ReadProcs(*dir);
        if (pids)
          for (pid_t pid : *pids) usage.cpu_ns += ProcessCpuNs(pid);
      }
  return usage;
}

Result<void> SandboxCgroup::Freeze() {
  HierarchyGroup* g = GroupFor(Controller::kFreezer);
  if (!g)
    return Fail("freeze",
                "no freezer on this host (v1 freezer hierarchy or cgroup2)");
  return g->Freeze();
}

Result<void> SandboxCgroup::Thaw() {
  HierarchyGroup* g = GroupFor(Controller::kFreezer);
  if (!g)
    return Fail("thaw",
                "no freezer on this host (v1 freezer hierarchy or cgroup2)");
  return g->Thaw();
}

Result<void> SandboxCgroup::KillAll() {
  Result<void> result;
  auto note = [&](const Error& e) {
    if (result) result = std::unexpected(e);
  };
  bool any_v1 = false;
  for (auto& g : groups_) {
    if (g->version() == Version::kV1) {
      any_v1 = true;
      continue;
    }
    if (auto r = g->Kill(); !r) note(r.error());
  }
  if (!any_v1) return result;

  // v1 has no cgroup.kill. Frozen tasks can't fork, so one pass of SIGKILL
  // over a frozen group gets every process; the kills land when it thaws.
  // Without a v1 freezer a fork bomb can race the pass, so repeat a few.
  HierarchyGroup* freezer = GroupFor(Controller::kFreezer);
  const bool v1_freezer = freezer && freezer->version() == Version::kV1;
  if (v1_freezer) (void)freezer->Freeze();  // best effort: kill regardless
  internal::Backoff backoff(internal::kFreezeBudget);
  for (size_t pass = 0; pass < (v1_freezer ? 1 : kKillPassesNoFreezer);
       ++pass) {
    size_t sent = 0;
    for (auto& g : groups_) {
      if (g->version() != Version::kV1) continue;
      auto r = g->Kill();
      if (!r)
        note(r.error());
      else
        sent += *r;
    }
    if (sent == 0) break;
    backoff.Sleep();
  }
  // Thaw even if the freeze failed: a paused sandbox must thaw to die.
  if (v1_freezer)
    if (auto r = freezer->Thaw(); !r) note(r.error());
  return result;
}

Result<void> SandboxCgroup::Remove() { return RemoveDirs(/*kill_first=*/true); }

Result<void> SandboxCgroup::RemoveEmptied() { return RemoveDirs(/*kill_first=*/false); }

Result<void> SandboxCgroup::RemoveDirs(bool kill_first) {
  if (created_.empty()) return {};
  Result<void> killed;
  if (kill_first) killed = KillAll();
  internal::Backoff backoff(internal::kRemoveBudget);
  Result<void> result;
  // Children before their group: a cgroup with children is EBUSY.
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    auto r = internal::RemoveDirWait(*it, backoff);
    if (!r && result) result = std::unexpected(r.error());
  }
  if (!result) {
    // Say why the groups didn't empty, if the kill itself failed.
    if (!killed) result.error().detail += "; kill: " + killed.error().Message();
    return result;
  }
  created_.clear();
  groups_.clear();
  init_dir_fd_.Reset();
  return {};
}

std::vector<std::string> SandboxCgroup::Paths() const { return created_; }

int SandboxCgroup::InitDirFd() const { return init_dir_fd_.get(); }

void SandboxCgroup::Release() { released_ = true; }

Result<void> RemoveStale(const std::vector<std::string>& paths) {
  // The list comes from a file on disk; before it may SIGKILL anything,
  // every entry must look like what Paths() records and sit on cgroupfs.
  std::vector<std::string> live;
  for (const std::string& p : paths) {
    bool shape = p.starts_with("/") && !p.ends_with("/") &&
                 p.find("//") == std::string::npos &&
                 p.find("/./") == std::string::npos &&
                 p.find("/../") == std::string::npos && !p.ends_with("/..") &&
                 !p.ends_with("/.");
    std::string name = internal::Basename(p);
    if (shape && (name == "init" || name == "work"))
      shape = IsStaleGroupName(internal::Basename(internal::Parent(p)));
    else
      shape = shape && IsStaleGroupName(name);
    if (!shape)
      return Fail("remove stale cgroup",
                  "not an airlock sandbox cgroup path: \"" + p + "\"");
    struct statfs fs;
    if (::statfs(p.c_str(), &fs) != 0) {
      if (errno == ENOENT) continue;
      return Errno("statfs", p);
    }
    if (fs.f_type != CGROUP_SUPER_MAGIC && fs.f_type != CGROUP2_SUPER_MAGIC)
      return Fail("remove stale cgroup", "not on a cgroup filesystem: " + p);
    live.push_back(p);
  }

  // Freeze (v1) so nothing forks past the kill, kill, then thaw so the
  // kills land — also for a sandbox that died paused.
  for (const std::string& p : live)
    if (IsStaleGroupName(internal::Basename(p)) &&
        internal::Exists(p + "/freezer.state"))
      (void)internal::WriteFile(p + "/freezer.state", "FROZEN");
  for (const std::string& p : live) {
    if (internal::Exists(p + "/cgroup.kill")) {
      (void)internal::WriteFile(p + "/cgroup.kill", "1");
    } else if (auto pids = internal::ReadProcs(p); pids) {
      internal::KillPids(*pids);
    }
  }
  for (const std::string& p : live) {
    if (!IsStaleGroupName(internal::Basename(p))) continue;
    if (internal::Exists(p + "/freezer.state"))
      (void)internal::WriteFile(p + "/freezer.state", "THAWED");
    if (internal::Exists(p + "/cgroup.freeze"))
      (void)internal::WriteFile(p + "/cgroup.freeze", "0");
  }

  // Deepest first: children before their group.
  std::stable_sort(live.begin(), live.end(),
                   [](const std::string& a, const std::string& b) {
                     return std::count(a.begin(), a.end(), '/') >
                            std::count(b.begin(), b.end(), '/');
                   });
  internal::Backoff backoff(internal::kRemoveBudget);
  Result<void> result;
  for (const std::string& p : live) {
    auto r = internal::RemoveDirWait(p, backoff);
    if (!r && result) result = std::unexpected(r.error());
  }
  return result;
}

}  // namespace airlock::cgroups

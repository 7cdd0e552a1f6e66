// BuildLaunchPlan: the sources the parent prepares, the mount list the child
// walks, the capabilities it drops and the namespaces it unshares late.
#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "runtime/proto/channel.h"
#include "runtime/spec/plan.h"

using airlock::BuildLaunchPlan;
using airlock::ChildStep;
using airlock::ChildStepName;
using airlock::KeptCapabilities;
using airlock::LaunchPlan;
using airlock::MountOp;
using airlock::PlannedMount;
using airlock::PlannedSource;
using airlock::SandboxSpec;

namespace {

SandboxSpec TypicalSpec() {
  SandboxSpec s;
  s.id = "plan-test";
  s.layers = {"/layers/top", "/layers/middle", "/layers/base"};
  s.image_binds = {{"/usr", "/usr"}, {"/opt/tools", "/opt/tools"}};
  s.mounts = {{"/home/u/data", "/data", true, false},
              {"/home/u/out", "/out/dir", false, true},
              {"/home/u/tmpstuff", "/tmp/stuff", true, false}};
  s.process.argv = {"sh"};
  return s;
}

LaunchPlan Plan(const SandboxSpec& s, bool on_pool = false, bool time_ns = true) {
  auto p = BuildLaunchPlan(s, on_pool, time_ns);
  INFO((p ? std::string() : p.error().Message()));
  REQUIRE(p.has_value());
  return std::move(*p);
}

std::vector<std::string> Targets(const LaunchPlan& p) {
  std::vector<std::string> t;
  for (const auto& m : p.mounts) t.push_back(m.target);
  return t;
}

int IndexOf(const LaunchPlan& p, const std::string& target) {
  for (size_t i = 0; i < p.mounts.size(); ++i)
    if (p.mounts[i].target == target) return static_cast<int>(i);
  return -1;
}

const PlannedMount& At(const LaunchPlan& p, const std::string& target) {
  int i = IndexOf(p, target);
  INFO("target " << target);
  REQUIRE(i >= 0);
  return p.mounts[i];
}

}  // namespace

TEST_CASE("plan sources: layers, then the pool upper, then image binds, then host mounts", "[plan]") {
  for (bool on_pool : {false, true}) {
    INFO("upper on pool: " << on_pool);
    LaunchPlan p = Plan(TypicalSpec(), on_pool);
    const size_t upper = on_pool ? 1 : 0;
    REQUIRE(p.sources.size() == 3 + upper + 2 + 3);
    CHECK(p.layer_count == 3);
    // Layers keep the spec's order (uppermost first), as overlay's lowerdir does.
    CHECK(p.sources[0].kind == PlannedSource::kLayer);
    CHECK(p.sources[0].host_path == "/layers/top");
    CHECK(p.sources[1].host_path == "/layers/middle");
    CHECK(p.sources[2].kind == PlannedSource::kLayer);
    CHECK(p.sources[2].host_path == "/layers/base");
    CHECK(p.overlay_lowerdir == "l0:l1:l2");
    if (on_pool) {
      CHECK(p.upper_source == 3);
      CHECK(p.sources[3].kind == PlannedSource::kUpper);
    } else {
      CHECK(p.upper_source == -1);
    }
    size_t b = 3 + upper;
    CHECK(p.sources[b].kind == PlannedSource::kImageBind);
    CHECK(p.sources[b].host_path == "/usr");
    CHECK(p.sources[b + 1].kind == PlannedSource::kImageBind);
    CHECK(p.sources[b + 1].host_path == "/opt/tools");
    size_t h = b + 2;
    CHECK(p.sources[h].kind == PlannedSource::kHostRO);
    CHECK(p.sources[h].host_path == "/home/u/data");
    CHECK_FALSE(p.sources[h].allow_root_owner);
    CHECK(p.sources[h + 1].kind == PlannedSource::kHostRW);
    CHECK(p.sources[h + 1].host_path == "/home/u/out");
    CHECK(p.sources[h + 1].allow_root_owner);
    CHECK(p.sources[h + 2].kind == PlannedSource::kHostRO);

    // Every kParentFd mount points at the source that carries its directory.
    CHECK(At(p, "usr").fd_index == static_cast<int>(b));
    CHECK(At(p, "opt/tools").fd_index == static_cast<int>(b + 1));
    CHECK(At(p, "data").fd_index == static_cast<int>(h));
    CHECK(At(p, "out/dir").fd_index == static_cast<int>(h + 1));
    CHECK(At(p, "tmp/stuff").fd_index == static_cast<int>(h + 2));
    std::set<int> used;
    for (const auto& m : p.mounts) {
      if (m.op != MountOp::kParentFd) {
        CHECK(m.fd_index == -1);
        continue;
      }
      CHECK(m.fd_index >= p.layer_count + static_cast<int>(upper));
      CHECK(m.fd_index < static_cast<int>(p.sources.size()));
      CHECK(used.insert(m.fd_index).second);
    }
    // Every source but the layers and the upper is mounted exactly once.
    CHECK(used.size() == p.sources.size() - 3 - upper);
  }
}

TEST_CASE("plan mount list order", "[plan]") {
  LaunchPlan p = Plan(TypicalSpec());
  std::vector<std::string> expected = {
      "usr", "opt/tools",  // the image's binds first: the image's own tree
      "proc", "proc/sys/user/max_user_namespaces",
      "proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list", "proc/timer_stats",
      "proc/sched_debug",
      "proc/acpi", "proc/scsi", "proc/asound", "proc/firmware",
      "proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger",
      "dev", "dev/null", "dev/zero", "dev/full", "dev/random", "dev/urandom", "dev/tty", "dev/pts",
      "dev/ptmx", "dev/shm", "dev/fd", "dev/stdin", "dev/stdout", "dev/stderr",
      "tmp",
      "data", "out/dir", "tmp/stuff",  // host mounts last, in the spec's order
  };
  CHECK(Targets(p) == expected);
  // Targets are relative to the new root: never an absolute (host) path.
  for (const auto& m : p.mounts) {
    INFO(m.target);
    CHECK_FALSE(m.target.empty());
    CHECK(m.target[0] != '/');
    CHECK(m.target.find("..") == std::string::npos);
  }
}

TEST_CASE("plan: a host mount under /tmp comes after the /tmp tmpfs", "[plan]") {
  LaunchPlan p = Plan(TypicalSpec());
  CHECK(IndexOf(p, "tmp") < IndexOf(p, "tmp/stuff"));
  // And nothing the plan adds comes after the first host mount.
  int first_host = IndexOf(p, "data");
  for (size_t i = first_host; i < p.mounts.size(); ++i) CHECK(p.mounts[i].op == MountOp::kParentFd);
}

TEST_CASE("plan: proc, its masks and its read-only knobs", "[plan]") {
  LaunchPlan p = Plan(TypicalSpec());
  const auto& proc = At(p, "proc");
  CHECK(proc.op == MountOp::kProc);
  CHECK(proc.attr == (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  CHECK_FALSE(proc.optional);
  const auto& limit = At(p, "proc/sys/user/max_user_namespaces");
  CHECK(limit.op == MountOp::kUsernsLimit);
  CHECK_FALSE(limit.optional);  // must not be skipped silently
  // The limit is written before proc/sys becomes read-only.
  CHECK(IndexOf(p, "proc/sys/user/max_user_namespaces") < IndexOf(p, "proc/sys"));

  for (const char* f : {"proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug"}) {
    const auto& m = At(p, f);
    INFO(f);
    CHECK(m.op == MountOp::kMaskFile);
    CHECK(m.is_file);
    CHECK(m.optional);  // absent on some kernels
    CHECK(IndexOf(p, "proc") < IndexOf(p, f));
  }
  for (const char* d : {"proc/acpi", "proc/scsi", "proc/asound", "proc/firmware"}) {
    const auto& m = At(p, d);
    INFO(d);
    CHECK(m.op == MountOp::kMaskDir);
    CHECK_FALSE(m.is_file);
    CHECK(m.optional);
    CHECK((m.attr & MOUNT_ATTR_RDONLY) != 0);
    CHECK((m.attr & MOUNT_ATTR_NOSUID) != 0);
    CHECK(m.data.find("size=0") != std::string::npos);
  }
  for (const char* r : {"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"}) {
    INFO(r);
    CHECK(At(p, r).op == MountOp::kReadOnly);
  }
}

TEST_CASE("plan: a minimal /dev from the host's device nodes", "[plan]") {
  LaunchPlan p = Plan(TypicalSpec());
  const auto& dev = At(p, "dev");
  CHECK(dev.op == MountOp::kTmpfs);
  CHECK((dev.attr & MOUNT_ATTR_NOSUID) != 0);
  for (const char* d : {"null", "zero", "full", "random", "urandom", "tty"}) {
    const auto& m = At(p, std::string("dev/") + d);
    INFO(d);
    CHECK(m.op == MountOp::kHostDevice);
    CHECK(m.data == std::string("/dev/") + d);
    CHECK(m.is_file);
    CHECK_FALSE(m.optional);
    CHECK((m.attr & MOUNT_ATTR_NOEXEC) != 0);
    CHECK(IndexOf(p, "dev") < IndexOf(p, std::string("dev/") + d));
  }
  CHECK(At(p, "dev/pts").op == MountOp::kDevpts);
  CHECK(At(p, "dev/pts").data.find("newinstance") != std::string::npos);
  CHECK(At(p, "dev/ptmx").op == MountOp::kSymlink);
  CHECK(At(p, "dev/ptmx").data == "pts/ptmx");
  CHECK(At(p, "dev/fd").data == "/proc/self/fd");
  CHECK(At(p, "dev/stdin").data == "/proc/self/fd/0");
  CHECK(At(p, "dev/stdout").data == "/proc/self/fd/1");
  CHECK(At(p, "dev/stderr").data == "/proc/self/fd/2");
  CHECK(At(p, "dev/shm").op == MountOp::kTmpfs);
  CHECK(At(p, "tmp").op == MountOp::kTmpfs);
  CHECK(At(p, "tmp").data.find("mode=1777") != std::string::npos);
  // Nothing of the host's /sys.
  for (const auto& m : p.mounts) CHECK_FALSE(m.target.starts_with("sys"));
}

TEST_CASE("plan: no image binds and no mounts", "[plan]") {
  SandboxSpec s = TypicalSpec();
  s.image_binds.clear();
  s.mounts.clear();
  s.layers = {"/only"};
  LaunchPlan p = Plan(s);
  REQUIRE(p.sources.size() == 1);
  CHECK(p.overlay_lowerdir == "l0");
  CHECK(p.mounts.front().target == "proc");
  CHECK(p.mounts.back().target == "tmp");
  for (const auto& m : p.mounts) CHECK(m.op != MountOp::kParentFd);
}

TEST_CASE("plan: dropped capabilities are everything outside KeptCapabilities()", "[plan]") {
  LaunchPlan p = Plan(TypicalSpec());
  std::vector<int> kept = KeptCapabilities();
  std::set<int> kept_set(kept.begin(), kept.end());
  CHECK(kept_set.size() == kept.size());
  // Docker's default set without MKNOD and NET_RAW (decision 5).
  CHECK(kept_set == std::set<int>{CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_SETGID, CAP_SETUID,
                                  CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,
                                  CAP_AUDIT_WRITE});
  std::set<int> dropped(p.dropped_caps.begin(), p.dropped_caps.end());
  CHECK(dropped.size() == p.dropped_caps.size());  // no duplicates
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    INFO("cap " << cap);
    CHECK(dropped.count(cap) + kept_set.count(cap) == 1);  // each in exactly one
  }
  for (int cap : p.dropped_caps) CHECK(cap >= 0);
  for (int forbidden : {CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_MKNOD, CAP_NET_RAW,
                        CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME, CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH,
                        CAP_LINUX_IMMUTABLE, CAP_MAC_ADMIN, CAP_SYSLOG, CAP_CHECKPOINT_RESTORE}) {
    INFO("cap " << forbidden);
    CHECK(dropped.count(forbidden) == 1);
  }
  // Capabilities newer than these headers are dropped too (the kernel may know them).
  CHECK(dropped.count(CAP_LAST_CAP + 1) == 1);
}

TEST_CASE("plan: late unshare flags with and without a time namespace", "[plan]") {
  // The time namespace comes with clone3 (init itself in it, as CRIU needs).
  CHECK(Plan(TypicalSpec(), false, true).late_unshare_flags == CLONE_NEWCGROUP);
  CHECK(Plan(TypicalSpec(), false, true).clone_time_ns);
  CHECK_FALSE(Plan(TypicalSpec(), false, false).clone_time_ns);
  CHECK(Plan(TypicalSpec(), false, false).late_unshare_flags == CLONE_NEWCGROUP);
  CHECK(Plan(TypicalSpec(), true, false).late_unshare_flags == CLONE_NEWCGROUP);
}

TEST_CASE("plan keeps the spec", "[plan]") {
  SandboxSpec s = TypicalSpec();
  s.hostname = "box";
  s.limits.nofile = 4096;
  LaunchPlan p = Plan(s);
  CHECK(p.spec.hostname == "box");
  CHECK(p.spec.limits.nofile == 4096);
  CHECK(p.spec.mounts.size() == 3);
}

TEST_CASE("plan refuses an invalid spec with the validation error", "[plan]") {
  SandboxSpec s = TypicalSpec();
  s.mounts[1].destination = "/proc/self";
  auto p = BuildLaunchPlan(s, false, true);
  REQUIRE_FALSE(p.has_value());
  CHECK(p.error().detail.starts_with("mounts[1].destination: "));
}

TEST_CASE("every child step has a distinct name", "[plan]") {
  std::set<std::string> names;
  for (int i = 0; i < static_cast<int>(ChildStep::kCount); ++i) {
    std::string n = ChildStepName(static_cast<ChildStep>(i));
    INFO("step " << i);
    CHECK(n != "unknown");
    CHECK(names.insert(n).second);
  }
  CHECK(std::string(ChildStepName(ChildStep::kPivotRoot)) == "pivot-root");
  CHECK(std::string(ChildStepName(ChildStep::kCount)) == "unknown");
}

// A plan's sources travel to the child as one SCM_RIGHTS message of at most
// proto::kMaxFds descriptors. A spec that needs more is only refused at
// launch (the parent's SendMessage fails with EMSGSIZE, or the child's
// await-parent step with EPROTO), not by validation with a field name.
TEST_CASE("plan: a spec needing more fds than the channel carries is refused up front", "[plan]") {
  SandboxSpec s = TypicalSpec();
  s.mounts.clear();
  for (size_t i = 0; i < airlock::proto::kMaxFds; ++i)
    s.mounts.push_back({"/home/u/m" + std::to_string(i), "/m" + std::to_string(i), true, false});
  auto p = BuildLaunchPlan(s, true, true);
  if (p) {
    INFO("sources: " << p->sources.size() << ", channel limit: " << airlock::proto::kMaxFds);
    CHECK(p->sources.size() <= airlock::proto::kMaxFds);
  } else {
    CHECK(p.error().detail.starts_with("mounts"));
  }
}

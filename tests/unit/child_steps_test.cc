// The sandbox child's step table (RunChildSteps) against the recording fake:
// the order of the calls, where mount targets are resolved, and what a
// failure in each step reports.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/launch/child.h"
#include "tests/unit/fake_syscalls.h"

using airlock::BuildLaunchPlan;
using airlock::ChildContext;
using airlock::ChildStep;
using airlock::ChildStepName;
using airlock::LaunchPlan;
using airlock::RunChildSteps;
using airlock::SandboxSpec;
using airlock::StepFailure;
using airlock::testing::FakeSyscalls;

namespace {

constexpr int kSock = 10;
constexpr int kInitExe = 11;
constexpr const char* kBeneath = "beneath|no_symlinks|no_magiclinks";

// The host image's shape: one layer, /usr bound from the host, one read-only
// and one read-write host mount.
SandboxSpec TypicalSpec() {
  SandboxSpec s;
  s.id = "child-test";
  s.layers = {"/var/lib/airlock/images/host/layer"};
  s.image_binds = {{"/usr", "/usr"}};
  s.mounts = {{"/srv/in", "/data", true, false}, {"/srv/out", "/out", false, false}};
  s.process.argv = {"sh"};
  return s;
}

// A plan, the fake and a context as Sandbox::Launch fills it in. The parent
// sends two fd messages: the plan's sources ("src0".."srcN"), then the cgroup
// v1 `tasks` files, `hierarchies` each for the group, init and workload.
struct Harness {
  LaunchPlan plan;
  FakeSyscalls sys;
  ChildContext ctx;
  sock_filter insns[2] = {};
  sock_fprog filters[2] = {{1, insns}, {2, insns}};
  char arg0[16] = "airlock-init";
  char cgroup_arg[32] = "--cgroup-fds=0";
  char* init_argv[3] = {arg0, cgroup_arg, nullptr};
  char* envp[1] = {nullptr};

  explicit Harness(const SandboxSpec& spec = TypicalSpec(), bool on_pool = false, bool time_ns = true,
                   int hierarchies = 2, std::vector<int> cg_numbers = {}) {
    auto p = BuildLaunchPlan(spec, on_pool, time_ns);
    REQUIRE(p.has_value());
    plan = std::move(*p);
    std::vector<std::string> srcs;
    for (size_t i = 0; i < plan.sources.size(); ++i) srcs.push_back("src" + std::to_string(i));
    sys.QueueFds(srcs);
    sys.QueueFds(CgroupNames(hierarchies), std::move(cg_numbers));
    ctx.plan = &plan;
    ctx.sock = kSock;
    ctx.init_exec_fd = kInitExe;
    ctx.stage_path = "/stage";
    ctx.filters = filters;
    ctx.filter_count = 2;
    ctx.init_argv = init_argv;
    ctx.init_envp = envp;
    ctx.init_cgroup_arg = cgroup_arg;
    ctx.init_cgroup_arg_size = sizeof(cgroup_arg);
    sys.Name(kSock, "sock");
    sys.Name(kInitExe, "init-exe");
  }
  Harness(const Harness&) = delete;

  static std::vector<std::string> CgroupNames(int hierarchies) {
    std::vector<std::string> names;
    for (const char* list : {"group", "init", "work"})
      for (int i = 0; i < hierarchies; ++i) names.push_back(std::string("cg:") + list + std::to_string(i));
    return names;
  }
  std::optional<StepFailure> Run() { return RunChildSteps(sys, ctx); }
  int MountIndex(const std::string& target) const {
    for (size_t i = 0; i < plan.mounts.size(); ++i)
      if (plan.mounts[i].target == target) return static_cast<int>(i);
    FAIL("no mount with target " << target);
    return -1;
  }
};

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Index of the first line at or after `from` that starts with `prefix`, or -1.
int Find(const FakeSyscalls& sys, const std::string& prefix, int from = 0) {
  const auto& c = sys.calls();
  for (size_t i = from; i < c.size(); ++i)
    if (StartsWith(c[i].line, prefix)) return static_cast<int>(i);
  return -1;
}
int FindLast(const FakeSyscalls& sys, const std::string& prefix) {
  const auto& c = sys.calls();
  for (size_t i = c.size(); i-- > 0;)
    if (StartsWith(c[i].line, prefix)) return static_cast<int>(i);
  return -1;
}
int Count(const FakeSyscalls& sys, const std::string& prefix) {
  int n = 0;
  for (const auto& c : sys.calls()) n += StartsWith(c.line, prefix);
  return n;
}

// Each prefix matches a line after the previous one's.
void ExpectInOrder(const FakeSyscalls& sys, const std::vector<std::string>& prefixes) {
  int at = 0;
  for (const auto& p : prefixes) {
    int i = Find(sys, p, at);
    INFO("expected next, after call " << at << ": " << p);
    REQUIRE(i >= 0);
    at = i + 1;
  }
}

// "0=/dev/null 1=/dev/null ...": an fd table that prints in a failed CHECK.
std::string Show(const std::map<int, std::string>& fds) {
  std::string out;
  for (const auto& [fd, name] : fds) out += (out.empty() ? "" : " ") + std::to_string(fd) + "=" + name;
  return out;
}

std::string Describe(const std::optional<StepFailure>& f) {
  if (!f) return "success";
  return std::string(ChildStepName(f->step)) + " " + airlock::ErrnoName(f->err) + " item " + std::to_string(f->item);
}

}  // namespace

TEST_CASE("child: the full step sequence of a typical plan", "[child]") {
  Harness h;
  auto r = h.Run();
  INFO(h.sys.Dump());
  REQUIRE_FALSE(r.has_value());  // the fake's execveat "returns": no failure
  // Layer src0, the /usr bind src1, the ro host mount src2, the rw one src3.
  REQUIRE(h.plan.sources.size() == 4);
  const std::string B = std::string(" ") + kBeneath;
  ExpectInOrder(h.sys, {
      // await-parent, set-ids
      "recvfds <sock>", "setids 0 0", "pdeathsig 9", "peer_hung_up <sock>",
      // make-private before any mount
      "mount - / - rec|private",
      // stage: a private tmpfs on the stage path, then the working directory
      "fsopen tmpfs", "fsconfig <fs:tmpfs> mode=0700", "fsconfig <fs:tmpfs> create",
      "fsmount <fs:tmpfs> nosuid|nodev", "move_mount <mnt:tmpfs> -> /stage", "fchdir </stage>",
      // attach-layers
      "mkdirat </stage> l0 0700", "move_mount <src0> -> </stage>/l0", "mkdirat </stage> rw 0755",
      "mkdirat </stage> rw/upper 0755", "mkdirat </stage> rw/work 0700",
      // mount-overlay, inside the user namespace
      "fsopen overlay", "fsconfig <fs:overlay> lowerdir=l0", "fsconfig <fs:overlay> upperdir=rw/upper",
      "fsconfig <fs:overlay> workdir=rw/work", "fsconfig <fs:overlay> userxattr", "fsconfig <fs:overlay> create",
      "fsmount <fs:overlay> 0", "mkdirat </stage> root 0755", "move_mount <mnt:overlay> -> </stage>/root",
      "openat2 </stage> root path|dir|cloexec" + B,
      // mounts, in the plan's order
      "isdir <src1>", "openat2 </stage/root> usr path|dir|cloexec" + B, "move_mount <src1> -> </stage/root/usr>",
      "openat2 </stage/root> proc path|dir|cloexec" + B, "fsopen proc", "fsmount <fs:proc> nosuid|nodev|noexec",
      "move_mount <mnt:proc> -> </stage/root/proc>",
      "openat2 </stage/root/proc/sys/user> max_user_namespaces wronly|cloexec" + B,
      "write </stage/root/proc/sys/user/max_user_namespaces> 0\\n",
      "openat2 </stage/root/proc> kcore path|cloexec" + B, "open_tree /dev/null clone|cloexec",
      "move_mount <tree:/dev/null> -> </stage/root/proc/kcore>",
      "openat2 </stage/root/proc> acpi path|dir|cloexec" + B, "fsopen tmpfs",
      "fsconfig <fs:tmpfs> mode=0555", "fsconfig <fs:tmpfs> size=0", "fsmount <fs:tmpfs> ro|nosuid|nodev",
      "move_mount <mnt:tmpfs> -> </stage/root/proc/acpi>",
      "openat2 </stage/root/proc> sys path|dir|cloexec" + B,
      "open_tree </stage/root/proc/sys> clone|cloexec|empty_path|recursive",
      "mount_setattr <tree:/stage/root/proc/sys> empty_path|recursive set=ro|nosuid|nodev clr=0",
      "move_mount <tree:/stage/root/proc/sys> -> </stage/root/proc/sys>",
      "openat2 </stage/root> dev path|dir|cloexec" + B, "move_mount <mnt:tmpfs> -> </stage/root/dev>",
      "openat2 </stage/root/dev> null path|cloexec" + B, "open_tree /dev/null clone|cloexec",
      "mount_setattr <tree:/dev/null> empty_path set=nosuid|noexec clr=0",
      "move_mount <tree:/dev/null> -> </stage/root/dev/null>",
      "open_tree /dev/tty clone|cloexec", "move_mount <tree:/dev/tty> -> </stage/root/dev/tty>",
      "fsopen devpts", "fsconfig <fs:devpts> newinstance", "move_mount <mnt:devpts> -> </stage/root/dev/pts>",
      "symlinkat pts/ptmx </stage/root/dev> ptmx", "move_mount <mnt:tmpfs> -> </stage/root/dev/shm>",
      "symlinkat /proc/self/fd </stage/root/dev> fd", "symlinkat /proc/self/fd/2 </stage/root/dev> stderr",
      "move_mount <mnt:tmpfs> -> </stage/root/tmp>",
      "isdir <src2>", "openat2 </stage/root> data path|dir|cloexec" + B, "move_mount <src2> -> </stage/root/data>",
      "isdir <src3>", "openat2 </stage/root> out path|dir|cloexec" + B, "move_mount <src3> -> </stage/root/out>",
      // cgroup-namespace: the parent's second message, then made while in the sandbox's group
      "recvfds <sock>", "write <cg:group0> 0", "write <cg:group1> 0", "unshare cgroup", "write <cg:init0> 0",
      "write <cg:init1> 0",
      // pivot-root
      "fchdir </stage/root>", "pivot_root . .", "umount2 . detach", "chdir /",
      // stdio: /dev/null is the sandbox's own from here on
      // and every fd init needs is lifted to 256+ before anything lands on a fixed number
      "openat2 /dev/null rdwr|cloexec 0", "dupabove <sock> 256", "dupabove <init-exe> 256",
      "dupabove <cg:group0> 256", "dupabove <cg:work1> 256", "dup2 </dev/null> 0", "dup2 </dev/null> 1",
      "dup2 </dev/null> 2", "dup2 <sock> 3",
      "sethostname sandbox", "setrlimit nofile 1024 1024", "setrlimit core 0 0",
      // init-fds: the workload's tasks files go to init as fds 4.., its exec fd after them
      "setsid", "dup2 <cg:work0> 4", "dup2 <cg:work1> 5", "dup2 <init-exe> 6", "cloexec 6 on", "close_range 7",
      // capabilities, then no_new_privs, then seccomp, then exec, last
      "capbset_drop 2", "capbset_drop 21", "limit_caps", "no_new_privs", "seccomp 1", "seccomp 2",
      "execveat <init-exe> airlock-init --cgroup-fds=2",
  });
  CHECK(FindLast(h.sys, "execveat") == static_cast<int>(h.sys.calls().size()) - 1);
  CHECK(Count(h.sys, "execveat") == 1);
  CHECK(std::string(h.cgroup_arg) == "--cgroup-fds=2");
  CHECK(Count(h.sys, "setrlimit fsize") == 0);  // no fsize limit in the spec
  // No call failed along the way.
  for (const auto& c : h.sys.calls()) CHECK(c.ret >= 0);
}

TEST_CASE("child: steps come in the documented order", "[child]") {
  Harness h;
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  auto& s = h.sys;
  CHECK(Find(s, "setids") < Find(s, "mount - / -"));
  CHECK(Find(s, "mount - / -") < Find(s, "fsopen"));  // before the stage tmpfs, before any mount
  CHECK(FindLast(s, "move_mount <src0>") < Find(s, "fsopen overlay"));
  CHECK(Find(s, "move_mount <mnt:proc> -> </stage/root/proc>") <
        Find(s, "move_mount <tree:/dev/null> -> </stage/root/proc/"));
  // The cgroup namespace is made after the mounts (the parent makes the
  // cgroups meanwhile) and before pivot_root.
  CHECK(FindLast(s, "move_mount") < Find(s, "write <cg:group0>"));
  CHECK(Find(s, "write <cg:group1>") < Find(s, "unshare"));
  CHECK(Find(s, "unshare") < Find(s, "write <cg:init0>"));
  CHECK(FindLast(s, "write <cg:") < Find(s, "pivot_root"));
  CHECK(FindLast(s, "move_mount") < Find(s, "pivot_root"));
  CHECK(FindLast(s, "symlinkat") < Find(s, "pivot_root"));
  CHECK(FindLast(s, "capbset_drop") < Find(s, "no_new_privs"));
  CHECK(Find(s, "no_new_privs") < Find(s, "seccomp"));
  CHECK(FindLast(s, "close_range") < Find(s, "capbset_drop"));
  // After the first seccomp filter, nothing but the others and the exec.
  for (size_t i = Find(s, "seccomp"); i < s.calls().size(); ++i) {
    INFO(s.calls()[i].line);
    CHECK((StartsWith(s.calls()[i].line, "seccomp ") || StartsWith(s.calls()[i].line, "execveat ")));
  }
  CHECK(FindLast(s, "execveat") == static_cast<int>(s.calls().size()) - 1);
  // The table's order is the enum's: names in errors and timings match.
  CHECK(ChildStep::kMounts < ChildStep::kCgroupNamespace);
  CHECK(ChildStep::kCgroupNamespace < ChildStep::kPivotRoot);
  CHECK(ChildStep::kCapabilities < ChildStep::kNoNewPrivs);
  CHECK(ChildStep::kNoNewPrivs < ChildStep::kSeccomp);
  CHECK(static_cast<int>(ChildStep::kSeccomp) + 1 == static_cast<int>(ChildStep::kExecInit));
  CHECK(static_cast<int>(ChildStep::kExecInit) + 1 == static_cast<int>(ChildStep::kCount));
}

TEST_CASE("child: mount targets are opened beneath the new root, never by host path", "[child]") {
  Harness h;
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  const int pivot = Find(h.sys, "pivot_root");
  REQUIRE(pivot > 0);
  int opens = 0;
  for (int i = 0; i < pivot; ++i) {
    const std::string& l = h.sys.calls()[i].line;
    INFO(l);
    if (StartsWith(l, "openat2 ")) {
      ++opens;
      CHECK((StartsWith(l, "openat2 </stage/root") || StartsWith(l, "openat2 </stage> root ")));
      CHECK(l.ends_with(kBeneath));
    }
    if (StartsWith(l, "move_mount ")) {
      std::string to = l.substr(l.find(" -> ") + 4);
      bool stage = to == "/stage" || to == "</stage>/l0" || to == "</stage>/root";
      CHECK((stage || StartsWith(to, "</stage/root/")));
    }
    if (StartsWith(l, "open_tree ")) {
      // The only sources taken by path are the host's device nodes.
      std::string loc = l.substr(10);
      CHECK((StartsWith(loc, "/dev/") || StartsWith(loc, "</stage/root/proc/")));
    }
    if (StartsWith(l, "mkdirat ") || StartsWith(l, "symlinkat ")) CHECK(l.find("</stage") != std::string::npos);
  }
  CHECK(opens > 20);
  // After pivot_root only the sandbox's own /dev/null is opened by path.
  for (size_t i = pivot; i < h.sys.calls().size(); ++i) {
    const std::string& l = h.sys.calls()[i].line;
    if (StartsWith(l, "openat2 ")) CHECK(l == "openat2 /dev/null rdwr|cloexec 0");
  }
}

TEST_CASE("child: a failure in each step names that step, its errno and item", "[child]") {
  struct Case {
    std::string prefix;
    int nth;
    ChildStep step;
    int item;
  };
  const std::vector<Case> cases = {
      {"recvfds", 1, ChildStep::kAwaitParent, -1},
      {"setids", 1, ChildStep::kSetIds, -1},
      {"pdeathsig", 1, ChildStep::kSetIds, -1},
      {"mount - / -", 1, ChildStep::kMakePrivate, -1},
      {"fsopen tmpfs", 1, ChildStep::kStage, -1},
      {"fsconfig <fs:tmpfs> mode=0700", 1, ChildStep::kStage, -1},
      {"move_mount <mnt:tmpfs> -> /stage", 1, ChildStep::kStage, -1},
      {"fchdir", 1, ChildStep::kStage, -1},
      {"mkdirat </stage> l0", 1, ChildStep::kAttachLayers, 0},
      {"move_mount <src0>", 1, ChildStep::kAttachLayers, 0},
      {"mkdirat </stage> rw 0755", 1, ChildStep::kAttachLayers, -1},
      {"mkdirat </stage> rw/work", 1, ChildStep::kAttachLayers, -1},
      {"fsopen overlay", 1, ChildStep::kOverlay, -1},
      {"fsconfig <fs:overlay> userxattr", 1, ChildStep::kOverlay, -1},
      {"fsmount <fs:overlay>", 1, ChildStep::kOverlay, -1},
      {"move_mount <mnt:overlay>", 1, ChildStep::kOverlay, -1},
      {"openat2 </stage> root", 1, ChildStep::kOverlay, -1},
      {"recvfds", 2, ChildStep::kCgroupNamespace, -1},
      {"write <cg:group1>", 1, ChildStep::kCgroupNamespace, 0},
      {"unshare", 1, ChildStep::kCgroupNamespace, -1},
      {"write <cg:init0>", 1, ChildStep::kCgroupNamespace, 1},
      {"fchdir </stage/root>", 1, ChildStep::kPivotRoot, -1},
      {"pivot_root", 1, ChildStep::kPivotRoot, -1},
      {"umount2", 1, ChildStep::kPivotRoot, -1},
      {"chdir /", 1, ChildStep::kPivotRoot, -1},
      {"openat2 /dev/null", 1, ChildStep::kStdio, -1},
      {"dupabove <sock>", 1, ChildStep::kStdio, -1},
      {"dupabove <init-exe>", 1, ChildStep::kStdio, -1},
      {"dupabove <cg:group1>", 1, ChildStep::kStdio, 1},
      {"dup2 <sock> 3", 1, ChildStep::kStdio, -1},
      {"sethostname", 1, ChildStep::kHostname, -1},
      {"setrlimit nofile", 1, ChildStep::kRlimits, 0},
      {"setrlimit core", 1, ChildStep::kRlimits, 1},
      {"limit_caps", 1, ChildStep::kCapabilities, -1},
      {"no_new_privs", 1, ChildStep::kNoNewPrivs, -1},
      {"seccomp", 1, ChildStep::kSeccomp, 0},
      {"seccomp", 2, ChildStep::kSeccomp, 1},
      {"setsid", 1, ChildStep::kInitFds, -1},
      {"dup2 <init-exe>", 1, ChildStep::kInitFds, -1},
      {"cloexec 6", 1, ChildStep::kInitFds, -1},
      {"dup2 <cg:work0>", 1, ChildStep::kInitFds, 0},
      {"dup2 <cg:work1>", 1, ChildStep::kInitFds, 1},
      {"close_range", 1, ChildStep::kInitFds, -1},
      {"execveat", 1, ChildStep::kExecInit, -1},
  };
  const int err = EXDEV;  // a value no step produces on its own
  for (const auto& c : cases) {
    Harness h;
    h.sys.FailOn(c.prefix, err, c.nth);
    auto r = h.Run();
    INFO("failing call " << c.nth << " matching \"" << c.prefix << "\" gave " << Describe(r) << "\n" << h.sys.Dump());
    REQUIRE(r.has_value());
    CHECK(r->step == c.step);
    CHECK(r->err == err);
    CHECK(r->item == c.item);
    // The sequence stops at the failure: nothing of a later step ran.
    if (c.step < ChildStep::kPivotRoot) CHECK(Find(h.sys, "pivot_root") < 0);
    if (c.step < ChildStep::kNoNewPrivs) CHECK(Find(h.sys, "no_new_privs") < 0);
    if (c.step < ChildStep::kSeccomp) CHECK(Find(h.sys, "seccomp") < 0);
    if (c.prefix != "execveat") CHECK(Find(h.sys, "execveat") < 0);
  }
}

TEST_CASE("child: a failing mount reports its index in plan.mounts", "[child]") {
  struct Case {
    std::string prefix;
    std::string target;
  };
  const std::vector<Case> cases = {
      {"move_mount <src1> -> </stage/root/usr>", "usr"},
      {"move_mount <src2> -> </stage/root/data>", "data"},
      {"move_mount <src3> -> </stage/root/out>", "out"},
      {"isdir <src3>", "out"},
      {"fsopen proc", "proc"},
      {"write </stage/root/proc/sys/user/max_user_namespaces>", "proc/sys/user/max_user_namespaces"},
      {"move_mount <tree:/dev/null> -> </stage/root/proc/keys>", "proc/keys"},
      {"mount_setattr <tree:/stage/root/proc/irq>", "proc/irq"},
      {"fsconfig <fs:devpts> newinstance", "dev/pts"},
      {"open_tree /dev/urandom", "dev/urandom"},
      {"symlinkat /proc/self/fd/1 ", "dev/stdout"},
      {"move_mount <mnt:tmpfs> -> </stage/root/tmp>", "tmp"},
  };
  for (const auto& c : cases) {
    Harness h;
    h.sys.FailOn(c.prefix, EACCES);
    auto r = h.Run();
    INFO("failing \"" << c.prefix << "\" gave " << Describe(r) << "\n" << h.sys.Dump());
    REQUIRE(r.has_value());
    CHECK(r->step == ChildStep::kMounts);
    CHECK(r->err == EACCES);
    CHECK(r->item == h.MountIndex(c.target));
    CHECK(Find(h.sys, "pivot_root") < 0);
    // No mount after the failing one.
    int failed = -1;
    for (size_t i = 0; i < h.sys.calls().size(); ++i)
      if (h.sys.calls()[i].ret == -EACCES) failed = static_cast<int>(i);
    REQUIRE(failed >= 0);
    CHECK(Find(h.sys, "move_mount", failed + 1) < 0);
  }
}

TEST_CASE("child: a missing optional mask target is skipped", "[child]") {
  SECTION("a file under /proc") {
    Harness h;
    h.sys.FailOn("openat2 </stage/root/proc> timer_stats", ENOENT);
    auto r = h.Run();
    INFO(Describe(r) << "\n" << h.sys.Dump());
    CHECK_FALSE(r.has_value());
    CHECK(Find(h.sys, "move_mount <tree:/dev/null> -> </stage/root/proc/timer_stats>") < 0);
    CHECK(Find(h.sys, "move_mount <tree:/dev/null> -> </stage/root/proc/sched_debug>") >= 0);
    // Optional targets are never created.
    CHECK(Find(h.sys, "openat2 </stage/root/proc> timer_stats wronly|creat") < 0);
  }
  SECTION("a directory under /proc") {
    Harness h;
    h.sys.FailOn("openat2 </stage/root/proc> asound", ENOENT);
    auto r = h.Run();
    INFO(Describe(r) << "\n" << h.sys.Dump());
    CHECK_FALSE(r.has_value());
    CHECK(Find(h.sys, "mkdirat </stage/root/proc> asound") < 0);
    CHECK(Find(h.sys, "move_mount <mnt:tmpfs> -> </stage/root/proc/asound>") < 0);
    CHECK(Find(h.sys, "move_mount <mnt:tmpfs> -> </stage/root/proc/firmware>") >= 0);
  }
  SECTION("a read-only knob") {
    Harness h;
    h.sys.FailOn("openat2 </stage/root/proc> bus", ENOENT);
    CHECK_FALSE(h.Run().has_value());
    CHECK(Find(h.sys, "open_tree </stage/root/proc/bus>") < 0);
  }
  SECTION("an optional mask fails on other errors") {
    Harness h;
    h.sys.FailOn("openat2 </stage/root/proc> kcore", EACCES);
    auto r = h.Run();
    REQUIRE(r.has_value());
    CHECK(r->step == ChildStep::kMounts);
    CHECK(r->err == EACCES);
    CHECK(r->item == h.MountIndex("proc/kcore"));
  }
}

TEST_CASE("child: a missing non-optional mask target is an error", "[child]") {
  Harness h;
  const int k = h.MountIndex("proc/kcore");
  h.plan.mounts[k].optional = false;
  h.sys.FailOn("openat2 </stage/root/proc> kcore", ENOENT);
  auto r = h.Run();
  INFO(Describe(r) << "\n" << h.sys.Dump());
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kMounts);
  CHECK(r->err == ENOENT);
  CHECK(r->item == k);
  // A mask never creates what it masks.
  CHECK(Find(h.sys, "openat2 </stage/root/proc> kcore wronly|creat") < 0);
}

TEST_CASE("child: the upper on the pool is attached at rw", "[child]") {
  Harness h(TypicalSpec(), /*on_pool=*/true);
  REQUIRE(h.plan.upper_source == 1);
  auto r = h.Run();
  INFO(Describe(r) << "\n" << h.sys.Dump());
  REQUIRE_FALSE(r.has_value());
  ExpectInOrder(h.sys, {"move_mount <src0> -> </stage>/l0", "mkdirat </stage> rw 0755",
                        "move_mount <src1> -> </stage>/rw", "fsopen overlay",
                        "fsconfig <fs:overlay> upperdir=rw/upper", "fsconfig <fs:overlay> workdir=rw/work"});
  // upper/ and work/ are in the subvolume already.
  CHECK(Find(h.sys, "mkdirat </stage> rw/") < 0);
  // The image bind and the host mounts follow the upper in the sources.
  CHECK(Find(h.sys, "move_mount <src2> -> </stage/root/usr>") >= 0);
  CHECK(Find(h.sys, "move_mount <src4> -> </stage/root/out>") >= 0);

  Harness f(TypicalSpec(), true);
  f.sys.FailOn("move_mount <src1> -> </stage>/rw", EINVAL);
  auto failed = f.Run();
  INFO(Describe(failed));
  REQUIRE(failed.has_value());
  CHECK(failed->step == ChildStep::kAttachLayers);
  CHECK(failed->item == 1);  // the upper's source index
  CHECK(failed->err == EINVAL);
}

TEST_CASE("child: the upper on tmpfs is made in the stage", "[child]") {
  Harness h;
  REQUIRE_FALSE(h.Run().has_value());
  CHECK(Find(h.sys, "move_mount <src1> -> </stage>/rw") < 0);
  CHECK(Count(h.sys, "mkdirat </stage> rw/upper 0755") == 1);
  CHECK(Count(h.sys, "mkdirat </stage> rw/work 0700") == 1);
}

TEST_CASE("child: several layers are attached in order and stacked", "[child]") {
  SandboxSpec s = TypicalSpec();
  s.layers = {"/layers/top", "/layers/mid", "/layers/base"};
  Harness h(s);
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  ExpectInOrder(h.sys, {"mkdirat </stage> l0 0700", "move_mount <src0> -> </stage>/l0", "mkdirat </stage> l1 0700",
                        "move_mount <src1> -> </stage>/l1", "mkdirat </stage> l2 0700",
                        "move_mount <src2> -> </stage>/l2", "fsconfig <fs:overlay> lowerdir=l0:l1:l2"});
  CHECK(Find(h.sys, "move_mount <src3> -> </stage/root/usr>") >= 0);

  Harness f(s);
  f.sys.FailOn("move_mount <src2>", EIO);
  auto r = f.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kAttachLayers);
  CHECK(r->item == 2);
  CHECK(Find(f.sys, "fsopen overlay") < 0);
}

TEST_CASE("child: cgroup tasks files get \"0\" in order group, unshare, init", "[child]") {
  Harness h;
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  std::vector<std::string> seq;
  for (const auto& c : h.sys.calls())
    if (StartsWith(c.line, "write <cg:") || StartsWith(c.line, "unshare")) seq.push_back(c.line);
  CHECK(seq == std::vector<std::string>{"write <cg:group0> 0", "write <cg:group1> 0", "unshare cgroup",
                                        "write <cg:init0> 0", "write <cg:init1> 0"});
  // The workload group is the spawner's to join, not this process's.
  CHECK(Find(h.sys, "write <cg:work") < 0);
}

TEST_CASE("child: no cgroup v1 files (cgroup v2) and no time namespace", "[child]") {
  Harness h(TypicalSpec(), false, /*time_ns=*/false, /*hierarchies=*/0);
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  CHECK(Find(h.sys, "write <cg:") < 0);
  CHECK(Count(h.sys, "unshare cgroup") == 1);
  CHECK(Find(h.sys, "unshare cgroup|time") < 0);  // time comes with clone3, not here
  CHECK(std::string(h.cgroup_arg) == "--cgroup-fds=0");
  CHECK(Find(h.sys, "execveat <init-exe> airlock-init --cgroup-fds=0") >= 0);
  CHECK(Show(h.sys.exec_fds()) == "0=/dev/null 1=/dev/null 2=/dev/null 3=sock");
}

TEST_CASE("child: cgroup files must come in three equal lists", "[child]") {
  SandboxSpec s = TypicalSpec();
  auto p = BuildLaunchPlan(s, false, true);
  REQUIRE(p.has_value());
  FakeSyscalls odd;
  odd.QueueFds({"src0", "src1", "src2", "src3"});
  odd.QueueFds({"a", "b", "c", "d"});
  ChildContext ctx;
  ctx.plan = &*p;
  ctx.sock = kSock;
  ctx.init_exec_fd = kInitExe;
  ctx.stage_path = "/stage";
  auto r2 = RunChildSteps(odd, ctx);
  INFO(Describe(r2) << "\n" << odd.Dump());
  REQUIRE(r2.has_value());
  CHECK(r2->step == ChildStep::kCgroupNamespace);
  CHECK(r2->err == EPROTO);
  // Nothing is written to any of them, and no namespace is made.
  CHECK(Find(odd, "write ", FindLast(odd, "recvfds")) < 0);
  CHECK(Find(odd, "unshare") < 0);
}

TEST_CASE("child: init gets /dev/null, the channel and the workload's tasks files, nothing else", "[child]") {
  for (int hierarchies : {1, 2, 4}) {
    Harness h(TypicalSpec(), false, true, hierarchies);
    auto r = h.Run();
    INFO(hierarchies << " hierarchies: " << Describe(r) << "\n" << h.sys.Dump());
    REQUIRE_FALSE(r.has_value());
    std::map<int, std::string> expected = {{0, "/dev/null"}, {1, "/dev/null"}, {2, "/dev/null"}, {3, "sock"}};
    for (int i = 0; i < hierarchies; ++i) expected[4 + i] = "cg:work" + std::to_string(i);
    CHECK(Show(h.sys.exec_fds()) == Show(expected));
    // airlock-init itself is exec'd from the fd after them, close-on-exec.
    const int exec_fd = 4 + hierarchies;
    CHECK(h.ctx.init_exec_fd == exec_fd);
    CHECK(h.sys.NameOf(exec_fd) == "init-exe");
    CHECK(FindLast(h.sys, "execveat <init-exe>") >= 0);
    CHECK(std::string(h.cgroup_arg) == "--cgroup-fds=" + std::to_string(hierarchies));
    // Nothing else is open: not the stage, the root, a source or a cgroup file.
    for (int fd : {exec_fd + 1, 10, 11, 70, 71, 100, 101, 150})
      CHECK_FALSE(h.sys.IsOpen(fd));
  }
}

// The tasks fds arrive in the cgroup-namespace step at whatever numbers are
// free in this process (a copy of the parent's fd table): low holes, or ~70
// fds open in a daemon. Placing fds on fixed numbers with dup2 silently
// closes whatever was there, so everything is lifted first (F_DUPFD).
TEST_CASE("child: the workload's tasks files reach init wherever they were received", "[child]") {
  struct Layout {
    const char* what;
    std::vector<int> cg_numbers;  // group0 group1 init0 init1 work0 work1
    int sock = kSock, exec = kInitExe;
  };
  const std::vector<Layout> layouts = {
      {"fresh high numbers", {200, 201, 202, 203, 204, 205}},
      {"a workload fd at 70", {60, 61, 62, 63, 64, 70}},
      {"workload fds at 64 and 71", {60, 61, 62, 63, 64, 71}},
      {"workload fds at 4 and 5", {12, 13, 14, 15, 4, 5}},
      {"the channel low, a workload fd at 90", {12, 13, 14, 15, 16, 90}, 3, 4},
  };
  for (const auto& l : layouts) {
    Harness h(TypicalSpec(), false, true, 2, l.cg_numbers);
    if (l.sock != kSock) {
      h.ctx.sock = l.sock;
      h.ctx.init_exec_fd = l.exec;
      h.sys.Name(l.sock, "sock");
      h.sys.Name(l.exec, "init-exe");
    }
    auto r = h.Run();
    INFO(l.what << ": " << Describe(r) << "\n" << h.sys.Dump());
    REQUIRE_FALSE(r.has_value());
    CHECK(Show(h.sys.exec_fds()) == "0=/dev/null 1=/dev/null 2=/dev/null 3=sock 4=cg:work0 5=cg:work1");
    CHECK(h.sys.NameOf(6) == "init-exe");
  }
}

TEST_CASE("child: await-parent needs exactly one fd per source", "[child]") {
  Harness h;
  h.sys.ClearQueuedFds();
  std::vector<std::string> srcs;
  for (size_t i = 0; i + 1 < h.plan.sources.size(); ++i) srcs.push_back("src" + std::to_string(i));
  h.sys.QueueFds(srcs);  // one short
  auto r = h.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kAwaitParent);
  CHECK(r->err == EPROTO);
  CHECK(h.sys.calls().size() == 1);
}

TEST_CASE("child: set-ids fails if the parent died before the death signal was set", "[child]") {
  Harness h;
  h.sys.peer_hung_up = true;
  auto r = h.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kSetIds);
  CHECK(r->err == EPIPE);
  CHECK(Find(h.sys, "unshare") < 0);
}

TEST_CASE("child: mountpoints missing in the image are created beneath the root", "[child]") {
  SandboxSpec s = TypicalSpec();
  s.mounts[1].destination = "/out/deep/dir";
  Harness h(s);
  h.sys.file_sources = {"src2"};  // the read-only host mount is a file
  const std::string B = std::string(" ") + kBeneath;
  h.sys.FailOn("openat2 </stage/root> data path|cloexec", ENOENT);
  h.sys.FailOn("openat2 </stage/root> out path|dir", ENOENT);
  h.sys.FailOn("openat2 </stage/root/out/deep> dir path|dir", ENOENT);
  auto r = h.Run();
  INFO(Describe(r) << "\n" << h.sys.Dump());
  REQUIRE_FALSE(r.has_value());
  ExpectInOrder(h.sys, {
      "isdir <src2>", "openat2 </stage/root> data path|cloexec" + B,
      "openat2 </stage/root> data wronly|creat|excl|cloexec" + B, "close </stage/root/data>",
      "openat2 </stage/root> data path|cloexec" + B, "move_mount <src2> -> </stage/root/data>",
      "isdir <src3>", "openat2 </stage/root> out path|dir|cloexec" + B, "mkdirat </stage/root> out 0755",
      "openat2 </stage/root> out path|dir|cloexec" + B, "openat2 </stage/root/out> deep path|dir|cloexec" + B,
      "openat2 </stage/root/out/deep> dir path|dir|cloexec" + B, "mkdirat </stage/root/out/deep> dir 0755",
      "openat2 </stage/root/out/deep> dir path|dir|cloexec" + B, "move_mount <src3> -> </stage/root/out/deep/dir>",
  });
}

TEST_CASE("child: a symlink in the image on a mount's way is refused", "[child]") {
  SandboxSpec s = TypicalSpec();
  s.mounts[1].destination = "/home/user/out";
  Harness h(s);
  // openat2 with RESOLVE_NO_SYMLINKS answers ELOOP for /home -> /var/home.
  h.sys.FailOn("openat2 </stage/root> home ", ELOOP);
  auto r = h.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kMounts);
  CHECK(r->err == ELOOP);
  CHECK(r->item == h.MountIndex("home/user/out"));
  CHECK(Find(h.sys, "mkdirat </stage/root> home") < 0);
}

TEST_CASE("child: read-only knobs that are files are re-bound as files", "[child]") {
  Harness h;
  h.sys.FailOn("openat2 </stage/root/proc> sysrq-trigger path|dir", ENOTDIR);
  auto r = h.Run();
  INFO(Describe(r) << "\n" << h.sys.Dump());
  REQUIRE_FALSE(r.has_value());
  ExpectInOrder(h.sys, {"openat2 </stage/root/proc> sysrq-trigger path|dir|cloexec",
                        "openat2 </stage/root/proc> sysrq-trigger path|cloexec",
                        "open_tree </stage/root/proc/sysrq-trigger> clone|cloexec|empty_path|recursive",
                        "mount_setattr <tree:/stage/root/proc/sysrq-trigger> empty_path|recursive set=ro|nosuid|nodev",
                        "move_mount <tree:/stage/root/proc/sysrq-trigger> -> </stage/root/proc/sysrq-trigger>"});
}

TEST_CASE("child: an existing /dev symlink is kept", "[child]") {
  Harness h;
  h.sys.FailOn("symlinkat pts/ptmx", EEXIST);
  CHECK_FALSE(h.Run().has_value());
  Harness f;
  f.sys.FailOn("symlinkat pts/ptmx", EPERM);
  auto r = f.Run();
  REQUIRE(r.has_value());
  CHECK(r->item == f.MountIndex("dev/ptmx"));
}

TEST_CASE("child: rlimits, capabilities and seccomp follow the plan", "[child]") {
  SandboxSpec s = TypicalSpec();
  s.limits.nofile = 4096;
  s.limits.fsize_bytes = 1 << 20;
  s.hostname = "box1";
  Harness h(s);
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  ExpectInOrder(h.sys, {"sethostname box1", "setrlimit nofile 4096 4096", "setrlimit core 0 0",
                        "setrlimit fsize 1048576 1048576"});
  std::vector<std::string> drops;
  for (const auto& c : h.sys.calls())
    if (StartsWith(c.line, "capbset_drop ")) drops.push_back(c.line.substr(13));
  std::vector<std::string> expected;
  for (int cap : h.plan.dropped_caps) expected.push_back(std::to_string(cap));
  CHECK(drops == expected);
  std::vector<std::string> filters;
  for (const auto& c : h.sys.calls())
    if (StartsWith(c.line, "seccomp ")) filters.push_back(c.line);
  CHECK(filters == std::vector<std::string>{"seccomp 1", "seccomp 2"});

  Harness f(s);
  f.sys.FailOn("setrlimit fsize", EPERM);
  auto r = f.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kRlimits);
  CHECK(r->item == 2);

  Harness c(s);
  c.sys.FailOn("capbset_drop 21", EPERM);  // CAP_SYS_ADMIN
  r = c.Run();
  REQUIRE(r.has_value());
  CHECK(r->step == ChildStep::kCapabilities);
  const auto& caps = c.plan.dropped_caps;
  CHECK(r->item == static_cast<int>(std::find(caps.begin(), caps.end(), 21) - caps.begin()));
  CHECK(Find(c.sys, "no_new_privs") < 0);
}

TEST_CASE("child: stdio lifts every fd init needs, then puts the channel at 3", "[child]") {
  // Stopped right after the stdio step, to see its work alone.
  SECTION("from high fds") {
    Harness h;
    h.sys.FailOn("sethostname", EXDEV);
    auto r = h.Run();
    INFO(h.sys.Dump());
    REQUIRE(r.has_value());
    REQUIRE(r->step == ChildStep::kHostname);
    CHECK(h.ctx.sock == 3);
    CHECK(h.ctx.init_exec_fd >= 256);
    CHECK(h.sys.NameOf(3) == "sock");
    CHECK(h.sys.NameOf(h.ctx.init_exec_fd) == "init-exe");
    for (int fd = 0; fd < 3; ++fd) CHECK(h.sys.NameOf(fd) == "/dev/null");
  }
  SECTION("from the fds the stdio step overwrites") {
    Harness h;
    h.ctx.sock = 3;
    h.ctx.init_exec_fd = 4;
    h.sys.Name(3, "sock");
    h.sys.Name(4, "init-exe");
    h.sys.FailOn("sethostname", EXDEV);
    auto r = h.Run();
    INFO(h.sys.Dump());
    REQUIRE(r.has_value());
    REQUIRE(r->step == ChildStep::kHostname);
    ExpectInOrder(h.sys, {"openat2 /dev/null", "dupabove <sock> 256", "dupabove <init-exe> 256",
                          "dup2 </dev/null> 0", "dup2 <sock> 3"});
    CHECK(h.ctx.sock == 3);
    CHECK(h.sys.NameOf(3) == "sock");
    CHECK(h.ctx.init_exec_fd >= 256);
    CHECK(h.sys.NameOf(h.ctx.init_exec_fd) == "init-exe");
  }
}

TEST_CASE("child: step timings are sent on the channel before exec", "[child]") {
  Harness h;
  h.ctx.send_timings = true;
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  int send = FindLast(h.sys, "send <sock> ");
  REQUIRE(send >= 0);
  CHECK(Count(h.sys, "send ") == 1);
  // Before seccomp, which may allow nothing but the exec; on init's channel fd.
  CHECK(send < Find(h.sys, "seccomp"));
  CHECK(send > FindLast(h.sys, "close_range"));
  CHECK(h.ctx.sock == 3);
  REQUIRE(!h.sys.sent().empty());
  const std::string& msg = h.sys.sent().back();
  const size_t steps = static_cast<size_t>(ChildStep::kCount);
  REQUIRE(msg.size() == 8 + steps * 8);
  uint16_t version, type;
  uint32_t len;
  memcpy(&version, msg.data(), 2);
  memcpy(&type, msg.data() + 2, 2);
  memcpy(&len, msg.data() + 4, 4);
  CHECK(version == airlock::proto::kVersion);
  CHECK(type == static_cast<uint16_t>(airlock::proto::Type::kTimings));
  CHECK(len == steps * 8);

  Harness quiet;
  REQUIRE_FALSE(quiet.Run().has_value());
  CHECK(Find(quiet.sys, "send <sock>") < 0);
}


TEST_CASE("child: a checkpointable sandbox makes its own network namespace first", "[child]") {
  Harness h;
  h.plan.child_netns = true;
  REQUIRE_FALSE(h.Run().has_value());
  INFO(h.sys.Dump());
  // First of all, so it overlaps the parent's id maps and mounts; owned by
  // the sandbox's user namespace, as CRIU needs.
  CHECK(Find(h.sys, "unshare net") == 0);
  CHECK(Find(h.sys, "loopback_up") == 1);
  // The channel is remade in that namespace (CRIU finds sockets through
  // it) and the runtime's end sent back over the old one.
  CHECK(Find(h.sys, "socketpair") == 2);
  CHECK(Find(h.sys, "sendfd <sock> type 9") == 3);
  CHECK(Find(h.sys, "recvfds") > 3);

  Harness plain;
  REQUIRE_FALSE(plain.Run().has_value());
  CHECK(Find(plain.sys, "unshare net") < 0);
  CHECK(Find(plain.sys, "loopback_up") < 0);
}

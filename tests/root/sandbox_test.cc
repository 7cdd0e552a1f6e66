// Real sandboxes, end to end: what a program inside observes of its pid
// namespace, identity, mounts, network, capabilities, limits and stdio. Each
// test runs a testcase (tests/testcases/*.c) or a shell inside with
// `airlock run` and asserts on what it printed.
#include <linux/capability.h>
#include <signal.h>

#include <set>

#include "runtime/spec/spec.h"
#include "tests/root/helpers.h"

using namespace airlock_test;

namespace {

std::set<long> Numbers(const std::vector<std::string>& values) {
  std::set<long> out;
  for (const auto& v : values) out.insert(std::strtol(v.c_str(), nullptr, 10));
  return out;
}

// Docker's default capability set without CAP_MKNOD and CAP_NET_RAW
// (decision 5): the most a command may ever hold.
constexpr unsigned long long Bit(int cap) { return 1ull << cap; }
constexpr unsigned long long kKeptCaps =
    Bit(CAP_CHOWN) | Bit(CAP_DAC_OVERRIDE) | Bit(CAP_FSETID) | Bit(CAP_FOWNER) | Bit(CAP_SETGID) |
    Bit(CAP_SETUID) | Bit(CAP_SETFCAP) | Bit(CAP_SETPCAP) | Bit(CAP_NET_BIND_SERVICE) | Bit(CAP_SYS_CHROOT) |
    Bit(CAP_KILL) | Bit(CAP_AUDIT_WRITE);

std::string CapNames(unsigned long long mask) {
  static const char* const kNames[] = {
      "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
      "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
      "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
      "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
      "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
      "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"};
  std::string out;
  for (int i = 0; i < 64; ++i)
    if (mask & (1ull << i))
      out += (out.empty() ? "" : ",") +
             (i < static_cast<int>(sizeof(kNames) / sizeof(kNames[0])) ? std::string(kNames[i])
                                                                       : "cap" + std::to_string(i));
  return out.empty() ? "none" : out;
}

}  // namespace

TEST_CASE("pid namespace: the command sees only the sandbox's processes", "[root][sandbox]") {
  auto r = RunTestcase({}, "whoami");
  INFO(r.Describe());
  REQUIRE(r.status == 0);
  long own = std::strtol(Value(r.out, "pid").c_str(), nullptr, 10);
  CHECK(own > 1);
  CHECK(own <= 4);
  std::set<long> visible = Numbers(Values(r.out, "proc_pid"));
  // init, the spawner and the command itself: nothing of the host.
  CHECK(visible.count(1) == 1);
  CHECK(visible.count(own) == 1);
  CHECK(visible.size() <= 3);
  CHECK(visible.count(getpid()) == 0);
  CHECK(visible.count(getppid()) == 0);
  for (long p : visible) CHECK(p <= 4);
  CHECK(Value(r.out, "init_cmdline").rfind("airlock-init", 0) == 0);
  CHECK(Value(r.out, "ppid") == "1");
}

TEST_CASE("uts and user namespaces: hostname, uid map, user", "[root][sandbox]") {
  SECTION("default hostname, uid map and user") {
    auto r = RunTestcase({}, "whoami");
    INFO(r.Describe());
    REQUIRE(r.status == 0);
    CHECK(Value(r.out, "hostname") == "sandbox");
    for (const char* key : {"uid_map", "gid_map"}) {
      std::stringstream ss(Value(r.out, key));
      unsigned long long inside = 99, base = 0, count = 0;
      ss >> inside >> base >> count;
      INFO(key << " " << Value(r.out, key));
      CHECK(Values(r.out, key).size() == 1);
      CHECK(inside == 0);
      CHECK(base >= 0x10000000ull);
      CHECK(count == 65536);
    }
    CHECK(Value(r.out, "uid") == "1000");
    CHECK(Value(r.out, "gid") == "1000");
    CHECK(Value(r.out, "cwd") == "/workspace");
  }
  SECTION("--hostname") {
    auto r = RunTestcase({"--hostname", "foo"}, "whoami");
    INFO(r.Describe());
    REQUIRE(r.status == 0);
    CHECK(Value(r.out, "hostname") == "foo");
  }
  SECTION("--user root and --user 0") {
    for (const char* user : {"root", "0"}) {
      auto r = RunTestcase({"--user", user}, "whoami");
      INFO("--user " << user << "\n" << r.Describe());
      REQUIRE(r.status == 0);
      CHECK(Value(r.out, "uid") == "0");
      CHECK(Value(r.out, "euid") == "0");
      CHECK(Value(r.out, "gid") == "0");
    }
  }
  SECTION("id(1) agrees") {
    auto r = Run({"--", "id", "-u"});
    INFO(r.Describe());
    CHECK(r.status == 0);
    CHECK(r.out == "1000\n");
  }
}

TEST_CASE("mount namespace: no host mounts or files visible", "[root][sandbox]") {
  // As root inside, so that no permission hides what is there.
  auto r = RunTestcase({"--user", "root"}, "fsops",
                       {"cat:/proc/self/mountinfo", "list:/root", "list:/home", "exists:/etc/shadow",
                        "exists:/etc/gshadow", "exists:/etc/ssh", "exists:/work", "exists:/var/lib/airlock",
                        "exists:/sys/class/net", "exists:/sys/fs/cgroup", "cat:/etc/passwd"});
  INFO(r.Describe());
  REQUIRE(r.status == 0);
  std::vector<std::string> points;
  for (const auto& l : Values(r.out, "line /proc/self/mountinfo")) {
    std::stringstream ss(l);
    std::string id, parent, dev, root, point;
    ss >> id >> parent >> dev >> root >> point;
    points.push_back(point);
  }
  REQUIRE(points.size() >= 4);
  for (const auto& p : points) {
    INFO("mount point " << p);
    bool allowed = p == "/" || p == "/usr" || p == "/t" || p == "/tmp" || p == "/proc" || p.rfind("/proc/", 0) == 0 ||
                   p == "/dev" || p.rfind("/dev/", 0) == 0;
    CHECK(allowed);
  }
  std::set<std::string> unique(points.begin(), points.end());
  CHECK(unique.count("/"));
  CHECK(unique.count("/proc"));
  CHECK(unique.count("/tmp"));
  for (const char* host : {"/work", "/etc", "/sys", "/sys/fs/cgroup", "/var/lib/airlock", "/run", "/home", "/root"})
    CHECK(unique.count(host) == 0);
  // The host's /root and /home have content; the sandbox's are empty.
  CHECK(HasLine(r.out, "list /root ok"));
  CHECK(Values(r.out, "entry /root").empty());
  for (const auto& e : Values(r.out, "entry /home")) CHECK(e == "sandbox");
  for (const char* absent : {"/etc/shadow", "/etc/gshadow", "/etc/ssh", "/work", "/var/lib/airlock",
                             "/sys/class/net", "/sys/fs/cgroup"})
    CHECK(HasLine(r.out, std::string("exists ") + absent + " no"));
  bool sandbox_user = false;
  for (const auto& l : Values(r.out, "line /etc/passwd"))
    if (l.rfind("sandbox:x:1000:1000:", 0) == 0) sandbox_user = true;
  CHECK(sandbox_user);
}

TEST_CASE("network namespace: loopback only", "[root][sandbox]") {
  auto r = RunTestcase({}, "net");
  INFO(r.Describe());
  REQUIRE(r.status == 0);
  CHECK(Values(r.out, "iface") == std::vector<std::string>{"lo"});
  CHECK(Value(r.out, "lo_up") == "1");
  CHECK(Value(r.out, "tcp_loopback") == "ok");
  // No interface but lo, so no route: refused before anything is sent.
  CHECK(Value(r.out, "connect_testnet") == "errno ENETUNREACH");
  CHECK(Value(r.out, "udp_connect_testnet") == "errno ENETUNREACH");
  CHECK(Value(r.out, "connect6_testnet") == "errno ENETUNREACH");
}

TEST_CASE("capabilities, no_new_privs, seccomp mode", "[root][sandbox]") {
  const unsigned long long dangerous = Bit(CAP_SYS_ADMIN) | Bit(CAP_SYS_PTRACE) | Bit(CAP_NET_ADMIN) |
                                       Bit(CAP_SYS_MODULE) | Bit(CAP_MKNOD) | Bit(CAP_NET_RAW) |
                                       Bit(CAP_DAC_READ_SEARCH) | Bit(CAP_SYS_RAWIO) | Bit(CAP_SYS_BOOT) |
                                       Bit(CAP_SYS_TIME) | Bit(CAP_BPF) | Bit(CAP_PERFMON) |
                                       Bit(CAP_CHECKPOINT_RESTORE) | Bit(CAP_SYS_RESOURCE);
  for (const char* user : {"sandbox", "root"}) {
    auto r = RunTestcase({"--user", user}, "jail");
    INFO("--user " << user << "\n" << r.Describe());
    REQUIRE(r.status == 0);
    unsigned long long bnd = Hex(Value(r.out, "CapBnd"));
    unsigned long long eff = Hex(Value(r.out, "CapEff"));
    unsigned long long prm = Hex(Value(r.out, "CapPrm"));
    INFO("CapBnd " << CapNames(bnd) << "; CapEff " << CapNames(eff));
    CHECK((bnd & dangerous) == 0);
    CHECK((bnd & ~kKeptCaps) == 0);
    CHECK(Hex(Value(r.out, "CapAmb")) == 0);
    CHECK(Hex(Value(r.out, "CapInh")) == 0);
    if (std::string(user) == "root") {
      CHECK(eff == kKeptCaps);
      CHECK(prm == kKeptCaps);
    } else {
      CHECK(eff == 0);
      CHECK(prm == 0);
    }
    CHECK(Value(r.out, "NoNewPrivs") == "1");
    CHECK(Value(r.out, "Seccomp") == "2");
  }
}

TEST_CASE("rlimits: no core dumps, nofile as configured", "[root][sandbox]") {
  const std::string nofile = std::to_string(airlock::ResourceLimits{}.nofile);
  auto r = RunTestcase({}, "jail");
  INFO(r.Describe());
  REQUIRE(r.status == 0);
  CHECK(Value(r.out, "rlimit_core") == "0 0");
  CHECK(Value(r.out, "rlimit_nofile") == nofile + " " + nofile);
}

TEST_CASE("limits: memory, pids, cpu, timeout", "[root][limits]") {
  SECTION("--memory: an OOM kill is reported as such") {
    auto r = RunTestcase({"--memory", "64M"}, "memhog", {"256"});
    INFO(r.Describe());
    CHECK(r.status == 137);
    CHECK_FALSE(HasLine(r.out, "done"));
    CHECK(r.err.find("OOM") != std::string::npos);
  }
  SECTION("--pids: a fork bomb hits EAGAIN, init stays in control") {
    auto r = RunTestcase({"--pids", "32"}, "forkbomb");
    INFO(r.Describe());
    // The bomb's own status, reported by init with the children still alive.
    CHECK(r.status == 42);
    CHECK(Value(r.out, "fork_errno") == "EAGAIN");
    long forked = std::strtol(Value(r.out, "forked").c_str(), nullptr, 10);
    CHECK(forked > 0);
    CHECK(forked < 32);
    CHECK(r.seconds < 10);
    CHECK(r.err.find("pids limit") != std::string::npos);
  }
  SECTION("--cpus: the workload group's CFS quota") {
    SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
    Process p(AirlockArgv({"run", "--cpus", "0.5", "--", "sh", "-c", "echo started; read x; echo finished"}),
              parent.JoinOptions());
    REQUIRE(p.WaitForPrefix("started"));
    auto ids = parent.NewSandboxIds();
    REQUIRE(ids.size() == 1);
    std::string cpu_dir;
    for (const auto& d : parent.dirs())
      if (Exists(d + "/cpu.cfs_quota_us") || Exists(d + "/cpu.max")) cpu_dir = d;
    REQUIRE(!cpu_dir.empty());
    std::string work = cpu_dir + "/airlock-" + ids[0] + "/work";
    long quota, period;
    if (Exists(work + "/cpu.max")) {  // v2: "QUOTA PERIOD"
      std::istringstream in(ReadFile(work + "/cpu.max"));
      in >> quota >> period;
    } else {
      quota = std::strtol(ReadFile(work + "/cpu.cfs_quota_us").c_str(), nullptr, 10);
      period = std::strtol(ReadFile(work + "/cpu.cfs_period_us").c_str(), nullptr, 10);
    }
    p.Write("\n");
    auto r = p.Wait();
    INFO(work << "\n" << r.Describe());
    CHECK(quota == 50000);
    CHECK(period == 100000);
    CHECK(r.status == 0);
    CHECK(HasLine(r.out, "finished"));
  }
  SECTION("--timeout kills the sandbox") {
    auto r = Run({"--timeout", "1s", "--", "sleep", "30"});
    INFO(r.Describe());
    CHECK(r.status == 124);
    CHECK(r.seconds < 3);
    CHECK(r.err.find("timed out") != std::string::npos);
  }
}

TEST_CASE("stdio, exit status, signals", "[root][sandbox]") {
  SECTION("the command starts with fds 0, 1 and 2 only") {
    auto r = RunTestcase({}, "whoami");
    INFO(r.Describe());
    REQUIRE(r.status == 0);
    CHECK(Values(r.out, "fd") == std::vector<std::string>{"0", "1", "2"});
  }
  SECTION("stdin passes through") {
    auto r = Run({"--", "cat"}, "hi\n");
    INFO(r.Describe());
    CHECK(r.status == 0);
    CHECK(r.out == "hi\n");
  }
  SECTION("exit status propagates") {
    auto seven = Run({"--", "sh", "-c", "exit 7"});
    INFO(seven.Describe());
    CHECK(seven.status == 7);
    auto killed = Run({"--", "sh", "-c", "kill -9 $$"});
    INFO(killed.Describe());
    CHECK(killed.status == 137);
    auto missing = Run({"--", "/no/such/command"});
    INFO(missing.Describe());
    CHECK(missing.status == 127);
    CHECK(missing.err.find("/no/such/command") != std::string::npos);
  }
  SECTION("SIGTERM to airlock reaches the command") {
    Process p(AirlockArgv({"run", "--", "sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; sleep 10 & wait"}));
    REQUIRE(p.WaitForPrefix("ready"));
    p.Signal(SIGTERM);
    auto r = p.Wait(15);
    INFO(r.Describe());
    CHECK(r.status == 3);
    CHECK(HasLine(r.out, "got-term"));
    CHECK(r.seconds < 8);
  }
}

TEST_CASE("a sandbox in a non-root cgroup", "[root][cgroup]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  Process p(AirlockArgv({"run", "--mount", TestcaseMount(), "--", "sh", "-c",
                         "echo started; cat /proc/self/cgroup; /t/whoami; read x"}),
            parent.JoinOptions());
  REQUIRE(p.WaitForPrefix("started"));
  REQUIRE(p.WaitForPrefix("cwd"));
  auto ids = parent.NewSandboxIds();
  REQUIRE(ids.size() == 1);
  const std::string id = ids[0];
  for (const auto& d : parent.dirs()) {
    INFO(d);
    CHECK(Exists(d + "/airlock-" + id + "/init"));
    CHECK(Exists(d + "/airlock-" + id + "/work"));
  }
  // Nowhere else.
  for (const auto& c : CgroupDirsOf(id)) {
    bool under_parent = false;
    for (const auto& d : parent.dirs()) under_parent |= c == d + "/airlock-" + id;
    INFO(c);
    CHECK(under_parent);
  }
  p.Write("\n");
  auto r = p.Wait();
  INFO(r.Describe());
  CHECK(r.status == 0);
  CHECK(Value(r.out, "uid") == "1000");
  // The command sees itself in the workload group of its cgroup namespace.
  if (CgroupParent::V1()) {
    for (const char* c : {"memory", "pids"}) {
      bool in_work = false;
      for (const auto& l : Lines(r.out))
        if (l.find(std::string(":") + c + ":") != std::string::npos) in_work = l.ends_with(":/work");
      INFO(c);
      CHECK(in_work);
    }
  } else {
    // v2: init is born in its group (CLONE_INTO_CGROUP) and makes the
    // namespace there, so the workload is a sibling: "0::/../work".
    bool in_work = false;
    for (const auto& l : Lines(r.out)) in_work |= l.rfind("0::", 0) == 0 && l.ends_with("/work");
    CHECK(in_work);
  }
  RequireNoLeftovers(id);
}

// cgroup layout detection and SandboxCgroup file logic, on fake trees in a
// temporary directory (control files are plain files the test creates).
#include "runtime/cgroups/cgroup.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/cgroups/internal.h"

namespace fs = std::filesystem;
using namespace airlock;
using namespace airlock::cgroups;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-cgroup-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void Put(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string Get(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// This host, as found: hybrid, the caller's memory cgroup is not the root.
const char* kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup "
    "rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup "
    "rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup "
    "rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
    "rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
const char* kHybridSelf =
    "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
    "4:memory:/process_api/c5029b\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

// Debian 10 style pure v1: cpu and cpuacct co-mounted, no cgroup2.
const char* kV1Mountinfo =
    "25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup "
    "rw,xattr,name=systemd\n"
    "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup "
    "cgroup rw,cpu,cpuacct\n"
    "30 25 0:27 / /sys/fs/cgroup/memory rw shared:8 - cgroup cgroup rw,memory\n"
    "31 25 0:28 / /sys/fs/cgroup/pids rw shared:9 - cgroup cgroup rw,pids\n"
    "32 25 0:29 / /sys/fs/cgroup/freezer rw shared:10 - cgroup cgroup "
    "rw,freezer\n"
    "33 25 0:30 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup "
    "rw,net_cls,net_prio\n";
const char* kV1Self =
    "6:net_cls,net_prio:/\n5:freezer:/\n4:pids:/user.slice/user-1000.slice\n"
    "3:memory:/user.slice\n2:cpu,cpuacct:/user.slice\n1:name=systemd:/"
    "user.slice\n";

const char* kV2Mountinfo =
    "25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "26 1 8:1 / / rw - ext4 /dev/vda1 rw\n";

std::string V1Root(const TempDir& t) { return t.path + "/sys/fs/cgroup"; }

// The files cgroupfs would create in a new v1 directory of each hierarchy.
void PopulateV1(const Hierarchy& h, const std::string& dir) {
  Put(dir + "/cgroup.procs", "");
  for (const std::string& c : h.controllers) {
    if (c == "memory") {
      Put(dir + "/memory.limit_in_bytes", "9223372036854771712\n");
      Put(dir + "/memory.memsw.limit_in_bytes", "9223372036854771712\n");
      Put(dir + "/memory.oom_control",
          "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    } else if (c == "pids") {
      Put(dir + "/pids.max", "max\n");
      Put(dir + "/pids.events", "max 0\n");
    } else if (c == "cpu") {
      Put(dir + "/cpu.cfs_period_us", "100000\n");
      Put(dir + "/cpu.cfs_quota_us", "-1\n");
    } else if (c == "freezer") {
      Put(dir + "/freezer.state", "THAWED\n");
    }
  }
}

void PopulateV2(const std::string& dir, bool local_events = true) {
  for (const char* f :
       {"cgroup.procs", "cgroup.subtree_control", "cgroup.freeze",
        "cgroup.kill", "memory.max", "memory.swap.max", "memory.oom.group",
        "pids.max", "cpu.max"})
    Put(dir + "/" + f, "");
  Put(dir + "/cgroup.type", "domain\n");
  Put(dir + "/cgroup.controllers", "cpu memory pids\n");
  Put(dir + "/cgroup.events", "populated 0\nfrozen 0\n");
  Put(dir + "/memory.events",
      "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
  Put(dir + "/pids.events", "max 0\n");
  if (local_events) {
    Put(dir + "/memory.events.local",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    Put(dir + "/pids.events.local", "max 0\n");
  }
}

// A fake hybrid tree with the caller's directories present.
Layout HybridLayout(const TempDir& t) {
  for (const char* d :
       {"cpu", "cpuacct", "cpuset", "memory/process_api/c5029b", "devices",
        "freezer", "blkio", "pids", "systemd", "unified"})
    fs::create_directories(V1Root(t) + "/" + d);
  auto layout = ParseLayout(kHybridMountinfo, kHybridSelf, t.path);
  REQUIRE(layout.has_value());
  layout->after_mkdir = PopulateV1;
  return *layout;
}

// A fake pure-v2 tree; the caller sits in `self` (a path like
// "/system.slice/airlockd.service") whose cgroup.controllers is `controllers`.
Layout V2Layout(
    const TempDir& t, const std::string& self,
    const std::string& controllers = "cpuset cpu io memory pids\n") {
  std::string root = V1Root(t);
  Put(root + "/cgroup.controllers",
      "cpuset cpu io memory hugetlb pids rdma misc\n");
  Put(root + "/cgroup.subtree_control", "");
  Put(root + "/cgroup.procs", "1\n");
  if (self != "/") {
    std::string dir = root + self;
    PopulateV2(dir);
    Put(dir + "/cgroup.controllers", controllers);
    Put(dir + "/cgroup.procs", std::to_string(getpid()) + "\n");
  }
  auto layout = ParseLayout(kV2Mountinfo, "0::" + self + "\n", t.path);
  REQUIRE(layout.has_value());
  layout->after_mkdir = [](const Hierarchy&, const std::string& dir) {
    PopulateV2(dir);
  };
  return *layout;
}

}  // namespace

TEST_CASE("ParseLayout: hybrid host like this one", "[cgroup]") {
  TempDir t;
  Layout l = HybridLayout(t);
  const std::string root = V1Root(t);
  // memory, pids, cpu, freezer: four v1 hierarchies; unified (hugetlb only),
  // blkio, devices, cpuset are never touched.
  REQUIRE(l.hierarchies.size() == 4);
  const Hierarchy* mem = l.Find(Controller::kMemory);
  REQUIRE(mem);
  CHECK(mem->version == Version::kV1);
  CHECK(mem->mountpoint == root + "/memory");
  CHECK(mem->self_path == "/process_api/c5029b");
  CHECK(mem->self_dir == root + "/memory/process_api/c5029b");
  CHECK(mem->base_dir == mem->self_dir);
  CHECK_FALSE(mem->fell_back_to_mount_root);
  const Hierarchy* pids = l.Find(Controller::kPids);
  REQUIRE(pids);
  CHECK(pids->base_dir == root + "/pids");
  const Hierarchy* cpu = l.Find(Controller::kCpu);
  REQUIRE(cpu);
  CHECK(cpu->controllers == std::vector<std::string>{"cpu"});
  CHECK(l.Find(Controller::kFreezer)->mountpoint == root + "/freezer");
  CHECK_FALSE(l.PureV2());
  CHECK(l.Describe().find("memory: v1 " + root + "/memory") !=
        std::string::npos);
}

TEST_CASE("ParseLayout: pure v1 with cpu,cpuacct co-mounted", "[cgroup]") {
  TempDir t;
  for (const char* d :
       {"cpu,cpuacct/user.slice", "memory/user.slice",
        "pids/user.slice/user-1000.slice", "freezer", "net_cls,net_prio"})
    fs::create_directories(V1Root(t) + "/" + d);
  auto l = ParseLayout(kV1Mountinfo, kV1Self, t.path);
  REQUIRE(l.has_value());
  REQUIRE(l->hierarchies.size() == 4);
  const Hierarchy* cpu = l->Find(Controller::kCpu);
  REQUIRE(cpu);
  CHECK(cpu->mountpoint == V1Root(t) + "/cpu,cpuacct");
  CHECK(cpu->controllers == std::vector<std::string>{"cpu", "cpuacct"});
  CHECK(cpu->self_dir == V1Root(t) + "/cpu,cpuacct/user.slice");
  CHECK(l->Find(Controller::kPids)->self_dir ==
        V1Root(t) + "/pids/user.slice/user-1000.slice");
  CHECK(l->Find(Controller::kFreezer)->self_dir == V1Root(t) + "/freezer");
}

TEST_CASE("ParseLayout: pure v2", "[cgroup]") {
  TempDir t;
  Layout l = V2Layout(t, "/system.slice/airlockd.service");
  REQUIRE(l.hierarchies.size() == 1);
  CHECK(l.PureV2());
  for (Controller c : kControllers) CHECK(l.Find(c) == &l.hierarchies[0]);
  const Hierarchy& h = l.hierarchies[0];
  CHECK(h.version == Version::kV2);
  CHECK(h.self_dir == V1Root(t) + "/system.slice/airlockd.service");
  CHECK(h.base_dir == h.self_dir);
  CHECK(h.controllers ==
        std::vector<std::string>{"cpuset", "cpu", "io", "memory", "pids"});
}

TEST_CASE("ParseLayout: v2 caller already in the airlock.self leaf",
          "[cgroup]") {
  TempDir t;
  Put(V1Root(t) + "/svc/airlock.self/cgroup.procs", "");
  Put(V1Root(t) + "/svc/cgroup.controllers", "memory pids\n");
  auto l = ParseLayout(kV2Mountinfo, "0::/svc/airlock.self\n", t.path);
  REQUIRE(l.has_value());
  CHECK(l->hierarchies[0].self_dir == V1Root(t) + "/svc/airlock.self");
  CHECK(l->hierarchies[0].base_dir == V1Root(t) + "/svc");
  CHECK(l->Find(Controller::kCpu) == nullptr);  // not delegated to svc
}

TEST_CASE("ParseLayout: missing controllers are named", "[cgroup]") {
  TempDir t;
  SECTION("v2 without memory delegated") {
    Put(V1Root(t) + "/svc/cgroup.controllers", "cpu pids\n");
    auto l = ParseLayout(kV2Mountinfo, "0::/svc\n", t.path);
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().detail.find("no memory controller") != std::string::npos);
  }
  SECTION("v1 without pids") {
    std::string mi =
        "30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    auto l = ParseLayout(mi, "3:memory:/\n", t.path);
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().detail.find("no pids controller") != std::string::npos);
  }
  SECTION("v2 cgroup.controllers unreadable") {
    auto l = ParseLayout(kV2Mountinfo, "0::/\n", t.path);
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().err == ENOENT);
    CHECK(l.error().detail == V1Root(t) + "/cgroup.controllers");
  }
  SECTION("malformed input") {
    auto l = ParseLayout("garbage line\n", "0::/\n", t.path);
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().op == "parse /proc/self/mountinfo");
    auto m = ParseLayout(kV2Mountinfo, "nonsense\n", t.path);
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().op == "parse /proc/self/cgroup");
  }
}

TEST_CASE("ParseLayout: container paths and escapes", "[cgroup]") {
  TempDir t;
  // A bind mount of a subtree (mount root /docker/abc) containing the
  // caller's cgroup; a mountpoint with an escaped space.
  std::string mi =
      "30 25 0:27 /docker/abc /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup "
      "rw,memory\n"
      "31 25 0:28 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
  fs::create_directories(V1Root(t) + "/mem ory/sub");
  fs::create_directories(V1Root(t) + "/pids");
  auto l = ParseLayout(mi, "4:pids:/../elsewhere\n3:memory:/docker/abc/sub\n",
                       t.path);
  REQUIRE(l.has_value());
  const Hierarchy* mem = l->Find(Controller::kMemory);
  CHECK(mem->self_dir == V1Root(t) + "/mem ory/sub");
  CHECK_FALSE(mem->fell_back_to_mount_root);
  // "/../elsewhere" lies outside what the mount shows: fall back to its root.
  const Hierarchy* pids = l->Find(Controller::kPids);
  CHECK(pids->self_dir == V1Root(t) + "/pids");
  CHECK(pids->fell_back_to_mount_root);
  CHECK(l->Find(Controller::kCpu) == nullptr);
  CHECK(l->Find(Controller::kFreezer) == nullptr);
}

TEST_CASE("ParseLayout: hybrid with memory and pids only on cgroup2",
          "[cgroup]") {
  TempDir t;
  std::string mi =
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
      "rw,cpu,cpuacct\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
  fs::create_directories(V1Root(t) + "/cpu,cpuacct");
  Put(V1Root(t) + "/unified/cgroup.controllers", "memory pids\n");
  auto l = ParseLayout(mi, "1:cpu,cpuacct:/\n0::/\n", t.path);
  REQUIRE(l.has_value());
  REQUIRE(l->hierarchies.size() == 2);
  CHECK(l->Find(Controller::kMemory)->version == Version::kV2);
  CHECK(l->Find(Controller::kPids) == l->Find(Controller::kMemory));
  CHECK(l->Find(Controller::kFreezer) == l->Find(Controller::kMemory));
  CHECK(l->Find(Controller::kCpu)->version == Version::kV1);
  CHECK_FALSE(l->PureV2());
}

TEST_CASE("SandboxCgroup::Create on a fake hybrid tree", "[cgroup]") {
  TempDir t;
  Layout l = HybridLayout(t);
  Limits lim{.memory_bytes = 32u << 20, .pids = 16, .cpus = 0.5};
  auto cg = SandboxCgroup::Create(l, "sb1", lim);
  REQUIRE(cg.has_value());
  const std::string root = V1Root(t);
  const std::string mem = root + "/memory/process_api/c5029b/airlock-sb1";
  std::vector<std::string> want;
  for (const std::string& g :
       {mem, root + "/pids/airlock-sb1", root + "/cpu/airlock-sb1",
        root + "/freezer/airlock-sb1"})
    for (const std::string& d : {g, g + "/init", g + "/work"})
      want.push_back(d);
  CHECK(cg->Paths() == want);
  for (const std::string& d : want) CHECK(fs::is_directory(d));
  CHECK_FALSE(fs::exists(root + "/cpuacct/airlock-sb1"));
  CHECK_FALSE(fs::exists(root + "/blkio/airlock-sb1"));
  CHECK_FALSE(fs::exists(root + "/unified/airlock-sb1"));

  CHECK(Get(mem + "/work/memory.limit_in_bytes") == "33554432");
  CHECK(Get(mem + "/work/memory.memsw.limit_in_bytes") == "33554432");
  // init and the group carry no memory limit.
  CHECK(Get(mem + "/init/memory.limit_in_bytes") == "9223372036854771712\n");
  CHECK(Get(mem + "/memory.limit_in_bytes") == "9223372036854771712\n");
  CHECK(Get(root + "/pids/airlock-sb1/pids.max") ==
        std::to_string(16 + kInitReservedPids));
  CHECK(Get(root + "/pids/airlock-sb1/work/pids.max") == "16");
  CHECK(Get(root + "/pids/airlock-sb1/init/pids.max") == "max\n");
  CHECK(Get(root + "/cpu/airlock-sb1/work/cpu.cfs_period_us") == "100000");
  CHECK(Get(root + "/cpu/airlock-sb1/work/cpu.cfs_quota_us") == "50000");
  CHECK(cg->InitDirFd() == -1);

  // Attach writes the pid into the right child of every hierarchy.
  REQUIRE(cg->AttachInit(getpid()).has_value());
  for (const char* h : {"/pids/", "/cpu/", "/freezer/"})
    CHECK(Get(root + h + "airlock-sb1/init/cgroup.procs") ==
          std::to_string(getpid()));
  CHECK(Get(mem + "/init/cgroup.procs") == std::to_string(getpid()));
  auto init_pids = cg->InitPids();
  REQUIRE(init_pids.has_value());
  CHECK(*init_pids == std::vector<pid_t>{getpid()});
  REQUIRE(cg->MoveToWork(getpid()).has_value());
  CHECK(Get(root + "/pids/airlock-sb1/work/cgroup.procs") ==
        std::to_string(getpid()));

  // v1 freezer: the state reads back FROZEN at once on a plain file.
  REQUIRE(cg->Freeze().has_value());
  CHECK(Get(root + "/freezer/airlock-sb1/freezer.state") == "FROZEN");
  REQUIRE(cg->Thaw().has_value());
  CHECK(Get(root + "/freezer/airlock-sb1/freezer.state") == "THAWED");

  // The same id again: the group exists and is refused, not adopted.
  auto again = SandboxCgroup::Create(l, "sb1", lim);
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().err == EEXIST);
  CHECK(again.error().detail == mem);

  cg->Release();
}

TEST_CASE("SandboxCgroup: v1 without memsw, without limits", "[cgroup]") {
  TempDir t;
  Layout l = HybridLayout(t);
  l.after_mkdir = [](const Hierarchy& h, const std::string& dir) {
    PopulateV1(h, dir);
    fs::remove(dir + "/memory.memsw.limit_in_bytes");
  };
  auto cg = SandboxCgroup::Create(l, "nomemsw", Limits{.memory_bytes = 4096});
  REQUIRE(cg.has_value());
  const std::string w =
      V1Root(t) + "/memory/process_api/c5029b/airlock-nomemsw/work";
  CHECK(Get(w + "/memory.limit_in_bytes") == "4096");
  CHECK_FALSE(fs::exists(w + "/memory.memsw.limit_in_bytes"));
  // No pids or cpu limit asked: nothing written.
  CHECK(Get(V1Root(t) + "/pids/airlock-nomemsw/pids.max") == "max\n");
  CHECK(Get(V1Root(t) + "/cpu/airlock-nomemsw/work/cpu.cfs_quota_us") ==
        "-1\n");
  cg->Release();
}

TEST_CASE("SandboxCgroup: errors name the file", "[cgroup]") {
  TempDir t;
  Layout l = HybridLayout(t);
  SECTION("missing limit file") {
    l.after_mkdir = [](const Hierarchy& h, const std::string& dir) {
      PopulateV1(h, dir);
      fs::remove(dir + "/pids.max");
    };
    auto cg = SandboxCgroup::Create(l, "e1", Limits{.pids = 4});
    REQUIRE_FALSE(cg.has_value());
    CHECK(cg.error().err == ENOENT);
    CHECK(cg.error().op == "open");
    CHECK(cg.error().detail == V1Root(t) + "/pids/airlock-e1/pids.max");
    CHECK(cg.error().Message() ==
          "open: ENOENT (" + V1Root(t) + "/pids/airlock-e1/pids.max)");
  }
  SECTION("bad input names the field") {
    auto a = SandboxCgroup::Create(l, "../x", {});
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error().op == "sandbox_id");
    auto b = SandboxCgroup::Create(l, "ok", Limits{.cpus = -1});
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().op == "limits.cpus");
    auto c = SandboxCgroup::Create(l, "ok", Limits{.pids = 0});
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().op == "limits.pids");
    CHECK_FALSE(fs::exists(V1Root(t) + "/pids/airlock-ok"));
  }
  SECTION("cpu limit without a cpu controller fails closed") {
    l.index[static_cast<size_t>(Controller::kCpu)] = -1;
    auto cg = SandboxCgroup::Create(l, "nocpu", Limits{.cpus = 1});
    REQUIRE_FALSE(cg.has_value());
    CHECK(cg.error().op == "limits.cpus");
  }
}

TEST_CASE("SandboxCgroup::ReadEvents sums local counters (v1)", "[cgroup]") {
  TempDir t;
  Layout l = HybridLayout(t);
  auto cg = SandboxCgroup::Create(l, "ev", {});
  REQUIRE(cg.has_value());
  const std::string mem = V1Root(t) + "/memory/process_api/c5029b/airlock-ev";
  const std::string pids = V1Root(t) + "/pids/airlock-ev";
  Put(mem + "/work/memory.oom_control",
      "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n");
  Put(mem + "/init/memory.oom_control",
      "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  Put(pids + "/work/pids.events", "max 5\n");
  Put(pids + "/pids.events", "max 2\n");
  auto ev = cg->ReadEvents();
  REQUIRE(ev.has_value());
  CHECK(ev->oom_kills == 4);
  CHECK(ev->pids_max_hits == 7);

  // A kernel without the oom_kill line reads as 0, a garbled value fails.
  Put(mem + "/work/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
  CHECK(cg->ReadEvents()->oom_kills == 1);
  Put(pids + "/work/pids.events", "max lots\n");
  auto bad = cg->ReadEvents();
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().op == "parse " + pids + "/work/pids.events");
  cg->Release();
}

TEST_CASE("SandboxCgroup on a fake v2 tree: leaf move and subtree_control",
          "[cgroup]") {
  TempDir t;
  const std::string x = V1Root(t) + "/system.slice/airlockd.service";
  Layout l = V2Layout(t, "/system.slice/airlockd.service");
  auto cg = SandboxCgroup::Create(
      l, "v2a", Limits{.memory_bytes = 1 << 20, .pids = 10, .cpus = 1.5});
  REQUIRE(cg.has_value());
  // The caller left X for the leaf before X handed out controllers.
  CHECK(fs::is_directory(x + "/airlock.self"));
  CHECK(Get(x + "/airlock.self/cgroup.procs") == std::to_string(getpid()));
  CHECK(Get(x + "/cgroup.subtree_control") == "+memory +pids +cpu");
  const std::string g = x + "/airlock-v2a";
  CHECK(cg->Paths() == std::vector<std::string>{g, g + "/init", g + "/work"});
  CHECK(Get(g + "/cgroup.subtree_control") == "+memory +pids +cpu");
  CHECK(Get(g + "/work/memory.max") == "1048576");
  CHECK(Get(g + "/work/memory.swap.max") == "0");
  CHECK(Get(g + "/work/memory.oom.group") == "1");
  CHECK(Get(g + "/init/memory.max").empty());
  CHECK(Get(g + "/pids.max") == std::to_string(10 + kInitReservedPids));
  CHECK(Get(g + "/work/pids.max") == "10");
  CHECK(Get(g + "/work/cpu.max") == "150000 100000");
  CHECK(cg->InitDirFd() >= 0);

  // Freeze waits for "frozen 1" in cgroup.events.
  Put(g + "/cgroup.events", "populated 1\nfrozen 1\n");
  REQUIRE(cg->Freeze().has_value());
  CHECK(Get(g + "/cgroup.freeze") == "1");
  REQUIRE(cg->Thaw().has_value());
  CHECK(Get(g + "/cgroup.freeze") == "0");
  REQUIRE(cg->KillAll().has_value());
  CHECK(Get(g + "/cgroup.kill") == "1");

  // v2 events: .local counters summed; the hierarchical file is ignored.
  Put(g + "/memory.events", "oom 9\noom_kill 9\n");
  Put(g + "/work/memory.events.local", "oom 2\noom_kill 2\n");
  Put(g + "/work/pids.events.local", "max 3\n");
  Put(g + "/pids.events.local", "max 1\n");
  auto ev = cg->ReadEvents();
  REQUIRE(ev.has_value());
  CHECK(ev->oom_kills == 2);
  CHECK(ev->pids_max_hits == 4);

  // A second sandbox: X already hands out the controllers; the leaf and X's
  // subtree_control are left as they are.
  Put(x + "/cgroup.subtree_control", "memory pids cpu\n");
  Put(x + "/airlock.self/cgroup.procs", "");
  auto cg2 = SandboxCgroup::Create(l, "v2b", {});
  REQUIRE(cg2.has_value());
  CHECK(Get(x + "/cgroup.subtree_control") == "memory pids cpu\n");
  CHECK(Get(x + "/airlock.self/cgroup.procs").empty());
  cg->Release();
  cg2->Release();
}

TEST_CASE("SandboxCgroup on a fake v2 tree: root cgroup and old kernels",
          "[cgroup]") {
  TempDir t;
  SECTION("the root is exempt: no leaf") {
    Layout l = V2Layout(t, "/");
    auto cg = SandboxCgroup::Create(l, "r", {});
    REQUIRE(cg.has_value());
    CHECK_FALSE(fs::exists(V1Root(t) + "/airlock.self"));
    CHECK(Get(V1Root(t) + "/cgroup.subtree_control") == "+memory +pids +cpu");
    CHECK(fs::is_directory(V1Root(t) + "/airlock-r/work"));
    cg->Release();
  }
  SECTION("no .local event files: memory.events read once at the group") {
    Layout l = V2Layout(t, "/svc");
    l.after_mkdir = [](const Hierarchy&, const std::string& dir) {
      PopulateV2(dir, false);
    };
    auto cg = SandboxCgroup::Create(l, "old", {});
    REQUIRE(cg.has_value());
    const std::string g = V1Root(t) + "/svc/airlock-old";
    Put(g + "/memory.events", "oom_kill 5\n");
    Put(g + "/work/memory.events", "oom_kill 5\n");
    Put(g + "/work/pids.events", "max 2\n");
    auto ev = cg->ReadEvents();
    REQUIRE(ev.has_value());
    CHECK(ev->oom_kills == 5);
    CHECK(ev->pids_max_hits == 2);
    cg->Release();
  }
  SECTION("a missing leaf cgroup.procs is named") {
    Layout l = V2Layout(t, "/svc");
    l.after_mkdir = nullptr;  // mkdir alone makes no control files here
    auto cg = SandboxCgroup::Create(l, "x", {});
    REQUIRE_FALSE(cg.has_value());
    CHECK(cg.error().err == ENOENT);
    CHECK(cg.error().detail == V1Root(t) + "/svc/airlock.self/cgroup.procs");
  }
}

TEST_CASE("RemoveStale refuses what isn't an airlock cgroup", "[cgroup]") {
  TempDir t;
  fs::create_directories(t.path + "/airlock-x/work");
  auto a = RemoveStale({t.path + "/airlock-x/work"});
  REQUIRE_FALSE(a.has_value());
  CHECK(a.error().detail ==
        "not on a cgroup filesystem: " + t.path + "/airlock-x/work");
  CHECK(fs::is_directory(t.path + "/airlock-x/work"));
  for (const std::string& p :
       {std::string("relative/airlock-x"), t.path + "/other",
        t.path + "/airlock-x/../airlock-y", t.path + "/other/work",
        t.path + "/airlock-x/init/"}) {
    auto r = RemoveStale({p});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().detail ==
          "not an airlock sandbox cgroup path: \"" + p + "\"");
  }
  // Gone already is fine.
  CHECK(RemoveStale({t.path + "/airlock-gone", t.path + "/airlock-gone/init"})
            .has_value());
}

TEST_CASE("cgroup file helpers", "[cgroup]") {
  using namespace airlock::cgroups::internal;
  auto v = ParseKeyed("populated 1\nfrozen 0\n", "frozen", "/f");
  REQUIRE(v.has_value());
  CHECK(*v == std::optional<uint64_t>(0));
  CHECK(ParseKeyed("populated 1\n", "frozen", "/f")->has_value() == false);
  CHECK_FALSE(ParseKeyed("frozen -1\n", "frozen", "/f").has_value());
  TempDir t;
  Put(t.path + "/cgroup.procs", "12\n345\n");
  CHECK(*ReadProcs(t.path) == std::vector<pid_t>{12, 345});
  Put(t.path + "/cgroup.procs", "12\nx\n");
  CHECK_FALSE(ReadProcs(t.path).has_value());
  auto w = WriteFile(t.path + "/nope", "1");
  REQUIRE_FALSE(w.has_value());
  CHECK(w.error().Message() == "open: ENOENT (" + t.path + "/nope)");
  CHECK_FALSE(fs::exists(t.path + "/nope"));
  CHECK(KillPids({getpid(), 1, 0}) == 0);  // never itself or init
}

// SandboxCgroup against the real /sys/fs/cgroup: limits the kernel enforces
// on child processes (OOM kill, refused forks), freeze, kill, removal, crash
// cleanup — from the caller's own cgroup and from a nested non-root one.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "runtime/cgroups/cgroup.h"

namespace fs = std::filesystem;
using namespace airlock;
using namespace airlock::cgroups;

namespace {

bool NeedRoot() {
  if (geteuid() == 0) return true;
  WARN("SKIPPED: cgroup root tests need root");
  return false;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  INFO("writing " << path);
  REQUIRE(out.good());
}

std::string UniqueId(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(n++);
}

template <typename T>
T Must(Result<T> r) {
  if (!r) FAIL(r.error().Message());
  return std::move(*r);
}
void Must(Result<void> r) {
  if (!r) FAIL(r.error().Message());
}

// A forked child that blocks until told to run `body`, then _exits with its
// return value. Nothing runs in it before the parent has placed it.
class Child {
 public:
  template <typename F>
  explicit Child(F body) {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(p[1]);
      char c;
      if (read(p[0], &c, 1) != 1) _exit(100);
      _exit(body());
    }
    close(p[0]);
    go_ = p[1];
  }
  ~Child() {
    if (go_ >= 0) close(go_);
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void Go() { REQUIRE(write(go_, "g", 1) == 1); }
  int Wait() {
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int go_ = -1;
  bool reaped_ = false;
};

int Sleeper() {
  for (;;) pause();
}

int MemoryHog() {
  // Touch 512 MiB a page at a time; the 32 MiB limit stops it long before.
  for (int i = 0; i < 512; ++i) {
    char* p = static_cast<char*>(malloc(1 << 20));
    if (!p) return 2;
    memset(p, 1, 1 << 20);
  }
  return 3;
}

// Forks until the kernel refuses; exits with the number of forks that worked.
int ForkLoop() {
  int made = 0;
  for (int i = 0; i < 200; ++i) {
    pid_t p = fork();
    if (p == 0) Sleeper();
    if (p < 0) return errno == EAGAIN ? made : 200;
    ++made;
  }
  return 201;
}

// What /proc/<pid>/cgroup says for the hierarchy hosting `c`.
std::string ProcCgroupPath(pid_t pid, const Layout& l, Controller c) {
  const Hierarchy* h = l.Find(c);
  std::istringstream in(Slurp("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    std::string ctrls = "," + line.substr(c1 + 1, c2 - c1 - 1) + ",";
    bool match = h->version == Version::kV2
                     ? ctrls == ",,"
                     : ctrls.find(std::string(",") + ControllerName(c) + ",") !=
                           std::string::npos;
    if (match) return line.substr(c2 + 1);
  }
  return "";
}

// The sandbox work path as /proc/<pid>/cgroup shows it.
std::string WantedWorkPath(const Hierarchy& h, const std::string& id) {
  return h.base_dir.substr(h.mountpoint.size()) + "/airlock-" + id + "/work";
}

void ReapOrphans() {
  // Grandchildren reparented to us (we are a subreaper during the test).
  for (int i = 0; i < 2000; ++i) {
    pid_t p = waitpid(-1, nullptr, WNOHANG);
    if (p < 0) return;  // ECHILD: none left
    if (p == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// The main scenario, run from whatever cgroup the layout was detected in.
void AttachLimitsRemove(const Layout& l) {
  const std::string id = UniqueId("rt");
  INFO("layout:\n" << l.Describe());
  REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  std::vector<std::string> paths;
  {
    SandboxCgroup cg = Must(SandboxCgroup::Create(
        l, id, Limits{.memory_bytes = 32u << 20, .pids = 16, .cpus = 0.5}));
    paths = cg.Paths();
    REQUIRE(paths.size() == 3 * l.hierarchies.size());
    for (const std::string& p : paths) CHECK(fs::is_directory(p));
    CHECK((cg.InitDirFd() >= 0) == l.PureV2());

    // What the kernel holds now.
    const Hierarchy* mem = l.Find(Controller::kMemory);
    const std::string mg = mem->base_dir + "/airlock-" + id;
    if (mem->version == Version::kV1) {
      CHECK(Slurp(mg + "/work/memory.limit_in_bytes") == "33554432\n");
    } else {
      CHECK(Slurp(mg + "/work/memory.max") == "33554432\n");
      CHECK(Slurp(mg + "/work/memory.oom.group") == "1\n");
    }
    const std::string pg =
        l.Find(Controller::kPids)->base_dir + "/airlock-" + id;
    CHECK(Slurp(pg + "/pids.max") ==
          std::to_string(16 + kInitReservedPids) + "\n");
    CHECK(Slurp(pg + "/work/pids.max") == "16\n");
    if (const Hierarchy* cpu = l.Find(Controller::kCpu)) {
      const std::string cgd = cpu->base_dir + "/airlock-" + id + "/work";
      if (cpu->version == Version::kV1)
        CHECK(Slurp(cgd + "/cpu.cfs_quota_us") == "50000\n");
      else
        CHECK(Slurp(cgd + "/cpu.max") == "50000 100000\n");
    }

    // Attach, then move to work: the child sees itself in work everywhere.
    Child hog(MemoryHog);
    Must(cg.AttachInit(hog.pid()));
    std::vector<pid_t> init = Must(cg.InitPids());
    CHECK(init == std::vector<pid_t>{hog.pid()});
    for (Controller c : kControllers)
      if (const Hierarchy* h = l.Find(c))
        CHECK(ProcCgroupPath(hog.pid(), l, c) ==
              h->base_dir.substr(h->mountpoint.size()) + "/airlock-" + id +
                  "/init");
    Must(cg.MoveToWork(hog.pid()));
    CHECK(Must(cg.InitPids()).empty());
    for (Controller c : kControllers) {
      const Hierarchy* h = l.Find(c);
      if (!h) continue;
      INFO("controller " << ControllerName(c));
      std::string seen = ProcCgroupPath(hog.pid(), l, c);
      if (h->fell_back_to_mount_root)
        CHECK(seen.ends_with("/airlock-" + id + "/work"));
      else
        CHECK(seen == WantedWorkPath(*h, id));
    }

    // The memory hog dies by the OOM killer, and the event is counted.
    Events before = Must(cg.ReadEvents());
    CHECK(before.oom_kills == 0);
    hog.Go();
    int st = hog.Wait();
    INFO("hog status " << st);
    CHECK(WIFSIGNALED(st));
    CHECK(WTERMSIG(st) == SIGKILL);
    Events after = Must(cg.ReadEvents());
    CHECK(after.oom_kills >= 1);

    // A fork loop stops at pids.max: itself + 15 children = 16.
    Child bomb(ForkLoop);
    Must(cg.AttachInit(bomb.pid()));
    Must(cg.MoveToWork(bomb.pid()));
    bomb.Go();
    st = bomb.Wait();
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 15);
    Events bombed = Must(cg.ReadEvents());
    CHECK(bombed.pids_max_hits >= 1);

    // Remove kills the orphaned sleepers and removes every directory.
    Must(cg.Remove());
    for (const std::string& p : paths) CHECK_FALSE(fs::exists(p));
    CHECK(cg.Paths().empty());
  }
  ReapOrphans();
  REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0);
  for (const std::string& p : paths) CHECK_FALSE(fs::exists(p));
}

// Moves this process into a fresh non-root cgroup in every hierarchy the
// layout uses, and back (removing them) on destruction.
class NestedSelf {
 public:
  NestedSelf() {
    Layout l0 = Must(DetectLayout());
    // On v2 a cgroup can hand controllers to a new child only after the
    // caller left it: let the library do its leaf move once, then nest
    // beside the leaf.
    bool v2_controllers = false;
    for (Controller c :
         {Controller::kMemory, Controller::kPids, Controller::kCpu})
      if (const Hierarchy* h = l0.Find(c); h && h->version == Version::kV2)
        v2_controllers = true;
    if (v2_controllers) {
      SandboxCgroup prep =
          Must(SandboxCgroup::Create(l0, UniqueId("prep"), {}));
      Must(prep.Remove());
    }
    Layout l1 = Must(DetectLayout());
    const std::string name = "cgtest-" + std::to_string(getpid());
    for (const Hierarchy& h : l1.hierarchies) {
      std::string nested = h.base_dir + "/" + name;
      REQUIRE(mkdir(nested.c_str(), 0755) == 0);
      Spit(nested + "/cgroup.procs", std::to_string(getpid()));
      moves_.push_back({h.self_dir, nested});
    }
  }
  ~NestedSelf() {
    for (const auto& [orig, nested] : moves_) {
      std::ofstream(orig + "/cgroup.procs") << getpid() << std::flush;
      // A v2 nested group holds the leaf the library made.
      rmdir((nested + "/" + kSelfLeafName).c_str());
      if (rmdir(nested.c_str()) != 0)
        WARN("could not remove " << nested << ": " << strerror(errno));
    }
  }
  const std::vector<std::pair<std::string, std::string>>& moves() const {
    return moves_;
  }

 private:
  std::vector<std::pair<std::string, std::string>>
      moves_;  // {original, nested}
};

void FreezeThawKill(const Layout& l) {
  if (!l.Find(Controller::kFreezer)) {
    WARN("SKIPPED: no freezer on this host");
    return;
  }
  SandboxCgroup cg =
      Must(SandboxCgroup::Create(l, UniqueId("fz"), Limits{.pids = 8}));
  auto* counter = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0));
  REQUIRE(counter != MAP_FAILED);
  Child spinner([counter] {
    for (;;) counter->fetch_add(1);
    return 0;
  });
  Child init(Sleeper);
  Must(cg.AttachInit(init.pid()));
  Must(cg.AttachInit(spinner.pid()));
  Must(cg.MoveToWork(spinner.pid()));
  spinner.Go();
  init.Go();
  while (counter->load() == 0) std::this_thread::yield();

  Must(cg.Freeze());
  uint64_t frozen_at = counter->load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(counter->load() == frozen_at);  // a frozen task runs nothing
  Must(cg.Thaw());
  for (int i = 0; i < 2000 && counter->load() == frozen_at; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(counter->load() > frozen_at);

  // KillAll reaches init and work, also while frozen.
  Must(cg.Freeze());
  Must(cg.KillAll());
  int s1 = spinner.Wait(), s2 = init.Wait();
  CHECK((WIFSIGNALED(s1) && WTERMSIG(s1) == SIGKILL));
  CHECK((WIFSIGNALED(s2) && WTERMSIG(s2) == SIGKILL));
  std::vector<std::string> paths = cg.Paths();
  Must(cg.Remove());
  for (const std::string& p : paths) CHECK_FALSE(fs::exists(p));
  munmap(counter, 4096);
}

void StaleAfterCrash(const Layout& l) {
  std::vector<std::string> paths;
  Child sleeper(Sleeper);
  {
    SandboxCgroup cg =
        Must(SandboxCgroup::Create(l, UniqueId("st"), Limits{.pids = 4}));
    Must(cg.AttachInit(sleeper.pid()));
    Must(cg.MoveToWork(sleeper.pid()));
    sleeper.Go();
    if (l.Find(Controller::kFreezer)) Must(cg.Freeze());
    paths = cg.Paths();
    cg.Release();  // as if the runtime died here
  }
  for (const std::string& p : paths) REQUIRE(fs::is_directory(p));
  Must(RemoveStale(paths));
  int st = sleeper.Wait();
  CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL));
  for (const std::string& p : paths) CHECK_FALSE(fs::exists(p));
  // A second pass finds nothing to do.
  Must(RemoveStale(paths));
}

}  // namespace

TEST_CASE("cgroup: limits, attach, OOM, pids, remove (caller's cgroup)",
          "[cgroup][root]") {
  if (!NeedRoot()) return;
  Layout l = Must(DetectLayout());
  AttachLimitsRemove(l);
}

TEST_CASE("cgroup: the same from a nested non-root cgroup", "[cgroup][root]") {
  if (!NeedRoot()) return;
  std::string before = Slurp("/proc/self/cgroup");
  {
    NestedSelf nested;
    Layout l = Must(DetectLayout());
    for (const auto& [orig, dir] : nested.moves()) {
      bool found = false;
      for (const Hierarchy& h : l.hierarchies)
        if (h.base_dir == dir) found = true;
      INFO("nested " << dir << "\n" << l.Describe());
      CHECK(found);
    }
    AttachLimitsRemove(l);
  }
  // Back where it started (on v2, possibly in its base's airlock.self leaf).
  std::string after = Slurp("/proc/self/cgroup");
  if (after != before) {
    INFO("before:\n" << before << "after:\n" << after);
    CHECK(after.find("cgtest-") == std::string::npos);
  }
}

TEST_CASE("cgroup: a failed create leaves nothing behind", "[cgroup][root]") {
  if (!NeedRoot()) return;
  Layout l = Must(DetectLayout());
  const std::string id = UniqueId("fail");
  // The last hierarchy already has the group: creation fails there, after
  // the others were made.
  const std::string taken = l.hierarchies.back().base_dir + "/airlock-" + id;
  REQUIRE(mkdir(taken.c_str(), 0755) == 0);
  auto cg =
      SandboxCgroup::Create(l, id, Limits{.memory_bytes = 1 << 24, .pids = 4});
  REQUIRE_FALSE(cg.has_value());
  CHECK(cg.error().err == EEXIST);
  CHECK(cg.error().detail == taken);
  for (const Hierarchy& h : l.hierarchies)
    if (h.base_dir + "/airlock-" + id != taken)
      CHECK_FALSE(fs::exists(h.base_dir + "/airlock-" + id));
  CHECK(rmdir(taken.c_str()) == 0);
}

TEST_CASE("cgroup: freeze, thaw, kill", "[cgroup][root]") {
  if (!NeedRoot()) return;
  FreezeThawKill(Must(DetectLayout()));
}

TEST_CASE("cgroup: RemoveStale after a crash, even frozen", "[cgroup][root]") {
  if (!NeedRoot()) return;
  StaleAfterCrash(Must(DetectLayout()));
}

// A hybrid host without a v1 freezer hierarchy: the freezer falls to
// cgroup2 (cgroup.freeze, cgroup.events, cgroup.kill), the rest stays on v1.
// This host has one, so hide it from the parser; the v2 backend then runs
// for real in /sys/fs/cgroup/unified.
TEST_CASE("cgroup: hybrid with the freezer on cgroup2", "[cgroup][root]") {
  if (!NeedRoot()) return;
  std::istringstream in(Slurp("/proc/self/mountinfo"));
  std::string mountinfo, line;
  while (std::getline(in, line))
    if (!(line.find(" - cgroup cgroup ") != std::string::npos &&
          (line.ends_with(",freezer") ||
           line.find(",freezer,") != std::string::npos)))
      mountinfo += line + "\n";
  Layout l = Must(ParseLayout(mountinfo, Slurp("/proc/self/cgroup")));
  const Hierarchy* fz = l.Find(Controller::kFreezer);
  if (!fz || fz->version != Version::kV2 ||
      l.Find(Controller::kMemory)->version != Version::kV1) {
    WARN("SKIPPED: not a hybrid host with cgroup2 mounted\n" << l.Describe());
    return;
  }
  FreezeThawKill(l);
  StaleAfterCrash(l);
  AttachLimitsRemove(l);
}

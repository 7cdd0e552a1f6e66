// Nothing leaks: after each way a run can end — a normal exit, a timeout, an
// OOM kill, a fork bomb, a setup failure, `kill -9` of `airlock run` itself
// — no cgroup, record, id range, subvolume, mount or process of that sandbox
// is left on the host. Every run starts from a private non-root cgroup
// parent, which also names the sandboxes it made (inotify on the parent).
#include <signal.h>
#include <sys/stat.h>

#include "tests/root/helpers.h"

using namespace airlock_test;

namespace {

// The one sandbox started from `parent` since the last call.
std::string OnlySandbox(CgroupParent& parent) {
  auto ids = parent.NewSandboxIds();
  INFO("sandboxes started: " << Join(ids, ", "));
  REQUIRE(ids.size() == 1);
  return ids[0];
}

std::vector<std::string> WithTestcases(std::vector<std::string> args) {
  args.insert(args.begin(), {"--mount", TestcaseMount()});
  return args;
}

}  // namespace

TEST_CASE("leaks: normal exit", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  auto r = parent.Run({"--", "sh", "-c", "echo hello"});
  INFO(r.Describe());
  CHECK(r.status == 0);
  CHECK(r.out == "hello\n");
  RequireNoLeftovers(OnlySandbox(parent));
}

TEST_CASE("leaks: timeout", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  const std::string marker = "30." + std::to_string(getpid());
  auto r = parent.Run({"--timeout", "1s", "--", "sleep", marker});
  INFO(r.Describe());
  CHECK(r.status == 124);
  RequireNoLeftovers(OnlySandbox(parent), "sleep " + marker);
}

TEST_CASE("leaks: OOM kill", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  auto r = parent.Run(WithTestcases({"--memory", "64M", "--", "/t/memhog", "256"}));
  INFO(r.Describe());
  CHECK(r.status == 137);
  CHECK(r.err.find("OOM") != std::string::npos);
  RequireNoLeftovers(OnlySandbox(parent));
}

TEST_CASE("leaks: fork bomb in a non-root cgroup", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  auto r = parent.Run(WithTestcases({"--pids", "32", "--", "/t/forkbomb"}));
  INFO(r.Describe());
  CHECK(r.status == 42);
  CHECK(Value(r.out, "fork_errno") == "EAGAIN");
  CHECK(r.err.find("pids limit") != std::string::npos);
  RequireNoLeftovers(OnlySandbox(parent), "/t/forkbomb");
}

TEST_CASE("leaks: setup failures", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  TempDir dir;
  SECTION("a mount source that does not exist (fails before clone)") {
    auto before = StateIds();
    auto r = parent.Run({"--mount", dir / "missing" + ":/data:ro", "--", "true"});
    INFO(r.Describe());
    CHECK(r.status == 125);
    CHECK(r.err.find("ENOENT") != std::string::npos);
    // The runtime may refuse before it makes a cgroup (which would name the
    // sandbox); whatever it made must be gone.
    auto ids = parent.NewSandboxIds();
    CHECK(ids.size() <= 1);
    for (const auto& id : ids) RequireNoLeftovers(id);
    RequireNoNewUnheldState(before);
  }
  SECTION("a mount target through a symlink (fails in the sandbox child)") {
    REQUIRE(mkdir((dir / "src").c_str(), 0755) == 0);
    REQUIRE(chown((dir / "src").c_str(), 4242, 4242) == 0);
    REQUIRE(symlink("/", (dir / "src/link").c_str()) == 0);
    // The child's failure races with the parent's later setup messages.
    // Back-to-back runs (each one's detached teardown overlapping the next
    // one's cgroup step) with limits (a longer cgroup step) make the race
    // likely; every run must still name the step and the errno, and leave
    // nothing.
    std::vector<std::string> ids;
    for (int i = 0; i < 100; ++i) {
      auto r = parent.Run({"--memory", "64M", "--pids", "100", "--cpus", "1", "--mount", dir / "src" + ":/data:rw",
                           "--mount", dir.path() + ":/data/link/x:ro", "--", "true"});
      INFO("run " << i << "\n" << r.Describe());
      CHECK(r.status == 125);
      CHECK(r.err.find("step \"mounts\"") != std::string::npos);
      CHECK(r.err.find("ELOOP") != std::string::npos);
      for (const auto& id : parent.NewSandboxIds()) ids.push_back(id);
    }
    CHECK(ids.size() == 100);
    for (const auto& id : ids) RequireNoLeftovers(id);
  }
}

TEST_CASE("leaks: kill -9 of airlock run, then cleanup", "[root][leaks]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  const std::string marker = "30." + std::to_string(getpid()) + "1";
  Process p(AirlockArgv({"run", "--", "sh", "-c", "echo started; exec sleep " + marker}), parent.JoinOptions());
  REQUIRE(p.WaitForPrefix("started"));
  const std::string id = OnlySandbox(parent);
  REQUIRE(Eventually([&] { return !ProcessesOf(id, "sleep " + marker).empty(); }, 5));
  p.Signal(SIGKILL);
  auto r = p.Wait();
  INFO(r.Describe());
  CHECK(r.status == 128 + SIGKILL);
  // The sandbox dies with its runtime (init has a parent-death signal) ...
  std::vector<std::string> alive;
  CHECK(Eventually([&] { return (alive = ProcessesOf(id, "sleep " + marker)).empty(); }, 5));
  INFO("still running:\n" << Join(alive));
  // ... and the next start, or `airlock cleanup`, removes the rest.
  auto cleanup = Exec(AirlockArgv({"cleanup"}));
  INFO(cleanup.Describe());
  CHECK(cleanup.status == 0);
  RequireNoLeftovers(id, "sleep " + marker);
}

TEST_CASE("leaks: --disk bounds writes, and the subvolume goes", "[root][leaks][disk]") {
  SKIP_UNLESS_CGROUP_V1();
  CgroupParent parent;
  auto r = parent.Run({"--disk", "64M", "--", "sh", "-c",
                       "dd if=/dev/zero of=/workspace/big bs=1M count=200 conv=fsync 2>&1; echo dd_status=$?"});
  INFO(r.Describe());
  CHECK(r.status == 0);
  std::string dd_status = Value(r.out, "dd_status");
  CHECK(dd_status != "0");
  bool quota = r.out.find("Disk quota exceeded") != std::string::npos;
  bool nospace = r.out.find("No space left on device") != std::string::npos;
  CHECK((quota || nospace));
  for (const auto& l : Lines(r.out))
    if (l.rfind("dd: ", 0) == 0) WARN("dd inside a --disk 64M sandbox saw: " << l);
  // LeftoversOf covers the pool subvolume too.
  RequireNoLeftovers(OnlySandbox(parent));
}

// SandboxRecord and CleanupStaleSandboxes on a temporary state root: records
// are created whole (lock held) or not at all, as far as a concurrent
// cleanup can tell.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "runtime/launch/state.h"

using namespace airlock;

namespace {

struct TempRoot {
  RuntimePaths paths;
  TempRoot() {
    char tmpl[] = "/tmp/airlock-record-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    paths.state_root = tmpl;
    std::filesystem::create_directories(paths.SandboxesDir());
  }
  ~TempRoot() { std::filesystem::remove_all(paths.state_root); }
};

}  // namespace

TEST_CASE("a record being created is never taken for a dead run's", "[record]") {
  TempRoot root;
  // A cleaner process sweeps as fast as it can while records come and go.
  pid_t cleaner = fork();
  REQUIRE(cleaner >= 0);
  if (cleaner == 0) {
    for (;;) (void)CleanupStaleSandboxes(root.paths);
  }
  int failures = 0;
  std::string first_error;
  for (int i = 0; i < 300; ++i) {
    std::string id = "r" + std::to_string(i);
    auto r = SandboxRecord::Create(root.paths, id);
    if (!r || !r->Note("cgroup", "/nonexistent")) {
      if (failures++ == 0) first_error = r ? "note failed" : r.error().Message();
      continue;
    }
    // Whole and locked: its files are all there.
    CHECK(std::filesystem::exists(r->dir() + "/lock"));
    CHECK(std::filesystem::exists(r->dir() + "/cleanup"));
    r->Remove();
  }
  kill(cleaner, SIGKILL);
  waitpid(cleaner, nullptr, 0);
  INFO(first_error);
  CHECK(failures == 0);
}

TEST_CASE("a record's id is taken once", "[record]") {
  TempRoot root;
  auto a = SandboxRecord::Create(root.paths, "same");
  REQUIRE(a.has_value());
  auto b = SandboxRecord::Create(root.paths, "same");
  REQUIRE_FALSE(b.has_value());
  CHECK((b.error().err == EEXIST || b.error().err == ENOTEMPTY));
  // The failed attempt left no staging directory behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(root.paths.SandboxesDir())) (void)e, ++entries;
  CHECK(entries == 1);
}

// The host id-range allocator on a temporary directory: no privileges.
#include "runtime/storage/idrange.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using airlock::storage::IdAllocator;
using airlock::storage::IdRange;
using airlock::storage::IdRangeEntry;
using airlock::storage::kIdRangeSize;
using airlock::storage::kIdWindowEnd;
using airlock::storage::kIdWindowStart;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-idrange-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

bool Overlap(const IdRange& a, const IdRange& b) {
  return uint64_t{a.base} < uint64_t{b.base} + b.count &&
         uint64_t{b.base} < uint64_t{a.base} + a.count;
}

void CheckInWindow(const IdRange& r) {
  CHECK(r.count == kIdRangeSize);
  CHECK(r.base >= kIdWindowStart);
  CHECK(uint64_t{r.base} + r.count <= kIdWindowEnd);
  CHECK(r.base % kIdRangeSize == 0);
}

// An allocator whose subuid/subgid files are in the temp dir (and missing
// unless a test writes them), so the host's files don't change the results.
IdAllocator Make(const TempDir& d) {
  return IdAllocator(d.path + "/state/idranges", d.path + "/subuid",
                     d.path + "/subgid");
}

}  // namespace

TEST_CASE("distinct owners get disjoint ranges; an owner keeps its range",
          "[idrange]") {
  TempDir d;
  IdAllocator alloc = Make(d);
  std::vector<IdRange> got;
  for (const char* owner : {"sb-1", "sb-2", "sb_3", "sb.4"}) {
    auto r = alloc.Allocate(owner);
    REQUIRE(r.has_value());
    CheckInWindow(*r);
    got.push_back(*r);
  }
  for (size_t i = 0; i < got.size(); ++i)
    for (size_t j = i + 1; j < got.size(); ++j)
      CHECK_FALSE(Overlap(got[i], got[j]));
  CHECK(got[0].base == kIdWindowStart);

  auto again = alloc.Allocate("sb-2");
  REQUIRE(again.has_value());
  CHECK(again->base == got[1].base);

  // Another allocator object on the same state sees the same ranges.
  auto list = Make(d).List();
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 4);
  for (size_t i = 1; i < list->size(); ++i)
    CHECK((*list)[i - 1].range.base < (*list)[i].range.base);

  // The state dir is created private.
  struct stat st;
  REQUIRE(::stat((d.path + "/state").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("release frees a range for reuse and is idempotent", "[idrange]") {
  TempDir d;
  IdAllocator alloc = Make(d);
  auto a = alloc.Allocate("a");
  auto b = alloc.Allocate("b");
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  REQUIRE(alloc.Release("a").has_value());
  REQUIRE(alloc.Release("a").has_value());          // already gone
  REQUIRE(alloc.Release("never-had").has_value());  // unknown owner
  auto list = alloc.List();
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].owner == "b");

  auto c = alloc.Allocate("c");
  REQUIRE(c.has_value());
  CHECK(c->base == a->base);  // first fit reuses the freed block
}

TEST_CASE("an in-place rewrite one byte shorter leaves a readable file", "[idrange]") {
  // Non-durable state is rewritten in place and padded to its old length.
  // "aa" out and "c" in, on the same base, shortens the text by one byte.
  TempDir d;
  IdAllocator alloc = Make(d);
  alloc.set_durable(false);
  REQUIRE(alloc.Allocate("aa").has_value());
  REQUIRE(alloc.Allocate("bb").has_value());
  REQUIRE(alloc.Release("aa").has_value());
  REQUIRE(alloc.Allocate("c").has_value());
  auto list = alloc.List();
  REQUIRE(list.has_value());
  CHECK(list->size() == 2);
  for (int i = 0; i < 4; ++i) {  // shrink by 2, 3, ...: still readable
    REQUIRE(alloc.Release("c").has_value());
    REQUIRE(alloc.Allocate(std::string(static_cast<size_t>(i + 1), 'x')).has_value());
    REQUIRE(alloc.Release(std::string(static_cast<size_t>(i + 1), 'x')).has_value());
    REQUIRE(alloc.List().has_value());
    REQUIRE(alloc.Allocate("c").has_value());
  }
}

TEST_CASE("List of a missing state file is empty", "[idrange]") {
  TempDir d;
  auto list = Make(d).List();
  REQUIRE(list.has_value());
  CHECK(list->empty());
}

TEST_CASE("ranges in subuid and subgid are avoided", "[idrange]") {
  TempDir d;
  // subuid covers the first two candidate blocks (partially into the second);
  // subgid covers the third exactly. Malformed lines must be skipped.
  WriteText(d.path + "/subuid",
            "# comment\n"
            "alice:" +
                std::to_string(kIdWindowStart + 10) + ":" +
                std::to_string(kIdRangeSize) +
                "\n"
                "garbage line\n"
                "bob:notanumber:65536\n"
                "carol:1:2:3\n"
                "dave:100000:65536\n"
                "\n");
  WriteText(d.path + "/subgid",
            "alice:" + std::to_string(kIdWindowStart + 2 * kIdRangeSize) + ":" +
                std::to_string(kIdRangeSize) +
                "\n"
                "eve::\n");
  IdAllocator alloc = Make(d);
  auto r = alloc.Allocate("sb");
  REQUIRE(r.has_value());
  CHECK(r->base == kIdWindowStart + 3 * kIdRangeSize);
  IdRange sub_u{static_cast<uint32_t>(kIdWindowStart + 10), kIdRangeSize};
  IdRange sub_g{static_cast<uint32_t>(kIdWindowStart + 2 * kIdRangeSize),
                kIdRangeSize};
  CHECK_FALSE(Overlap(*r, sub_u));
  CHECK_FALSE(Overlap(*r, sub_g));
}

TEST_CASE("a subuid range covering the whole window leaves nothing to hand out",
          "[idrange]") {
  TempDir d;
  WriteText(d.path + "/subuid",
            "big:" + std::to_string(kIdWindowStart) + ":" +
                std::to_string(kIdWindowEnd - kIdWindowStart) + "\n");
  auto r = Make(d).Allocate("sb");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == ENOSPC);
}

TEST_CASE("concurrent allocations from 8 processes never overlap",
          "[idrange]") {
  TempDir d;
  std::vector<pid_t> kids;
  for (int i = 0; i < 8; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      IdAllocator alloc = Make(d);
      // Several rounds each to widen the window for races.
      for (int round = 0; round < 5; ++round) {
        std::string owner =
            "kid" + std::to_string(i) + "-" + std::to_string(round);
        if (!alloc.Allocate(owner)) ::_exit(1);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  auto list = Make(d).List();
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 40);
  for (size_t i = 0; i < list->size(); ++i) {
    CheckInWindow((*list)[i].range);
    for (size_t j = i + 1; j < list->size(); ++j)
      CHECK_FALSE(Overlap((*list)[i].range, (*list)[j].range));
  }
}

TEST_CASE("a corrupt state file is an error naming file and line",
          "[idrange]") {
  TempDir d;
  IdAllocator alloc = Make(d);
  REQUIRE(alloc.Allocate("good").has_value());
  const std::string state = d.path + "/state/idranges";
  const std::string base = std::to_string(kIdWindowStart + kIdRangeSize);

  struct Case {
    std::string text;
    std::string where;
  };
  std::vector<Case> cases = {
      {"# header\ngood 268435456 65536\nbad line here extra\n", ":3:"},
      {"# header\nx " + base + " abc\n", ":2:"},
      {"a 12 65536\n", ":1:"},                               // below the window
      {"a 268435456 65536\nb 268435457 65536\n", ":2:"},     // overlap
      {"a 268435456 65536\na " + base + " 65536\n", ":2:"},  // duplicate owner
      {"a/b " + base + " 65536\n", ":1:"},                   // bad owner
      {"a 268435456 65536\nb " + base + " 655", ":2:"},      // cut short
  };
  for (const auto& c : cases) {
    WriteText(state, c.text);
    auto r = alloc.Allocate("new-owner");
    REQUIRE_FALSE(r.has_value());
    INFO(r.error().Message());
    CHECK(r.error().detail.find(state + c.where) != std::string::npos);
    auto l = alloc.List();
    REQUIRE_FALSE(l.has_value());
    CHECK(l.error().detail.find(state + c.where) != std::string::npos);
    REQUIRE_FALSE(alloc.Release("good").has_value());
  }
  // Nothing was reset: the last corrupt text is still there.
  std::ifstream in(state);
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  CHECK(all == cases.back().text);
}

TEST_CASE("bad owner names are refused and named", "[idrange]") {
  TempDir d;
  IdAllocator alloc = Make(d);
  for (const std::string& bad :
       {std::string(), std::string("a/b"), std::string(".."), std::string("."),
        std::string("sp ace"), std::string(65, 'x'),
        std::string("new\nline")}) {
    auto r = alloc.Allocate(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().detail.find("owner") != std::string::npos);
    CHECK(r.error().detail.find("'" + bad + "'") != std::string::npos);
    CHECK_FALSE(alloc.Release(bad).has_value());
  }
  CHECK(alloc.Allocate(std::string(64, 'x')).has_value());
  auto list = alloc.List();
  REQUIRE(list.has_value());
  CHECK(list->size() == 1);
}

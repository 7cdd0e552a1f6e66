// ValidateSpec on SandboxSpec::seeds: every refusal names the seed's field.
#include <catch2/catch.hpp>
#include <string>

#include "runtime/spec/spec.h"

using airlock::SandboxSpec;
using airlock::SeedCopy;
using airlock::ValidateSpec;

namespace {

SeedCopy Seed(const std::string& source, const std::string& destination) {
  SeedCopy s;
  s.source = source;
  s.destination = destination;
  s.read_uid = 1000;
  s.read_gid = 1000;
  s.read_groups = {1000, 27};
  return s;
}

SandboxSpec GoodSpec() {
  SandboxSpec s;
  s.id = "seed-0123";
  s.layers = {"/var/lib/airlock/images/host/etc-layer"};
  s.image_binds = {{"/usr", "/usr"}};
  s.mounts = {{"/home/u/out", "/workspace/out", false, false}};
  s.seeds = {Seed("/home/u/proj", "/workspace/proj"), Seed("/home/u/notes.txt", "/workspace/notes.txt"),
             Seed("/srv/data", "/data")};
  s.process.argv = {"true"};
  return s;
}

// The error's detail ("seeds[1].destination: ..."), or "<valid>".
std::string ErrorOf(const SandboxSpec& s) {
  auto r = ValidateSpec(s);
  if (r) return "<valid>";
  CHECK(r.error().err == 0);
  CHECK(r.error().op == "invalid spec");
  return r.error().detail;
}

void ExpectFieldError(const SandboxSpec& s, const std::string& field, const std::string& words = "") {
  std::string detail = ErrorOf(s);
  INFO("error detail: " << detail);
  CHECK(detail.rfind(field + ": ", 0) == 0);
  if (!words.empty()) CHECK(detail.find(words) != std::string::npos);
}

}  // namespace

TEST_CASE("seeds: a typical spec is valid", "[spec][seed]") {
  auto r = ValidateSpec(GoodSpec());
  INFO((r ? std::string() : r.error().Message()));
  CHECK(r.has_value());
  SandboxSpec s = GoodSpec();
  s.seeds[0].read_uid = 0;  // a root caller
  s.seeds[0].read_gid = 0;
  s.seeds[0].read_groups.clear();
  CHECK(ValidateSpec(s).has_value());
}

TEST_CASE("seeds: source must be absolute, normalized and not /", "[spec][seed]") {
  for (const char* bad : {"", "rel", "/a/../b", "/a/", "//a", "/a/./b", "/"}) {
    INFO("\"" << bad << "\"");
    SandboxSpec s = GoodSpec();
    s.seeds[1].source = bad;
    ExpectFieldError(s, "seeds[1].source");
  }
  SandboxSpec s = GoodSpec();
  s.seeds[2].source = std::string("/a\0b", 4);
  ExpectFieldError(s, "seeds[2].source");
}

TEST_CASE("seeds: destination must be absolute, normalized, not / and not hidden", "[spec][seed]") {
  for (const char* bad : {"", "rel", "/a/../b", "/a/", "/", "/proc/x", "/dev", "/sys/fs"}) {
    INFO("\"" << bad << "\"");
    SandboxSpec s = GoodSpec();
    s.seeds[0].destination = bad;
    ExpectFieldError(s, "seeds[0].destination");
  }
  SECTION("under the sandbox's /tmp") {
    SandboxSpec s = GoodSpec();
    s.seeds[2].destination = "/tmp/x";
    ExpectFieldError(s, "seeds[2].destination", "/tmp");
    s.seeds[2].destination = "/tmpx";  // only a prefix of the name: fine
    CHECK(ErrorOf(s) == "<valid>");
  }
  SECTION("under an image bind") {
    SandboxSpec s = GoodSpec();
    s.seeds[2].destination = "/usr/local/x";
    ExpectFieldError(s, "seeds[2].destination", "image_binds[0]");
  }
  SECTION("at or under a host mount") {
    SandboxSpec s = GoodSpec();
    s.seeds[1].destination = "/workspace/out";
    ExpectFieldError(s, "seeds[1].destination", "mounts[0]");
    s.seeds[1].destination = "/workspace/out/notes.txt";
    ExpectFieldError(s, "seeds[1].destination", "mounts[0]");
    s.seeds[1].destination = "/workspace/outer";
    CHECK(ErrorOf(s) == "<valid>");
  }
  SECTION("a host mount inside a seed is fine") {
    SandboxSpec s = GoodSpec();
    s.seeds[0].destination = "/workspace";
    s.seeds[1].destination = "/notes.txt";
    CHECK(ErrorOf(s) == "<valid>");
  }
}

TEST_CASE("seeds: destinations may not overlap", "[spec][seed]") {
  SandboxSpec s = GoodSpec();
  s.seeds[2].destination = "/workspace/proj";
  ExpectFieldError(s, "seeds[2].destination", "seeds[0]");
  s.seeds[2].destination = "/workspace/proj/sub";
  ExpectFieldError(s, "seeds[2].destination", "seeds[0]");
  s.seeds[2].destination = "/workspace";
  ExpectFieldError(s, "seeds[2].destination", "seeds[0]");
  s.seeds[2].destination = "/workspace/projects";  // siblings share a parent only
  CHECK(ErrorOf(s) == "<valid>");
}

TEST_CASE("seeds: the reader's ids must be set", "[spec][seed]") {
  SandboxSpec s = GoodSpec();
  s.seeds[1].read_uid = static_cast<uid_t>(-1);
  ExpectFieldError(s, "seeds[1].read_uid");
  s = GoodSpec();
  s.seeds[1].read_gid = static_cast<gid_t>(-1);
  ExpectFieldError(s, "seeds[1].read_gid");
  s = GoodSpec();
  s.seeds[0].read_groups = {5, static_cast<gid_t>(-1)};
  ExpectFieldError(s, "seeds[0].read_groups[1]");
  SeedCopy unset;  // the defaults are refused: no reader is not root
  unset.source = "/a";
  unset.destination = "/b";
  s = GoodSpec();
  s.seeds = {unset};
  ExpectFieldError(s, "seeds[0].read_uid");
}

TEST_CASE("seeds: at most kMaxSeeds", "[spec][seed]") {
  SandboxSpec s = GoodSpec();
  s.seeds.clear();
  for (size_t i = 0; i < airlock::kMaxSeeds; ++i)
    s.seeds.push_back(Seed("/src/" + std::to_string(i), "/dst/" + std::to_string(i)));
  CHECK(ErrorOf(s) == "<valid>");
  s.seeds.push_back(Seed("/src/x", "/dst/x"));
  ExpectFieldError(s, "seeds", "at most 64");
}

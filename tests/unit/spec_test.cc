// ValidateSpec and IsNormalizedAbsolutePath: every field of a SandboxSpec is
// checked, and the error names the field that is wrong.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "runtime/spec/spec.h"

using airlock::HostMount;
using airlock::ImageBind;
using airlock::IsNormalizedAbsolutePath;
using airlock::SandboxSpec;
using airlock::ValidateSpec;

namespace {

// A spec that passes: the shape `airlock run` builds for the host image.
SandboxSpec GoodSpec() {
  SandboxSpec s;
  s.id = "run-0123abcd";
  s.layers = {"/var/lib/airlock/images/host/etc-layer"};
  s.image_binds = {{"/usr", "/usr"}};
  s.mounts = {{"/home/u/data", "/data", true, false}, {"/home/u/out", "/out", false, false}};
  s.process.argv = {"sh", "-c", "echo hi"};
  s.process.env = {"PATH=/usr/bin:/bin", "HOME=/root", "EMPTY="};
  s.process.cwd = "/";
  return s;
}

// The error's detail, which begins with the field name ("mounts[1].destination: ...").
std::string ErrorOf(const SandboxSpec& s) {
  auto r = ValidateSpec(s);
  if (r) return "<valid>";
  CHECK(r.error().err == 0);  // bad input is a logical error, not an errno
  CHECK(r.error().op == "invalid spec");
  return r.error().detail;
}

// Asserts the spec is refused and the error starts by naming `field`.
void ExpectFieldError(const SandboxSpec& s, const std::string& field) {
  std::string detail = ErrorOf(s);
  INFO("error detail: " << detail);
  CHECK(detail.rfind(field + ": ", 0) == 0);
}

}  // namespace

TEST_CASE("IsNormalizedAbsolutePath accepts normalized absolute paths", "[spec]") {
  for (const char* p : {"/", "/a", "/a/b", "/usr/local/bin", "/...", "/.a", "/a.", "/a..b", "/a b",
                        "/-", "/a:b", "/a,b"}) {
    INFO(p);
    CHECK(IsNormalizedAbsolutePath(p));
  }
}

TEST_CASE("IsNormalizedAbsolutePath refuses relative and unnormalized paths", "[spec]") {
  for (const char* p : {"", "a", "a/b", "./a", "../a", "/a/", "//", "//a", "/a//b", "/.", "/..",
                        "/./a", "/a/.", "/a/..", "/a/../b", "/a/./b", "/a/b/", " /a"}) {
    INFO("\"" << p << "\"");
    CHECK_FALSE(IsNormalizedAbsolutePath(p));
  }
  CHECK_FALSE(IsNormalizedAbsolutePath(std::string("/a\0b", 4)));
  CHECK_FALSE(IsNormalizedAbsolutePath(std::string("/\0", 2)));
}

TEST_CASE("a typical spec is valid", "[spec]") {
  auto r = ValidateSpec(GoodSpec());
  INFO((r ? std::string() : r.error().Message()));
  CHECK(r.has_value());
  SandboxSpec minimal;
  minimal.id = "a";
  minimal.layers = {"/l"};
  minimal.process.argv = {"true"};
  CHECK(ValidateSpec(minimal).has_value());
}

TEST_CASE("spec id", "[spec]") {
  SandboxSpec s = GoodSpec();
  for (const char* ok : {"a", "0", "-", "abc-123", "abcdefghijklmnopqrstuvwxyz012345"}) {
    s.id = ok;
    INFO(ok);
    CHECK(ValidateSpec(s).has_value());
  }
  for (const char* bad : {"", "A", "a_b", "a.b", "a/b", "a b", "é", "abcdefghijklmnopqrstuvwxyz0123456"}) {
    s.id = bad;
    INFO(bad);
    ExpectFieldError(s, "id");
  }
  s.id = std::string("a\0b", 3);
  ExpectFieldError(s, "id");
}

TEST_CASE("spec layers", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.layers.clear();
  ExpectFieldError(s, "layers");
  s.layers = {"/l0", "/l1", "/l2"};
  CHECK(ValidateSpec(s).has_value());
  // overlayfs takes lowerdir as "a:b" and options as "k=v,k=v": neither may appear.
  for (const char* bad : {"relative", "/l/", "/l/../x", "/a:b", "/a,b", ""}) {
    s.layers = {"/l0", bad};
    INFO(bad);
    ExpectFieldError(s, "layers[1]");
  }
}

TEST_CASE("spec image_binds", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.image_binds = {{"/usr", "/usr"}, {"usr", "/x"}};
  ExpectFieldError(s, "image_binds[1].source");
  s.image_binds = {{"/usr", "/usr"}, {"/usr/", "/x"}};
  ExpectFieldError(s, "image_binds[1].source");
  s.image_binds = {{"/usr", "usr"}};
  ExpectFieldError(s, "image_binds[0].destination");
  s.image_binds = {{"/usr", "/"}};
  ExpectFieldError(s, "image_binds[0].destination");
  s.image_binds = {{"/usr", "/proc/x"}};
  ExpectFieldError(s, "image_binds[0].destination");
}

TEST_CASE("spec mounts: sources and destinations", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.mounts[1].source = "rel/dir";
  ExpectFieldError(s, "mounts[1].source");
  s = GoodSpec();
  s.mounts[1].source = "/home/u/../../etc";
  ExpectFieldError(s, "mounts[1].source");
  s = GoodSpec();
  s.mounts[1].destination = "/a/../b";
  ExpectFieldError(s, "mounts[1].destination");
  CHECK(ErrorOf(s).find("/a/../b") != std::string::npos);  // the value is quoted
  s.mounts[1].destination = "out";
  ExpectFieldError(s, "mounts[1].destination");
  s.mounts[1].destination = "/out/";
  ExpectFieldError(s, "mounts[1].destination");
  s.mounts[1].destination = "/";
  ExpectFieldError(s, "mounts[1].destination");
}

TEST_CASE("spec mounts: the pseudo filesystems are reserved", "[spec]") {
  SandboxSpec s = GoodSpec();
  for (const char* bad : {"/proc", "/proc/sys", "/proc/1/root", "/dev", "/dev/shm", "/dev/pts/0", "/sys",
                          "/sys/fs/cgroup"}) {
    s.mounts[0].destination = bad;
    INFO(bad);
    ExpectFieldError(s, "mounts[0].destination");
  }
  // Only the directories themselves and what is under them.
  for (const char* ok : {"/procfs", "/devices", "/system", "/x/proc", "/x/dev", "/tmp"}) {
    s.mounts[0].destination = ok;
    INFO(ok);
    CHECK(ValidateSpec(s).has_value());
  }
}

TEST_CASE("spec mounts: duplicates and allow_root_owner", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.mounts.push_back({"/home/u/other", "/data", true, false});
  ExpectFieldError(s, "mounts[2].destination");
  CHECK(ErrorOf(s).find("mounts[0]") != std::string::npos);  // names the earlier one

  s = GoodSpec();
  s.mounts[0].allow_root_owner = true;  // mounts[0] is read-only
  ExpectFieldError(s, "mounts[0].allow_root_owner");
  s.mounts[0].read_only = false;
  CHECK(ValidateSpec(s).has_value());
}

TEST_CASE("spec process.argv", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.process.argv.clear();
  ExpectFieldError(s, "process.argv");
  s.process.argv = {""};
  ExpectFieldError(s, "process.argv[0]");
  s.process.argv = {"sh", "", "x"};  // empty later arguments are fine
  CHECK(ValidateSpec(s).has_value());
  s.process.argv = {"sh", "-c", std::string("a\0b", 3)};
  ExpectFieldError(s, "process.argv[2]");
}

TEST_CASE("spec process.env", "[spec]") {
  SandboxSpec s = GoodSpec();
  for (const std::string& bad : {std::string("NOEQUALS"), std::string("=v"), std::string(""),
                                std::string("K=a\0b", 5)}) {
    s.process.env = {"A=1", "B=2", bad};
    INFO(bad);
    ExpectFieldError(s, "process.env[2]");
  }
  s.process.env = {"A==", "B=c=d", "C="};
  CHECK(ValidateSpec(s).has_value());
}

TEST_CASE("spec process.cwd, uid, gid, groups", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.process.cwd = "work";
  ExpectFieldError(s, "process.cwd");
  s.process.cwd = "/work/";
  ExpectFieldError(s, "process.cwd");
  s.process.cwd = "/work/dir";
  CHECK(ValidateSpec(s).has_value());

  s = GoodSpec();
  s.process.uid = 65535;
  s.process.gid = 65535;
  s.process.groups = {0, 65535};
  CHECK(ValidateSpec(s).has_value());
  s.process.uid = 65536;
  ExpectFieldError(s, "process.uid");
  s.process.uid = 1000;
  s.process.gid = 65536;
  ExpectFieldError(s, "process.gid");
  s.process.gid = static_cast<gid_t>(-1);
  ExpectFieldError(s, "process.gid");
  s.process.gid = 1000;
  s.process.groups = {1, 2, 70000};
  ExpectFieldError(s, "process.groups[2]");
}

TEST_CASE("spec hostname", "[spec]") {
  SandboxSpec s = GoodSpec();
  for (const std::string& ok : {std::string("a"), std::string("my-box.local"), std::string("UPPER9"),
                               std::string(64, 'h')}) {
    s.hostname = ok;
    INFO(ok);
    CHECK(ValidateSpec(s).has_value());
  }
  for (const std::string& bad : {std::string(""), std::string(65, 'h'), std::string("a b"),
                                std::string("a_b"), std::string("a/b"), std::string("a\0b", 3)}) {
    s.hostname = bad;
    INFO(bad);
    ExpectFieldError(s, "hostname");
  }
}

TEST_CASE("spec limits", "[spec]") {
  SandboxSpec s = GoodSpec();
  SECTION("memory") {
    s.limits.memory_bytes = 4u << 20;
    CHECK(ValidateSpec(s).has_value());
    s.limits.memory_bytes = (4u << 20) - 1;
    ExpectFieldError(s, "limits.memory");
    s.limits.memory_bytes = 0;
    ExpectFieldError(s, "limits.memory");
  }
  SECTION("pids") {
    for (uint64_t ok : {2ull, 100ull, 4194304ull}) {
      s.limits.pids = ok;
      CHECK(ValidateSpec(s).has_value());
    }
    for (uint64_t bad : {0ull, 1ull, 4194305ull, ~0ull}) {
      s.limits.pids = bad;
      INFO(bad);
      ExpectFieldError(s, "limits.pids");
    }
  }
  SECTION("cpus") {
    for (double ok : {0.01, 0.5, 1.0, 1024.0}) {
      s.limits.cpus = ok;
      INFO(ok);
      CHECK(ValidateSpec(s).has_value());
    }
    for (double bad : {0.0, 0.009, -1.0, 1024.5, std::numeric_limits<double>::infinity(),
                       std::numeric_limits<double>::quiet_NaN()}) {
      s.limits.cpus = bad;
      INFO(bad);
      ExpectFieldError(s, "limits.cpus");
    }
  }
  SECTION("disk") {
    s.limits.disk_bytes = 16u << 20;
    CHECK(ValidateSpec(s).has_value());
    s.limits.disk_bytes = (16u << 20) - 1;
    ExpectFieldError(s, "limits.disk");
  }
  SECTION("nofile") {
    for (uint64_t ok : {16ull, 1024ull, 1048576ull}) {
      s.limits.nofile = ok;
      CHECK(ValidateSpec(s).has_value());
    }
    for (uint64_t bad : {0ull, 15ull, 1048577ull}) {
      s.limits.nofile = bad;
      INFO(bad);
      ExpectFieldError(s, "limits.nofile");
    }
  }
  SECTION("no limit at all is valid") {
    s.limits = {};
    CHECK(ValidateSpec(s).has_value());
  }
}

TEST_CASE("spec timeout and seccomp profile", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.timeout = std::chrono::milliseconds(-1);
  ExpectFieldError(s, "timeout");
  s.timeout = std::chrono::milliseconds(0);
  CHECK(ValidateSpec(s).has_value());
  s.timeout = std::chrono::hours(24);
  CHECK(ValidateSpec(s).has_value());

  s.seccomp_profile = "";
  ExpectFieldError(s, "seccomp");
  s.seccomp_profile = "/etc/airlock/custom.json";
  CHECK(ValidateSpec(s).has_value());
}

TEST_CASE("the error message reads field: problem", "[spec]") {
  SandboxSpec s = GoodSpec();
  s.mounts[1].destination = "/a/../b";
  auto r = ValidateSpec(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().Message() == "invalid spec: mounts[1].destination: must be absolute and normalized (got \"/a/../b\")");
}

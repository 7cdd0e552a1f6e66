// `airlock run` option parsing (harness/cli/options.h) and --user lookup in
// an image's passwd (harness/cli/users.h).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "harness/cli/options.h"
#include "harness/cli/users.h"

using airlock::HostMount;
using airlock::cli::LookupPasswd;
using airlock::cli::ParseDuration;
using airlock::cli::ParseMount;
using airlock::cli::ParseRunOptions;
using airlock::cli::ParseSize;
using airlock::cli::ResolveUser;
using airlock::cli::RunOptions;
using Args = std::vector<std::string>;
using namespace std::chrono_literals;

namespace {

RunOptions Parse(const Args& args) {
  auto r = ParseRunOptions(args);
  INFO((r ? std::string() : r.error().Message()));
  REQUIRE(r.has_value());
  return std::move(*r);
}

// Parsing fails, and the message names `option`.
std::string ParseError(const Args& args, const std::string& option) {
  auto r = ParseRunOptions(args);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == 0);
  std::string detail = r.error().detail;
  INFO("error: " << detail);
  CHECK(detail.rfind(option + ": ", 0) == 0);
  return detail;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-cli-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void Write(const std::string& rel, const std::string& text) const {
    std::filesystem::create_directories(std::filesystem::path(path + "/" + rel).parent_path());
    std::ofstream out(path + "/" + rel, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
};

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;

}  // namespace

TEST_CASE("cli: defaults", "[cli]") {
  RunOptions o = Parse({"ls"});
  CHECK(o.image == "host");
  CHECK(o.mounts.empty());
  CHECK_FALSE(o.workspace.has_value());
  CHECK(o.env.empty());
  CHECK_FALSE(o.limits.memory_bytes);
  CHECK_FALSE(o.limits.pids);
  CHECK_FALSE(o.limits.cpus);
  CHECK_FALSE(o.limits.disk_bytes);
  CHECK(o.timeout == 0ms);
  CHECK(o.seccomp == "default");
  CHECK(o.hostname == "sandbox");
  CHECK_FALSE(o.user.has_value());
  CHECK(o.argv == Args{"ls"});
}

TEST_CASE("cli: every option in both --opt v and --opt=v forms", "[cli]") {
  const Args separate = {"--image", "debian",      "--mount", "/srv/a:/a",  "-v",      "/srv/b:/b:rw",
                         "--env",   "A=1",         "-e",      "B=x=y",      "--memory", "512M",
                         "--pids",  "100",         "--cpus",  "1.5",        "--disk",  "2G",
                         "--timeout", "30s",       "--seccomp", "strict",   "--net",   "none",
                         "--hostname", "box",      "--user",  "1000",       "--workspace", "/home/u/proj",
                         "--",      "make",        "-j4"};
  const Args joined = {"--image=debian", "--mount=/srv/a:/a", "-v=/srv/b:/b:rw", "--env=A=1", "-e=B=x=y",
                       "--memory=512M", "--pids=100", "--cpus=1.5", "--disk=2G", "--timeout=30s",
                       "--seccomp=strict", "--net=none", "--hostname=box", "--user=1000",
                       "--workspace=/home/u/proj", "--", "make", "-j4"};
  for (const Args& args : {separate, joined}) {
    INFO(args[0]);
    RunOptions o = Parse(args);
    CHECK(o.image == "debian");
    REQUIRE(o.mounts.size() == 3);
    // The workspace first: a --mount inside it must land on top of it.
    CHECK(o.mounts[0].source == "/home/u/proj");
    CHECK(o.mounts[0].destination == "/workspace");
    CHECK_FALSE(o.mounts[0].read_only);
    CHECK(o.mounts[1].source == "/srv/a");
    CHECK(o.mounts[1].destination == "/a");
    CHECK(o.mounts[1].read_only);
    CHECK(o.mounts[2].source == "/srv/b");
    CHECK_FALSE(o.mounts[2].read_only);
    CHECK(o.workspace == "/home/u/proj");
    CHECK(o.env == Args{"A=1", "B=x=y"});
    CHECK(o.limits.memory_bytes == 512 * kMiB);
    CHECK(o.limits.pids == 100u);
    CHECK(o.limits.cpus == 1.5);
    CHECK(o.limits.disk_bytes == 2 * kGiB);
    CHECK(o.timeout == 30s);
    CHECK(o.seccomp == "strict");
    CHECK(o.hostname == "box");
    CHECK(o.user == "1000");
    CHECK(o.argv == Args{"make", "-j4"});
  }
  // The short forms of --memory and --user.
  RunOptions o = Parse({"-m", "1G", "-u", "nobody", "id"});
  CHECK(o.limits.memory_bytes == kGiB);
  CHECK(o.user == "nobody");
  o = Parse({"-m=64M", "-u=0", "id"});
  CHECK(o.limits.memory_bytes == 64 * kMiB);
  CHECK(o.user == "0");
}

TEST_CASE("cli: where the command starts", "[cli]") {
  SECTION("after --") {
    CHECK(Parse({"--memory", "1G", "--", "ls", "-l"}).argv == Args{"ls", "-l"});
    // Everything after -- is the command's, options included.
    CHECK(Parse({"--", "--memory", "1G"}).argv == Args{"--memory", "1G"});
    CHECK(Parse({"--", "--"}).argv == Args{"--"});
  }
  SECTION("at the first non-option, without --") {
    RunOptions o = Parse({"--memory", "1G", "ls", "-l", "--memory", "2G", "--"});
    CHECK(o.argv == Args{"ls", "-l", "--memory", "2G", "--"});
    CHECK(o.limits.memory_bytes == kGiB);
  }
  SECTION("no command") {
    ParseError({}, "command");
    ParseError({"--"}, "command");
    ParseError({"--memory", "1G"}, "command");
    ParseError({"--memory", "1G", "--"}, "command");
  }
}

TEST_CASE("cli: errors name the option", "[cli]") {
  ParseError({"--frobnicate", "ls"}, "--frobnicate");
  ParseError({"--memoryx=1G", "ls"}, "--memoryx=1G");
  ParseError({"-x", "ls"}, "-x");
  ParseError({"--memory"}, "--memory");  // needs a value
  ParseError({"--image"}, "--image");
  ParseError({"--memory", "lots", "ls"}, "--memory");
  ParseError({"-m", "lots", "ls"}, "--memory");
  ParseError({"--memory=12Q", "ls"}, "--memory");
  ParseError({"--disk", "big", "ls"}, "--disk");
  ParseError({"--pids", "many", "ls"}, "--pids");
  ParseError({"--pids=", "ls"}, "--pids");
  ParseError({"--pids", "10x", "ls"}, "--pids");
  ParseError({"--cpus", "two", "ls"}, "--cpus");
  ParseError({"--cpus", "", "ls"}, "--cpus");
  ParseError({"--timeout", "forever", "ls"}, "--timeout");
  ParseError({"--timeout=10y", "ls"}, "--timeout");
  ParseError({"--net", "host", "ls"}, "--net");
  ParseError({"--env", "NOEQUALS", "ls"}, "--env");
  ParseError({"--env", "=v", "ls"}, "--env");
  ParseError({"-e", "X", "ls"}, "--env");
  ParseError({"--mount", "/a", "ls"}, "--mount");
  ParseError({"-v", "rel:/a", "ls"}, "--mount");
  ParseError({"--workspace", "proj", "ls"}, "--workspace");
  ParseError({"--workspace=/home/u/", "ls"}, "--workspace");
}

TEST_CASE("cli: --workspace is a read-write mount at /workspace", "[cli]") {
  RunOptions o = Parse({"--workspace", "/home/u/proj", "--mount", "/srv/data:/data", "ls"});
  REQUIRE(o.mounts.size() == 2);
  const HostMount& w = o.mounts.front();
  CHECK(w.source == "/home/u/proj");
  CHECK(w.destination == "/workspace");
  CHECK_FALSE(w.read_only);
  CHECK_FALSE(w.allow_root_owner);
  // A --mount of its own at /workspace conflicts, in either order.
  CHECK(ParseError({"--workspace", "/p", "--mount", "/q:/workspace:rw", "ls"}, "--workspace").find("/workspace") !=
        std::string::npos);
  ParseError({"-v", "/q:/workspace", "--workspace=/p", "ls"}, "--workspace");
  // The last --workspace wins; it is one mount.
  o = Parse({"--workspace", "/a", "--workspace", "/b", "ls"});
  REQUIRE(o.mounts.size() == 1);
  CHECK(o.mounts[0].source == "/b");
}

// --workspace is appended after every --mount, and mounts are attached in
// order: a --mount under /workspace is attached first and then covered by the
// workspace mount, so the command never sees it (and nothing says so).
TEST_CASE("cli: a --mount inside /workspace is not hidden by the workspace", "[cli]") {
  auto r = ParseRunOptions({"--workspace", "/home/u/proj", "--mount", "/srv/cache:/workspace/cache", "ls"});
  if (!r) {
    SUCCEED("refused: " << r.error().Message());
    return;
  }
  int ws = -1, inner = -1;
  for (size_t i = 0; i < r->mounts.size(); ++i) {
    if (r->mounts[i].destination == "/workspace") ws = static_cast<int>(i);
    if (r->mounts[i].destination == "/workspace/cache") inner = static_cast<int>(i);
  }
  REQUIRE(ws >= 0);
  REQUIRE(inner >= 0);
  CHECK(ws < inner);
}

TEST_CASE("cli: ParseSize", "[cli]") {
  auto size = [](const std::string& v) {
    auto r = ParseSize("--memory", v);
    INFO(v << ": " << (r ? std::string() : r.error().Message()));
    REQUIRE(r.has_value());
    return *r;
  };
  CHECK(size("512M") == 512 * kMiB);
  CHECK(size("512m") == 512 * kMiB);
  CHECK(size("2G") == 2 * kGiB);
  CHECK(size("1.5G") == 3 * kGiB / 2);
  CHECK(size("1024") == 1024);
  CHECK(size("0") == 0);
  CHECK(size("64K") == 64 * 1024);
  CHECK(size("1T") == 1024 * kGiB);
  CHECK(size("100B") == 100);
  CHECK(size("512Mi") == 512 * kMiB);
  CHECK(size("512MB") == 512 * kMiB);
  CHECK(size("0.5K") == 512);
  for (const char* bad : {"", "M", "G1", "-1M", "-1", "10X", "10MX", "1 G", "1GG", "1e400", "nan", "inf",
                          "99999999999T", "12Q", "1.5.5G"}) {
    auto r = ParseSize("--disk", bad);
    INFO("\"" << bad << "\"");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().detail.rfind("--disk: ", 0) == 0);
  }
}

TEST_CASE("cli: ParseDuration", "[cli]") {
  auto dur = [](const std::string& v) {
    auto r = ParseDuration("--timeout", v);
    INFO(v << ": " << (r ? std::string() : r.error().Message()));
    REQUIRE(r.has_value());
    return *r;
  };
  CHECK(dur("30s") == 30s);
  CHECK(dur("500ms") == 500ms);
  CHECK(dur("2m") == 2min);
  CHECK(dur("1h") == 1h);
  CHECK(dur("10") == 10s);
  CHECK(dur("1.5s") == 1500ms);
  CHECK(dur("0.5m") == 30s);
  CHECK(dur("1d") == 24h);
  CHECK(dur("0") == 0ms);
  for (const char* bad : {"", "s", "ms", "-5s", "-1", "10y", "10 s", "10S", "1sec", "5mss", "inf", "nan",
                          "1e400", "1e13"}) {
    auto r = ParseDuration("--timeout", bad);
    INFO("\"" << bad << "\"");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().detail.rfind("--timeout: ", 0) == 0);
  }
}

TEST_CASE("cli: ParseMount", "[cli]") {
  SECTION("read-only by default") {
    auto m = ParseMount("/srv/data:/data");
    REQUIRE(m.has_value());
    CHECK(m->source == "/srv/data");
    CHECK(m->destination == "/data");
    CHECK(m->read_only);
    CHECK_FALSE(m->allow_root_owner);
    m = ParseMount("/srv/data:/data:ro");
    REQUIRE(m.has_value());
    CHECK(m->read_only);
  }
  SECTION("rw and allow-root") {
    auto m = ParseMount("/srv/out:/out:rw");
    REQUIRE(m.has_value());
    CHECK_FALSE(m->read_only);
    CHECK_FALSE(m->allow_root_owner);
    m = ParseMount("/srv/out:/out:rw,allow-root");
    REQUIRE(m.has_value());
    CHECK_FALSE(m->read_only);
    CHECK(m->allow_root_owner);
    m = ParseMount("/srv/out:/out:allow-root,rw");
    REQUIRE(m.has_value());
    CHECK(m->allow_root_owner);
  }
  SECTION("refused") {
    for (const char* bad : {"/srv/out:/out:allow-root", "/srv/out:/out:ro,allow-root", "/srv/out:/out:rw,exec",
                            "/srv/out:/out:", "/srv/out:/out:rw,", "/srv/out:/out:ro,rw", "/srv/out:/out:rw:x",
                            "/srv/out", "", "srv/out:/out", "/srv/out:out", "/srv/../etc:/out", "/srv/out:/out/",
                            "/srv/out:", ":/out", "/srv//out:/out", "/srv/out:/a/./b"}) {
      auto m = ParseMount(bad);
      INFO("\"" << bad << "\"");
      REQUIRE_FALSE(m.has_value());
      CHECK(m.error().detail.rfind("--mount: ", 0) == 0);
    }
    auto m = ParseMount("/srv/out:/out:rw,bogus");
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().detail.find("bogus") != std::string::npos);
    m = ParseMount("/srv/out:/out:allow-root");
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().detail.find("rw") != std::string::npos);
  }
}

TEST_CASE("cli: LookupPasswd", "[cli]") {
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n"
      "# a comment line\n"
      "\n"
      "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
      "broken:x:5\n"
      "nohome:x:1001:1002:::/bin/sh\n"
      "1234:x:4321:4321:numeric name:/home/n:/bin/sh\n"
      "dev:x:1000:1000:Dev,,,:/home/dev:/bin/bash";  // no final newline
  SECTION("by name") {
    auto u = LookupPasswd(passwd, "dev");
    REQUIRE(u.has_value());
    CHECK(u->uid == 1000);
    CHECK(u->gid == 1000);
    CHECK(u->home == "/home/dev");
    u = LookupPasswd(passwd, "root");
    REQUIRE(u.has_value());
    CHECK(u->uid == 0);
    CHECK(u->home == "/root");
    u = LookupPasswd(passwd, "nohome");
    REQUIRE(u.has_value());
    CHECK(u->uid == 1001);
    CHECK(u->gid == 1002);
    CHECK(u->home == "/");
  }
  SECTION("by number") {
    auto u = LookupPasswd(passwd, "1");
    REQUIRE(u.has_value());
    CHECK(u->uid == 1);
    CHECK(u->home == "/usr/sbin");
    // A number is a uid, never a name.
    u = LookupPasswd(passwd, "1234");
    REQUIRE(u.has_value());
    CHECK(u->uid == 1234);
    CHECK(u->gid == 1234);
    CHECK(u->home == "/");
  }
  SECTION("a number not in passwd is used as is") {
    auto u = LookupPasswd(passwd, "2000");
    REQUIRE(u.has_value());
    CHECK(u->uid == 2000);
    CHECK(u->gid == 2000);
    CHECK(u->home == "/");
    u = LookupPasswd("", "65535");
    REQUIRE(u.has_value());
    CHECK(u->uid == 65535);
  }
  SECTION("refused") {
    auto u = LookupPasswd(passwd, "nobody");
    REQUIRE_FALSE(u.has_value());
    CHECK(u.error().detail.find("--user") != std::string::npos);
    CHECK(u.error().detail.find("nobody") != std::string::npos);
    CHECK_FALSE(LookupPasswd(passwd, "65536"));
    CHECK_FALSE(LookupPasswd(passwd, "99999999999999999999999"));
    CHECK_FALSE(LookupPasswd(passwd, "broken"));  // a short line is no entry
    CHECK_FALSE(LookupPasswd(passwd, "-1"));
    CHECK_FALSE(LookupPasswd(passwd, ""));
    CHECK_FALSE(LookupPasswd("", "root"));
  }
}

// A passwd entry whose uid or gid is not a number is parsed with strtoul
// and becomes 0: the command would run as root instead of being refused.
TEST_CASE("cli: LookupPasswd refuses an entry whose ids are not numbers", "[cli]") {
  CHECK_FALSE(LookupPasswd("app:x:abc:100::/home/app:/bin/sh\n", "app").has_value());
  CHECK_FALSE(LookupPasswd("app:x:100:::/home/app:/bin/sh\n", "app").has_value());
}

TEST_CASE("cli: ResolveUser reads the uppermost layer's passwd", "[cli]") {
  TempDir top, base, empty;
  base.Write("etc/passwd", "dev:x:1000:1000::/home/dev:/bin/sh\n");
  top.Write("etc/passwd", "dev:x:2000:2000::/home/dev2:/bin/sh\n");
  auto u = ResolveUser({empty.path, top.path, base.path}, "dev");
  REQUIRE(u.has_value());
  CHECK(u->uid == 2000);
  u = ResolveUser({empty.path, base.path}, "dev");
  REQUIRE(u.has_value());
  CHECK(u->uid == 1000);
  CHECK_FALSE(ResolveUser({empty.path}, "dev"));
  u = ResolveUser({empty.path}, "42");
  REQUIRE(u.has_value());
  CHECK(u->uid == 42);
}

// Decision 2: paths inside an image are resolved beneath it, never through
// its symlinks. ResolveUser opens LAYER/etc/passwd by path with only
// O_NOFOLLOW (the last component), so a layer whose etc is a symlink to a
// host directory has the CLI read the host's file instead.
TEST_CASE("cli: ResolveUser doesn't follow a layer's symlinks out of it", "[cli]") {
  TempDir layer, host;
  host.Write("etc/passwd", "dev:x:4242:4242::/home/hostdev:/bin/sh\n");
  REQUIRE(symlink((host.path + "/etc").c_str(), (layer.path + "/etc").c_str()) == 0);
  auto u = ResolveUser({layer.path}, "dev");
  if (u) CHECK(u->uid != 4242);
}

// Recipes (images/build/recipe.h), the host mirror lookup
// (images/build/apt_sources.h), layer flattening (images/store/flatten.h)
// and the progress output (images/build/progress.h): no privileges.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "images/build/apt_sources.h"
#include "images/build/progress.h"
#include "images/build/recipe.h"
#include "images/store/flatten.h"

namespace fs = std::filesystem;
namespace b = airlock::images::build;

namespace {

std::string Err(const std::string& text) {
  auto r = b::ParseRecipe("t", text);
  REQUIRE_FALSE(r.has_value());
  return r.error().Message();
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/recipe-test-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(path, ec)) fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
};

void Write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("the shipped recipes parse", "[recipe]") {
  for (const char* name : {"debian-bookworm", "python", "node"}) {
    auto r = b::LoadRecipe(std::string(AIRLOCK_SOURCE_DIR) + "/images", name);
    INFO(name << ": " << (r ? "" : r.error().Message()));
    REQUIRE(r.has_value());
    CHECK(r->name == name);
  }
  auto py = b::LoadRecipe(std::string(AIRLOCK_SOURCE_DIR) + "/images", "python");
  REQUIRE(py);
  CHECK(py->from == "debian-bookworm");
  REQUIRE(py->steps.size() >= 1);
  CHECK(py->steps[0].kind == b::Step::Kind::kPackages);
  auto deb = b::LoadRecipe(std::string(AIRLOCK_SOURCE_DIR) + "/images", "debian-bookworm");
  REQUIRE(deb);
  REQUIRE(deb->base);
  CHECK(deb->base->suite == "bookworm");
  CHECK(deb->base->variant == "minbase");
}

TEST_CASE("a recipe parses into base, steps and config", "[recipe]") {
  auto r = b::ParseRecipe("x", R"({
    "description": "d",
    "base": {"suite": "bookworm", "variant": "apt", "components": ["main", "contrib"], "include": ["ca-certificates"]},
    "steps": [{"packages": ["python3", "nodejs=18.19.0+dfsg-6~deb12u1"]},
              {"run": "echo hi > /x", "env": ["A=1"], "timeout": 60}],
    "config": {"env": ["K=V"], "workdir": "/w", "user": "1000", "cmd": ["bash"], "labels": {"a": "b"}}
  })");
  REQUIRE(r.has_value());
  REQUIRE(r->base);
  CHECK(r->base->variant == "apt");
  CHECK(r->base->components == std::vector<std::string>{"main", "contrib"});
  CHECK(r->base->include == std::vector<std::string>{"ca-certificates"});
  REQUIRE(r->steps.size() == 2);
  CHECK(r->steps[0].packages.size() == 2);
  CHECK(r->steps[1].run == "echo hi > /x");
  CHECK(r->steps[1].timeout_seconds == 60);
  CHECK(r->config.workdir == "/w");
  // The canonical text sorts keys: the cache key doesn't depend on layout.
  auto again = b::ParseRecipe("x", R"({"base": {}, "steps": [{"timeout": 60, "env": ["A=1"], "run": "echo hi > /x"}]})");
  REQUIRE(again);
  CHECK(again->steps[0].canonical == r->steps[1].canonical);
  CHECK(again->base->suite == "bookworm");  // defaults
  CHECK(again->base->variant == "minbase");
}

TEST_CASE("recipe errors name the field", "[recipe]") {
  CHECK_THAT(Err("[1]"), Catch::Contains("must be a JSON object"));
  CHECK_THAT(Err("{"), Catch::Contains("not valid JSON"));
  CHECK_THAT(Err(R"({"steps": []})"), Catch::Contains("base: give exactly one of"));
  CHECK_THAT(Err(R"({"base": {}, "from": "x"})"), Catch::Contains("base: give exactly one of"));
  CHECK_THAT(Err(R"({"base": {}, "stpes": []})"), Catch::Contains("stpes: unknown field"));
  CHECK_THAT(Err(R"({"base": {"suite": "bookworm; rm -rf /"}})"), Catch::Contains("base.suite:"));
  CHECK_THAT(Err(R"({"base": {"variant": "huge"}})"), Catch::Contains("base.variant:"));
  CHECK_THAT(Err(R"({"base": {"components": []}})"), Catch::Contains("base.components:"));
  CHECK_THAT(Err(R"({"base": {"include": ["ok", "Bad Name"]}})"), Catch::Contains("base.include[1]:"));
  CHECK_THAT(Err(R"({"base": {"mirror": "http://x"}})"), Catch::Contains("base.mirror: unknown field"));
  CHECK_THAT(Err(R"({"base": {}, "steps": {}})"), Catch::Contains("steps: must be an array"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "a", "packages": ["b"]}]})"),
             Catch::Contains("steps[0]: needs exactly one of"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "true"}, {}]})"), Catch::Contains("steps[1]: needs exactly one"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"packages": []}]})"), Catch::Contains("steps[0].packages: is empty"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"packages": ["ok", "-o=evil"]}]})"),
             Catch::Contains("steps[0].packages[1]:"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"packages": [3]}]})"), Catch::Contains("steps[0].packages[0]: must be a string"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "  "}]})"), Catch::Contains("steps[0].run: is empty"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "x", "timeout": -1}]})"), Catch::Contains("steps[0].timeout:"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "x", "env": ["NOEQUALS"]}]})"), Catch::Contains("steps[0].env[0]:"));
  CHECK_THAT(Err(R"({"base": {}, "steps": [{"run": "x", "shell": "bash"}]})"),
             Catch::Contains("steps[0].shell: unknown field"));
  CHECK_THAT(Err(R"({"base": {}, "config": {"workdir": "rel"}})"), Catch::Contains("config.workdir:"));
  CHECK_THAT(Err(R"({"base": {}, "config": {"labels": {"a": 1}}})"), Catch::Contains("config.labels.a:"));
  CHECK_THAT(Err(R"({"base": {}, "config": {"entrypoint": "sh"}})"), Catch::Contains("config.entrypoint:"));
  CHECK_THAT(Err(R"({"from": "Bad/Name"})"), Catch::Contains("from:"));
  CHECK_THAT(Err(R"({"from": "t"})"), Catch::Contains("from: a recipe can't build from itself"));
  // Every error names the recipe.
  CHECK_THAT(Err(R"({"from": "t"})"), Catch::StartsWith("recipe t:"));
}

TEST_CASE("package specs", "[recipe]") {
  for (const char* ok : {"python3", "g++", "libstdc++6", "nodejs=18.19.0+dfsg-6~deb12u1", "foo/bookworm-backports",
                         "a0", "1password"})
    CHECK(b::IsValidPackageSpec(ok));
  for (const char* bad : {"", "a", "Python", "-o", "--reinstall", "a b", "a;b", "a=", "a=$(x)", "../x", "a/"})
    CHECK_FALSE(b::IsValidPackageSpec(bad));
}

TEST_CASE("LoadRecipe reads NAME/recipe.json and refuses bad names", "[recipe]") {
  TempDir t;
  Write(t.path + "/mine/recipe.json", R"({"base": {}, "steps": [{"run": "true"}]})");
  auto r = b::LoadRecipe(t.path, "mine");
  REQUIRE(r);
  CHECK(r->steps.size() == 1);
  auto missing = b::LoadRecipe(t.path, "other");
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().Message(), Catch::Contains("no recipe " + t.path + "/other/recipe.json"));
  auto bad = b::LoadRecipe(t.path, "../etc");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().Message(), Catch::Contains("not a valid recipe name"));
}

TEST_CASE("ApplyConfig overrides by field and env by key", "[recipe]") {
  airlock::images::ImageConfig parent;
  parent.env = {"PATH=/bin", "LANG=C"};
  parent.workdir = "/";
  parent.cmd = {"bash"};
  b::ConfigPatch p;
  p.env = {"PATH=/opt/bin:/bin", "X=1"};
  p.cmd = std::vector<std::string>{"python3"};
  p.labels["k"] = "v";
  auto c = b::ApplyConfig(parent, p);
  CHECK(c.env == std::vector<std::string>{"LANG=C", "PATH=/opt/bin:/bin", "X=1"});
  CHECK(c.workdir == "/");
  CHECK(c.cmd == std::vector<std::string>{"python3"});
  CHECK(c.labels["k"] == "v");
}

TEST_CASE("the host mirror: one-line and deb822 sources", "[recipe][apt]") {
  auto one = b::ParseOneLineSources(
      "# comment\n"
      "deb-src http://src.example/debian bookworm main\n"
      "deb http://sec.example/debian-security bookworm-security main\n"
      "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib # trailing\n"
      "deb http://second.example/debian bookworm main\n",
      "f");
  REQUIRE(one.size() == 2);
  CHECK(one[0].uri == "http://mirror.example/debian");
  CHECK(one[0].signed_by == "/k.gpg");
  CHECK(b::ParseOneLineSources("deb http://x/debian bookworm contrib\n", "f").empty());

  auto d = b::ParseDeb822Sources(
      "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
      "Types: deb deb-src\n"
      "URIs: http://internal.example/debian\n"
      "Suites: bookworm bookworm-updates\n"
      "Components: main\n"
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
      "Types: deb\nURIs: http://internal.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
      "f");
  REQUIRE(d.size() == 1);
  CHECK(d[0].uri == "http://internal.example/debian");
  CHECK(d[0].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg");

  TempDir t;
  auto none = b::HostMirror(t.path);
  REQUIRE_FALSE(none);
  CHECK_THAT(none.error().Message(), Catch::Contains("--mirror"));
  // sources.list.d in name order, .list and .sources alike; an empty
  // sources.list is skipped.
  Write(t.path + "/etc/apt/sources.list", "# nothing\n");
  Write(t.path + "/etc/apt/sources.list.d/b.list", "deb http://b.example/debian bookworm main\n");
  Write(t.path + "/etc/apt/sources.list.d/a.sources",
        "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\n");
  Write(t.path + "/etc/apt/sources.list.d/c.list.disabled", "deb http://c.example/debian bookworm main\n");
  auto m = b::HostMirror(t.path);
  REQUIRE(m);
  CHECK(m->uri == "http://a.example/debian");
  CHECK(m->source == t.path + "/etc/apt/sources.list.d/a.sources");
  Write(t.path + "/etc/apt/sources.list", "deb http://first.example/debian bookworm main\n");
  CHECK(b::HostMirror(t.path)->uri == "http://first.example/debian");

  CHECK(b::MirrorFromOption("http://m.example/debian"));
  CHECK(b::MirrorFromOption("file:/srv/mirror"));
  CHECK_FALSE(b::MirrorFromOption("m.example/debian"));
  CHECK_FALSE(b::MirrorFromOption("http://a b"));
  CHECK_FALSE(b::MirrorFromOption("http://x/\" evil"));
}

TEST_CASE("progress: plain lines off a terminal", "[recipe][progress]") {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  {
    b::Progress p(f, false);
    p.Phase("import layer 1/1");
    for (uint64_t done = 0; done <= 100; done += 5) p.Update(done << 20, 100 << 20);
    p.Done("read");
  }
  fclose(f);
  std::string out(buf, len);
  free(buf);
  CHECK(out.find('\r') == std::string::npos);
  CHECK(out.find("\033") == std::string::npos);
  CHECK_THAT(out, Catch::StartsWith("import layer 1/1\n"));
  CHECK_THAT(out, Catch::Contains("import layer 1/1: 50% (50.0 MB of 100.0 MB)\n"));
  CHECK_THAT(out, Catch::Contains("import layer 1/1: read ("));
  // One line per 10%: 10 progress lines, the phase and the summary.
  CHECK(std::count(out.begin(), out.end(), '\n') == 12);
}

TEST_CASE("progress: a bar redrawn in place on a terminal", "[recipe][progress]") {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  {
    b::Progress p(f, true);
    p.Phase("base");
    p.Percent(100);
    p.Done("made");
  }
  fclose(f);
  std::string out(buf, len);
  free(buf);
  CHECK_THAT(out, Catch::Contains("\r\033[Kbase [##############################] 100%"));
  CHECK_THAT(out, Catch::Contains("base: made ("));
}

TEST_CASE("MergeLayers applies whiteouts and opaque directories bottom up", "[flatten]") {
  TempDir t;
  const std::string l1 = t.path + "/l1", l2 = t.path + "/l2", l3 = t.path + "/l3", out = t.path + "/out";
  Write(l1 + "/keep", "1");
  Write(l1 + "/gone", "1");
  Write(l1 + "/d/a", "1");
  Write(l1 + "/o/old", "1");
  Write(l1 + "/replaced/x", "1");
  fs::create_symlink("keep", l1 + "/link");
  Write(l2 + "/keep", "2");
  Write(l2 + "/o/new", "2");
  Write(l2 + "/replaced", "file now");
  Write(l3 + "/d/b", "3");
  fs::create_directories(out);
  // Whiteouts are 0:0 character devices; unprivileged mknod of one works
  // since Linux 5.8, but not on every filesystem (nodev mounts): skip then.
  bool whiteouts = mknod((l2 + "/gone").c_str(), S_IFCHR | 0, makedev(0, 0)) == 0;
  bool opaque = setxattr((l2 + "/o").c_str(), "user.overlay.opaque", "y", 1, 0) == 0;
  chmod((l3 + "/d").c_str(), 0750);
  int fd = open(out.c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd >= 0);
  auto r = airlock::images::MergeLayers({l1, l2, l3}, fd);
  close(fd);
  INFO((r ? "" : r.error().Message()));
  REQUIRE(r);
  auto read = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  CHECK(read(out + "/keep") == "2");
  CHECK(read(out + "/d/a") == "1");
  CHECK(read(out + "/d/b") == "3");
  CHECK(read(out + "/replaced") == "file now");
  CHECK(fs::is_symlink(out + "/link"));
  CHECK((fs::status(out + "/d").permissions() & fs::perms::all) == static_cast<fs::perms>(0750));
  // Files are shared with the layers, not copied.
  struct stat a, c;
  REQUIRE(stat((l1 + "/d/a").c_str(), &a) == 0);
  REQUIRE(stat((out + "/d/a").c_str(), &c) == 0);
  CHECK(a.st_ino == c.st_ino);
  if (whiteouts) CHECK_FALSE(fs::exists(fs::symlink_status(out + "/gone")));
  if (opaque) {
    CHECK_FALSE(fs::exists(out + "/o/old"));
    CHECK(read(out + "/o/new") == "2");
  }
}

TEST_CASE("FlatKey depends on every merged layer, in order", "[flatten]") {
  std::string a = "sha256:" + std::string(64, 'a'), b2 = "sha256:" + std::string(64, 'b');
  CHECK(airlock::images::FlatKey({a, b2}) != airlock::images::FlatKey({b2, a}));
  CHECK(airlock::images::FlatKey({a}) != airlock::images::FlatKey({a, a}));
  CHECK(airlock::images::FlatKey({a, b2}).size() == 64);
}

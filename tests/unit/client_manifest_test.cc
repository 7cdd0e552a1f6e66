// Manifest files (YAML and JSON) to airlock.v1.Manifest, and their errors:
// every one names the file and the key path.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "harness/client/manifest.h"

using namespace airlock::client;

namespace {

airlock::Result<airlock::v1::Manifest> Yaml(const std::string& text) {
  return ParseManifest(text, "manifest.yaml", ManifestFormat::kYaml, "/home/u/proj");
}
airlock::Result<airlock::v1::Manifest> Json(const std::string& text) {
  return ParseManifest(text, "manifest.json", ManifestFormat::kJson, "/home/u/proj");
}
std::string YamlError(const std::string& text) {
  auto r = Yaml(text);
  if (r) return "<parsed>";
  return r.error().Message();
}
std::string JsonError(const std::string& text) {
  auto r = Json(text);
  if (r) return "<parsed>";
  return r.error().Message();
}

const char* kFullYaml = R"(
root: /work
entries:
  - path: src
    host_bind: ../shared/src
  - path: out
    output_dir: /var/tmp/out
  - path: seed
    host_copy: data/seed
  - path: notes.txt
    content: |
      hello
      world
    mode: "0600"
  - path: cache
    empty_dir: true
    mode: 0700
environment:
  GREETING: hi there
  COUNT: 3
users:
  - name: agent
    uid: 1000
    home: /home/agent
  - {name: ci, uid: 2000, gid: 100}
)";

}  // namespace

TEST_CASE("manifest: a full YAML file maps field by field", "[client][manifest]") {
  auto m = Yaml(kFullYaml);
  REQUIRE(m);
  CHECK(m->root() == "/work");
  REQUIRE(m->entries_size() == 5);
  CHECK(m->entries(0).path() == "src");
  CHECK(m->entries(0).host_bind() == "/home/u/shared/src");  // relative to the manifest's directory
  CHECK(m->entries(1).output_dir() == "/var/tmp/out");
  CHECK(m->entries(2).host_copy() == "/home/u/proj/data/seed");
  CHECK(m->entries(3).content() == "hello\nworld\n");
  CHECK(m->entries(3).mode() == 0600);
  CHECK(m->entries(4).empty_dir());
  CHECK(m->entries(4).mode() == 0700);  // YAML 0700 is octal text, never decimal 700
  CHECK(m->environment().at("GREETING") == "hi there");
  CHECK(m->environment().at("COUNT") == "3");
  REQUIRE(m->users_size() == 2);
  CHECK(m->users(0).name() == "agent");
  CHECK(m->users(0).uid() == 1000);
  CHECK(m->users(0).gid() == 1000);  // defaults to the uid
  CHECK(m->users(0).home() == "/home/agent");
  CHECK(m->users(1).gid() == 100);
}

TEST_CASE("manifest: the same in JSON, chosen by content", "[client][manifest]") {
  const std::string text = R"({
    "root": "/work",
    "entries": [{"path": "notes.txt", "content": "hi\n", "mode": "644"},
                {"path": "cache", "empty_dir": true}],
    "environment": {"A": "1"},
    "users": [{"name": "agent", "uid": 1000, "gid": 1001}]
  })";
  auto m = ParseManifest(text, "m", ManifestFormat::kAuto, "/");
  REQUIRE(m);
  CHECK(m->root() == "/work");
  REQUIRE(m->entries_size() == 2);
  CHECK(m->entries(0).content() == "hi\n");
  CHECK(m->entries(0).mode() == 0644);
  CHECK(m->entries(1).empty_dir());
  CHECK(m->environment().at("A") == "1");
  CHECK(m->users(0).gid() == 1001);
}

TEST_CASE("manifest: an empty file is the default manifest", "[client][manifest]") {
  auto m = Yaml("");
  REQUIRE(m);
  CHECK(m->entries_size() == 0);
  CHECK(m->root().empty());
  auto c = Yaml("# nothing but a comment\n");
  REQUIRE(c);
}

TEST_CASE("manifest: errors name the file and the key path", "[client][manifest]") {
  CHECK(YamlError("rooot: /w\n") == "manifest.yaml: rooot: unknown key (root, entries, environment, users)");
  CHECK(YamlError("entries:\n  - path: a\n    content: x\n  - path: b\n    content: y\n  - path: c\n    content: z\n    mode: rw\n") ==
        "manifest.yaml: entries[2].mode: not an octal number: \"rw\"");
  CHECK(YamlError("entries:\n  - path: a\n    content: x\n    mode: 0999\n") ==
        "manifest.yaml: entries[0].mode: not an octal number: \"0999\"");
  CHECK(YamlError("entries:\n  - path: a\n    content: x\n    mode: 17777\n") ==
        "manifest.yaml: entries[0].mode: more than permission bits (at most 07777): \"17777\"");
  CHECK(YamlError("entries:\n  - path: a\n    content: x\n    host_bind: /h\n") ==
        "manifest.yaml: entries[0].host_bind: more than one source (content and host_bind)");
  CHECK(YamlError("entries:\n  - path: a\n") ==
        "manifest.yaml: entries[0]: no source: give one of host_bind, host_copy, output_dir, content, empty_dir");
  CHECK(YamlError("entries:\n  - content: x\n") == "manifest.yaml: entries[0].path: missing");
  CHECK(YamlError("entries:\n  - path: a\n    hostbind: /h\n") ==
        "manifest.yaml: entries[0].hostbind: unknown key (path, host_bind, host_copy, output_dir, content, empty_dir, mode)");
  CHECK(YamlError("entries:\n  - path: a\n    host_bind: /h\n    mode: \"0644\"\n") ==
        "manifest.yaml: entries[0].mode: only content and empty_dir entries take a mode (host_bind keeps the host's)");
  CHECK(YamlError("entries:\n  - path: a\n    empty_dir: false\n") ==
        "manifest.yaml: entries[0].empty_dir: must be true (leave the entry out instead)");
  CHECK(YamlError("entries:\n  - path: a\n    empty_dir: maybe\n") == "manifest.yaml: entries[0].empty_dir: must be true or false");
  CHECK(YamlError("entries: {path: a}\n") == "manifest.yaml: entries: must be a list");
  CHECK(YamlError("entries:\n  - just-a-string\n") ==
        "manifest.yaml: entries[0]: must be a map with path and one of host_bind, host_copy, output_dir, content, empty_dir");
  CHECK(YamlError("environment:\n  A:\n") == "manifest.yaml: environment.A: must be a string");
  CHECK(YamlError("environment: [A]\n") == "manifest.yaml: environment: must be a map of NAME: value");
  CHECK(YamlError("users:\n  - name: a\n") == "manifest.yaml: users[0].uid: missing");
  CHECK(YamlError("users:\n  - name: a\n    uid: -1\n") == "manifest.yaml: users[0].uid: not a whole number: \"-1\"");
  CHECK(YamlError("users:\n  - name: a\n    uid: 1\n    shell: /bin/sh\n") ==
        "manifest.yaml: users[0].shell: unknown key (name, uid, gid, home)");
  CHECK(YamlError("root: work\n") == "manifest.yaml: root: must be an absolute path inside the sandbox (got \"work\")");
  CHECK(YamlError("- a\n- b\n") == "manifest.yaml: the manifest must be a map (root, entries, environment, users)");

  CHECK(JsonError(R"({"entries": [{"path": "a", "content": "x", "mode": 420}]})") ==
        "manifest.json: entries[0].mode: write the mode as an octal string such as \"0644\"");
  CHECK(JsonError(R"({"environment": {"A": 1}})") == "manifest.json: environment.A: must be a string");
  CHECK(JsonError(R"({"users": [{"name": "a", "uid": "1000"}]})") ==
        "manifest.json: users[0].uid: must be a whole number 0-4294967295");
  CHECK(JsonError(R"({"users": [{"name": "a", "uid": -5}]})") ==
        "manifest.json: users[0].uid: must be a whole number 0-4294967295");
  CHECK(JsonError(R"({"entries": [{"path": "a", "empty_dir": "true"}]})") ==
        "manifest.json: entries[0].empty_dir: must be true or false");
  CHECK(JsonError(R"({"extra": 1})") == "manifest.json: extra: unknown key (root, entries, environment, users)");
}

TEST_CASE("manifest: syntax errors and duplicates say where", "[client][manifest]") {
  std::string yaml = YamlError("root: /w\nentries:\n  - path: a\n   content: [\n");
  CHECK(yaml.starts_with("manifest.yaml: line "));
  std::string dup = YamlError("root: /a\nroot: /b\n");
  CHECK(dup == "manifest.yaml: line 2: duplicate key \"root\"");
  CHECK(JsonError(R"({"root": "/a", "root": "/b"})") == "manifest.json: duplicate key \"root\"");
  std::string json = JsonError("{\"root\": \n");
  CHECK(json.starts_with("manifest.json: parse error at line 2"));
  CHECK(YamlError("root: /a\n---\nroot: /b\n") == "manifest.yaml: more than one YAML document");
}

TEST_CASE("manifest: YAML aliases can't blow up", "[client][manifest]") {
  // Nine levels of nine aliases: 387 million nodes if expanded.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) bomb += std::string(i ? ", " : "") + "*" + prev;
    bomb += "]\n";
    prev = c;
  }
  std::string err = YamlError(bomb);
  CHECK(err.find("more than 200000 nodes") != std::string::npos);
}

TEST_CASE("manifest: LoadManifest picks the format by extension and names the file", "[client][manifest]") {
  char dir_tmpl[] = "/tmp/airlock-manifest-XXXXXX";
  REQUIRE(mkdtemp(dir_tmpl) != nullptr);
  const std::string dir = dir_tmpl;
  {
    std::ofstream(dir + "/m.yml") << "entries:\n  - path: a\n    host_bind: rel/dir\n";
    std::ofstream(dir + "/m.json") << "{\"entries\": [{\"path\": \"a\", \"content\": \"x\", \"mode\": \"9\"}]}";
    // YAML content under a .json name is parsed (and refused) as JSON.
    std::ofstream(dir + "/wrong.json") << "root: /w\n";
  }
  auto yml = LoadManifest(dir + "/m.yml");
  REQUIRE(yml);
  CHECK(yml->entries(0).host_bind() == dir + "/rel/dir");
  auto json = LoadManifest(dir + "/m.json");
  REQUIRE(!json);
  CHECK(json.error().Message() == dir + "/m.json: entries[0].mode: not an octal number: \"9\"");
  auto wrong = LoadManifest(dir + "/wrong.json");
  REQUIRE(!wrong);
  CHECK(wrong.error().Message().starts_with(dir + "/wrong.json: parse error"));
  auto missing = LoadManifest(dir + "/none.yaml");
  REQUIRE(!missing);
  CHECK(missing.error().Message() == "read manifest: ENOENT (" + dir + "/none.yaml)");
  for (const char* f : {"/m.yml", "/m.json", "/wrong.json"}) unlink((dir + f).c_str());
  rmdir(dir.c_str());
}

// Skills (harness/tools/skills.h): front matter, progressive disclosure, and
// nothing read outside the skills directory.
#include "harness/tools/skills.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace airlock::tools;
namespace fs = std::filesystem;

namespace {

struct SkillsDir {
  fs::path root;
  SkillsDir() {
    char tmpl[] = "/tmp/airlock-skills-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    root = tmpl;
  }
  ~SkillsDir() { fs::remove_all(root); }
  void Put(const std::string& rel, const std::string& text) const {
    fs::create_directories((root / rel).parent_path());
    std::ofstream(root / rel) << text;
  }
};

}  // namespace

TEST_CASE("skills: listed by front matter, malformed ones left out with the reason", "[skills]") {
  SkillsDir d;
  d.Put("b-skill/SKILL.md", "---\nname: b-skill\ndescription: 'Second.'\nmetadata:\n  x: y\n---\nbody b\n");
  d.Put("a-skill/SKILL.md", "---\r\nname: a-skill\r\ndescription: First one\r\n---\r\nbody a\r\n");
  d.Put("no-matter/SKILL.md", "just text\n");
  d.Put("renamed/SKILL.md", "---\nname: other\ndescription: x\n---\n");
  d.Put("nodesc/SKILL.md", "---\nname: nodesc\n---\n");
  d.Put("Upper/SKILL.md", "---\nname: Upper\ndescription: x\n---\n");
  d.Put("empty/readme", "no SKILL.md\n");
  std::vector<std::string> problems;
  auto list = ListSkills(d.root.string(), &problems);
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "a-skill");
  CHECK((*list)[0].description == "First one");
  CHECK((*list)[1].description == "Second.");
  CHECK(problems.size() == 5);
}

TEST_CASE("skills: a body and its files on demand, never through a link", "[skills]") {
  SkillsDir d;
  d.Put("tool/SKILL.md", "---\nname: tool\ndescription: d\n---\nUse ref/api.md.\n");
  d.Put("tool/ref/api.md", "the api\n");
  fs::create_symlink("/etc/passwd", d.root / "tool" / "link");
  auto skill = LoadSkill(d.root.string(), "tool");
  REQUIRE(skill);
  CHECK(skill->body == "Use ref/api.md.\n");
  CHECK(skill->files == std::vector<std::string>{"ref/api.md"});
  CHECK(ReadSkillFile(d.root.string(), "tool", "ref/api.md").value_or("") == "the api\n");
  CHECK_FALSE(ReadSkillFile(d.root.string(), "tool", "link"));
  CHECK_FALSE(ReadSkillFile(d.root.string(), "tool", "../tool/SKILL.md"));
  CHECK_FALSE(ReadSkillFile(d.root.string(), "tool", "/etc/passwd"));
  CHECK_FALSE(LoadSkill(d.root.string(), "../x"));
  CHECK_FALSE(LoadSkill(d.root.string(), "missing"));
  CHECK(ValidSkillName("a.b_c-1"));
  CHECK_FALSE(ValidSkillName("A"));
  CHECK_FALSE(ValidSkillName(std::string(65, 'a')));
}

// Skills (the Agent Skills convention): a directory the operator keeps, of
// folders each with a SKILL.md whose front matter names the skill and says
// what it is for:
//
//   ---
//   name: pdf-forms
//   description: Fill PDF forms with pdftk.
//   ---
//   The body: instructions the model loads when it needs them.
//
// Progressive disclosure: list names and descriptions; load a skill's body
// and the names of its other files; read one of those files on demand.
// Everything is read below the skills directory without following any
// symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::tools {

struct SkillSummary {
  std::string name;         // the folder's name (the front matter's must agree)
  std::string description;
};

struct SkillDetail {
  SkillSummary summary;
  std::string body;                // SKILL.md after its front matter
  std::vector<std::string> files;  // the folder's other files, relative, sorted
};

// Every well-formed skill; `problems` gets one line per folder left out
// (no SKILL.md, no front matter, a name that isn't the folder's).
Result<std::vector<SkillSummary>> ListSkills(const std::string& dir, std::vector<std::string>* problems = nullptr);
Result<SkillDetail> LoadSkill(const std::string& dir, const std::string& name);
// One file of a skill, by its path relative to the skill's folder.
Result<std::string> ReadSkillFile(const std::string& dir, const std::string& name, const std::string& path);

// A skill's name: [a-z0-9][a-z0-9._-]* up to 64 characters.
bool ValidSkillName(const std::string& name);

}  // namespace airlock::tools

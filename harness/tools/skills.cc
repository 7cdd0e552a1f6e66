#include "harness/tools/skills.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "harness/tools/apply_patch.h"
#include "runtime/core/unique_fd.h"

namespace airlock::tools {

namespace {

constexpr size_t kMaxSkillFile = 8u << 20;
constexpr size_t kMaxSkillFiles = 1000;

// Opens `path` below `dir_fd` without leaving it or following a symlink.
Result<UniqueFd> OpenBelow(int dir_fd, const std::string& path, int flags, const std::string& what) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, dir_fd, path.c_str(), &how, sizeof(how));
  if (fd < 0) return Errno("open", what);
  return UniqueFd(static_cast<int>(fd));
}

Result<std::string> ReadAll(int fd, const std::string& what) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", what);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxSkillFile) return Fail("skill", what + " is over " + std::to_string(kMaxSkillFile >> 20) + " MiB");
  }
  return out;
}

std::string Unquote(std::string v) {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.pop_back();
  size_t b = v.find_first_not_of(" \t");
  v = b == std::string::npos ? "" : v.substr(b);
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
  return v;
}

// SKILL.md's front matter (name, description) and body.
Result<SkillDetail> Parse(const std::string& folder, const std::string& text) {
  SkillDetail d;
  if (!text.starts_with("---\n") && !text.starts_with("---\r\n"))
    return Fail("skill", folder + "/SKILL.md has no front matter (a first line \"---\")");
  size_t pos = text.find('\n') + 1;
  for (;;) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) return Fail("skill", folder + "/SKILL.md: the front matter never ends (\"---\")");
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    pos = end + 1;
    if (line == "---") break;
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.starts_with(" ") || line.starts_with("\t")) continue;  // nested YAML: not ours
    std::string key = line.substr(0, colon);
    std::string value = Unquote(line.substr(colon + 1));
    if (key == "name") d.summary.name = value;
    else if (key == "description") d.summary.description = value;
  }
  if (d.summary.name.empty()) return Fail("skill", folder + "/SKILL.md: the front matter has no name");
  if (d.summary.name != folder)
    return Fail("skill", folder + "/SKILL.md: its name \"" + d.summary.name + "\" isn't its folder's");
  if (d.summary.description.empty()) return Fail("skill", folder + "/SKILL.md: the front matter has no description");
  d.body = text.substr(pos);
  return d;
}

Result<UniqueFd> OpenSkills(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Errno("open", "skills directory " + dir);
  return fd;
}

Result<SkillDetail> Load(int skills_fd, const std::string& name) {
  UniqueFd md = TRY(OpenBelow(skills_fd, name + "/SKILL.md", O_RDONLY, "skill " + name + "'s SKILL.md"));
  return Parse(name, TRY(ReadAll(md.get(), name + "/SKILL.md")));
}

// Regular files below `dir_fd` (relative paths), symlinks skipped.
Result<void> Walk(int dir_fd, const std::string& prefix, std::vector<std::string>* out) {
  UniqueFd dup(fcntl(dir_fd, F_DUPFD_CLOEXEC, 3));
  DIR* d = dup ? fdopendir(dup.Release()) : nullptr;
  if (d == nullptr) return Errno("opendir", prefix.empty() ? "skill folder" : prefix);
  std::vector<std::string> entries;
  while (dirent* e = readdir(d))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries.push_back(e->d_name);
  closedir(d);
  for (const auto& name : entries) {
    struct stat st;
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    if (S_ISREG(st.st_mode)) {
      if (out->size() >= kMaxSkillFiles) return Fail("skill", "more than " + std::to_string(kMaxSkillFiles) + " files");
      out->push_back(rel);
    } else if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub) TRY(Walk(sub.get(), rel, out));
    }
  }
  return {};
}

}  // namespace

bool ValidSkillName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  if (!(std::islower(static_cast<unsigned char>(name[0])) || std::isdigit(static_cast<unsigned char>(name[0]))))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '.' ||
           c == '_' || c == '-';
  });
}

Result<std::vector<SkillSummary>> ListSkills(const std::string& dir, std::vector<std::string>* problems) {
  UniqueFd fd = TRY(OpenSkills(dir));
  UniqueFd dup(fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  DIR* d = dup ? fdopendir(dup.Release()) : nullptr;
  if (d == nullptr) return Errno("opendir", dir);
  std::vector<std::string> names;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  std::vector<SkillSummary> out;
  for (const auto& n : names) {
    struct stat st;
    if (fstatat(fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) continue;
    if (!ValidSkillName(n)) {
      if (problems) problems->push_back(n + ": not a skill name ([a-z0-9][a-z0-9._-]*)");
      continue;
    }
    auto skill = Load(fd.get(), n);
    if (!skill) {
      if (problems) problems->push_back(skill.error().Message());
      continue;
    }
    out.push_back(skill->summary);
  }
  return out;
}

Result<SkillDetail> LoadSkill(const std::string& dir, const std::string& name) {
  if (!ValidSkillName(name)) return Fail("skill", "\"" + name + "\" is not a skill name");
  UniqueFd fd = TRY(OpenSkills(dir));
  SkillDetail d = TRY(Load(fd.get(), name));
  UniqueFd folder = TRY(OpenBelow(fd.get(), name, O_RDONLY | O_DIRECTORY, "skill " + name));
  TRY(Walk(folder.get(), "", &d.files));
  d.files.erase(std::remove(d.files.begin(), d.files.end(), "SKILL.md"), d.files.end());
  std::sort(d.files.begin(), d.files.end());
  return d;
}

Result<std::string> ReadSkillFile(const std::string& dir, const std::string& name, const std::string& path) {
  if (!ValidSkillName(name)) return Fail("skill", "\"" + name + "\" is not a skill name");
  std::string rel = TRY(NormalizePatchPath(path));
  UniqueFd fd = TRY(OpenSkills(dir));
  UniqueFd f = TRY(OpenBelow(fd.get(), name + "/" + rel, O_RDONLY, "skill " + name + "'s " + rel));
  struct stat st;
  if (fstat(f.get(), &st) < 0 || !S_ISREG(st.st_mode)) return Fail("skill", name + "/" + rel + " is not a file");
  return ReadAll(f.get(), name + "/" + rel);
}

}  // namespace airlock::tools

#include "runtime/core/glob.h"

namespace airlock::glob {
namespace {

void Literal(char c, std::string* out) {
  const auto u = static_cast<unsigned char>(c);
  // PCRE2: a backslash before an ASCII non-alphanumeric is always that
  // character; bytes of multi-byte UTF-8 sequences pass as they are.
  if (u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
    out->push_back(c);
  } else {
    out->push_back('\\');
    out->push_back(c);
  }
}

// A bracket expression starting at t[i] == '['; sets *next past its ']'.
Result<std::string> Class(std::string_view t, size_t i, size_t* next, std::string_view whole) {
  size_t j = i + 1;
  bool negated = false;
  if (j < t.size() && (t[j] == '!' || t[j] == '^')) {
    negated = true;
    ++j;
  }
  std::string body;
  bool first = true;
  for (; j < t.size(); ++j) {
    char c = t[j];
    if (c == ']' && !first) break;
    first = false;
    if (c == '\\' && j + 1 < t.size()) {
      Literal(t[++j], &body);
    } else if (c == '[' && j + 1 < t.size() && t[j + 1] == ':') {
      size_t end = t.find(":]", j + 2);
      if (end == std::string_view::npos) return Fail("glob", std::string(whole) + ": unclosed [: in a class");
      body.append(t.substr(j, end + 2 - j));  // a POSIX class: [:alpha:]
      j = end + 1;
    } else if (c == '-') {
      body.push_back('-');  // a range, as in the glob
    } else {
      Literal(c, &body);
    }
  }
  if (j >= t.size()) return Fail("glob", std::string(whole) + ": unclosed [");
  *next = j + 1;
  // A class never matches '/' (it stays within one component).
  return negated ? "[^/" + body + "]" : "(?!/)[" + body + "]";
}

// The regex for `t` (no '!' and no trailing '/': the caller took those).
Result<std::string> Translate(std::string_view t, bool braces, std::string_view whole) {
  // A '/' anywhere but at the end anchors the rule at its base directory.
  const bool anchored = t.find('/') != std::string_view::npos;
  if (!t.empty() && t.front() == '/') t.remove_prefix(1);
  if (t.empty()) return Fail("glob", std::string(whole) + ": matches nothing");
  std::string out = anchored ? "" : "(?:.*/)?";
  int depth = 0;
  for (size_t i = 0; i < t.size();) {
    char c = t[i];
    if (c == '*') {
      size_t run = i;
      while (run < t.size() && t[run] == '*') ++run;
      const bool at_start = i == 0 || t[i - 1] == '/';
      const bool double_star = run - i >= 2 && at_start && (run == t.size() || t[run] == '/');
      if (double_star && run < t.size()) {  // "**/": any number of directories
        out += "(?:.*/)?";
        i = run + 1;
      } else if (double_star) {  // "**" at the end: anything below
        out += ".*";
        i = run;
      } else {  // "*" (and "**" elsewhere, as git: a plain star)
        out += "[^/]*";
        i = run;
      }
    } else if (c == '?') {
      out += "[^/]";
      ++i;
    } else if (c == '[') {
      out += TRY(Class(t, i, &i, whole));
    } else if (c == '\\') {
      if (i + 1 >= t.size()) return Fail("glob", std::string(whole) + ": ends in a lone backslash");
      Literal(t[i + 1], &out);
      i += 2;
    } else if (braces && c == '{') {
      ++depth;
      out += "(?:";
      ++i;
    } else if (braces && depth > 0 && c == ',') {
      out += "|";
      ++i;
    } else if (braces && depth > 0 && c == '}') {
      --depth;
      out += ")";
      ++i;
    } else {
      Literal(c, &out);
      ++i;
    }
  }
  if (depth > 0) return Fail("glob", std::string(whole) + ": unclosed {");
  return out;
}

Result<Rule> Parse(std::string_view text, bool braces, std::string_view whole) {
  Rule rule;
  if (!text.empty() && text.front() == '!') {
    rule.negated = true;
    text.remove_prefix(1);
  }
  if (!text.empty() && text.back() == '/') {
    rule.dir_only = true;
    text.remove_suffix(1);
  }
  rule.regex = TRY(Translate(text, braces, whole));
  return rule;
}

}  // namespace

Result<Rule> FromGlob(std::string_view glob) {
  if (glob.empty()) return Fail("glob", "empty");
  return Parse(glob, true, glob);
}

Result<std::optional<Rule>> FromIgnoreLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Trailing spaces go, unless the last is escaped ("a\ ").
  while (!line.empty() && line.back() == ' ' && !(line.size() >= 2 && line[line.size() - 2] == '\\'))
    line.remove_suffix(1);
  if (line.empty() || line.front() == '#') return std::optional<Rule>();
  if (line == "!" || line == "/" || line == "!/") return std::optional<Rule>();
  return std::optional<Rule>(TRY(Parse(line, false, line)));
}

std::string Anchored(std::string_view regex) { return "^(?:" + std::string(regex) + ")$"; }

}  // namespace airlock::glob

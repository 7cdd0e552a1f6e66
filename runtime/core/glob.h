// Globs as ripgrep's -g and .gitignore files write them, translated into
// PCRE2 patterns that match a whole relative path ("src/a.py", no leading
// "./" or "/"). The translation is pure text; whoever matches compiles it.
//
// The dialect (gitignore(5)): `*` and `?` stay within one component,
// `[...]` is a class (`[!...]` / `[^...]` negated; never matches '/'),
// `\x` is a literal x, `**/` at the start or `/**/` inside match any
// number of directories, a trailing `/**` everything inside. A glob with a
// '/' other than a trailing one is anchored at the directory it is
// relative to; one without matches the last component at any depth. A
// trailing '/' makes a rule match directories only. `{a,b}` alternation
// is ripgrep's and only for -g globs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace airlock::glob {

struct Rule {
  std::string regex;      // the path part only: no ^...$ (wrap it: see Anchored)
  bool negated = false;   // "!x": re-include (ignore files) / exclude (-g)
  bool dir_only = false;  // "x/"
};

// A -g glob ("*.py", "!vendor/**", "src/{a,b}/*.ts"). Errors (an empty
// glob, an unclosed '{' or '[' ) name the glob.
Result<Rule> FromGlob(std::string_view glob);

// One line of a .gitignore: nothing for a blank line or a comment.
// Trailing spaces are dropped unless escaped; "\#" and "\!" are literal.
// A line that can't be a rule (an unclosed class) is an error.
Result<std::optional<Rule>> FromIgnoreLine(std::string_view line);

// "^(?:<regex>)$".
std::string Anchored(std::string_view regex);

}  // namespace airlock::glob

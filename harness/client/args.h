// Command-line pieces of airlock-remote (the CLI's daemon commands): a small
// option parser shared by every command, and the value parsers (sizes,
// durations, k=v pairs, `ID:/path` operands). Pure code, unit-tested.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/cli/options.h"
#include "runtime/core/error.h"

namespace airlock::client {

// One option a command accepts: "--memory" (long) and an optional short
// form ('m'); `takes_value` options read "--opt V" or "--opt=V".
struct OptionSpec {
  std::string long_name;
  char short_name = 0;
  bool takes_value = false;
};

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> options;  // by long name; flags hold ""
  std::vector<std::string> positional;  // operands, in order
  std::vector<std::string> command;     // exec-style: everything after the first operand (and "--")

  bool Has(const std::string& name) const { return options.contains(name); }
  // The last value given for `name`, if any.
  std::optional<std::string> Last(const std::string& name) const;
  // Every value given for `name`, in order.
  std::vector<std::string> All(const std::string& name) const;
};

// Parses `args` against `specs`. Short flags may be grouped ("-it").
// With `command_after_first_operand` (exec), parsing stops at the first
// operand: it becomes positional[0] and the rest (an optional leading "--"
// dropped) goes to `command`. Otherwise options and operands may mix and
// "--" ends the options. Errors name the option: "--memory: needs a value".
Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const std::vector<OptionSpec>& specs,
                             bool command_after_first_operand = false);

// Sizes and durations read as `airlock run` reads them (harness/cli/options.h).
using cli::ParseSize;
inline Result<uint64_t> ParseDurationMs(const std::string& option, const std::string& value) {
  return static_cast<uint64_t>(TRY(cli::ParseDuration(option, value)).count());
}

// "k=v" -> {k, v}; the key must be non-empty.
Result<std::pair<std::string, std::string>> ParseKeyValue(const std::string& option, const std::string& value);

// A `cp` operand: "ID:/path" (in a sandbox) or a host path. A host path
// that contains ':' is written with a '/' or '.' before it ("./a:b").
struct CopyOperand {
  std::string sandbox_id;  // empty: a host path
  std::string path;
  bool remote() const { return !sandbox_id.empty(); }
};
CopyOperand ParseCopyOperand(const std::string& value);

// The last component of `path` with trailing slashes ignored ("a/b/" ->
// "b"); "" for "/" or "".
std::string BaseName(const std::string& path);

// `dir` + "/" + `name`, without doubling slashes; "." or "" as dir gives
// `name` alone.
std::string JoinPath(const std::string& dir, const std::string& name);

// Makes `path` absolute against `base_dir` (itself absolute) and removes
// ".", empty and ".." components lexically ("/a/./b/../c" -> "/a/c").
std::string AbsoluteLexical(const std::string& base_dir, const std::string& path);

// "1.5 GiB", "512 MiB", "17 B": a byte count for people.
std::string HumanBytes(uint64_t bytes);

// "5m", "1h30m", "45s", "250ms": a duration for people.
std::string HumanDuration(uint64_t ms);

}  // namespace airlock::client

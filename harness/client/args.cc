#include "harness/client/args.h"

#include <cmath>
#include <cstdlib>

namespace airlock::client {
namespace {

std::unexpected<Error> Bad(const std::string& option, const std::string& what) {
  return Fail("invalid option", option + ": " + what);
}

bool IsSandboxIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

std::optional<std::string> ParsedArgs::Last(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::All(const std::string& name) const {
  auto it = options.find(name);
  return it == options.end() ? std::vector<std::string>{} : it->second;
}

Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args, const std::vector<OptionSpec>& specs,
                             bool command_after_first_operand) {
  ParsedArgs out;
  auto by_long = [&](const std::string& name) -> const OptionSpec* {
    for (const auto& s : specs)
      if (s.long_name == name) return &s;
    return nullptr;
  };
  auto by_short = [&](char c) -> const OptionSpec* {
    for (const auto& s : specs)
      if (s.short_name == c) return &s;
    return nullptr;
  };
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a == "-" || !a.starts_with("-")) {
      if (command_after_first_operand) {
        out.positional.push_back(a);
        size_t rest = i + 1;
        if (rest < args.size() && args[rest] == "--") ++rest;
        out.command.assign(args.begin() + static_cast<long>(rest), args.end());
        return out;
      }
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a.starts_with("--")) {
      size_t eq = a.find('=');
      std::string name = a.substr(0, eq);
      const OptionSpec* s = by_long(name);
      if (s == nullptr) return Bad(name, "unknown option");
      if (!s->takes_value) {
        if (eq != std::string::npos) return Bad(name, "takes no value");
        out.options[s->long_name].push_back("");
        continue;
      }
      if (eq != std::string::npos) {
        out.options[s->long_name].push_back(a.substr(eq + 1));
      } else {
        if (i + 1 >= args.size()) return Bad(name, "needs a value");
        out.options[s->long_name].push_back(args[++i]);
      }
      continue;
    }
    // Short options: "-i", "-it", "-u root", "-uroot".
    for (size_t k = 1; k < a.size(); ++k) {
      const OptionSpec* s = by_short(a[k]);
      if (s == nullptr) return Bad(std::string("-") + a[k], "unknown option");
      if (!s->takes_value) {
        out.options[s->long_name].push_back("");
        continue;
      }
      if (k + 1 < a.size()) {
        out.options[s->long_name].push_back(a.substr(k + 1));
      } else {
        if (i + 1 >= args.size()) return Bad(std::string("-") + a[k], "needs a value");
        out.options[s->long_name].push_back(args[++i]);
      }
      break;
    }
  }
  return out;
}

Result<std::pair<std::string, std::string>> ParseKeyValue(const std::string& option, const std::string& value) {
  size_t eq = value.find('=');
  if (eq == std::string::npos || eq == 0) return Bad(option, "expected KEY=VALUE (got \"" + value + "\")");
  return std::make_pair(value.substr(0, eq), value.substr(eq + 1));
}

CopyOperand ParseCopyOperand(const std::string& value) {
  size_t colon = value.find(':');
  if (colon == std::string::npos || colon == 0 || value[0] == '/' || value[0] == '.') return {"", value};
  for (size_t i = 0; i < colon; ++i)
    if (!IsSandboxIdChar(value[i])) return {"", value};
  return {value.substr(0, colon), value.substr(colon + 1)};
}

std::string BaseName(const std::string& path) {
  size_t end = path.find_last_not_of('/');
  if (end == std::string::npos) return "";
  size_t slash = path.rfind('/', end);
  return path.substr(slash == std::string::npos ? 0 : slash + 1, end - (slash == std::string::npos ? 0 : slash + 1) + 1);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir == ".") return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string AbsoluteLexical(const std::string& base_dir, const std::string& path) {
  std::string full = path.starts_with('/') ? path : base_dir + "/" + path;
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= full.size()) {
    size_t end = std::min(full.find('/', start), full.size());
    std::string part = full.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string HumanBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string HumanDuration(uint64_t ms) {
  if (ms < 1000) return std::to_string(ms) + "ms";
  uint64_t s = ms / 1000;
  if (s < 60) {
    if (ms % 1000 == 0) return std::to_string(s) + "s";
    char buf[32];
    snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
    return buf;
  }
  std::string out;
  uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  if (d) out += std::to_string(d) + "d";
  if (h) out += std::to_string(h) + "h";
  if (m) out += std::to_string(m) + "m";
  if (sec && !d) out += std::to_string(sec) + "s";
  return out;
}

}  // namespace airlock::client

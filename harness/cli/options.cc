#include "harness/cli/options.h"

#include <cmath>
#include <cstdlib>

namespace airlock::cli {
namespace {

std::unexpected<Error> Bad(const std::string& option, const std::string& what) {
  return Fail("invalid option", option + ": " + what);
}

}  // namespace

Result<uint64_t> ParseSize(const std::string& option, const std::string& value) {
  if (value.empty()) return Bad(option, "empty size");
  char* end = nullptr;
  errno = 0;
  double n = strtod(value.c_str(), &end);
  if (end == value.c_str() || errno != 0 || !std::isfinite(n) || n < 0 || value[0] == '+' ||
      value.find_first_of("xXpPeE") != std::string::npos)
    return Bad(option, "not a size: \"" + value + "\" (use e.g. 512M, 2G)");
  std::string unit(end);
  // "MiB", "MB", "Mi" and "M" mean the same.
  if (unit.size() == 3 && unit.substr(1) == "iB") unit.resize(1);
  else if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'B' || unit[1] == 'b')) unit.resize(1);
  double mult;
  if (unit.empty() || unit == "b" || unit == "B") mult = 1;
  else if (unit == "k" || unit == "K") mult = 1024.0;
  else if (unit == "m" || unit == "M") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else return Bad(option, "unknown unit in \"" + value + "\" (use K, M, G or T)");
  double bytes = n * mult;
  if (bytes > 9.0e18) return Bad(option, "too large: \"" + value + "\"");
  return static_cast<uint64_t>(std::llround(bytes));
}

Result<std::chrono::milliseconds> ParseDuration(const std::string& option, const std::string& value) {
  char* end = nullptr;
  errno = 0;
  double n = value.empty() ? 0 : strtod(value.c_str(), &end);
  if (value.empty() || end == value.c_str() || errno != 0 || !std::isfinite(n) || n < 0 || value[0] == '+' ||
      value.find_first_of("xXpPeE") != std::string::npos)
    return Bad(option, "not a duration: \"" + value + "\" (use e.g. 500ms, 30s, 5m, 2h)");
  std::string unit(end);
  double ms;
  if (unit.empty() || unit == "s") ms = n * 1000;
  else if (unit == "ms") ms = n;
  else if (unit == "m") ms = n * 60000;
  else if (unit == "h") ms = n * 3600000;
  else if (unit == "d") ms = n * 86400000;
  else return Bad(option, "unknown unit in \"" + value + "\" (use ms, s, m, h or d)");
  if (ms > 1e13) return Bad(option, "too long: \"" + value + "\"");
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

Result<HostMount> ParseMount(const std::string& value) {
  HostMount m;
  size_t first = value.find(':');
  if (first == std::string::npos) return Bad("--mount", "expected SRC:DST[:ro|rw] (got \"" + value + "\")");
  m.source = value.substr(0, first);
  std::string rest = value.substr(first + 1);
  size_t second = rest.find(':');
  m.destination = rest.substr(0, second);
  if (second != std::string::npos) {
    std::string opts = rest.substr(second + 1);
    size_t pos = 0;
    bool mode_set = false;
    while (pos <= opts.size()) {
      size_t comma = opts.find(',', pos);
      std::string opt = opts.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (opt == "ro" || opt == "rw") {
        if (mode_set) return Bad("--mount", "ro/rw given twice in \"" + value + "\"");
        m.read_only = opt == "ro";
        mode_set = true;
      } else if (opt == "allow-root") {
        m.allow_root_owner = true;
      } else {
        return Bad("--mount", "unknown mount option \"" + opt + "\" in \"" + value + "\" (ro, rw, allow-root)");
      }
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  if (m.allow_root_owner && m.read_only) return Bad("--mount", "allow-root needs rw (in \"" + value + "\")");
  if (!IsNormalizedAbsolutePath(m.source))
    return Bad("--mount", "source must be an absolute normalized path (got \"" + m.source + "\")");
  if (!IsNormalizedAbsolutePath(m.destination))
    return Bad("--mount", "destination must be an absolute normalized path (got \"" + m.destination + "\")");
  return m;
}

Result<RunOptions> ParseRunOptions(const std::vector<std::string>& args) {
  RunOptions o;
  size_t i = 0;
  auto value = [&](const std::string& opt, std::string* out) -> Result<void> {
    // Both "--opt value" and "--opt=value".
    const std::string& a = args[i];
    if (a.size() > opt.size() && a[opt.size()] == '=') {
      *out = a.substr(opt.size() + 1);
      return {};
    }
    if (i + 1 >= args.size()) return Bad(opt, "needs a value");
    *out = args[++i];
    return {};
  };
  auto is = [&](const std::string& opt) {
    const std::string& a = args[i];
    return a == opt || (a.starts_with(opt) && a.size() > opt.size() && a[opt.size()] == '=');
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string v;
    if (a == "--") {
      ++i;
      break;
    }
    if (!a.starts_with("-")) break;  // the command starts here
    if (is("--image")) {
      TRY(value("--image", &v));
      o.image = v;
    } else if (is("--mount") || is("-v")) {
      TRY(value(is("--mount") ? "--mount" : "-v", &v));
      o.mounts.push_back(TRY(ParseMount(v)));
    } else if (is("--workspace")) {
      TRY(value("--workspace", &v));
      if (!IsNormalizedAbsolutePath(v)) return Bad("--workspace", "must be an absolute normalized path (got \"" + v + "\")");
      o.workspace = v;
    } else if (is("--env") || is("-e")) {
      TRY(value(is("--env") ? "--env" : "-e", &v));
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return Bad("--env", "expected K=V (got \"" + v + "\")");
      o.env.push_back(v);
    } else if (is("--memory") || is("-m")) {
      TRY(value(is("--memory") ? "--memory" : "-m", &v));
      o.limits.memory_bytes = TRY(ParseSize("--memory", v));
    } else if (is("--pids")) {
      TRY(value("--pids", &v));
      char* end;
      unsigned long long n = strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end) return Bad("--pids", "not a number: \"" + v + "\"");
      o.limits.pids = n;
    } else if (is("--cpus")) {
      TRY(value("--cpus", &v));
      char* end;
      double n = strtod(v.c_str(), &end);
      if (v.empty() || *end) return Bad("--cpus", "not a number: \"" + v + "\"");
      o.limits.cpus = n;
    } else if (is("--disk")) {
      TRY(value("--disk", &v));
      o.limits.disk_bytes = TRY(ParseSize("--disk", v));
    } else if (is("--timeout")) {
      TRY(value("--timeout", &v));
      o.timeout = TRY(ParseDuration("--timeout", v));
    } else if (is("--seccomp")) {
      TRY(value("--seccomp", &v));
      o.seccomp = v;
    } else if (is("--net")) {
      TRY(value("--net", &v));
      if (v != "none") return Bad("--net", "only \"none\" is supported by airlock run (got \"" + v + "\")");
    } else if (is("--hostname")) {
      TRY(value("--hostname", &v));
      o.hostname = v;
    } else if (a == "--checkpointable") {
      o.checkpointable = true;
    } else if (is("--user") || is("-u")) {
      TRY(value(is("--user") ? "--user" : "-u", &v));
      o.user = v;
    } else {
      return Bad(a, "unknown option (see airlock run --help)");
    }
  }
  for (; i < args.size(); ++i) o.argv.push_back(args[i]);
  if (o.argv.empty()) return Bad("command", "no command given: airlock run [OPTIONS] -- CMD ARGS...");
  if (o.workspace) {
    for (const auto& m : o.mounts)
      if (m.destination == "/workspace") return Bad("--workspace", "/workspace is also given by --mount");
    HostMount w;
    w.source = *o.workspace;
    w.destination = "/workspace";
    w.read_only = false;
    // First: mounts attach in order, and a --mount inside /workspace must
    // land on top of it, not under it.
    o.mounts.insert(o.mounts.begin(), w);
  }
  return o;
}

}  // namespace airlock::cli

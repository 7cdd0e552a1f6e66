// How a sandbox's command ended, in the words and the exit status `airlock
// run` gives it.
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "runtime/launch/sandbox.h"

namespace airlock {

int Outcome::ExitStatus() const {
  switch (kind) {
    case Kind::kExited: return code;
    case Kind::kSignaled: return 128 + signal;
    case Kind::kTimedOut: return 124;
    case Kind::kExecFailed: return exec_errno == ENOENT ? 127 : 126;
    case Kind::kInitDied: return 125;
  }
  return 125;
}

std::string Outcome::Describe(const SandboxSpec& spec) const {
  std::string msg;
  auto limit = [](const std::optional<uint64_t>& v) { return v ? std::to_string(*v) : std::string("none"); };
  auto size = [](const std::optional<uint64_t>& v) {
    if (!v) return std::string("none");
    const char* units[] = {"", "K", "M", "G", "T"};
    uint64_t n = *v;
    int u = 0;
    while (u < 4 && n >= 1024 && n % 1024 == 0) {
      n /= 1024;
      ++u;
    }
    return std::to_string(n) + units[u];
  };
  switch (kind) {
    case Kind::kExited:
      if (oom_killed) msg = "a process in the sandbox was killed by the OOM killer (memory limit " +
                            size(spec.limits.memory_bytes) + ")";
      break;
    case Kind::kSignaled:
      if (oom_killed)
        msg = "command killed by the OOM killer (memory limit " + size(spec.limits.memory_bytes) + ")";
      else
        msg = std::string("command killed by signal ") + std::to_string(signal) + " (" + sigabbrev_np(signal) + ")";
      break;
    case Kind::kTimedOut:
      msg = "command timed out after " + std::to_string(spec.timeout.count()) + " ms; the sandbox was killed";
      break;
    case Kind::kExecFailed:
      msg = "can't run " + (spec.process.argv.empty() ? std::string("?") : spec.process.argv[0]) + ": " + exec_stage +
            " failed: " + ErrnoName(exec_errno) + " (" + strerror(exec_errno) + ")";
      break;
    case Kind::kInitDied:
      msg = "airlock-init died before the command finished" +
            (signal ? " (signal " + std::to_string(signal) + ")" : " (status " + std::to_string(code) + ")");
      if (oom_killed) msg += "; the sandbox was out of memory";
      break;
  }
  if (pids_limit_hits > 0) {
    if (!msg.empty()) msg += "; ";
    msg += "the pids limit (" + limit(spec.limits.pids) + ") refused " + std::to_string(pids_limit_hits) + " forks";
  }
  return msg;
}

}  // namespace airlock

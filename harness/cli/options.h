// `airlock run` command line: parsing into a RunOptions, pure and unit-tested.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/spec/spec.h"

namespace airlock::cli {

struct RunOptions {
  std::string image = "host";
  std::vector<HostMount> mounts;  // --mount and --workspace (as /workspace)
  std::optional<std::string> workspace;
  std::vector<std::string> env;   // --env K=V, in order
  ResourceLimits limits;
  std::chrono::milliseconds timeout{0};
  std::string seccomp = "default";
  std::string hostname = "sandbox";
  std::optional<std::string> user;  // NAME or UID
  bool checkpointable = false;      // namespaces CRIU can dump (LaunchOptions)
  std::vector<std::string> argv;
};

// Parses the arguments after "run". Errors name the option.
Result<RunOptions> ParseRunOptions(const std::vector<std::string>& args);

// "512M", "2G", "1048576", "1.5G" → bytes (binary units K, M, G, T; an
// optional "i"/"B" suffix: "512MiB", "512MB"). Errors name `option`.
Result<uint64_t> ParseSize(const std::string& option, const std::string& value);
// "30s", "500ms", "2m", "1h", "1d", "10" (seconds) → milliseconds.
Result<std::chrono::milliseconds> ParseDuration(const std::string& option, const std::string& value);
// "SRC:DST[:ro|rw[,allow-root]]" → HostMount (default ro).
Result<HostMount> ParseMount(const std::string& value);

}  // namespace airlock::cli

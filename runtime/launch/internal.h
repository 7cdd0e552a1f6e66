// Helpers the launch (sandbox.cc) and checkpoint/restore (checkpoint.cc)
// parts of Sandbox share.
#pragma once

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/cgroups/cgroup.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/launch/sandbox.h"
#include "runtime/launch/state.h"
#include "runtime/storage/idrange.h"
#include "runtime/storage/pool.h"

namespace airlock::launch_internal {

inline constexpr uint64_t kRoNoSuidNoDev = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

inline Result<void> WriteProcFile(pid_t pid, const char* name, const std::string& value) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  if (write(fd.get(), value.data(), value.size()) < 0) return Errno("write", path + ": " + value);
  return {};
}

// The key a host mount is named by in CRIU's images.
inline std::string HostMountKey(size_t i) { return "airlock-mount-" + std::to_string(i); }

}  // namespace airlock::launch_internal

namespace airlock {

// What a sandbox holds on the host, released by Destroy().
struct Sandbox::Resources {
  std::optional<SandboxRecord> record;
  std::string idranges_path;
  bool has_ids = false;
  bool durable_ids = true;
  storage::IdRange ids;
  std::optional<cgroups::SandboxCgroup> cgroup;
  std::optional<storage::Pool> pool;
  bool has_subvolume = false;
};

}  // namespace airlock

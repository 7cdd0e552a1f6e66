// LaunchPlan: everything the sandbox child needs, computed before clone so
// that the child only walks tables. Pure code, unit-tested without root.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/spec/spec.h"

namespace airlock {

// One filesystem operation in the new root, in order. Targets are relative to
// the new root ("proc/kcore") and resolved beneath it without following any
// symlink, so an image can't redirect a mount onto the host.
enum class MountOp : uint8_t {
  kParentFd,    // attach the detached mount fds[fd_index] the parent prepared
  kTmpfs,       // a fresh tmpfs with options `data`
  kProc,        // a fresh proc for the sandbox's pid namespace
  kUsernsLimit, // write "0" to proc's sys/user/max_user_namespaces (target: that file)
  kMaskFile,    // the sandbox's /dev/null bound over a file
  kMaskDir,     // an empty read-only tmpfs over a directory
  kReadOnly,    // the target re-bound onto itself read-only
  kHostDevice,  // the host's device node `data` bound onto a file
  kDevpts,      // a new devpts instance
  kSymlink,     // a symlink at target pointing to `data`
};

struct PlannedMount {
  MountOp op;
  std::string target;
  std::string data;
  uint64_t attr = 0;     // MOUNT_ATTR_* for fsmount / the bind
  int fd_index = -1;     // kParentFd
  bool is_file = false;  // the mountpoint to create is a file, not a directory
  bool optional = false; // a missing target is skipped (e.g. /proc/timer_stats)
};

// What the parent turns into a detached mount fd (fds[] in child order).
struct PlannedSource {
  enum Kind : uint8_t {
    kLayer,      // an image layer: idmapped with the sandbox's map, read-only
    kUpper,      // the pool subvolume holding upper/ and work/: idmapped
    kImageBind,  // an image's host directory (the host image's /usr): idmapped, ro
    kHostRO,     // a --mount ...:ro source: plain bind, ro, nosuid, nodev
    kHostRW,     // a --mount ...:rw source: idmapped to its owner, nosuid, nodev
  } kind;
  std::string host_path;
  bool allow_root_owner = false;
  int fd = -1;  // HostMount::source_fd: already resolved by the caller
};

// The steps of the child, in order. Names appear in errors and timings.
enum class ChildStep : uint8_t {
  kReceivePlan,  // a zygote's child only (runtime/init/zygote.cc)
  kNetwork,
  kAwaitParent,
  kSetIds,
  kMakePrivate,
  kStage,
  kAttachLayers,
  kOverlay,
  kMounts,
  kCgroupNamespace,
  kPivotRoot,
  kStdio,
  kHostname,
  kRlimits,
  kInitFds,
  kCapabilities,
  kNoNewPrivs,
  kSeccomp,
  kExecInit,
  kCount,
};

// "pivot-root" etc.
const char* ChildStepName(ChildStep step);

struct LaunchPlan {
  SandboxSpec spec;
  std::vector<PlannedSource> sources;  // index = fd_index
  int upper_source = -1;               // index of the kUpper source, or -1 (tmpfs upper)
  int layer_count = 0;                 // sources[0..layer_count) are the layers, in order
  std::string overlay_lowerdir;        // "l0:l1:..." relative to the stage
  std::vector<PlannedMount> mounts;
  std::vector<int> dropped_caps;       // removed from the bounding set
  int late_unshare_flags = 0;          // CLONE_NEWCGROUP
  bool clone_time_ns = false;          // CLONE_NEWTIME in the clone3 flags
  // The child makes its own network namespace (owned by the sandbox's user
  // namespace) instead of entering one the runtime made (owned by the
  // host's). CRIU 3.17 dumps only trees whose namespaces all belong to their
  // user namespace: checkpointable sandboxes need this.
  bool child_netns = false;
  // airlock-init's read-only mount is attached inside the tree (at
  // /dev/.airlock-init) before it is exec'd, instead of staying detached:
  // CRIU must find the mount of every mapped file in the dumped mount
  // namespace ("Can't lookup mount=N for fd=-3"). Checkpointable sandboxes.
  bool init_in_tree = false;
};

// Capabilities commands may keep (Docker's default set without MKNOD and
// NET_RAW, DESIGN decision 5).
std::vector<int> KeptCapabilities();

// Builds the plan from a validated spec. `has_time_ns` says whether the kernel
// offers time namespaces; `upper_on_pool` whether the writable layer is a pool
// subvolume (else a tmpfs in the stage).
Result<LaunchPlan> BuildLaunchPlan(const SandboxSpec& spec, bool upper_on_pool, bool has_time_ns);

}  // namespace airlock

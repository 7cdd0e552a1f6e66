// SandboxSpec: the runtime's plain description of one sandbox. The harness
// and the CLI fill it in; ValidateSpec() checks it; BuildLaunchPlan() (plan.h)
// turns it into everything the launch needs, before any process is cloned.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock {

// A host path placed into the sandbox. Read-only mounts keep host ownership
// unmapped; read-write mounts are idmapped so that what the sandbox user
// writes belongs to the directory's host owner.
struct HostMount {
  std::string source;       // absolute host path, resolved once without symlinks
  std::string destination;  // absolute, normalized path inside the sandbox
  bool read_only = true;
  bool allow_root_owner = false;  // rw only: permit a source owned by host root
  // The source already resolved by the caller (an O_PATH descriptor it
  // checked, borrowed until the launch returns): used as it is, so the path
  // is never resolved a second time (decision 2). -1: resolved here.
  int source_fd = -1;
};

// A read-only host directory the image itself places in the root (the `host`
// image's /usr). Mounted idmapped with the sandbox's own id map.
struct ImageBind {
  std::string source;
  std::string destination;
};

// A host file or directory copied into the writable layer before the
// overlay is mounted (runtime/fs/seed.h): read with the caller's ids, so a
// caller copies in only what it could read itself; the copies are owned by
// the sandbox's root. Puts the writable layer on the pool.
struct SeedCopy {
  std::string source;       // absolute host path, not "/"; no symlink in it
  std::string destination;  // absolute, normalized path inside the sandbox
  // Host ids every source access is checked as; they must be set (-1 is
  // refused): a forgotten reader must not read as root.
  uid_t read_uid = static_cast<uid_t>(-1);
  gid_t read_gid = static_cast<gid_t>(-1);
  std::vector<gid_t> read_groups;  // the reader's supplementary groups
};

// kNone: loopback only. kProxy: loopback, plus airlock-init's relay
// listening on 127.0.0.1:<proxy_port>, which hands every connection to the
// egress proxy over the sandbox's egress channel (runtime/proto/egress.h);
// the sandbox still has no interface but lo. With `transparent`, netfilter
// rules in the sandbox's namespace send every outbound TCP connection and
// every DNS query to the relay too (runtime/net/transparent.h).
enum class NetMode { kNone, kProxy };

struct EgressSpec {
  uint16_t proxy_port = 3128;
  bool transparent = false;
};

struct ResourceLimits {
  std::optional<uint64_t> memory_bytes;
  std::optional<uint64_t> pids;
  std::optional<double> cpus;
  std::optional<uint64_t> disk_bytes;   // a qgroup limit on the pool subvolume
  uint64_t nofile = 1024;               // RLIMIT_NOFILE soft and hard
  std::optional<uint64_t> fsize_bytes;  // RLIMIT_FSIZE
};

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH inside
  std::vector<std::string> env;   // "K=V", exactly what the command gets
  std::string cwd = "/";
  uid_t uid = 0;                  // inside the sandbox
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

struct SandboxSpec {
  std::string id;  // [a-z0-9-]{1,32}; names the cgroup, subvolume, id range
  // Image: overlay lower layers on the host, uppermost first, with canonical
  // ownership (0-65535 as the sandbox sees it), plus read-only binds.
  std::vector<std::string> layers;
  std::vector<ImageBind> image_binds;
  std::vector<HostMount> mounts;
  std::vector<SeedCopy> seeds;  // copied into the writable layer, in order
  // The writable layer on the pool (a subvolume; what snapshots need) even
  // without a disk limit or seeds.
  bool on_pool = false;
  // The writable layer starts as a writable copy of this pool snapshot
  // (storage::Pool::CreateSubvolumeFrom); implies on_pool, no seeds.
  std::string from_snapshot;
  ProcessSpec process;
  std::string hostname = "sandbox";
  NetMode net = NetMode::kNone;
  EgressSpec egress;  // kProxy only
  ResourceLimits limits;
  std::chrono::milliseconds timeout{0};  // 0: none. Kills the whole tree.
  std::string seccomp_profile = "default";  // a name in the profile dir or a path
};

// Layers, the writable layer, image binds and host mounts together: each is
// one descriptor handed to the sandbox child in one message.
inline constexpr size_t kMaxMountSources = 64;
inline constexpr size_t kMaxSeeds = 64;

// Checks every field; the error names it ("mounts[1].destination: must be
// absolute and normalized (got \"/a/../b\")").
Result<void> ValidateSpec(const SandboxSpec& spec);

// True if `path` is absolute with no "", ".", ".." components, no trailing
// slash (except "/" itself) and no NUL.
bool IsNormalizedAbsolutePath(const std::string& path);

}  // namespace airlock

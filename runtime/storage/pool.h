// airlock's storage pool (DESIGN decision 3): a btrfs filesystem of its own,
// by default a sparse image file attached to a loop device and mounted under
// /var/lib/airlock, as LXD does with its default pool. Each sandbox's writable
// layer is a subvolume under <mountpoint>/sandboxes/, with an optional qgroup
// limit (the sandbox's --disk); snapshots and forks are subvolume snapshots.
//
// Directories airlock creates here are 0700 and owned by host root: the rest
// of the runtime reaches a subvolume through its descriptor (open_tree of the
// fd, DESIGN decision 2), never by walking these paths as a sandbox's ids.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::storage {

inline constexpr uint64_t kMinPoolSize = uint64_t{1} << 30;          // 1 GiB
inline constexpr uint64_t kMaxDefaultPoolSize = uint64_t{64} << 30;  // 64 GiB

struct PoolConfig {
  std::string image = "/var/lib/airlock/pool.img";
  std::string mountpoint = "/var/lib/airlock/pool";
  // Size of a newly created image; ignored when the image exists (an existing
  // pool is never resized here). 0: min(64 GiB, half the free space of the
  // image's filesystem), at least 1 GiB. An explicit size below 1 GiB is
  // refused when the image has to be created.
  uint64_t size_bytes = 0;
};

// One sandbox's subvolume: its path (for messages), an O_DIRECTORY fd of its
// root (what the rest of the runtime should use), and its btrfs subvolume id
// (its level-0 qgroup is 0/<id>).
struct Subvolume {
  std::string path;
  UniqueFd dir;
  uint64_t id = 0;
};

class Pool {
 public:
  // Opens the pool, creating and mounting it when needed: a sparse image made
  // by ftruncate and formatted by mkfs.btrfs (exec'd with a fixed argv, no
  // shell), attached to a free loop device with LOOP_CONFIGURE
  // (LO_FLAGS_AUTOCLEAR, so unmounting detaches it), mounted at the
  // mountpoint, quotas enabled. Idempotent and safe against concurrent callers
  // (flock on <image>.lock). A btrfs already mounted at the mountpoint is used
  // as it is; an image that exists but isn't mounted (after a reboot) is
  // attached and mounted again; any other filesystem mounted there is an
  // error naming the mountpoint.
  static Result<Pool> Open(const PoolConfig& config);

  Pool(Pool&&) noexcept = default;
  Pool& operator=(Pool&&) noexcept = default;

  // Creates <mountpoint>/sandboxes/<name> ([A-Za-z0-9._-]{1,64}) as a
  // subvolume owned 0:0, mode 0755; with limit_bytes (> 0), limits its
  // qgroup's referenced and exclusive bytes, so writes past it fail with
  // EDQUOT (or ENOSPC). An existing name is an EEXIST error. On failure
  // nothing is left behind.
  Result<Subvolume> CreateSubvolume(const std::string& name,
                                    std::optional<uint64_t> limit_bytes);

  // Deletes the subvolume with everything in it, whoever owns the files, and
  // then its qgroup (which the kernel refuses with EBUSY while the cleaner has
  // not dropped the tree yet; that is ignored). A missing subvolume is fine.
  Result<void> DeleteSubvolume(const std::string& name);

  // Bytes the subvolume `name` references, from its level-0 qgroup (what its
  // disk limit counts). A stale or missing qgroup is an error.
  Result<uint64_t> SubvolumeUsage(const std::string& name) const;

  // Names of the subvolumes under sandboxes/, sorted. Entries that aren't
  // subvolumes with valid names are left out.
  std::vector<std::string> ListSubvolumes() const;

  // Snapshots. A filesystem snapshot of a sandbox is a read-only snapshot
  // of its subvolume under <mountpoint>/snapshots/<name>; a restore or fork
  // is a writable snapshot of that, made as a sandbox's subvolume. btrfs
  // shares their extents copy-on-write: the cost is independent of the
  // data's size, and deleting any of them never breaks another.

  // Snapshots the subvolume whose root is `source_dir` as snapshots/<name>,
  // read-only. An existing name is EEXIST; nothing is left on failure.
  Result<Subvolume> SnapshotReadOnly(int source_dir, const std::string& source_path, const std::string& name);
  // Makes sandboxes/<name> a writable snapshot of snapshots/<snapshot>,
  // owned and limited as CreateSubvolume makes them.
  Result<Subvolume> CreateSubvolumeFrom(const std::string& snapshot, const std::string& name,
                                        std::optional<uint64_t> limit_bytes);
  // An O_DIRECTORY fd of sandboxes/<name>'s root (checked to be a subvolume).
  Result<UniqueFd> OpenSubvolumeDir(const std::string& name) const;
  // Deletes snapshots/<name> (and its qgroup); a missing one is fine.
  Result<void> DeleteSnapshot(const std::string& name);
  // Bytes snapshots/<name> references (its level-0 qgroup).
  Result<uint64_t> SnapshotUsage(const std::string& name) const;
  // Names of the snapshots, sorted.
  std::vector<std::string> ListSnapshots() const;

  // The pool's mountpoint, as configured.
  const std::string& mountpoint() const { return mountpoint_; }

  // An O_DIRECTORY fd of <mountpoint>/sandboxes, valid while the Pool lives;
  // for operations on subvolumes by descriptor (snapshots).
  int sandboxes_fd() const { return sandboxes_.get(); }

 private:
  Pool(std::string mountpoint, UniqueFd root, UniqueFd sandboxes, UniqueFd snapshots);
  Result<uint64_t> Usage(int parent, const std::string& dir, const std::string& name) const;
  std::vector<std::string> List(int parent) const;

  std::string mountpoint_;
  UniqueFd root_;       // the pool's root directory
  UniqueFd sandboxes_;  // <root>/sandboxes
  UniqueFd snapshots_;  // <root>/snapshots
};

// The transaction that last changed the subvolume whose root is `dir`
// (BTRFS_IOC_GET_SUBVOL_INFO): equal before and after means nothing in it
// changed in between (once its dirty data was flushed).
Result<uint64_t> SubvolumeGeneration(int dir, const std::string& path);

}  // namespace airlock::storage

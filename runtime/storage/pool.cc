#include "runtime/storage/pool.h"

#include "runtime/core/paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <endian.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/btrfs_tree.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

namespace airlock::storage {
namespace {

constexpr const char* kSandboxesDir = "sandboxes";
constexpr const char* kSnapshotsDir = "snapshots";
constexpr const char* kPoolLabel = "airlock-pool";

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Result<void> CheckName(std::string_view op, const std::string& name) {
  if (ValidName(name)) return {};
  return Fail(std::string(op), "name: invalid subvolume name '" + name +
                                   "' (want [A-Za-z0-9._-]{1,64})");
}


std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

Result<void> FsyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Errno("open", dir);
  if (::fsync(fd.get()) != 0) return Errno("fsync", dir);
  return {};
}

// What is at the mountpoint now: whether it is the root of a mount, and the
// filesystem there. STATX_ATTR_MOUNT_ROOT rather than comparing st_dev with
// the parent's: on a btrfs host every subvolume has its own st_dev, mounted
// or not.
struct MountState {
  bool mount_root = false;
  uint64_t fs_type = 0;
};

Result<MountState> InspectMountpoint(const std::string& mountpoint) {
  struct statx stx;
  if (::statx(AT_FDCWD, mountpoint.c_str(), AT_SYMLINK_NOFOLLOW, STATX_TYPE,
              &stx) != 0)
    return Errno("statx", mountpoint);
  if (!S_ISDIR(stx.stx_mode))
    return ErrnoValue(ENOTDIR, "open pool", mountpoint);
  if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return ErrnoValue(EOPNOTSUPP, "statx STATX_ATTR_MOUNT_ROOT", mountpoint);
  struct statfs sfs;
  if (::statfs(mountpoint.c_str(), &sfs) != 0)
    return Errno("statfs", mountpoint);
  return MountState{(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0,
                    static_cast<uint64_t>(sfs.f_type)};
}

uint64_t DefaultSize(uint64_t free_bytes) {
  uint64_t size = std::min(kMaxDefaultPoolSize, free_bytes / 2);
  size = std::max(size, kMinPoolSize);
  return size & ~((uint64_t{1} << 20) - 1);  // whole MiB
}

// Runs mkfs.btrfs on `target` with a fixed argv and environment, no shell.
// posix_spawn (vfork semantics) is safe from a multithreaded daemon. stderr
// is captured so a failure can say why.
Result<void> RunMkfs(const std::string& target) {
  const char* mkfs = nullptr;
  for (const char* candidate : {"/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs"}) {
    if (::access(candidate, X_OK) == 0) {
      mkfs = candidate;
      break;
    }
  }
  if (!mkfs)
    return ErrnoValue(ENOENT, "mkfs.btrfs",
                      "/usr/sbin/mkfs.btrfs (install btrfs-progs)");

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return Errno("pipe2", "mkfs.btrfs stderr");
  UniqueFd err_r(pipefd[0]), err_w(pipefd[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  const char* argv[] = {"mkfs.btrfs", "-q",           "-L",   kPoolLabel,
                        "--",         target.c_str(), nullptr};
  const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
                        nullptr};
  pid_t pid = -1;
  int rc =
      ::posix_spawn(&pid, mkfs, &fa, nullptr, const_cast<char* const*>(argv),
                    const_cast<char* const*>(envp));
  posix_spawn_file_actions_destroy(&fa);
  err_w.Reset();
  if (rc != 0) return ErrnoValue(rc, "spawn", mkfs);

  std::string output;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(err_r.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < 2048) output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Errno("waitpid", mkfs);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == ' '))
    output.pop_back();
  for (char& c : output)
    if (c == '\n') c = ' ';
  std::string why =
      WIFEXITED(status)
          ? "exit status " + std::to_string(WEXITSTATUS(status))
          : "killed by signal " + std::to_string(WTERMSIG(status));
  return Fail("mkfs.btrfs",
              target + ": " + why + (output.empty() ? "" : ": " + output));
}

// Makes the image under a temporary name and renames it into place only once
// it is formatted and synced: a crash half-way leaves no image that a later
// Open would take for a pool and fail to mount.
Result<void> CreateImage(const std::string& image, uint64_t size_bytes) {
  std::string dir = ParentDir(image);
  if (size_bytes == 0) {
    struct statvfs vfs;
    if (::statvfs(dir.c_str(), &vfs) != 0) return Errno("statvfs", dir);
    size_bytes = DefaultSize(uint64_t{vfs.f_bavail} * vfs.f_frsize);
  } else if (size_bytes < kMinPoolSize) {
    return Fail("create pool image",
                "size_bytes: " + std::to_string(size_bytes) +
                    " is below the minimum of 1 GiB");
  }
  std::string tmp = image + ".new";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT)
    return Errno("unlink", tmp);
  {
    UniqueFd fd(::open(
        tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return Errno("create", tmp);
    // ftruncate makes the file sparse; fallocate would take the space now.
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoValue(err, "ftruncate",
                        tmp + " to " + std::to_string(size_bytes));
    }
  }
  auto mkfs = RunMkfs(tmp);
  if (!mkfs) {
    ::unlink(tmp.c_str());
    return std::unexpected(std::move(mkfs.error()));
  }
  {
    UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!fd || ::fsync(fd.get()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoValue(err, "fsync", tmp);
    }
  }
  if (::rename(tmp.c_str(), image.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoValue(err, "rename", tmp + " -> " + image);
  }
  return FsyncDir(dir);
}

struct LoopDevice {
  std::string path;
  UniqueFd fd;
};

// Attaches the image to a free loop device. Another process (losetup, a
// second airlock pool) may take the device between LOOP_CTL_GET_FREE and
// LOOP_CONFIGURE; the kernel then says EBUSY and we ask for another.
// LOOP_CONFIGURE sets file and flags in one step, without the window of the
// older LOOP_SET_FD + LOOP_SET_STATUS64 pair. With LO_FLAGS_AUTOCLEAR the
// device detaches itself when its last user (this fd, then the mount) goes
// away, so an unmounted pool leaves no loop device behind; direct I/O stays
// off (the default).
Result<LoopDevice> AttachLoop(const std::string& image) {
  UniqueFd backing(::open(image.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (!backing) return Errno("open", image);
  struct stat st;
  if (::fstat(backing.get(), &st) != 0) return Errno("fstat", image);
  if (!S_ISREG(st.st_mode))
    return Fail("open pool image", image + ": not a regular file");

  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return Errno("open", "/dev/loop-control");
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Errno("LOOP_CTL_GET_FREE", "/dev/loop-control");
    std::string path = "/dev/loop" + std::to_string(n);
    UniqueFd dev(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!dev) return Errno("open", path);
    struct loop_config cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.fd = static_cast<uint32_t>(backing.get());
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    std::strncpy(reinterpret_cast<char*>(cfg.info.lo_file_name), image.c_str(),
                 LO_NAME_SIZE - 1);
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &cfg) == 0)
      return LoopDevice{path, std::move(dev)};
    if (errno != EBUSY) return Errno("LOOP_CONFIGURE", path + " <- " + image);
  }
  return ErrnoValue(EBUSY, "LOOP_CONFIGURE",
                    "no free loop device for " + image);
}

Result<void> MountImage(const std::string& image,
                        const std::string& mountpoint) {
  LoopDevice loop = TRY(AttachLoop(image));
  // The mount holds the block device open from here on; closing our fd after
  // it (whether the mount worked or not) hands the device to autoclear.
  if (::mount(loop.path.c_str(), mountpoint.c_str(), "btrfs",
              MS_NOSUID | MS_NODEV, nullptr) != 0)
    return Errno("mount btrfs",
                 loop.path + " (" + image + ") on " + mountpoint);
  return {};
}

// Quotas are enabled once per filesystem; /sys/fs/btrfs/<fsid>/qgroups exists
// exactly when they are. Enabling again would be harmless (the kernel returns
// early), the check just avoids the ioctl's write access on every Open.
Result<void> EnsureQuotas(int root_fd, const std::string& mountpoint) {
  struct btrfs_ioctl_fs_info_args info;
  std::memset(&info, 0, sizeof info);
  if (::ioctl(root_fd, BTRFS_IOC_FS_INFO, &info) != 0)
    return Errno("BTRFS_IOC_FS_INFO", mountpoint);
  char uuid[40];
  const uint8_t* u = info.fsid;
  std::snprintf(
      uuid, sizeof uuid,
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
      u[12], u[13], u[14], u[15]);
  std::string sysfs_qgroups = std::string("/sys/fs/btrfs/") + uuid + "/qgroups";
  if (::access(sysfs_qgroups.c_str(), F_OK) == 0) return {};

  struct btrfs_ioctl_quota_ctl_args ctl;
  std::memset(&ctl, 0, sizeof ctl);
  ctl.cmd = BTRFS_QUOTA_CTL_ENABLE;
  if (::ioctl(root_fd, BTRFS_IOC_QUOTA_CTL, &ctl) != 0)
    return Errno("BTRFS_IOC_QUOTA_CTL enable", mountpoint);
  // Enabling starts a rescan of what is already there; limits are only
  // right once it has finished.
  if (::ioctl(root_fd, BTRFS_IOC_QUOTA_RESCAN_WAIT) != 0 && errno != ENOTCONN)
    return Errno("BTRFS_IOC_QUOTA_RESCAN_WAIT", mountpoint);
  return {};
}

// The btrfs subvolume id of the subvolume `fd` is in. INO_LOOKUP with
// treeid 0 and the subvolume root's objectid answers without CAP_SYS_ADMIN.
Result<uint64_t> SubvolumeId(int fd, const std::string& path) {
  struct btrfs_ioctl_ino_lookup_args args;
  std::memset(&args, 0, sizeof args);
  args.treeid = 0;
  args.objectid = BTRFS_FIRST_FREE_OBJECTID;
  if (::ioctl(fd, BTRFS_IOC_INO_LOOKUP, &args) != 0)
    return Errno("BTRFS_IOC_INO_LOOKUP", path);
  return static_cast<uint64_t>(args.treeid);
}

// Opens <sandboxes>/<name> and checks it is a subvolume root (inode 256 is
// the root directory of every btrfs subvolume).
Result<UniqueFd> OpenSubvolume(int sandboxes_fd, const std::string& name,
                               const std::string& path) {
  UniqueFd fd(::openat(sandboxes_fd, name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Errno("open subvolume", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Errno("fstat", path);
  if (st.st_ino != BTRFS_FIRST_FREE_OBJECTID)
    return Fail("open subvolume", path + ": a directory, not a subvolume");
  return fd;
}

// Destroys subvolume `id` by id, with SNAP_DESTROY_V2: the kernel checks
// the caller's rights on the parent directory only, so root deletes it
// whatever ids own the files inside. Falls back to the by-name ioctl on
// kernels without V2.
Result<void> DestroySubvolume(int parent_fd, const std::string& name,
                              uint64_t id, const std::string& path) {
  struct btrfs_ioctl_vol_args_v2 v2;
  std::memset(&v2, 0, sizeof v2);
  v2.flags = BTRFS_SUBVOL_SPEC_BY_ID;
  v2.subvolid = id;
  if (::ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY_V2, &v2) == 0) return {};
  if (errno != ENOTTY && errno != EOPNOTSUPP)
    return Errno("BTRFS_IOC_SNAP_DESTROY_V2",
                 path + " (subvolume " + std::to_string(id) + ")");
  struct btrfs_ioctl_vol_args v1;
  std::memset(&v1, 0, sizeof v1);
  std::strncpy(v1.name, name.c_str(), BTRFS_PATH_NAME_MAX);
  if (::ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, &v1) != 0)
    return Errno("BTRFS_IOC_SNAP_DESTROY", path);
  return {};
}

// Removes qgroup 0/<id>. While the cleaner thread still holds the deleted
// subvolume's tree the kernel answers EBUSY; with quotas off, ENOTCONN; a
// qgroup already gone, ENOENT. None of these leaves anything to do now.
// (The usual case is EBUSY: deletion only unlinks the subvolume. Recent
// kernels — 6.18 here — drop the qgroup themselves once the tree is gone; on
// older ones an empty, unlimited-in-effect "stale" qgroup stays behind.)
Result<void> RemoveQgroup(int fd, uint64_t id, const std::string& path) {
  struct btrfs_ioctl_qgroup_create_args args;
  std::memset(&args, 0, sizeof args);
  args.create = 0;
  args.qgroupid = id;
  if (::ioctl(fd, BTRFS_IOC_QGROUP_CREATE, &args) == 0) return {};
  if (errno == EBUSY || errno == ENOENT || errno == ENOTCONN) return {};
  return Errno("BTRFS_IOC_QGROUP_CREATE remove",
               path + " (qgroup 0/" + std::to_string(id) + ")");
}

// Limits qgroup 0/<id> (referenced and exclusive bytes).
Result<void> LimitQgroup(int dir, uint64_t id, uint64_t limit_bytes, const std::string& path) {
  struct btrfs_ioctl_qgroup_limit_args lim;
  std::memset(&lim, 0, sizeof lim);
  lim.qgroupid = id;  // level 0: qgroup 0/<id>
  lim.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER | BTRFS_QGROUP_LIMIT_MAX_EXCL;
  lim.lim.max_rfer = limit_bytes;
  lim.lim.max_excl = limit_bytes;
  if (::ioctl(dir, BTRFS_IOC_QGROUP_LIMIT, &lim) != 0)
    return Errno("BTRFS_IOC_QGROUP_LIMIT",
                 path + " (qgroup 0/" + std::to_string(id) + ", " + std::to_string(limit_bytes) + " bytes)");
  return {};
}

// A snapshot of the subvolume `source` named `name` in `parent`.
Result<void> SnapCreate(int parent, int source, const std::string& name, bool read_only, const std::string& path) {
  struct btrfs_ioctl_vol_args_v2 args;
  std::memset(&args, 0, sizeof args);
  args.fd = source;
  args.flags = read_only ? BTRFS_SUBVOL_RDONLY : 0;
  std::strncpy(args.name, name.c_str(), BTRFS_SUBVOL_NAME_MAX);
  if (::ioctl(parent, BTRFS_IOC_SNAP_CREATE_V2, &args) != 0) return Errno("BTRFS_IOC_SNAP_CREATE_V2", path);
  return {};
}

// Deletes <parent>/<name> and its qgroup; a missing one is fine.
Result<void> DeleteIn(int parent, const std::string& name, const std::string& path) {
  uint64_t id = 0;
  {
    auto dir = OpenSubvolume(parent, name, path);
    if (!dir) {
      if (dir.error().err == ENOENT) return {};
      return std::unexpected(std::move(dir.error()));
    }
    id = TRY(SubvolumeId(dir->get(), path));
  }  // closed before the destroy: an open fd keeps the dentry busy for nothing
  TRY(DestroySubvolume(parent, name, id, path));
  return RemoveQgroup(parent, id, path);
}

}  // namespace

Result<uint64_t> SubvolumeGeneration(int dir, const std::string& path) {
  struct btrfs_ioctl_get_subvol_info_args info;
  std::memset(&info, 0, sizeof info);
  // 6.18 answers 1 (a search's "not found" for the subvolume's ROOT_BACKREF)
  // with the info filled in: only a negative answer is a failure.
  if (::ioctl(dir, BTRFS_IOC_GET_SUBVOL_INFO, &info) < 0) return Errno("BTRFS_IOC_GET_SUBVOL_INFO", path);
  return static_cast<uint64_t>(info.generation);
}

Pool::Pool(std::string mountpoint, UniqueFd root, UniqueFd sandboxes, UniqueFd snapshots)
    : mountpoint_(std::move(mountpoint)),
      root_(std::move(root)),
      sandboxes_(std::move(sandboxes)),
      snapshots_(std::move(snapshots)) {}

Result<Pool> Pool::Open(const PoolConfig& config) {
  constexpr const char* kOp = "open pool";
  if (config.image.empty() || config.image.front() != '/')
    return Fail(kOp,
                "image: want an absolute path, got '" + config.image + "'");
  if (config.mountpoint.empty() || config.mountpoint.front() != '/')
    return Fail(kOp, "mountpoint: want an absolute path, got '" +
                         config.mountpoint + "'");
  if (config.image == config.mountpoint)
    return Fail(kOp, "image and mountpoint are the same path: " + config.image);

  TRY(MakeDirs(ParentDir(config.image)));
  TRY(MakeDirs(config.mountpoint));

  // One Open at a time per image: two would each see "not mounted" and
  // attach and mount the image twice.
  std::string lock_path = config.image + ".lock";
  UniqueFd lock(::open(lock_path.c_str(),
                       O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) return Errno("open", lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return Errno("flock", lock_path);
  }

  MountState state = TRY(InspectMountpoint(config.mountpoint));
  if (state.mount_root && state.fs_type != BTRFS_SUPER_MAGIC)
    return Fail(kOp, config.mountpoint + ": a filesystem of type " +
                         Hex(state.fs_type) + " is mounted there, not btrfs");
  if (!state.mount_root) {
    struct stat st;
    if (::lstat(config.image.c_str(), &st) != 0) {
      if (errno != ENOENT) return Errno("stat", config.image);
      TRY(CreateImage(config.image, config.size_bytes));
    } else if (!S_ISREG(st.st_mode)) {
      return Fail(kOp, config.image + ": not a regular file");
    }
    TRY(MountImage(config.image, config.mountpoint));
  }

  UniqueFd root(::open(config.mountpoint.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return Errno("open", config.mountpoint);
  struct statfs sfs;
  if (::fstatfs(root.get(), &sfs) != 0)
    return Errno("fstatfs", config.mountpoint);
  if (sfs.f_type != BTRFS_SUPER_MAGIC)
    return Fail(kOp, config.mountpoint + ": not btrfs after mounting (type " +
                         Hex(static_cast<uint64_t>(sfs.f_type)) + ")");
  TRY(EnsureQuotas(root.get(), config.mountpoint));

  std::string sandboxes_path = config.mountpoint + "/" + kSandboxesDir;
  if (::mkdirat(root.get(), kSandboxesDir, 0700) != 0 && errno != EEXIST)
    return Errno("mkdir", sandboxes_path);
  UniqueFd sandboxes(::openat(root.get(), kSandboxesDir,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sandboxes) return Errno("open", sandboxes_path);
  std::string snapshots_path = config.mountpoint + "/" + kSnapshotsDir;
  if (::mkdirat(root.get(), kSnapshotsDir, 0700) != 0 && errno != EEXIST)
    return Errno("mkdir", snapshots_path);
  UniqueFd snapshots(::openat(root.get(), kSnapshotsDir,
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!snapshots) return Errno("open", snapshots_path);
  return Pool(config.mountpoint, std::move(root), std::move(sandboxes), std::move(snapshots));
}

Result<Subvolume> Pool::CreateSubvolume(const std::string& name,
                                        std::optional<uint64_t> limit_bytes) {
  constexpr const char* kOp = "create subvolume";
  TRY(CheckName(kOp, name));
  if (limit_bytes && *limit_bytes == 0)
    return Fail(kOp, "limit_bytes: must be > 0");
  std::string path = mountpoint_ + "/" + kSandboxesDir + "/" + name;

  struct btrfs_ioctl_vol_args args;
  std::memset(&args, 0, sizeof args);
  std::strncpy(args.name, name.c_str(), BTRFS_PATH_NAME_MAX);
  if (::ioctl(sandboxes_.get(), BTRFS_IOC_SUBVOL_CREATE, &args) != 0)
    return Errno("BTRFS_IOC_SUBVOL_CREATE", path);

  // From here a failure must not leave the subvolume behind.
  auto finish = [&]() -> Result<Subvolume> {
    UniqueFd dir = TRY(OpenSubvolume(sandboxes_.get(), name, path));
    // The new root's mode follows our umask; make it what the layers expect.
    if (::fchown(dir.get(), 0, 0) != 0) return Errno("fchown 0:0", path);
    if (::fchmod(dir.get(), 0755) != 0) return Errno("fchmod 0755", path);
    uint64_t id = TRY(SubvolumeId(dir.get(), path));
    if (limit_bytes) TRY(LimitQgroup(dir.get(), id, *limit_bytes, path));
    return Subvolume{path, std::move(dir), id};
  };
  auto result = finish();
  if (!result) (void)DeleteSubvolume(name);
  return result;
}

Result<void> Pool::DeleteSubvolume(const std::string& name) {
  TRY(CheckName("delete subvolume", name));
  return DeleteIn(sandboxes_.get(), name, mountpoint_ + "/" + kSandboxesDir + "/" + name);
}

Result<Subvolume> Pool::SnapshotReadOnly(int source_dir, const std::string& source_path, const std::string& name) {
  TRY(CheckName("snapshot", name));
  std::string path = mountpoint_ + "/" + kSnapshotsDir + "/" + name;
  TRY(SnapCreate(snapshots_.get(), source_dir, name, /*read_only=*/true, source_path + " -> " + path));
  auto opened = [&]() -> Result<Subvolume> {
    UniqueFd dir = TRY(OpenSubvolume(snapshots_.get(), name, path));
    uint64_t id = TRY(SubvolumeId(dir.get(), path));
    return Subvolume{path, std::move(dir), id};
  }();
  if (!opened) (void)DeleteSnapshot(name);
  return opened;
}

Result<Subvolume> Pool::CreateSubvolumeFrom(const std::string& snapshot, const std::string& name,
                                            std::optional<uint64_t> limit_bytes) {
  TRY(CheckName("restore snapshot", snapshot));
  TRY(CheckName("restore snapshot", name));
  if (limit_bytes && *limit_bytes == 0) return Fail("restore snapshot", "limit_bytes: must be > 0");
  std::string from = mountpoint_ + "/" + kSnapshotsDir + "/" + snapshot;
  std::string path = mountpoint_ + "/" + kSandboxesDir + "/" + name;
  UniqueFd source = TRY(OpenSubvolume(snapshots_.get(), snapshot, from));
  TRY(SnapCreate(sandboxes_.get(), source.get(), name, /*read_only=*/false, from + " -> " + path));
  auto made = [&]() -> Result<Subvolume> {
    UniqueFd dir = TRY(OpenSubvolume(sandboxes_.get(), name, path));
    uint64_t id = TRY(SubvolumeId(dir.get(), path));
    if (limit_bytes) TRY(LimitQgroup(dir.get(), id, *limit_bytes, path));
    return Subvolume{path, std::move(dir), id};
  }();
  if (!made) (void)DeleteSubvolume(name);
  return made;
}

Result<UniqueFd> Pool::OpenSubvolumeDir(const std::string& name) const {
  TRY(CheckName("open subvolume", name));
  return OpenSubvolume(sandboxes_.get(), name, mountpoint_ + "/" + kSandboxesDir + "/" + name);
}

Result<void> Pool::DeleteSnapshot(const std::string& name) {
  TRY(CheckName("delete snapshot", name));
  return DeleteIn(snapshots_.get(), name, mountpoint_ + "/" + kSnapshotsDir + "/" + name);
}

std::vector<std::string> Pool::ListSubvolumes() const { return List(sandboxes_.get()); }
std::vector<std::string> Pool::ListSnapshots() const { return List(snapshots_.get()); }

std::vector<std::string> Pool::List(int parent) const {
  std::vector<std::string> names;
  // A fresh fd: readdir's position lives in the open file, and this is const.
  int fd = ::openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return names;
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return names;
  }
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (!ValidName(name)) continue;
    struct stat st;
    if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;
    if (S_ISDIR(st.st_mode) && st.st_ino == BTRFS_FIRST_FREE_OBJECTID)
      names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

Result<uint64_t> Pool::SubvolumeUsage(const std::string& name) const {
  return Usage(sandboxes_.get(), kSandboxesDir, name);
}

Result<uint64_t> Pool::SnapshotUsage(const std::string& name) const {
  return Usage(snapshots_.get(), kSnapshotsDir, name);
}

Result<uint64_t> Pool::Usage(int parent, const std::string& dir, const std::string& name) const {
  const std::string path = mountpoint_ + "/" + dir + "/" + name;
  UniqueFd fd = TRY(OpenSubvolume(parent, name, path));
  const uint64_t id = TRY(SubvolumeId(fd.get(), path));
  // The quota tree's BTRFS_QGROUP_INFO_KEY item for 0/<id>: {generation,
  // rfer, rfer_cmpr, excl, excl_cmpr}, little-endian u64s.
  struct btrfs_ioctl_search_args args;
  std::memset(&args, 0, sizeof args);
  auto& k = args.key;
  k.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
  k.min_objectid = k.max_objectid = 0;
  k.min_type = k.max_type = BTRFS_QGROUP_INFO_KEY;
  k.min_offset = k.max_offset = id;
  k.max_transid = ~0ULL;
  k.nr_items = 1;
  if (::ioctl(root_.get(), BTRFS_IOC_TREE_SEARCH, &args) != 0) return Errno("BTRFS_IOC_TREE_SEARCH quota", path);
  if (k.nr_items < 1) return ErrnoValue(ENOENT, "qgroup info", "0/" + std::to_string(id) + " (" + path + ")");
  struct btrfs_ioctl_search_header header;
  std::memcpy(&header, args.buf, sizeof header);
  if (header.type != BTRFS_QGROUP_INFO_KEY || header.len < 2 * sizeof(uint64_t))
    return Fail("qgroup info", "unexpected item for 0/" + std::to_string(id));
  uint64_t rfer;
  std::memcpy(&rfer, args.buf + sizeof header + sizeof(uint64_t), sizeof rfer);
  return le64toh(rfer);
}

}  // namespace airlock::storage

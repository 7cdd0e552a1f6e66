#include "runtime/fs/sources.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace airlock::fs {
namespace {

std::string FsTypeName(__fsword_t type) {
  switch (type) {
    case TMPFS_MAGIC: return "tmpfs";
    case NFS_SUPER_MAGIC: return "nfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    case 0x65735546: return "fuse";
    default: {
      char buf[32];
      snprintf(buf, sizeof(buf), "filesystem 0x%lx", static_cast<unsigned long>(type));
      return buf;
    }
  }
}

Result<void> WriteFile(const std::string& path, const std::string& content) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Errno("open", path);
  if (write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()))
    return Errno("write", path + ": " + content);
  return {};
}

}  // namespace

Result<UniqueFd> OpenHostPath(const std::string& path) {
  if (path.empty() || path[0] != '/') return Fail("open host path", "not absolute: " + path);
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof(how)));
  if (fd < 0) {
    if (errno == ELOOP) return ErrnoValue(ELOOP, "open host path", path + " (contains a symlink; give the real path)");
    return Errno("open host path", path);
  }
  return UniqueFd(fd);
}

Result<UniqueFd> CloneMount(int fd, const std::string& what, uint64_t attr_set, int userns_fd) {
  int m = static_cast<int>(
      syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  if (m < 0) return Errno("open_tree", what);
  UniqueFd mnt(m);
  mount_attr attr{};
  attr.attr_set = attr_set;
  if (userns_fd >= 0) {
    attr.attr_set |= MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<uint64_t>(userns_fd);
  }
  if (attr.attr_set != 0 &&
      syscall(SYS_mount_setattr, mnt.get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
    int err = errno;
    if (userns_fd >= 0 && err == EINVAL) {
      // The filesystem can't be idmapped on this kernel (tmpfs before 6.3,
      // many network filesystems): say which one.
      struct statfs sfs;
      std::string type = fstatfs(fd, &sfs) == 0 ? FsTypeName(sfs.f_type) : "this filesystem";
      return ErrnoValue(err, "mount_setattr (idmap)",
                        what + ": " + type + " doesn't support idmapped mounts on this kernel; use a source on "
                                             "ext4, xfs or btrfs (tmpfs needs Linux 6.3)");
    }
    return ErrnoValue(err, userns_fd >= 0 ? "mount_setattr (idmap)" : "mount_setattr", what);
  }
  return mnt;
}

Result<void> WriteIdMaps(pid_t pid, const std::string& uid_map, const std::string& gid_map) {
  std::string base = "/proc/" + std::to_string(pid);
  TRY(WriteFile(base + "/uid_map", uid_map));
  TRY(WriteFile(base + "/gid_map", gid_map));
  return {};
}

Result<UniqueFd> MakeSingleIdUserns(uid_t inside_uid, uid_t outside_uid, gid_t inside_gid,
                                    gid_t outside_gid) {
  return MakeIdmapUserns(std::to_string(inside_uid) + " " + std::to_string(outside_uid) + " 1\n",
                         std::to_string(inside_gid) + " " + std::to_string(outside_gid) + " 1\n");
}

Result<UniqueFd> MakeIdmapUserns(const std::string& uid_map, const std::string& gid_map) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return Errno("pipe2", "idmap user namespace");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  clone_args args{};
  args.flags = CLONE_NEWUSER;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) return Errno("clone3", "idmap user namespace");
  if (pid == 0) {
    // Holds the namespace open until the parent has its fd.
    char c;
    wr.Reset();
    (void)!read(rd.get(), &c, 1);
    _exit(0);
  }
  rd.Reset();
  auto reap = [&] {
    wr.Reset();
    waitpid(static_cast<pid_t>(pid), nullptr, 0);
  };
  auto maps = WriteIdMaps(static_cast<pid_t>(pid), uid_map, gid_map);
  if (!maps) {
    reap();
    return std::unexpected(maps.error());
  }
  std::string ns = "/proc/" + std::to_string(pid) + "/ns/user";
  UniqueFd fd(open(ns.c_str(), O_RDONLY | O_CLOEXEC));
  int err = errno;
  reap();
  if (!fd) return ErrnoValue(err, "open", ns);
  return fd;
}

}  // namespace airlock::fs

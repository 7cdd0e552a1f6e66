// The syscall seam. Every call the sandbox child's launch steps make goes
// through Syscalls, so the whole step sequence can be replayed against a
// recording fake without root (the youki model). Methods return 0 or a
// non-negative fd on success and -errno on failure: the child must not
// allocate, so there is no Result here.
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>

namespace airlock {

class Syscalls {
 public:
  virtual ~Syscalls() = default;

  // The new mount API (fsopen/fsconfig/fsmount/move_mount/open_tree/mount_setattr).
  virtual int FsOpen(const char* fstype) = 0;
  virtual int FsConfigString(int fsfd, const char* key, const char* value) = 0;
  virtual int FsConfigFlag(int fsfd, const char* key) = 0;
  virtual int FsConfigCreate(int fsfd) = 0;
  virtual int FsMount(int fsfd, unsigned attr_flags) = 0;
  virtual int MoveMount(int from_fd, const char* from_path, int to_fd, const char* to_path,
                        unsigned flags) = 0;
  virtual int OpenTree(int dirfd, const char* path, unsigned flags) = 0;
  virtual int MountSetattr(int dirfd, const char* path, unsigned flags, uint64_t attr_set,
                           uint64_t attr_clr) = 0;
  virtual int Mount(const char* source, const char* target, const char* fstype,
                    unsigned long flags, const void* data) = 0;
  virtual int Umount2(const char* target, int flags) = 0;
  virtual int PivotRoot(const char* new_root, const char* put_old) = 0;

  // Paths relative to directory fds.
  virtual int OpenBeneath(int dirfd, const char* path, int flags, unsigned mode,
                          uint64_t resolve) = 0;  // openat2
  virtual int MkdirAt(int dirfd, const char* path, unsigned mode) = 0;
  virtual int SymlinkAt(const char* target, int dirfd, const char* path) = 0;
  virtual int WriteAll(int fd, const void* data, size_t len) = 0;
  virtual int Close(int fd) = 0;
  virtual int Fchdir(int fd) = 0;
  virtual int Chdir(const char* path) = 0;
  virtual int Dup2(int from, int to) = 0;
  virtual int DupAbove(int fd, int min) = 0;  // fcntl(F_DUPFD_CLOEXEC): the lowest free >= min
  virtual int CloseRangeFrom(unsigned first) = 0;
  virtual int SetCloexec(int fd, bool on) = 0;
  virtual int IsDirectory(int fd) = 0;  // 1, 0, or -errno (fstat)
  // Receives the parent's go message: fills fds (up to max), returns the count or -errno.
  virtual int ReceiveFds(int sock, int* fds, int max) = 0;
  virtual int Send(int sock, const void* data, size_t len) = 0;  // one datagram
  virtual bool PeerHungUp(int sock) = 0;
  virtual int SocketPair(int sv[2]) = 0;  // AF_UNIX SOCK_SEQPACKET, close-on-exec
  virtual int SendFd(int sock, uint16_t type, int fd) = 0;  // an empty proto message carrying fd
  virtual int Setsid() = 0;

  // Identity, namespaces, limits, privileges.
  virtual int SetIds(uid_t uid, gid_t gid) = 0;  // setgroups(0) + setresgid + setresuid
  virtual int Unshare(int flags) = 0;
  virtual int SetHostname(const char* name, size_t len) = 0;
  virtual int SetRlimit(int resource, const rlimit& limit) = 0;
  virtual int DropBoundingCap(int cap) = 0;
  // Ambient and inheritable cleared; permitted and effective cut to the
  // bounding set (what an exec as root would leave).
  virtual int LimitCapabilities() = 0;
  virtual int SetNoNewPrivs() = 0;
  virtual int SetParentDeathSignal(int sig) = 0;
  virtual int InstallSeccomp(const sock_fprog& prog) = 0;
  virtual int LoopbackUp() = 0;  // rtnetlink: set "lo" up in the current netns
  virtual int ExecveAt(int fd, char* const argv[], char* const envp[]) = 0;  // AT_EMPTY_PATH
};

// The real kernel.
Syscalls& LinuxSyscalls();

}  // namespace airlock

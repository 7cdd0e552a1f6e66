#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/net/loopback.h"
#include "runtime/proto/channel.h"
#include "runtime/sys/syscalls.h"

namespace airlock {
namespace {

int Ret(long r) { return r < 0 ? -errno : static_cast<int>(r); }

class RealSyscalls final : public Syscalls {
 public:
  int FsOpen(const char* fstype) override { return Ret(syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC)); }
  int FsConfigString(int fsfd, const char* key, const char* value) override {
    return Ret(syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, key, value, 0));
  }
  int FsConfigFlag(int fsfd, const char* key) override {
    return Ret(syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_FLAG, key, nullptr, 0));
  }
  int FsConfigCreate(int fsfd) override {
    return Ret(syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0));
  }
  int FsMount(int fsfd, unsigned attr_flags) override {
    return Ret(syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attr_flags));
  }
  int MoveMount(int from_fd, const char* from_path, int to_fd, const char* to_path,
                unsigned flags) override {
    return Ret(syscall(SYS_move_mount, from_fd, from_path, to_fd, to_path, flags));
  }
  int OpenTree(int dirfd, const char* path, unsigned flags) override {
    return Ret(syscall(SYS_open_tree, dirfd, path, flags));
  }
  int MountSetattr(int dirfd, const char* path, unsigned flags, uint64_t attr_set,
                   uint64_t attr_clr) override {
    mount_attr attr{};
    attr.attr_set = attr_set;
    attr.attr_clr = attr_clr;
    return Ret(syscall(SYS_mount_setattr, dirfd, path, flags, &attr, sizeof(attr)));
  }
  int Mount(const char* source, const char* target, const char* fstype, unsigned long flags,
            const void* data) override {
    return Ret(::mount(source, target, fstype, flags, data));
  }
  int Umount2(const char* target, int flags) override { return Ret(::umount2(target, flags)); }
  int PivotRoot(const char* new_root, const char* put_old) override {
    return Ret(syscall(SYS_pivot_root, new_root, put_old));
  }
  int OpenBeneath(int dirfd, const char* path, int flags, unsigned mode, uint64_t resolve) override {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags);
    how.mode = mode;
    how.resolve = resolve;
    return Ret(syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
  }
  int MkdirAt(int dirfd, const char* path, unsigned mode) override { return Ret(::mkdirat(dirfd, path, mode)); }
  int SymlinkAt(const char* target, int dirfd, const char* path) override {
    return Ret(::symlinkat(target, dirfd, path));
  }
  int WriteAll(int fd, const void* data, size_t len) override {
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
      ssize_t n = ::write(fd, p, len);
      if (n < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      p += n;
      len -= static_cast<size_t>(n);
    }
    return 0;
  }
  int Close(int fd) override { return Ret(::close(fd)); }
  int Fchdir(int fd) override { return Ret(::fchdir(fd)); }
  int Chdir(const char* path) override { return Ret(::chdir(path)); }
  int Dup2(int from, int to) override { return Ret(::dup2(from, to)); }
  int DupAbove(int fd, int min) override { return Ret(fcntl(fd, F_DUPFD_CLOEXEC, min)); }
  int CloseRangeFrom(unsigned first) override { return Ret(syscall(SYS_close_range, first, ~0U, 0)); }
  int SetCloexec(int fd, bool on) override { return Ret(fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0)); }
  int IsDirectory(int fd) override {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    return S_ISDIR(st.st_mode) ? 1 : 0;
  }
  int ReceiveFds(int sock, int* fds, int max) override { return proto::ReceiveFds(sock, fds, max); }
  int Send(int sock, const void* data, size_t len) override {
    return Ret(::send(sock, data, len, MSG_NOSIGNAL));
  }
  bool PeerHungUp(int sock) override {
    pollfd p{sock, 0, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
  }
  int SendFd(int sock, uint16_t type, int fd) override {
    int fds[1] = {fd};
    return proto::SendMessage(sock, static_cast<proto::Type>(type), {}, fds);
  }
  int SocketPair(int sv[2]) override {
    return Ret(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
  }
  int Setsid() override { return Ret(::setsid()); }
  int SetIds(uid_t uid, gid_t gid) override {
    // Raw syscalls: glibc's wrappers broadcast to all threads with signals,
    // which a raw-cloned child must not rely on.
    if (syscall(SYS_setgroups, 0, nullptr) < 0) return -errno;
    if (syscall(SYS_setresgid, gid, gid, gid) < 0) return -errno;
    if (syscall(SYS_setresuid, uid, uid, uid) < 0) return -errno;
    return 0;
  }
  int Unshare(int flags) override { return Ret(::unshare(flags)); }
  int SetHostname(const char* name, size_t len) override { return Ret(::sethostname(name, len)); }
  int SetRlimit(int resource, const rlimit& limit) override {
    return Ret(::setrlimit(static_cast<__rlimit_resource>(resource), &limit));
  }
  int DropBoundingCap(int cap) override {
    int r = prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    // A capability the kernel doesn't know is not in the set to begin with.
    if (r < 0 && errno == EINVAL) return 0;
    return Ret(r);
  }
  int LimitCapabilities() override {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return -errno;
    struct {
      uint32_t version;
      int pid;
    } header{0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct {
      uint32_t effective, permitted, inheritable;
    } data[2]{};
    if (syscall(SYS_capget, &header, data) < 0) return -errno;
    // What an exec as root would leave: permitted and effective are the
    // bounding set, nothing inheritable. A child that becomes init without
    // an exec (the zygote's) relies on this.
    // (EINVAL: past the last capability this kernel knows.)
    bool known = true;
    for (int cap = 0; cap < 64; ++cap) {
      if (known) {
        int in_bounding = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in_bounding == 1) continue;
        if (in_bounding < 0 && errno != EINVAL) return -errno;
        known = in_bounding == 0;
      }
      uint32_t bit = 1u << (cap % 32);
      data[cap / 32].effective &= ~bit;
      data[cap / 32].permitted &= ~bit;
    }
    data[0].inheritable = data[1].inheritable = 0;
    return Ret(syscall(SYS_capset, &header, data));
  }
  int SetNoNewPrivs() override { return Ret(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)); }
  int SetParentDeathSignal(int sig) override { return Ret(prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)); }
  int InstallSeccomp(const sock_fprog& prog) override {
    // The raw syscall (as seccomp::Install): libseccomp's loader allocates.
    return Ret(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
  }
  int LoopbackUp() override { return net::BringUpLoopback(); }
  int ExecveAt(int fd, char* const argv[], char* const envp[]) override {
    return Ret(syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH));
  }
};

}  // namespace

Syscalls& LinuxSyscalls() {
  static RealSyscalls real;
  return real;
}

}  // namespace airlock

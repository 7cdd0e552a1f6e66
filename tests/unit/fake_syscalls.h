// A recording fake of the syscall seam (runtime/sys/syscalls.h), the youki
// model: every call appends one readable line to a log, so the child's launch
// steps can be checked call by call without privileges.
//
// Descriptors. Calls that create one return fresh numbers from 100 up, and
// the fake remembers a name for each, printed as <name>:
//   fsopen "tmpfs"           -> <fs:tmpfs>
//   fsmount of <fs:T>        -> <mnt:T>
//   open_tree /dev/null      -> <tree:/dev/null>; open_tree of <X> -> <tree:X>
//   openat2 <D> p            -> <D/p> ("." keeps D's name; AT_FDCWD + "/x" -> </x>)
//   ReceiveFds               -> the next batch queued with QueueFds(): its
//                               names, at fresh numbers or the ones given
//   socketpair               -> <sp0>, <sp1>
//   dup2 <X> N               -> N is named X from then on (close-on-exec off)
//   move_mount <M> -> /path  (AT_FDCWD target) renames M to /path: the stage
//                            fd is therefore named after ctx.stage_path.
// Fds a test hands in (the channel, the exec fd) get names with Name(). The
// fake also tracks which fds are open and close-on-exec, so a test can see
// exactly what would survive into the exec'd program (exec_fds()).
//
// Lines, one per call (LOC is <fd>, <fd>/path, or a bare path for AT_FDCWD):
//   fsopen TYPE | fsconfig <fs> KEY=VALUE | fsconfig <fs> FLAG | fsconfig <fs> create
//   fsmount <fs> ATTRS            ATTRS: ro|nosuid|nodev|noexec|... or 0
//   move_mount LOC -> LOC
//   open_tree LOC FLAGS           FLAGS: clone|cloexec|empty_path|recursive
//   mount_setattr LOC FLAGS set=ATTRS clr=ATTRS
//   mount SRC TARGET TYPE FLAGS   ("-" for null; FLAGS: rec|private|...)
//   umount2 PATH detach | pivot_root NEW OLD
//   openat2 <dir> PATH OFLAGS RESOLVE   OFLAGS: path|dir|wronly|rdwr|creat|excl|cloexec
//                                       RESOLVE: beneath|no_symlinks|no_magiclinks|... or 0
//                                       (no <dir> for AT_FDCWD)
//   mkdirat <dir> PATH MODE(octal) | symlinkat TARGET <dir> PATH
//   write <fd> DATA (\n escaped) | close <fd> | fchdir <fd> | chdir PATH
//   dup2 <fd> N | close_range N | cloexec N on|off | isdir <fd>
//   recvfds <fd> | send <fd> NBYTES | recv <fd> | peer_hung_up <fd>
//   socketpair | setsid | setids UID GID | unshare FLAGS (cgroup|time|...)
//   sethostname NAME | setrlimit RES SOFT HARD (nofile|core|fsize) | capbset_drop N
//   limit_caps | no_new_privs | pdeathsig N | seccomp LEN
//   execveat <fd> ARGV...
//
// Failures: FailOn() makes the Nth call whose line matches return -errno
// (the call is still logged, with its result).
#pragma once

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/sys/syscalls.h"

namespace airlock::testing {

class FakeSyscalls final : public Syscalls {
 public:
  struct Call {
    std::string line;
    int ret = 0;
  };

  // ---- configuration ----
  bool peer_hung_up = false;
  std::set<std::string> file_sources;  // names of fds IsDirectory answers 0 for
  // Called from ExecveAt before it returns.
  std::function<void(FakeSyscalls&)> on_execveat;

  // The next ReceiveFds delivers fds with these names, at fresh numbers or
  // at `numbers` if given (as the kernel picks the lowest free ones).
  void QueueFds(std::vector<std::string> names, std::vector<int> numbers = {}) {
    batches_.push_back({std::move(names), std::move(numbers)});
  }
  void ClearQueuedFds() { batches_.clear(); }
  // Names an fd the test passes in ("sock"), open from now on.
  void Name(int fd, std::string name, bool cloexec = true) { open_[fd] = {std::move(name), cloexec}; }
  std::string NameOf(int fd) const {
    if (fd == AT_FDCWD) return "AT_FDCWD";
    auto it = open_.find(fd);
    if (it != open_.end()) return it->second.name;
    auto c = closed_.find(fd);
    return c == closed_.end() ? std::to_string(fd) : c->second;
  }
  bool IsOpen(int fd) const { return open_.count(fd) != 0; }
  // The fds open without close-on-exec at the last ExecveAt: number -> name.
  const std::map<int, std::string>& exec_fds() const { return exec_fds_; }

  // The nth (1-based) call whose line satisfies `match` returns -err.
  // nth == 0: every matching call fails.
  void FailOn(std::function<bool(const std::string&)> match, int err, int nth = 1) {
    injections_.push_back({std::move(match), err, nth, 0});
  }
  // The nth call whose line starts with `prefix` returns -err.
  void FailOn(const std::string& prefix, int err, int nth = 1) {
    FailOn([prefix](const std::string& l) { return l.rfind(prefix, 0) == 0; }, err, nth);
  }

  const std::vector<Call>& calls() const { return calls_; }
  std::vector<std::string> Lines() const {
    std::vector<std::string> out;
    for (const auto& c : calls_) out.push_back(c.line);
    return out;
  }
  // The whole log, one call a line, failures marked: for INFO() on failure.
  std::string Dump() const {
    std::ostringstream o;
    for (size_t i = 0; i < calls_.size(); ++i) {
      o << i << ": " << calls_[i].line;
      if (calls_[i].ret < 0) o << "  = -" << ErrnoName(-calls_[i].ret);
      o << "\n";
    }
    return o.str();
  }
  // Data passed to Send(), in order.
  const std::vector<std::string>& sent() const { return sent_; }

  // ---- the mount API ----
  int FsOpen(const char* fstype) override {
    return NewFd(Log(std::string("fsopen ") + fstype), std::string("fs:") + fstype, true);
  }
  int FsConfigString(int fsfd, const char* key, const char* value) override {
    return Log("fsconfig " + Fd(fsfd) + " " + key + "=" + value);
  }
  int FsConfigFlag(int fsfd, const char* key) override { return Log("fsconfig " + Fd(fsfd) + " " + key); }
  int FsConfigCreate(int fsfd) override { return Log("fsconfig " + Fd(fsfd) + " create"); }
  int FsMount(int fsfd, unsigned attr_flags) override {
    std::string name = NameOf(fsfd);
    if (name.rfind("fs:", 0) == 0) name = "mnt:" + name.substr(3);
    return NewFd(Log("fsmount " + Fd(fsfd) + " " + Attrs(attr_flags)), name, true);
  }
  int MoveMount(int from_fd, const char* from_path, int to_fd, const char* to_path, unsigned flags) override {
    (void)flags;
    int r = Log("move_mount " + Loc(from_fd, from_path) + " -> " + Loc(to_fd, to_path));
    if (r == 0 && to_fd == AT_FDCWD && to_path[0] == '/' && IsOpen(from_fd)) open_[from_fd].name = to_path;
    return r;
  }
  int OpenTree(int dirfd, const char* path, unsigned flags) override {
    std::string name = "tree:" + (path[0] != '\0' ? Join(dirfd, path) : NameOf(dirfd));
    std::string f;
    Flag(f, flags & OPEN_TREE_CLONE, "clone");
    Flag(f, flags & OPEN_TREE_CLOEXEC, "cloexec");
    Flag(f, flags & AT_EMPTY_PATH, "empty_path");
    Flag(f, flags & AT_RECURSIVE, "recursive");
    return NewFd(Log("open_tree " + Loc(dirfd, path) + " " + Or0(f)), name, flags & OPEN_TREE_CLOEXEC);
  }
  int MountSetattr(int dirfd, const char* path, unsigned flags, uint64_t attr_set, uint64_t attr_clr) override {
    std::string f;
    Flag(f, flags & AT_EMPTY_PATH, "empty_path");
    Flag(f, flags & AT_RECURSIVE, "recursive");
    return Log("mount_setattr " + Loc(dirfd, path) + " " + Or0(f) + " set=" + Attrs(attr_set) +
               " clr=" + Attrs(attr_clr));
  }
  int Mount(const char* source, const char* target, const char* fstype, unsigned long flags,
            const void* data) override {
    (void)data;
    std::string f;
    Flag(f, flags & MS_REC, "rec");
    Flag(f, flags & MS_PRIVATE, "private");
    Flag(f, flags & MS_SLAVE, "slave");
    Flag(f, flags & MS_SHARED, "shared");
    Flag(f, flags & MS_BIND, "bind");
    Flag(f, flags & MS_RDONLY, "rdonly");
    Flag(f, flags & MS_REMOUNT, "remount");
    return Log(std::string("mount ") + (source ? source : "-") + " " + (target ? target : "-") + " " +
               (fstype ? fstype : "-") + " " + Or0(f));
  }
  int Umount2(const char* target, int flags) override {
    return Log(std::string("umount2 ") + target + ((flags & MNT_DETACH) ? " detach" : ""));
  }
  int PivotRoot(const char* new_root, const char* put_old) override {
    return Log(std::string("pivot_root ") + new_root + " " + put_old);
  }

  // ---- paths relative to directory fds ----
  int OpenBeneath(int dirfd, const char* path, int flags, unsigned mode, uint64_t resolve) override {
    (void)mode;
    std::string f;
    Flag(f, flags & O_PATH, "path");
    Flag(f, flags & O_DIRECTORY, "dir");
    Flag(f, (flags & O_ACCMODE) == O_WRONLY, "wronly");
    Flag(f, (flags & O_ACCMODE) == O_RDWR, "rdwr");
    Flag(f, flags & O_CREAT, "creat");
    Flag(f, flags & O_EXCL, "excl");
    Flag(f, flags & O_CLOEXEC, "cloexec");
    std::string r;
    Flag(r, resolve & RESOLVE_BENEATH, "beneath");
    Flag(r, resolve & RESOLVE_NO_SYMLINKS, "no_symlinks");
    Flag(r, resolve & RESOLVE_NO_MAGICLINKS, "no_magiclinks");
    Flag(r, resolve & RESOLVE_NO_XDEV, "no_xdev");
    Flag(r, resolve & RESOLVE_IN_ROOT, "in_root");
    std::string dir = dirfd == AT_FDCWD ? std::string() : Fd(dirfd) + " ";
    return NewFd(Log("openat2 " + dir + path + " " + Or0(f) + " " + Or0(r)), Join(dirfd, path), flags & O_CLOEXEC);
  }
  int MkdirAt(int dirfd, const char* path, unsigned mode) override {
    return Log("mkdirat " + Fd(dirfd) + " " + path + " " + Octal(mode));
  }
  int SymlinkAt(const char* target, int dirfd, const char* path) override {
    return Log(std::string("symlinkat ") + target + " " + Fd(dirfd) + " " + path);
  }
  int WriteAll(int fd, const void* data, size_t len) override {
    std::string d(static_cast<const char*>(data), len), esc;
    for (char c : d) esc += c == '\n' ? std::string("\\n") : std::string(1, c);
    return Log("write " + Fd(fd) + " " + esc);
  }
  int Close(int fd) override {
    int r = Log("close " + Fd(fd));
    if (r == 0) Forget(fd);
    return r;
  }
  int Fchdir(int fd) override { return Log("fchdir " + Fd(fd)); }
  int Chdir(const char* path) override { return Log(std::string("chdir ") + path); }
  int Dup2(int from, int to) override {
    int r = Log("dup2 " + Fd(from) + " " + std::to_string(to));
    if (r < 0) return r;
    if (from != to) open_[to] = {NameOf(from), false};  // dup2 clears close-on-exec
    return to;
  }
  int DupAbove(int fd, int min) override {
    int r = Log("dupabove " + Fd(fd) + " " + std::to_string(min));
    if (r < 0) return r;
    int to = min;
    while (IsOpen(to)) ++to;
    open_[to] = {NameOf(fd), true};  // F_DUPFD_CLOEXEC
    return to;
  }
  int CloseRangeFrom(unsigned first) override {
    int r = Log("close_range " + std::to_string(first));
    if (r < 0) return r;
    std::vector<int> gone;
    for (const auto& [fd, st] : open_)
      if (fd >= static_cast<int>(first)) gone.push_back(fd);
    for (int fd : gone) Forget(fd);
    return 0;
  }
  int SetCloexec(int fd, bool on) override {
    int r = Log("cloexec " + std::to_string(fd) + (on ? " on" : " off"));
    if (r == 0 && IsOpen(fd)) open_[fd].cloexec = on;
    return r;
  }
  int IsDirectory(int fd) override {
    int r = Log("isdir " + Fd(fd));
    if (r < 0) return r;
    return file_sources.count(NameOf(fd)) ? 0 : 1;
  }
  int ReceiveFds(int sock, int* fds, int max) override {
    int r = Log("recvfds " + Fd(sock));
    if (r < 0) return r;
    if (batches_.empty()) return -EPIPE;  // nothing more from the "parent"
    Batch b = std::move(batches_.front());
    batches_.pop_front();
    int n = static_cast<int>(b.names.size()) < max ? static_cast<int>(b.names.size()) : max;
    for (int i = 0; i < n; ++i) {
      fds[i] = i < static_cast<int>(b.numbers.size()) ? b.numbers[i] : next_fd_++;
      open_[fds[i]] = {b.names[i], true};  // MSG_CMSG_CLOEXEC
    }
    return n;
  }
  int Send(int sock, const void* data, size_t len) override {
    int r = Log("send " + Fd(sock) + " " + std::to_string(len));
    if (r < 0) return r;
    sent_.emplace_back(static_cast<const char*>(data), len);
    return static_cast<int>(len);
  }
  bool PeerHungUp(int sock) override {
    Log("peer_hung_up " + Fd(sock));
    return peer_hung_up;
  }
  int SendFd(int sock, uint16_t type, int fd) override {
    return Log("sendfd " + Fd(sock) + " type " + std::to_string(type) + " " + Fd(fd));
  }
  int SocketPair(int sv[2]) override {
    int r = Log("socketpair");
    if (r < 0) return r;
    sv[0] = next_fd_++;
    sv[1] = next_fd_++;
    open_[sv[0]] = {"sp0", true};
    open_[sv[1]] = {"sp1", true};
    return 0;
  }
  int Setsid() override { return Log("setsid"); }

  // ---- identity, namespaces, limits, privileges ----
  int SetIds(uid_t uid, gid_t gid) override {
    return Log("setids " + std::to_string(uid) + " " + std::to_string(gid));
  }
  int Unshare(int flags) override {
    std::string f;
    Flag(f, flags & CLONE_NEWCGROUP, "cgroup");
    Flag(f, flags & CLONE_NEWTIME, "time");
    Flag(f, flags & CLONE_NEWNS, "mnt");
    Flag(f, flags & CLONE_NEWUSER, "user");
    Flag(f, flags & CLONE_NEWNET, "net");
    Flag(f, flags & CLONE_NEWPID, "pid");
    Flag(f, flags & CLONE_NEWIPC, "ipc");
    Flag(f, flags & CLONE_NEWUTS, "uts");
    return Log("unshare " + Or0(f));
  }
  int SetHostname(const char* name, size_t len) override {
    return Log("sethostname " + std::string(name, len));
  }
  int SetRlimit(int resource, const rlimit& limit) override {
    std::string res = resource == RLIMIT_NOFILE  ? "nofile"
                      : resource == RLIMIT_CORE  ? "core"
                      : resource == RLIMIT_FSIZE ? "fsize"
                                                 : std::to_string(resource);
    return Log("setrlimit " + res + " " + std::to_string(limit.rlim_cur) + " " + std::to_string(limit.rlim_max));
  }
  int DropBoundingCap(int cap) override { return Log("capbset_drop " + std::to_string(cap)); }
  int LimitCapabilities() override { return Log("limit_caps"); }
  int SetNoNewPrivs() override { return Log("no_new_privs"); }
  int SetParentDeathSignal(int sig) override { return Log("pdeathsig " + std::to_string(sig)); }
  int InstallSeccomp(const sock_fprog& prog) override { return Log("seccomp " + std::to_string(prog.len)); }
  int LoopbackUp() override { return Log("loopback_up"); }
  int ExecveAt(int fd, char* const argv[], char* const envp[]) override {
    (void)envp;
    std::string line = "execveat " + Fd(fd);
    for (int i = 0; argv != nullptr && argv[i] != nullptr; ++i) line += std::string(" ") + argv[i];
    int r = Log(line);
    exec_fds_.clear();
    for (const auto& [n, st] : open_)
      if (!st.cloexec) exec_fds_[n] = st.name;
    if (on_execveat) on_execveat(*this);
    return r;
  }

 private:
  struct Injection {
    std::function<bool(const std::string&)> match;
    int err;
    int nth;
    int seen;
  };
  struct FdState {
    std::string name;
    bool cloexec = true;
  };
  struct Batch {
    std::vector<std::string> names;
    std::vector<int> numbers;
  };

  // Records the call; returns 0 or the injected -errno.
  int Log(std::string line) {
    int ret = 0;
    for (auto& inj : injections_) {
      if (!inj.match(line)) continue;
      ++inj.seen;
      if (inj.nth == 0 || inj.seen == inj.nth) {
        ret = -inj.err;
        break;
      }
    }
    calls_.push_back({std::move(line), ret});
    return ret;
  }
  // A fresh fd with `name`, unless the call failed.
  int NewFd(int r, std::string name, bool cloexec) {
    if (r < 0) return r;
    int fd = next_fd_++;
    open_[fd] = {std::move(name), cloexec};
    calls_.back().ret = fd;
    return fd;
  }
  void Forget(int fd) {
    auto it = open_.find(fd);
    if (it == open_.end()) return;
    closed_[fd] = it->second.name;
    open_.erase(it);
  }
  std::string Fd(int fd) const { return fd == AT_FDCWD ? "AT_FDCWD" : "<" + NameOf(fd) + ">"; }
  std::string Loc(int fd, const char* path) const {
    if (fd == AT_FDCWD) return path[0] ? std::string(path) : std::string("AT_FDCWD");
    return Fd(fd) + (path[0] ? std::string("/") + path : std::string());
  }
  std::string Join(int dirfd, const char* path) const {
    if (dirfd == AT_FDCWD || path[0] == '/') return path;
    if (strcmp(path, ".") == 0 || path[0] == '\0') return NameOf(dirfd);
    return NameOf(dirfd) + "/" + path;
  }
  static void Flag(std::string& out, bool set, const char* name) {
    if (!set) return;
    if (!out.empty()) out += "|";
    out += name;
  }
  static std::string Or0(const std::string& s) { return s.empty() ? "0" : s; }
  static std::string Attrs(uint64_t a) {
    std::string f;
    Flag(f, a & MOUNT_ATTR_RDONLY, "ro");
    Flag(f, a & MOUNT_ATTR_NOSUID, "nosuid");
    Flag(f, a & MOUNT_ATTR_NODEV, "nodev");
    Flag(f, a & MOUNT_ATTR_NOEXEC, "noexec");
    Flag(f, a & MOUNT_ATTR_NOATIME, "noatime");
    Flag(f, a & MOUNT_ATTR_NODIRATIME, "nodiratime");
    Flag(f, a & MOUNT_ATTR_IDMAP, "idmap");
    Flag(f, a & MOUNT_ATTR_NOSYMFOLLOW, "nosymfollow");
    return Or0(f);
  }
  static std::string Octal(unsigned mode) {
    char buf[16];
    snprintf(buf, sizeof(buf), "%04o", mode);
    return buf;
  }

  std::vector<Call> calls_;
  std::vector<Injection> injections_;
  std::map<int, FdState> open_;
  std::map<int, std::string> closed_;  // names of closed fds, for the log
  std::deque<Batch> batches_;
  std::vector<std::string> sent_;
  std::map<int, std::string> exec_fds_;
  int next_fd_ = 100;
};

}  // namespace airlock::testing

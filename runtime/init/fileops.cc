// File operations inside the sandbox (see fileops.h and proto::FileOp).
//
// Every function here returns 0 or an errno rather than a Result: the
// process's only report is its exit code, which carries that errno.
#include "runtime/init/fileops.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/core/unique_fd.h"
#include "runtime/init/paths.h"
#include "runtime/init/search.h"
#include "runtime/proto/fileops.h"

namespace airlock::init {
namespace {

using proto::FileOpRequest;

constexpr size_t kChunk = 64 * 1024;

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// Opens a directory stream on `fd` (taken over, closed on failure too).
DirPtr OpenDir(int fd) {
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    close(fd);
    errno = err;
  }
  return DirPtr(d);
}

int WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;  // EPIPE when the reader went away: SIGPIPE is ignored here
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// Copies `in` to `out` until EOF, or `limit` bytes when it is not 0.
int Copy(int in, int out, uint64_t limit) {
  static char buf[kChunk];
  uint64_t done = 0;
  for (;;) {
    size_t want = sizeof(buf);
    if (limit != 0) {
      if (done == limit) return 0;
      want = static_cast<size_t>(std::min<uint64_t>(want, limit - done));
    }
    ssize_t n = read(in, buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return 0;
    if (int err = WriteAll(out, buf, static_cast<size_t>(n))) return err;
    done += static_cast<uint64_t>(n);
  }
}

bool NoSymlinks(const FileOpRequest& req) { return req.flags & proto::kNoSymlinks; }

int64_t MtimeNs(const struct stat& st) {
  int64_t ns;
  if (__builtin_mul_overflow(static_cast<int64_t>(st.st_mtim.tv_sec), int64_t{1000000000}, &ns) ||
      __builtin_add_overflow(ns, static_cast<int64_t>(st.st_mtim.tv_nsec), &ns))
    return st.st_mtim.tv_sec < 0 ? INT64_MIN : INT64_MAX;
  return ns;
}

proto::FileType TypeOf(mode_t mode) {
  if (S_ISREG(mode)) return proto::FileType::kRegular;
  if (S_ISDIR(mode)) return proto::FileType::kDirectory;
  if (S_ISLNK(mode)) return proto::FileType::kSymlink;
  return proto::FileType::kOther;
}

// A record for `name` in `dir`, already lstat'ed as `st`.
proto::StatRecord Record(int dir, const char* path, const struct stat& st, std::string name) {
  proto::StatRecord r;
  r.type = TypeOf(st.st_mode);
  r.mode = st.st_mode & 07777;
  r.uid = st.st_uid;
  r.gid = st.st_gid;
  r.size = st.st_size < 0 ? 0 : static_cast<uint64_t>(st.st_size);
  r.mtime_ns = MtimeNs(st);
  r.name = std::move(name);
  if (r.type == proto::FileType::kSymlink) {
    char target[proto::kMaxLinkTarget + 1];
    ssize_t n = readlinkat(dir, path, target, sizeof(target));
    // A symlink replaced meanwhile keeps an empty target; the kernel caps
    // targets at PATH_MAX - 1 bytes, the cap is only belt and braces.
    if (n > 0) r.link_target.assign(target, std::min(static_cast<size_t>(n), proto::kMaxLinkTarget));
  }
  return r;
}

int OpRead(const FileOpRequest& req, int data) {
  if (data < 0) return EBADF;
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int raw = OpenAt(at, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (raw < 0) return -raw;
  UniqueFd fd(raw);
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (fcntl(fd.get(), F_SETFL, 0) < 0) return errno;
  if (req.offset != 0 && lseek(fd.get(), static_cast<off_t>(req.offset), SEEK_SET) < 0) return errno;
  return Copy(fd.get(), data, req.length);
}

// A new, empty temporary file beside `name` in `dir`: ".NAME.airlock-RANDOM".
int CreateTemp(int dir, const std::string& name, std::string* tmp, UniqueFd* fd) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint64_t rnd;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) return errno ? errno : EIO;
    char suffix[32];
    snprintf(suffix, sizeof(suffix), ".airlock-%016llx", static_cast<unsigned long long>(rnd));
    // Short enough for NAME_MAX whatever the name's length.
    *tmp = "." + name.substr(0, 200) + suffix;
    fd->Reset(openat(dir, tmp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd->valid()) return 0;
    if (errno != EEXIST) return errno;
  }
  return EEXIST;
}

// Fills the temporary file and gives it its final owner and mode; durable
// before it is renamed into place.
int FillTemp(int fd, int data, const struct stat* old, mode_t mode) {
  if (int err = Copy(data, fd, 0)) return err;
  // An editor keeps a file's owner when it can; without CAP_CHOWN the
  // writer owns the new file, as with any rename-based save.
  if (old != nullptr && (old->st_uid != geteuid() || old->st_gid != getegid()))
    (void)!fchown(fd, old->st_uid, old->st_gid);
  // After the chown, which clears set-id bits.
  if (fchmod(fd, mode) < 0) return errno;
  if (fsync(fd) < 0) return errno;
  return 0;
}

int WriteAtomic(const FileOpRequest& req, int data) {
  auto [dir_path, name] = Split(req.path);
  if (name.empty() || name == "." || name == "..") return EISDIR;
  // O_PATH: creating and renaming need write and search permission on the
  // directory, not read. The temporary file and the rename are relative to
  // it and follow no final symlink.
  const int dir_flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  int raw = NoSymlinks(req) ? OpenNoSymlinks(AT_FDCWD, dir_path, dir_flags) : open(dir_path.c_str(), dir_flags);
  if (raw < 0) return NoSymlinks(req) ? -raw : errno;
  UniqueFd dir(raw);
  struct stat old;
  const bool exists = fstatat(dir.get(), name.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0;
  if (!exists && errno != ENOENT) return errno;
  if (exists && (req.flags & proto::kWriteExclusive)) return EEXIST;
  if (exists && S_ISDIR(old.st_mode)) return EISDIR;
  const bool keep = exists && S_ISREG(old.st_mode);
  const mode_t mode = (req.flags & proto::kModeSet) ? req.mode : keep ? (old.st_mode & 07777) : 0644;
  std::string tmp;
  UniqueFd fd;
  if (int err = CreateTemp(dir.get(), name, &tmp, &fd)) return err;
  int err = FillTemp(fd.get(), data, keep ? &old : nullptr, mode);
  if (err == 0) {
    // RENAME_NOREPLACE keeps kWriteExclusive true against a racing creator.
    unsigned flags = (req.flags & proto::kWriteExclusive) ? RENAME_NOREPLACE : 0;
    if (renameat2(dir.get(), tmp.c_str(), dir.get(), name.c_str(), flags) < 0) err = errno;
  }
  if (err != 0) {
    unlinkat(dir.get(), tmp.c_str(), 0);
    return err;
  }
  // Makes the rename itself durable. Best effort: the content is in place
  // either way, the directory may not be readable, and some filesystems
  // refuse fsync on a directory.
  UniqueFd sync(openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (sync) fsync(sync.get());
  return 0;
}

int OpWrite(const FileOpRequest& req, int data) {
  if (data < 0) return EBADF;
  if (req.flags & proto::kParents)
    if (int err = MakeDirs(req.path, /*include_last=*/false, 0755, NoSymlinks(req))) return err;
  if (req.flags & proto::kWriteAtomic) return WriteAtomic(req, data);
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  // O_NONBLOCK: opening a FIFO with no reader fails (ENXIO) instead of waiting.
  int flags = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (req.flags & proto::kWriteCreate) flags |= O_CREAT;
  if (req.flags & proto::kWriteExclusive) flags |= O_EXCL;
  if (req.flags & proto::kWriteAppend) flags |= O_APPEND;
  const bool mode_set = req.flags & proto::kModeSet;
  int raw = OpenAt(at, flags, mode_set ? req.mode : 0644);
  if (raw < 0) return -raw;
  UniqueFd fd(raw);
  if (fcntl(fd.get(), F_SETFL, flags & O_APPEND) < 0) return errno;
  // An existing file gets the mode too (a new one already has it: umask is
  // 0). Before truncating, so that a refused chmod leaves the file intact.
  if (mode_set && fchmod(fd.get(), req.mode) < 0) return errno;
  if ((req.flags & proto::kWriteTruncate) && ftruncate(fd.get(), 0) < 0) return errno;
  if (int err = Copy(data, fd.get(), 0)) return err;
  return close(fd.Release()) < 0 ? errno : 0;
}

int OpStat(const FileOpRequest& req, int data) {
  if (data < 0) return EBADF;
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  const bool follow = req.flags & proto::kFollow;
  struct stat st;
  const int flags = follow && !at.no_symlinks ? 0 : AT_SYMLINK_NOFOLLOW;
  if (fstatat(at.dir, at.name.c_str(), &st, flags) < 0) return errno;
  if (follow && S_ISLNK(st.st_mode)) return ELOOP;  // only reached with kNoSymlinks
  std::string name = Split(req.path).second;
  if (name == "." || name == "..") name.clear();
  std::string out = proto::EncodeStatRecord(Record(at.dir, at.name.c_str(), st, std::move(name)));
  return WriteAll(data, out.data(), out.size());
}

int OpList(const FileOpRequest& req, int data) {
  if (data < 0) return EBADF;
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  int fd = OpenAt(at, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -fd;
  DirPtr dir = OpenDir(fd);
  if (!dir) return errno;
  std::string out;
  size_t count = 0;
  for (;;) {
    errno = 0;
    dirent* e = readdir(dir.get());
    if (e == nullptr) {
      if (errno != 0) return errno;
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    // The reader refuses more: say the list is incomplete instead.
    if (count == proto::kMaxListEntries) return EOVERFLOW;
    struct stat st;
    if (fstatat(dirfd(dir.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;  // removed since readdir saw it
      return errno;
    }
    out += proto::EncodeStatRecord(Record(dirfd(dir.get()), e->d_name, st, e->d_name));
    ++count;
    if (out.size() >= kChunk) {
      if (int err = WriteAll(data, out.data(), out.size())) return err;
      out.clear();
    }
  }
  return WriteAll(data, out.data(), out.size());
}

int OpMkdir(const FileOpRequest& req) {
  const mode_t mode = (req.flags & proto::kModeSet) ? req.mode : 0755;
  if (req.flags & proto::kParents) return MakeDirs(req.path, /*include_last=*/true, mode, NoSymlinks(req));
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  return mkdirat(at.dir, at.name.c_str(), mode) < 0 ? errno : 0;
}

// What identifies the mount an inode is reached through.
struct MountId {
  uint64_t mnt_id;
  uint32_t dev_major, dev_minor;
  bool operator==(const MountId&) const = default;
};

int StatxNoFollow(int dir, const char* path, struct statx* sx) {
  int flags = AT_SYMLINK_NOFOLLOW | (path[0] == '\0' ? AT_EMPTY_PATH : 0);
  return statx(dir, path, flags, STATX_TYPE | STATX_MNT_ID, sx) < 0 ? errno : 0;
}

MountId MountOf(const struct statx& sx) { return {sx.stx_mnt_id, sx.stx_dev_major, sx.stx_dev_minor}; }

// Opens the directory `name` in `parent` without following a symlink, and
// only if it is on `mount` (checked on the open descriptor, so a directory
// swapped after the caller's look is caught). The fd, or -errno.
int OpenDirOn(int parent, const char* name, const MountId& mount) {
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct statx sx;
  int err = StatxNoFollow(fd, "", &sx);
  if (err == 0 && !(MountOf(sx) == mount)) err = EXDEV;
  if (err != 0) {
    close(fd);
    return -err;
  }
  return fd;
}

// Removes everything inside the directory `fd` (taken over), depth first,
// without following symlinks or entering another mount. Goes on past
// failures, like rm -r, and returns the first. Depth is bounded by the
// descriptor limit (EMFILE).
int EmptyDir(int fd, const MountId& mount) {
  DirPtr dir = OpenDir(fd);
  if (!dir) return errno;
  int first = 0;
  auto keep = [&first](int err) {
    if (first == 0) first = err;
  };
  for (;;) {
    errno = 0;
    dirent* e = readdir(dir.get());
    if (e == nullptr) {
      if (errno != 0) keep(errno);
      return first;
    }
    const char* name = e->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
    const int parent = dirfd(dir.get());
    struct statx sx;
    if (int err = StatxNoFollow(parent, name, &sx)) {
      if (err != ENOENT) keep(err);
      continue;
    }
    if (!S_ISDIR(sx.stx_mode)) {
      if (unlinkat(parent, name, 0) < 0 && errno != ENOENT) keep(errno);
      continue;
    }
    if (!(MountOf(sx) == mount)) {
      keep(EXDEV);
      continue;
    }
    int sub = OpenDirOn(parent, name, mount);
    if (sub < 0) {
      keep(-sub);
      continue;
    }
    keep(EmptyDir(sub, mount));
    if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT) keep(errno);
  }
}

int OpRemove(const FileOpRequest& req) {
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  const char* path = at.name.c_str();
  if (!(req.flags & proto::kRecursive)) {
    if (unlinkat(at.dir, path, 0) == 0) return 0;
    if (errno != EISDIR) return errno;
    return unlinkat(at.dir, path, AT_REMOVEDIR) < 0 ? errno : 0;
  }
  struct statx top;
  if (int err = StatxNoFollow(at.dir, path, &top)) return err;
  if (!S_ISDIR(top.stx_mode)) return unlinkat(at.dir, path, 0) < 0 ? errno : 0;
  // Emptying a mount point would reach into the mounted filesystem.
  if ((top.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (top.stx_attributes & STATX_ATTR_MOUNT_ROOT))
    return EBUSY;
  int fd = OpenDirOn(at.dir, path, MountOf(top));
  if (fd < 0) return -fd;
  if (int err = EmptyDir(fd, MountOf(top))) return err;
  return unlinkat(at.dir, path, AT_REMOVEDIR) < 0 ? errno : 0;
}

int OpRename(const FileOpRequest& req) {
  Location from, to;
  if (int err = Locate(req.path, NoSymlinks(req), &from)) return err;
  if (int err = Locate(req.path2, NoSymlinks(req), &to)) return err;
  unsigned flags = (req.flags & proto::kNoReplace) ? RENAME_NOREPLACE : 0;
  return renameat2(from.dir, from.name.c_str(), to.dir, to.name.c_str(), flags) < 0 ? errno : 0;
}

// The target is stored as given, never resolved: a relative one is read
// against the link's directory whenever the link is followed.
int OpSymlink(const FileOpRequest& req) {
  if (req.flags & proto::kParents)
    if (int err = MakeDirs(req.path, /*include_last=*/false, 0755, NoSymlinks(req))) return err;
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  return symlinkat(req.path2.c_str(), at.dir, at.name.c_str()) < 0 ? errno : 0;
}

// As a non-root identity the kernel's rules apply (EPERM unless the caller
// owns the file and gives it one of its own groups; the owner stays).
int OpChown(const FileOpRequest& req) {
  Location at;
  if (int err = Locate(req.path, NoSymlinks(req), &at)) return err;
  return fchownat(at.dir, at.name.c_str(), req.owner_uid, req.owner_gid, AT_SYMLINK_NOFOLLOW) < 0 ? errno : 0;
}

int Dispatch(const FileOpRequest& req, int data) {
  switch (req.op) {
    case proto::FileOp::kRead:
      return OpRead(req, data);
    case proto::FileOp::kWrite:
      return OpWrite(req, data);
    case proto::FileOp::kStat:
      return OpStat(req, data);
    case proto::FileOp::kList:
      return OpList(req, data);
    case proto::FileOp::kMkdir:
      return OpMkdir(req);
    case proto::FileOp::kRemove:
      return OpRemove(req);
    case proto::FileOp::kRename:
      return OpRename(req);
    case proto::FileOp::kSymlink:
      return OpSymlink(req);
    case proto::FileOp::kChown:
      return OpChown(req);
    case proto::FileOp::kSearch:
      return data < 0 ? EBADF : RunSearchOp(req.path, data);
  }
  return EINVAL;
}

// Keeps 0-2 (the sandbox's /dev/null) and `data`, placed at 3 or above.
int CloseAllBut(int* data) {
  if (*data >= 0 && *data < 3) {
    int moved = fcntl(*data, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return errno;
    *data = moved;
  }
  if (*data < 0) return syscall(SYS_close_range, 3, ~0U, 0) < 0 ? errno : 0;
  if (*data > 3 && syscall(SYS_close_range, 3, *data - 1, 0) < 0) return errno;
  return syscall(SYS_close_range, *data + 1, ~0U, 0) < 0 ? errno : 0;
}

[[noreturn]] void Exit(int err) { _exit(std::min<int>(err, static_cast<int>(proto::kFileOpMaxErrno))); }

}  // namespace

int SetIdentity(uint32_t uid, uint32_t gid, const std::vector<uint32_t>& groups) {
  std::vector<gid_t> list(groups.begin(), groups.end());
  if (syscall(SYS_setgroups, list.size(), list.data()) < 0) return errno;
  if (syscall(SYS_setresgid, gid, gid, gid) < 0) return errno;
  if (syscall(SYS_setresuid, uid, uid, uid) < 0) return errno;
  return 0;
}

[[noreturn]] void RunFileOp(const proto::FileOpRequest& req, int data_fd) {
  // A reader that goes away is EPIPE, a file past RLIMIT_FSIZE is EFBIG:
  // failures to report, not deaths.
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) Exit(errno);
  if (int err = CloseAllBut(&data_fd)) Exit(err);
  if (int err = SetIdentity(req.uid, req.gid, req.groups)) Exit(err);
  if (req.flags & proto::kNoSymlinks) {
    // The cwd is part of how a relative path resolves: no symlink there either.
    int cwd = OpenNoSymlinks(AT_FDCWD, req.cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) Exit(-cwd);
    if (fchdir(cwd) < 0) Exit(errno);
    close(cwd);
  } else if (chdir(req.cwd.c_str()) < 0) {
    Exit(errno);
  }
  // Modes are the request's exactly (0644 and 0755 by default).
  umask(0);
  Exit(Dispatch(req, data_fd));
}

}  // namespace airlock::init

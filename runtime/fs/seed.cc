#include "runtime/fs/seed.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "runtime/core/paths.h"
#include "runtime/core/unique_fd.h"
#include "runtime/fs/sources.h"

namespace airlock::fs {
namespace {

constexpr size_t kDirBuffer = 32 * 1024;
constexpr size_t kCopyBuffer = 128 * 1024;
constexpr const char* kOp = "seed copy";

std::string Join(const std::string& base, std::string_view name) {
  return (base == "/" ? "/" : base + "/") + std::string(name);
}

std::unexpected<Error> SourceError(int err, const std::string& path) { return ErrnoValue(err, kOp, path); }
std::unexpected<Error> DestError(int err, const std::string& path) {
  return ErrnoValue(err, kOp, path + " in the writable layer");
}

// The image's layers along a destination's parents, one component at a
// time, resolved as overlayfs would: the uppermost layer holding a name
// decides what it is; a whiteout ends the path; an opaque directory, or a
// non-directory in a lower layer, hides the layers beneath it. Components
// are opened one by one with O_NOFOLLOW: a symlink in a layer is never
// followed (it would resolve on the host).
class LowerWalk {
 public:
  static Result<LowerWalk> Open(std::span<const std::string> layers) {
    LowerWalk w;
    for (const auto& l : layers) {
      UniqueFd path_fd = TRY(OpenHostPath(l));
      UniqueFd dir(openat(path_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir) return Errno("open image layer", l);
      w.dirs_.push_back(std::move(dir));
      w.names_.push_back(l);
    }
    return w;
  }

  // Steps into `name` (the sandbox path so far is `at`). Returns the stat of
  // the directory the image shows there, nullopt if the image has nothing
  // there, or ENOTDIR if the image has a symlink or file there.
  Result<std::optional<struct stat>> Step(const std::string& name, const std::string& at) {
    std::optional<struct stat> shown;
    for (size_t i = 0; i < dirs_.size(); ++i) {
      if (!dirs_[i]) continue;
      struct stat st;
      if (fstatat(dirs_[i].get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT) return Errno("stat image layer", Join(names_[i], at.substr(1)));
        dirs_[i].Reset();
        continue;
      }
      const bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == 0;
      if (!S_ISDIR(st.st_mode)) {
        if (!shown && !whiteout)
          return ErrnoValue(ENOTDIR, kOp,
                            at + " is " + (S_ISLNK(st.st_mode) ? "a symlink" : "not a directory") +
                                " in the image: give the destination's real path");
        // Whatever lies beneath is hidden from here on.
        for (size_t j = i; j < dirs_.size(); ++j) dirs_[j].Reset();
        break;
      }
      UniqueFd next(openat(dirs_[i].get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next) return Errno("open image layer", Join(names_[i], at.substr(1)));
      const bool opaque = IsOpaque(next.get());
      dirs_[i] = std::move(next);
      if (!shown) shown = st;
      if (opaque) {
        for (size_t j = i + 1; j < dirs_.size(); ++j) dirs_[j].Reset();
        break;
      }
    }
    if (!shown)
      for (auto& d : dirs_) d.Reset();
    return shown;
  }

 private:
  static bool IsOpaque(int fd) {
    for (const char* attr : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
      char v = 0;
      if (fgetxattr(fd, attr, &v, 1) == 1 && v == 'y') return true;
    }
    return false;
  }

  std::vector<UniqueFd> dirs_;
  std::vector<std::string> names_;
};

// One seed's copy. The process's filesystem ids are the reader's for every
// access to the source and root's for everything written: with fsuid 0 the
// kernel gives back the filesystem capabilities it took away when fsuid
// became the reader's (capabilities(7)), so the writes need no permission.
class Copier {
 public:
  Copier(const SeedCopy& seed, bool as_reader) : seed_(seed), as_reader_(as_reader) {}

  Result<void> Run(std::span<const std::string> layers, int upper_fd) {
    struct Restore {
      Copier* c;
      ~Restore() { c->AsWriter(); }
    } restore{this};
    if (as_reader_) TRY(CheckIdSwitch());

    // The source's parent is resolved without symlinks, as the reader: the
    // kernel checks search permission on every directory on the way.
    const std::string parent = ParentDir(seed_.source);
    const std::string base = seed_.source.substr(seed_.source.find_last_of('/') + 1);
    AsReader();
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    UniqueFd src_parent(static_cast<int>(syscall(SYS_openat2, AT_FDCWD, parent.c_str(), &how, sizeof(how))));
    if (!src_parent) {
      if (errno == ELOOP) return ErrnoValue(ELOOP, kOp, seed_.source + " (contains a symlink; give the real path)");
      return SourceError(errno, seed_.source);
    }
    struct statx top;
    if (statx(src_parent.get(), base.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS | STATX_MNT_ID,
              &top) < 0)
      return SourceError(errno, seed_.source);
    mnt_id_ = top.stx_mnt_id;

    AsWriter();
    UniqueFd dst_parent = TRY(DestinationParent(layers, upper_fd));
    const std::string dst_base = seed_.destination.substr(seed_.destination.find_last_of('/') + 1);
    return CopyEntry(src_parent.get(), base.c_str(), dst_parent.get(), dst_base.c_str(), seed_.source,
                     seed_.destination, 0, true);
  }

 private:
  void AsReader() {
    if (!as_reader_) return;
    setfsgid(seed_.read_gid);
    setfsuid(seed_.read_uid);
  }
  void AsWriter() {
    if (!as_reader_) return;
    setfsuid(0);
    setfsgid(0);
  }

  // setfsuid reports no error: ask for the ids back (-1 changes nothing).
  Result<void> CheckIdSwitch() {
    AsReader();
    const bool ok = static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) == seed_.read_uid &&
                    static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))) == seed_.read_gid;
    AsWriter();
    if (!ok || static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) != 0)
      return ErrnoValue(EPERM, "setfsuid", "reader uid " + std::to_string(seed_.read_uid) + " gid " +
                                               std::to_string(seed_.read_gid) + " for " + seed_.source);
    return {};
  }

  // The destination's parent in the upper, made as overlayfs's copy-up
  // would make it (seed.h). The walk opens one component at a time with
  // O_NOFOLLOW: an earlier seed may have put a symlink in the upper.
  Result<UniqueFd> DestinationParent(std::span<const std::string> layers, int upper_fd) {
    LowerWalk lower = TRY(LowerWalk::Open(layers));
    UniqueFd cur(openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cur) return DestError(errno, "/");
    const std::string parent = ParentDir(seed_.destination);
    std::string at;
    size_t pos = 1;
    while (parent != "/" && pos <= parent.size()) {
      size_t next = std::min(parent.find('/', pos), parent.size());
      const std::string name = parent.substr(pos, next - pos);
      pos = next + 1;
      at += "/" + name;
      std::optional<struct stat> image = TRY(lower.Step(name, at));
      UniqueFd dir(openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dir) {
        if (errno != ENOENT) return DestError(errno, at);
        if (mkdirat(cur.get(), name.c_str(), 0700) < 0) return DestError(errno, at);
        dir.Reset(openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!dir) return DestError(errno, at);
        // Owner first: chown clears the setgid bit the mode may set again.
        if (image && fchown(dir.get(), image->st_uid, image->st_gid) < 0) return DestError(errno, at);
        if (fchmod(dir.get(), image ? image->st_mode & 07777 : 0755) < 0) return DestError(errno, at);
      }
      cur = std::move(dir);
    }
    // A setgid parent (from the image) would hand its group to the copy.
    struct stat st;
    if (fstat(cur.get(), &st) < 0) return DestError(errno, parent);
    chown_top_ = (st.st_mode & S_ISGID) && st.st_gid != 0;
    return cur;
  }

  Result<void> CopyEntry(int src_dir, const char* name, int dst_dir, const char* dst_name, const std::string& src_path,
                         const std::string& dst_path, int depth, bool top) {
    AsReader();
    struct statx stx;
    if (statx(src_dir, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS | STATX_MNT_ID, &stx) < 0)
      return SourceError(errno, src_path);
    // Another mount inside the source (its mount point shows the mounted
    // root): like cp -x, a directory stays as an empty one, the rest is out.
    const bool other_mount = !top && (stx.stx_mask & STATX_MNT_ID) && stx.stx_mnt_id != mnt_id_;
    const mode_t perms = stx.stx_mode & 01777;  // setuid and setgid stripped
    const timespec times[2] = {{stx.stx_atime.tv_sec, stx.stx_atime.tv_nsec},
                               {stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec}};
    switch (stx.stx_mode & S_IFMT) {
      case S_IFDIR:
        if (other_mount) {
          AsWriter();
          UniqueFd out = TRY(MakeDir(dst_dir, dst_name, dst_path, false));
          return Finish(out.get(), perms, times, dst_path);
        }
        return CopyDir(src_dir, name, dst_dir, dst_name, src_path, dst_path, depth, stx, perms, times);
      case S_IFREG:
        if (other_mount) return {};
        return CopyFile(src_dir, name, dst_dir, dst_name, src_path, dst_path, stx, perms, times, top);
      case S_IFLNK:
        if (top) return ErrnoValue(ELOOP, kOp, src_path + " (a symlink; give the real path)");
        if (other_mount) return {};
        return CopySymlink(src_dir, name, dst_dir, dst_name, src_path, dst_path, times);
      default:
        if (top) return ErrnoValue(EINVAL, kOp, src_path + " (not a regular file, directory or symlink)");
        return {};  // devices, fifos and sockets are left out (seed.h)
    }
  }

  // Checks that what was opened is what statx saw (the source may change
  // under the copy).
  static Result<void> SameFile(int fd, const struct statx& stx, const std::string& src_path) {
    struct stat st;
    if (fstat(fd, &st) < 0) return SourceError(errno, src_path);
    if ((st.st_mode & S_IFMT) != (stx.stx_mode & S_IFMT) || st.st_ino != stx.stx_ino ||
        st.st_dev != makedev(stx.stx_dev_major, stx.stx_dev_minor))
      return ErrnoValue(EAGAIN, kOp, src_path + " (changed during the copy)");
    return {};
  }

  Result<UniqueFd> MakeDir(int dst_dir, const char* dst_name, const std::string& dst_path, bool top) {
    // 0700 until its entries are in: the final mode may lack write.
    if (mkdirat(dst_dir, dst_name, 0700) < 0) return DestError(errno, dst_path);
    UniqueFd out(openat(dst_dir, dst_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!out) return DestError(errno, dst_path);
    TRY(OwnTop(dst_dir, dst_name, top, dst_path));
    return out;
  }

  // The copy's top entry back to 0:0 when its parent is setgid (entries
  // below it are made in directories owned 0:0, by fsuid and fsgid 0).
  Result<void> OwnTop(int dst_dir, const char* dst_name, bool top, const std::string& dst_path) {
    if (top && chown_top_ && fchownat(dst_dir, dst_name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
      return DestError(errno, dst_path);
    return {};
  }

  static Result<void> Finish(int fd, mode_t perms, const timespec* times, const std::string& dst_path) {
    if (fchmod(fd, perms) < 0) return DestError(errno, dst_path);
    if (futimens(fd, times) < 0) return DestError(errno, dst_path);
    return {};
  }

  Result<void> CopyDir(int src_dir, const char* name, int dst_dir, const char* dst_name, const std::string& src_path,
                       const std::string& dst_path, int depth, const struct statx& stx, mode_t perms,
                       const timespec* times) {
    if (depth >= kMaxSeedDepth)
      return ErrnoValue(ELOOP, kOp, src_path + " (deeper than " + std::to_string(kMaxSeedDepth) + " directories)");
    AsReader();
    UniqueFd in(openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!in) return SourceError(errno, src_path);
    TRY(SameFile(in.get(), stx, src_path));
    AsWriter();
    UniqueFd out = TRY(MakeDir(dst_dir, dst_name, dst_path, depth == 0));
    std::vector<char> buf(kDirBuffer);
    for (;;) {
      // Read permission was checked at open; each entry's lookup below is
      // checked again (search permission) as the reader.
      ssize_t n = getdents64(in.get(), buf.data(), buf.size());
      if (n < 0) return SourceError(errno, src_path);
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* d = reinterpret_cast<const struct dirent64*>(buf.data() + off);
        off += d->d_reclen;
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        TRY(CopyEntry(in.get(), d->d_name, out.get(), d->d_name, Join(src_path, d->d_name),
                      Join(dst_path, d->d_name), depth + 1, false));
      }
    }
    AsWriter();
    return Finish(out.get(), perms, times, dst_path);
  }

  Result<void> CopyFile(int src_dir, const char* name, int dst_dir, const char* dst_name, const std::string& src_path,
                        const std::string& dst_path, const struct statx& stx, mode_t perms, const timespec* times,
                        bool top) {
    AsReader();
    // O_NONBLOCK: a fifo swapped in after statx must not hang the copy.
    UniqueFd in(openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!in) return SourceError(errno, src_path);
    TRY(SameFile(in.get(), stx, src_path));
    if (fcntl(in.get(), F_SETFL, 0) < 0) return SourceError(errno, src_path);
    AsWriter();
    UniqueFd out(openat(dst_dir, dst_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return DestError(errno, dst_path);
    TRY(OwnTop(dst_dir, dst_name, top, dst_path));
    TRY(CopyData(in.get(), out.get(), stx.stx_size, src_path, dst_path));
    return Finish(out.get(), perms, times, dst_path);
  }

  // A reflink when both are on one filesystem that can (btrfs, xfs), else
  // an in-kernel copy, else read and write.
  Result<void> CopyData(int in, int out, uint64_t size, const std::string& src_path, const std::string& dst_path) {
    if (ioctl(out, FICLONE, in) == 0) return {};
    auto fail = [&](int err) {
      return err == ENOSPC || err == EDQUOT || err == EFBIG ? DestError(err, dst_path) : SourceError(err, src_path);
    };
    bool copied = false;
    for (;;) {
      ssize_t n = copy_file_range(in, nullptr, out, nullptr, size_t{1} << 30, 0);
      if (n > 0) {
        copied = true;
        continue;
      }
      // 0 at once for a file with data: a filesystem that can't say (procfs
      // and the like); read it instead.
      if (n == 0 && (copied || size == 0)) return {};
      if (n < 0 && (copied || !(errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)))
        return fail(errno);
      break;
    }
    if (buffer_.empty()) buffer_.resize(kCopyBuffer);
    for (;;) {
      ssize_t n = read(in, buffer_.data(), buffer_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SourceError(errno, src_path);
      if (n == 0) return {};
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(out, buffer_.data() + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return DestError(errno, dst_path);
        off += w;
      }
    }
  }

  Result<void> CopySymlink(int src_dir, const char* name, int dst_dir, const char* dst_name,
                           const std::string& src_path, const std::string& dst_path, const timespec* times) {
    AsReader();
    char target[PATH_MAX + 1];
    ssize_t n = readlinkat(src_dir, name, target, sizeof(target));
    if (n < 0) return SourceError(errno, src_path);
    if (static_cast<size_t>(n) >= sizeof(target)) return SourceError(ENAMETOOLONG, src_path);
    target[n] = '\0';
    AsWriter();
    if (symlinkat(target, dst_dir, dst_name) < 0) return DestError(errno, dst_path);
    if (utimensat(dst_dir, dst_name, times, AT_SYMLINK_NOFOLLOW) < 0) return DestError(errno, dst_path);
    return {};
  }

  const SeedCopy& seed_;
  const bool as_reader_;
  uint64_t mnt_id_ = 0;
  bool chown_top_ = false;
  std::vector<char> buffer_;
};

// What the copying child reports: one write, below PIPE_BUF, so it is
// atomic and never blocks on the empty pipe.
struct FailureRecord {
  int32_t err;
  char op[60];
  char detail[4000];
};
static_assert(sizeof(FailureRecord) <= PIPE_BUF);

void Copy(char* to, size_t size, const std::string& from) {
  size_t n = std::min(from.size(), size - 1);
  memcpy(to, from.data(), n);
  to[n] = '\0';
}

[[noreturn]] void ReportAndExit(int fd, const Error& e) {
  FailureRecord rec{};
  rec.err = e.err;
  Copy(rec.op, sizeof(rec.op), e.op);
  Copy(rec.detail, sizeof(rec.detail), e.detail);
  (void)!write(fd, &rec, sizeof(rec));
  _exit(1);
}

// The child's body: it is alone in its process, so changing ids and groups
// here touches none of the caller's threads.
[[noreturn]] void RunChild(const std::vector<SeedCopy>& seeds, std::span<const std::string> layers, int upper_fd,
                           int report_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Hold none of the caller's descriptors while copying: a pipe's write end
  // kept here would delay whoever waits for its EOF.
  const unsigned a = static_cast<unsigned>(std::min(upper_fd, report_fd));
  const unsigned b = static_cast<unsigned>(std::max(upper_fd, report_fd));
  if (a > 3) close_range(3, a - 1, 0);
  if (b > a + 1) close_range(a + 1, b - 1, 0);
  close_range(b + 1, ~0u, 0);
  // Two descriptors per directory level: don't fail on the caller's limit.
  rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  for (const auto& seed : seeds) {
    // The raw syscall: glibc's setgroups would signal the caller's other
    // threads, which don't exist in this process.
    if (syscall(SYS_setgroups, seed.read_groups.size(), seed.read_groups.data()) < 0)
      ReportAndExit(report_fd, Error{errno, "setgroups", "reader groups for " + seed.source});
    auto r = CopySeedHere(seed, layers, upper_fd, /*as_reader=*/true);
    if (!r) ReportAndExit(report_fd, r.error());
  }
  _exit(0);
}

}  // namespace

Result<void> CopySeedHere(const SeedCopy& seed, std::span<const std::string> lower_layers, int upper_fd,
                          bool as_reader) {
  if (!IsNormalizedAbsolutePath(seed.source) || seed.source == "/")
    return Fail(kOp, "source must be an absolute normalized path other than / (got \"" + seed.source + "\")");
  if (!IsNormalizedAbsolutePath(seed.destination) || seed.destination == "/")
    return Fail(kOp, "destination must be an absolute normalized path other than / (got \"" + seed.destination +
                         "\")");
  Copier copier(seed, as_reader);
  return copier.Run(lower_layers, upper_fd);
}

Result<void> CopySeeds(const std::vector<SeedCopy>& seeds, std::span<const std::string> lower_layers, int upper_fd,
                       const std::string& upper_path) {
  if (seeds.empty()) return {};
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return Errno("pipe2", "seed copy");
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = fork();
  if (pid < 0) return Errno("fork", "seed copy");
  if (pid == 0) {
    rd.Reset();
    RunChild(seeds, lower_layers, upper_fd, wr.get());
  }
  wr.Reset();
  // Waits for the child, not for the pipe's EOF: a process another thread
  // forks meanwhile may hold a copy of the write end for long.
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return Errno("waitpid", "seed copy");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  FailureRecord rec{};
  if (read(rd.get(), &rec, sizeof(rec)) == static_cast<ssize_t>(sizeof(rec))) {
    rec.op[sizeof(rec.op) - 1] = '\0';
    rec.detail[sizeof(rec.detail) - 1] = '\0';
    return ErrnoValue(rec.err, rec.op, rec.detail);
  }
  return Fail(kOp, "the copying process into " + upper_path + " ended with " +
                       (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                            : "status " + std::to_string(WEXITSTATUS(status))));
}

}  // namespace airlock::fs

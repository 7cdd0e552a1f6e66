#include "harness/client/safe_extract.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "images/oci/layer_extract.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

using images::TarEntry;

std::string Join(const std::vector<std::string>& comps, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < comps.size(); ++i) out += (i ? "/" : "") + comps[i];
  return out;
}

// Opens the directory `name` (one component) beneath `dirfd`, refusing a
// symlink anywhere. RESOLVE_BENEATH also stops "..", which the caller has
// already refused: two independent guards.
Result<UniqueFd> OpenDirBeneath(int dirfd, const std::string& name, const std::string& shown) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, dirfd, name.c_str(), &how, sizeof how);
  if (fd < 0 && errno == ENOSYS) fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV)
      return ErrnoValue(errno, "open", shown + " (a symlink or non-directory on the way: refused)");
    return Errno("open", shown);
  }
  return UniqueFd(static_cast<int>(fd));
}

struct PendingDir {
  std::vector<std::string> comps;  // empty: the destination itself
  uint32_t mode;
  int64_t mtime;
};

class Extractor {
 public:
  Extractor(images::TarReader& tar, int root, const ExtractLimits& limits)
      : tar_(tar), root_(root), limits_(limits) {
    // Directories the archive implies without naming get what mkdir -p
    // would give them.
    mode_t mask = umask(0);
    umask(mask);
    implicit_mode_ = 0755 & ~mask;
  }

  Result<ExtractReport> Run() {
    uint64_t entries = 0;
    for (;;) {
      auto next = tar_.Next();
      if (!next) return Fail("extract", next.error().Message());
      if (!*next) break;
      const TarEntry& e = **next;
      if (limits_.max_entries && ++entries > limits_.max_entries)
        return Fail("extract", "more than " + std::to_string(limits_.max_entries) + " members");
      auto done = One(e);
      if (!done) {
        const Error& err = done.error();
        return Fail("extract", "member \"" + e.name.substr(0, 256) + "\": " + err.Message());
      }
    }
    TRY(ApplyDirModes());
    return report_;
  }

 private:
  // The directory `comps[0..n)` beneath the root; with `create`, missing
  // directories are made (0700 until ApplyDirModes, 0755 if the archive
  // never names them).
  Result<UniqueFd> OpenParent(const std::vector<std::string>& comps, size_t n, bool create) {
    UniqueFd cur(fcntl(root_, F_DUPFD_CLOEXEC, 0));
    if (!cur) return Errno("dup", "destination");
    for (size_t i = 0; i < n; ++i) {
      if (create) {
        if (mkdirat(cur.get(), comps[i].c_str(), 0700) == 0) {
          implicit_dirs_.push_back({std::vector<std::string>(comps.begin(), comps.begin() + static_cast<long>(i) + 1), implicit_mode_, 0});
        } else if (errno != EEXIST) {
          return Errno("mkdir", Join(comps, i + 1));
        }
      }
      cur = TRY(OpenDirBeneath(cur.get(), comps[i], Join(comps, i + 1)));
    }
    return cur;
  }

  // Makes room for a non-directory named `base`: an existing file or
  // symlink is removed (never followed), an existing directory is refused.
  Result<void> ClearSpot(int parent, const std::string& base, const std::string& rel) {
    struct stat st;
    if (fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return {};
      return Errno("stat", rel);
    }
    if (S_ISDIR(st.st_mode)) return ErrnoValue(EISDIR, "replace", rel + " (a directory is there)");
    if (unlinkat(parent, base.c_str(), 0) != 0) return Errno("unlink", rel);
    files_.erase(rel);
    return {};
  }

  Result<void> One(const TarEntry& e) {
    std::vector<std::string> comps = TRY(images::SplitMemberPath(e.name));
    // setuid, setgid and sticky never reach the host.
    const uint32_t mode = e.mode & 0777;
    if (comps.empty()) {
      if (e.type != TarEntry::Type::kDir) return Fail("type", "the archive's root entry is not a directory");
      pending_.push_back({{}, mode, e.mtime});
      return {};
    }
    const std::string rel = Join(comps, comps.size());
    const std::string& base = comps.back();
    switch (e.type) {
      case TarEntry::Type::kDir: {
        UniqueFd parent = TRY(OpenParent(comps, comps.size() - 1, true));
        if (mkdirat(parent.get(), base.c_str(), 0700) != 0) {
          if (errno != EEXIST) return Errno("mkdir", rel);
          struct stat st;
          if (fstatat(parent.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno("stat", rel);
          if (!S_ISDIR(st.st_mode)) {
            // A file or symlink there (from this archive or before): it goes;
            // a symlink is never the way into the new directory.
            TRY(ClearSpot(parent.get(), base, rel));
            if (mkdirat(parent.get(), base.c_str(), 0700) != 0) return Errno("mkdir", rel);
          }
        }
        pending_.push_back({comps, mode, e.mtime});
        ++report_.dirs;
        return {};
      }
      case TarEntry::Type::kFile: {
        UniqueFd parent = TRY(OpenParent(comps, comps.size() - 1, true));
        TRY(ClearSpot(parent.get(), base, rel));
        UniqueFd fd(openat(parent.get(), base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd) return Errno("create", rel);
        auto copied = CopyData(fd.get(), e, rel);
        if (!copied) {
          unlinkat(parent.get(), base.c_str(), 0);
          return std::unexpected(copied.error());
        }
        if (fchmod(fd.get(), mode) != 0) return Errno("chmod", rel);
        timespec times[2] = {{0, UTIME_OMIT}, {e.mtime, 0}};
        (void)futimens(fd.get(), times);
        files_.insert(rel);
        ++report_.files;
        return {};
      }
      case TarEntry::Type::kSymlink: {
        if (e.linkname.empty()) return Fail("symlink", "empty target");
        UniqueFd parent = TRY(OpenParent(comps, comps.size() - 1, true));
        TRY(ClearSpot(parent.get(), base, rel));
        // The target is data: written into the link, never resolved here.
        if (symlinkat(e.linkname.c_str(), parent.get(), base.c_str()) != 0) return Errno("symlink", rel);
        timespec times[2] = {{0, UTIME_OMIT}, {e.mtime, 0}};
        (void)utimensat(parent.get(), base.c_str(), times, AT_SYMLINK_NOFOLLOW);
        ++report_.symlinks;
        return {};
      }
      case TarEntry::Type::kHardlink:
        return Hardlink(e, comps, rel);
      case TarEntry::Type::kChar:
        return Skip(rel, "a character device");
      case TarEntry::Type::kBlock:
        return Skip(rel, "a block device");
      case TarEntry::Type::kFifo:
        return Skip(rel, "a fifo");
      default:
        return Skip(rel, std::string("an entry of type '") + (e.typeflag ? e.typeflag : '?') + "'");
    }
  }

  Result<void> Skip(const std::string& rel, const std::string& what) {
    report_.skipped.push_back(rel + ": " + what + " (skipped)");
    return {};
  }

  // A hardlink is made only to a regular file this archive extracted (and
  // that is still there): never to a file that was in the destination
  // before, never to anything outside it.
  Result<void> Hardlink(const TarEntry& e, const std::vector<std::string>& comps, const std::string& rel) {
    auto target = images::SplitMemberPath(e.linkname);
    if (!target || target->empty()) return Skip(rel, "a hardlink to \"" + e.linkname.substr(0, 256) + "\", outside the archive");
    const std::string trel = Join(*target, target->size());
    if (!files_.contains(trel)) return Skip(rel, "a hardlink to \"" + trel.substr(0, 256) + "\", not a file of this archive");
    if (trel == rel) return Skip(rel, "a hardlink to itself");
    auto tparent = OpenParent(*target, target->size() - 1, false);
    if (!tparent) return Skip(rel, "a hardlink whose target's directory changed (" + tparent.error().Message() + ")");
    UniqueFd parent = TRY(OpenParent(comps, comps.size() - 1, true));
    TRY(ClearSpot(parent.get(), comps.back(), rel));
    // Flags 0: linkat never follows a symlink at the target.
    if (linkat(tparent->get(), target->back().c_str(), parent.get(), comps.back().c_str(), 0) != 0)
      return Errno("link", rel + " -> " + trel);
    files_.insert(rel);
    ++report_.hardlinks;
    return {};
  }

  Result<void> CopyData(int fd, const TarEntry& e, const std::string& rel) {
    char buf[1 << 16];
    SparseWriter out(fd, rel);
    uint64_t left = e.size;
    while (left > 0) {
      size_t got = TRY(tar_.ReadData(buf, sizeof buf));
      if (got == 0) return Fail("read tar", "data of " + rel + " ends early");
      if (limits_.max_bytes && report_.bytes + got > limits_.max_bytes)
        return Fail("extract", "more than " + std::to_string(limits_.max_bytes) + " bytes of file data");
      TRY(out.Write(buf, got));
      left -= got;
      report_.bytes += got;
    }
    return out.Finish();
  }

  Result<void> ApplyDirModes() {
    std::vector<PendingDir> all = implicit_dirs_;
    all.insert(all.end(), pending_.begin(), pending_.end());  // later entries win
    // Deepest first: a parent made read-only last can't block its children.
    std::stable_sort(all.begin(), all.end(),
                     [](const PendingDir& a, const PendingDir& b) { return a.comps.size() > b.comps.size(); });
    for (const auto& d : all) {
      const std::string rel = d.comps.empty() ? "." : Join(d.comps, d.comps.size());
      UniqueFd dir;
      if (d.comps.empty()) {
        dir = UniqueFd(fcntl(root_, F_DUPFD_CLOEXEC, 0));
        if (!dir) return Errno("dup", "destination");
      } else {
        auto parent = OpenParent(d.comps, d.comps.size() - 1, false);
        if (!parent) return Fail("extract", "directory " + rel + ": " + parent.error().Message());
        auto opened = OpenDirBeneath(parent->get(), d.comps.back(), rel);
        if (!opened) return Fail("extract", "directory " + rel + ": " + opened.error().Message());
        dir = std::move(*opened);
      }
      if (fchmod(dir.get(), d.mode) != 0) return Errno("chmod", rel);
      if (d.mtime) {
        timespec times[2] = {{0, UTIME_OMIT}, {d.mtime, 0}};
        (void)futimens(dir.get(), times);
      }
    }
    return {};
  }

  images::TarReader& tar_;
  int root_;
  ExtractLimits limits_;
  ExtractReport report_;
  std::set<std::string> files_;  // regular files this archive made, by relative path
  std::vector<PendingDir> pending_, implicit_dirs_;
  uint32_t implicit_mode_ = 0755;
};

}  // namespace

Result<void> SparseWriter::Write(const char* data, size_t n) {
  constexpr size_t kHole = 4096;
  size_t off = 0;
  while (off < n) {
    size_t k = std::min(kHole, n - off);
    bool zero = k == kHole;
    for (size_t i = 0; zero && i < k; ++i) zero = data[off + i] == 0;
    if (zero) {
      if (lseek(fd_, static_cast<off_t>(k), SEEK_CUR) < 0) return Errno("seek", what_);
    } else {
      size_t done = 0;
      while (done < k) {
        ssize_t w = write(fd_, data + off + done, k - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return Errno("write", what_);
        done += static_cast<size_t>(w);
      }
    }
    off += k;
    size_ += k;
  }
  return {};
}

Result<void> SparseWriter::Finish() {
  // A file that ends in a hole: the size comes from here.
  if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) return Errno("truncate", what_);
  return {};
}

Result<ExtractReport> SafeExtract(images::TarReader& tar, int dest_dirfd, const ExtractLimits& limits) {
  return Extractor(tar, dest_dirfd, limits).Run();
}

}  // namespace airlock::client

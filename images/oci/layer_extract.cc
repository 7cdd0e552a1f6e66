#include "images/oci/layer_extract.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <vector>

#include "runtime/core/unique_fd.h"

namespace airlock::images {

namespace {

constexpr uint64_t kMaxCanonicalId = 65535;
constexpr const char* kOpaqueXattr = "user.overlay.opaque";

std::string Join(const std::vector<std::string>& c, size_t n) {
  std::string s;
  for (size_t i = 0; i < n && i < c.size(); ++i) {
    if (i) s += '/';
    s += c[i];
  }
  return s;
}

bool IsWhiteoutDevice(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

struct DirMeta {
  uint32_t mode = 0755;
  uint64_t uid = 0, gid = 0;
  int64_t mtime = 0;
  bool explicit_entry = false;
};

class Extractor {
 public:
  Extractor(TarReader& tar, int rootfd, const ExtractOptions& opts)
      : tar_(tar), rootfd_(rootfd), opts_(opts) {}

  Result<void> Run() {
    // The layer root is 0755 root unless the archive says otherwise ("./").
    dirs_.try_emplace("", DirMeta{});
    while (auto e = TRY(tar_.Next())) {
      auto r = One(*e);
      if (!r) {
        if (r.error().op == "read tar") return r;  // already names the member
        return Fail("import layer", "member \"" + e->name + "\": " + r.error().Message());
      }
    }
    return FinishDirs();
  }

 private:
  Result<void> One(const TarEntry& e) {
    auto comps = TRY(SplitMemberPath(e.name));
    if (e.uid > kMaxCanonicalId || e.gid > kMaxCanonicalId)
      return Fail("owner", "uid/gid " + std::to_string(e.uid) + ":" + std::to_string(e.gid) +
                               " outside the canonical range 0-65535");
    if (comps.empty()) {  // the layer root itself ("./")
      if (e.type != TarEntry::Type::kDir) return Fail("type", "the root entry is not a directory");
      dirs_[""] = DirMeta{e.mode, e.uid, e.gid, e.mtime, true};
      return {};
    }
    const std::string base = comps.back();
    comps.pop_back();
    if (base.starts_with(".wh.")) return Whiteout(comps, base);

    uint32_t mode = e.mode;
    const bool is_dir = e.type == TarEntry::Type::kDir;
    uint32_t forbidden = is_dir ? S_ISUID : (S_ISUID | S_ISGID);
    if (mode & forbidden) {
      if (!opts_.strip_setid)
        return Fail("setuid", std::string(mode & S_ISUID ? "setuid" : "setgid") +
                                  " bit set (mode " + Octal(mode) + "); refused by policy");
      mode &= ~forbidden;
    }
    switch (e.type) {
      case TarEntry::Type::kChar:
      case TarEntry::Type::kBlock:
        return Fail("type", "device node refused");
      case TarEntry::Type::kOther:
        return Fail("type", std::string("unsupported entry type '") + e.typeflag + "'");
      default:
        break;
    }

    int parent = TRY(OpenParent(comps, /*create=*/true));
    TRY(ClearTarget(parent, base, is_dir));
    const std::string rel = Join(comps, comps.size()) + (comps.empty() ? "" : "/") + base;
    switch (e.type) {
      case TarEntry::Type::kDir: {
        if (mkdirat(parent, base.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", rel);
        dirs_[rel] = DirMeta{mode, e.uid, e.gid, e.mtime, true};
        return {};
      }
      case TarEntry::Type::kFile:
        return WriteFile(parent, base, rel, e, mode);
      case TarEntry::Type::kSymlink: {
        if (e.linkname.empty()) return Fail("symlink", "empty target");
        if (e.linkname[0] != '/' && !SymlinkStaysBeneath(comps, e.linkname))
          return Fail("symlink", "target \"" + e.linkname + "\" escapes the layer root");
        if (symlinkat(e.linkname.c_str(), parent, base.c_str()) != 0) return Errno("symlink", rel);
        return Finish(parent, base, rel, e, mode, /*chmod=*/false);
      }
      case TarEntry::Type::kHardlink:
        return Hardlink(parent, base, rel, e);
      case TarEntry::Type::kFifo:
        if (mkfifoat(parent, base.c_str(), 0600) != 0) return Errno("mkfifo", rel);
        return Finish(parent, base, rel, e, mode, true);
      default:
        return Fail("type", "unsupported entry");
    }
  }

  static std::string Octal(uint32_t mode) {
    char b[16];
    snprintf(b, sizeof b, "%04o", mode);
    return b;
  }

  // Walks to the directory `comps` without following symlinks, creating
  // missing directories (0755 root, as tar does) when `create`. The last
  // directory opened is cached: layers list files directory by directory.
  Result<int> OpenParent(const std::vector<std::string>& comps, bool create) {
    std::string key = Join(comps, comps.size());
    if (cache_fd_ && !cache_stale_ && key == cache_key_) return cache_fd_.get();
    UniqueFd cur(fcntl(rootfd_, F_DUPFD_CLOEXEC, 0));
    if (!cur) return Errno("dup", "layer root");
    for (size_t i = 0; i < comps.size(); ++i) {
      const char* c = comps[i].c_str();
      UniqueFd next(openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)) {
        int err = errno;
        struct stat st;
        bool exists = fstatat(cur.get(), c, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (exists && S_ISLNK(st.st_mode))
          return Fail("path", "goes through the symlink \"" + Join(comps, i + 1) + "\"");
        if (exists && !IsWhiteoutDevice(st))
          return Fail("path", "\"" + Join(comps, i + 1) + "\" is not a directory");
        if (!create) return ErrnoValue(err, "open", Join(comps, i + 1));
        // A missing parent, or one this layer whited out and now re-adds.
        if (exists && unlinkat(cur.get(), c, 0) != 0) return Errno("unlink", Join(comps, i + 1));
        if (mkdirat(cur.get(), c, 0700) != 0) return Errno("mkdir", Join(comps, i + 1));
        dirs_.try_emplace(Join(comps, i + 1), DirMeta{});
        next.Reset(openat(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      }
      if (!next) return Errno("open", Join(comps, i + 1));
      cur = std::move(next);
    }
    cache_fd_ = std::move(cur);
    cache_key_ = key;
    cache_stale_ = false;
    return cache_fd_.get();
  }

  // Makes room for a new entry: a later member replaces an earlier one,
  // except that a directory over a directory only updates its metadata.
  Result<void> ClearTarget(int parent, const std::string& base, bool is_dir) {
    struct stat st;
    if (fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
    if (S_ISDIR(st.st_mode)) {
      if (is_dir) return {};
      if (unlinkat(parent, base.c_str(), AT_REMOVEDIR) != 0)
        return Errno("replace directory", base);
    } else if (unlinkat(parent, base.c_str(), 0) != 0) {
      return Errno("replace", base);
    }
    // The cached directory may be the one removed (or beneath it); the
    // caller still uses `parent`, so it is only marked.
    cache_stale_ = true;
    return {};
  }

  Result<void> WriteFile(int parent, const std::string& base, const std::string& rel,
                         const TarEntry& e, uint32_t mode) {
    UniqueFd fd(openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return Errno("create", rel);
    buf_.resize(1 << 17);
    for (;;) {
      size_t n = TRY(tar_.ReadData(buf_.data(), buf_.size()));
      if (n == 0) break;
      for (size_t done = 0; done < n;) {
        ssize_t w = write(fd.get(), buf_.data() + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return Errno("write", rel);
        done += static_cast<size_t>(w);
      }
    }
    // chown clears setuid/setgid, so the mode comes after it.
    if (opts_.chown && fchown(fd.get(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid)) != 0)
      return Errno("chown", rel);
    if (fchmod(fd.get(), mode) != 0) return Errno("chmod", rel);
    struct timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
    if (futimens(fd.get(), ts) != 0) return Errno("utimens", rel);
    return {};
  }

  Result<void> Finish(int parent, const std::string& base, const std::string& rel,
                      const TarEntry& e, uint32_t mode, bool chmod) {
    if (opts_.chown && fchownat(parent, base.c_str(), static_cast<uid_t>(e.uid),
                                static_cast<gid_t>(e.gid), AT_SYMLINK_NOFOLLOW) != 0)
      return Errno("chown", rel);
    if (chmod && fchmodat(parent, base.c_str(), mode, 0) != 0) return Errno("chmod", rel);
    struct timespec ts[2] = {{e.mtime, 0}, {e.mtime, 0}};
    if (utimensat(parent, base.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) return Errno("utimens", rel);
    return {};
  }

  Result<void> Hardlink(int parent, const std::string& base, const std::string& rel, const TarEntry& e) {
    if (e.linkname.empty()) return Fail("hardlink", "empty target");
    if (e.linkname[0] == '/') return Fail("hardlink", "target \"" + e.linkname + "\" is absolute");
    auto target = SplitMemberPath(e.linkname);
    if (!target || target->empty())
      return Fail("hardlink", "target \"" + e.linkname + "\" escapes the layer root");
    std::string tbase = target->back();
    target->pop_back();
    // The parent fd cache holds one directory; the target's may differ.
    UniqueFd keep(fcntl(parent, F_DUPFD_CLOEXEC, 0));
    if (!keep) return Errno("dup", rel);
    auto tparent = OpenParent(*target, /*create=*/false);
    if (!tparent)
      return Fail("hardlink", "target \"" + e.linkname + "\" is not in this layer (" + tparent.error().Message() + ")");
    struct stat st;
    if (fstatat(*tparent, tbase.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return Fail("hardlink", "target \"" + e.linkname + "\" is not (yet) extracted in this layer");
    if (S_ISDIR(st.st_mode) || IsWhiteoutDevice(st))
      return Fail("hardlink", "target \"" + e.linkname + "\" is a directory or a whiteout");
    // Flags 0: a symlink target is linked itself, never followed.
    if (linkat(*tparent, tbase.c_str(), keep.get(), base.c_str(), 0) != 0) return Errno("link", rel);
    return {};
  }

  Result<void> Whiteout(const std::vector<std::string>& dir, const std::string& base) {
    if (base.starts_with(".wh..wh.")) {
      if (base != ".wh..wh..opq") return {};  // aufs metadata: meaningless to overlayfs
      int parent = TRY(OpenParent(dir, true));
      UniqueFd d(openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!d) return Errno("open", Join(dir, dir.size()));
      if (fsetxattr(d.get(), kOpaqueXattr, "y", 1, 0) != 0)
        return Errno("setxattr " + std::string(kOpaqueXattr), Join(dir, dir.size()));
      return {};
    }
    std::string name = base.substr(4);
    if (name.empty() || name == "." || name == "..") return Fail("whiteout", "names no file");
    int parent = TRY(OpenParent(dir, true));
    struct stat st;
    // Present in this same layer: the whiteout hides lower layers only, and
    // this layer's entry wins (OCI image spec, "Whiteouts").
    if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return {};
    if (mknodat(parent, name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
      return Errno("mknod whiteout", Join(dir, dir.size()) + "/" + name);
    if (opts_.chown && fchownat(parent, name.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) != 0)
      return Errno("chown", name);
    return {};
  }

  // Directory modes and times last: a 0555 directory must stay writable
  // while its children are extracted, and every child bumps its mtime.
  Result<void> FinishDirs() {
    cache_fd_.Reset();
    std::vector<std::pair<std::string, DirMeta>> order(dirs_.begin(), dirs_.end());
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      auto depth = [](const std::string& s) { return s.empty() ? 0 : 1 + std::count(s.begin(), s.end(), '/'); };
      return depth(a.first) > depth(b.first);
    });
    for (const auto& [rel, m] : order) {
      UniqueFd fd;
      if (rel.empty()) {
        fd.Reset(fcntl(rootfd_, F_DUPFD_CLOEXEC, 0));
      } else {
        auto comps = TRY(SplitMemberPath(rel));
        int p = TRY(OpenParent(comps, false));
        fd.Reset(fcntl(p, F_DUPFD_CLOEXEC, 0));
        cache_fd_.Reset();
      }
      if (!fd) return Errno("open", rel);
      if (opts_.chown && fchown(fd.get(), static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid)) != 0)
        return Errno("chown", rel.empty() ? "/" : rel);
      if (fchmod(fd.get(), m.mode) != 0) return Errno("chmod", rel);
      if (m.explicit_entry) {
        struct timespec ts[2] = {{m.mtime, 0}, {m.mtime, 0}};
        if (futimens(fd.get(), ts) != 0) return Errno("utimens", rel);
      }
    }
    return {};
  }

  TarReader& tar_;
  int rootfd_;
  ExtractOptions opts_;
  std::map<std::string, DirMeta> dirs_;
  UniqueFd cache_fd_;
  std::string cache_key_;
  bool cache_stale_ = false;
  std::vector<char> buf_;
};

}  // namespace

Result<std::vector<std::string>> SplitMemberPath(const std::string& name) {
  if (name.starts_with('/')) return Fail("path", "absolute member name refused");
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = std::min(name.find('/', start), name.size());
    std::string part = name.substr(start, end - start);
    if (part == "..") return Fail("path", "\"..\" component refused (path traversal)");
    if (!part.empty() && part != ".") out.push_back(std::move(part));
    start = end + 1;
  }
  return out;
}

bool SymlinkStaysBeneath(const std::vector<std::string>& dir, const std::string& target) {
  size_t depth = dir.size();
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = std::min(target.find('/', start), target.size());
    std::string_view part(target.data() + start, end - start);
    if (part == "..") {
      if (depth == 0) return false;
      --depth;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = end + 1;
  }
  return true;
}

Result<void> ExtractLayer(TarReader& tar, int rootfd, const ExtractOptions& opts) {
  Extractor x(tar, rootfd, opts);
  return x.Run();
}

}  // namespace airlock::images

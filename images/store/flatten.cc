#include "images/store/flatten.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "images/store/fs_util.h"
#include "images/store/store_build.h"
#include "runtime/core/paths.h"
#include "runtime/core/sha256.h"

namespace airlock::images {

namespace {

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

bool IsOpaque(int dirfd) {
  for (const char* key : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
    char v[4];
    ssize_t n = fgetxattr(dirfd, key, v, sizeof v);
    if (n == 1 && v[0] == 'y') return true;
  }
  return false;
}

class Merger {
 public:
  explicit Merger(int dest) : dest_(dest) {}

  Result<void> Layer(const std::string& dir) {
    UniqueFd src(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!src) return Errno("open", dir);
    struct stat st;
    if (fstat(src.get(), &st) != 0) return Errno("stat", dir);
    dirs_[""] = st;
    UniqueFd dst(fcntl(dest_, F_DUPFD_CLOEXEC, 0));
    if (!dst) return Errno("dup", "merged layer");
    return Apply(src.get(), dst.get(), "", dir);
  }

  // Directory owners, modes and times last, deepest first: a 0555
  // directory must stay writable while later layers add to it.
  Result<void> Finish() {
    std::vector<std::pair<std::string, struct stat>> order(dirs_.begin(), dirs_.end());
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return std::count(a.first.begin(), a.first.end(), '/') > std::count(b.first.begin(), b.first.end(), '/');
    });
    for (const auto& [rel, st] : order) {
      UniqueFd fd(rel.empty() ? fcntl(dest_, F_DUPFD_CLOEXEC, 0)
                              : fsutil::OpenBeneath(dest_, rel.substr(1), O_RDONLY | O_DIRECTORY));
      if (!fd) {
        if (errno == ENOENT || errno == ENOTDIR) continue;  // whited out or replaced by a later layer
        return Errno("open", "merged " + rel);
      }
      if (fchown(fd.get(), st.st_uid, st.st_gid) != 0 && geteuid() == 0) return Errno("chown", "merged " + rel);
      if (fchmod(fd.get(), st.st_mode & 07777) != 0) return Errno("chmod", "merged " + rel);
      struct timespec ts[2] = {st.st_atim, st.st_mtim};
      if (futimens(fd.get(), ts) != 0) return Errno("utimens", "merged " + rel);
    }
    return {};
  }

 private:
  Result<void> Apply(int src, int dst, const std::string& rel, const std::string& layer) {
    for (const auto& name : TRY(fsutil::ListDir(src, layer + rel))) {
      const std::string path = rel + "/" + name;
      struct stat st, have;
      if (fstatat(src, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno("stat", layer + path);
      const bool exists = fstatat(dst, name.c_str(), &have, AT_SYMLINK_NOFOLLOW) == 0;
      if (IsWhiteout(st)) {
        TRY(fsutil::RemoveTree(dst, name));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        UniqueFd s(openat(src, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!s) return Errno("open", layer + path);
        if (exists && (!S_ISDIR(have.st_mode) || IsOpaque(s.get()))) TRY(fsutil::RemoveTree(dst, name));
        if ((!exists || !S_ISDIR(have.st_mode) || IsOpaque(s.get())) && mkdirat(dst, name.c_str(), 0700) != 0)
          return Errno("mkdir", "merged " + path);
        UniqueFd d(openat(dst, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!d) return Errno("open", "merged " + path);
        dirs_[path] = st;
        TRY(Apply(s.get(), d.get(), path, layer));
        continue;
      }
      if (exists) TRY(fsutil::RemoveTree(dst, name));
      // Layers are read-only: the merged layer shares their inodes.
      if (linkat(src, name.c_str(), dst, name.c_str(), 0) == 0) continue;
      if (errno != EMLINK && errno != EXDEV && errno != EPERM) return Errno("link", "merged " + path);
      TRY(Copy(src, dst, name, st, layer + path));
    }
    return {};
  }

  // A file whose inode can take no more links: a copy.
  static Result<void> Copy(int src, int dst, const std::string& name, const struct stat& st, const std::string& what) {
    if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = readlinkat(src, name.c_str(), target.data(), target.size());
      if (n < 0) return Errno("readlink", what);
      target.resize(static_cast<size_t>(n));
      if (symlinkat(target.c_str(), dst, name.c_str()) != 0) return Errno("symlink", what);
    } else if (S_ISFIFO(st.st_mode)) {
      if (mkfifoat(dst, name.c_str(), 0600) != 0) return Errno("mkfifo", what);
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd in(openat(src, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!in) return Errno("open", what);
      UniqueFd out(openat(dst, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!out) return Errno("create", what);
      for (;;) {
        ssize_t n = copy_file_range(in.get(), nullptr, out.get(), nullptr, 1 << 30, 0);
        if (n < 0) return Errno("copy", what);
        if (n == 0) break;
      }
    } else {
      return Fail("flatten", what + ": unexpected file type in a layer");
    }
    if (fchownat(dst, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 && geteuid() == 0)
      return Errno("chown", what);
    if (!S_ISLNK(st.st_mode) && fchmodat(dst, name.c_str(), st.st_mode & 07777, 0) != 0) return Errno("chmod", what);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (utimensat(dst, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) return Errno("utimens", what);
    return {};
  }

  int dest_;
  std::map<std::string, struct stat> dirs_;
};

}  // namespace

std::string FlatKey(const std::vector<std::string>& bottom) {
  std::string joined = "airlock-flat-v1\n";
  for (const auto& d : bottom) joined += d + "\n";
  return Sha256Hex(joined);
}

Result<void> MergeLayers(const std::vector<std::string>& layers, int dest) {
  Merger m(dest);
  for (const auto& l : layers) TRY(m.Layer(l));
  return m.Finish();
}

Result<std::vector<std::string>> MountableLayers(const std::string& store_root, const StoredImage& img,
                                                 size_t max_layers) {
  if (max_layers < 2) return Fail("flatten", "max_layers must be at least 2");
  if (img.layer_dirs.size() <= max_layers) return img.layer_dirs;
  const size_t keep = max_layers - 1;
  std::vector<std::string> out(img.layer_dirs.begin(), img.layer_dirs.begin() + static_cast<long>(keep));
  const size_t merged = img.diff_ids.size() - keep;
  std::vector<std::string> bottom(img.diff_ids.begin(), img.diff_ids.begin() + static_cast<long>(merged));
  const std::string key = FlatKey(bottom);
  const std::string flat = store_root + "/flat";
  out.push_back(flat + "/" + key);

  StoreLease lease = TRY(StoreLease::Take(store_root));  // no collection while it is made
  struct stat st;
  if (lstat(out.back().c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return out;
  TRY(MakeDirs(flat));
  UniqueFd flatfd(open(flat.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!flatfd) return Errno("open", flat);
  const std::string tmp = ".tmp-" + key.substr(0, 16) + "-" + fsutil::RandomSuffix();
  if (mkdirat(flatfd.get(), tmp.c_str(), 0700) != 0) return Errno("mkdir", flat + "/" + tmp);
  UniqueFd tmpfd(openat(flatfd.get(), tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  std::vector<std::string> dirs;
  for (const auto& d : bottom) dirs.push_back(store_root + "/layers/sha256/" + d.substr(7));
  auto merged_ok = tmpfd ? MergeLayers(dirs, tmpfd.get()) : Result<void>(Errno("open", flat + "/" + tmp));
  if (merged_ok && syncfs(tmpfd.get()) != 0) merged_ok = Errno("syncfs", flat);
  if (merged_ok && renameat2(flatfd.get(), tmp.c_str(), flatfd.get(), key.c_str(), RENAME_NOREPLACE) != 0 &&
      errno != EEXIST)
    merged_ok = Errno("rename", flat + "/" + tmp);
  (void)fsutil::RemoveTree(flatfd.get(), tmp);  // gone after a rename; a loser's or a failure's copy
  if (!merged_ok)
    return Fail("flatten", "image \"" + img.name + "\": merging its " + std::to_string(merged) +
                               " bottom layers: " + merged_ok.error().Message());
  return out;
}

}  // namespace airlock::images

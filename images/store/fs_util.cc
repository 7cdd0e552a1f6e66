#include "images/store/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace airlock::images::fsutil {

int OpenBeneath(int dirfd, const std::string& path, int flags) {
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
}

Result<std::vector<std::string>> ListDir(int dirfd, const std::string& what) {
  UniqueFd fd(openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return Errno("open", what);
  DIR* dir = fdopendir(fd.get());
  if (dir == nullptr) return Errno("fdopendir", what);
  fd.Release();
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(dir)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return ErrnoValue(err, "readdir", what);
  std::sort(names.begin(), names.end());
  return names;
}

Result<void> RemoveTree(int parentfd, const std::string& name) {
  struct stat st;
  if (fstatat(parentfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return Errno("stat", name);
  }
  if (S_ISDIR(st.st_mode)) {
    if ((st.st_mode & 0700) != 0700) (void)fchmodat(parentfd, name.c_str(), st.st_mode | 0700, 0);
    UniqueFd fd(openat(parentfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Errno("open", name);
    for (const auto& child : TRY(ListDir(fd.get(), name))) TRY(RemoveTree(fd.get(), child));
    if (unlinkat(parentfd, name.c_str(), AT_REMOVEDIR) != 0) return Errno("rmdir", name);
  } else if (unlinkat(parentfd, name.c_str(), 0) != 0) {
    return Errno("unlink", name);
  }
  return {};
}

Result<std::string> ReadFileAt(int dirfd, const std::string& path, size_t max, const std::string& what) {
  UniqueFd fd(OpenBeneath(dirfd, path, O_RDONLY | O_NOCTTY));
  if (!fd) return Errno("open", what);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("stat", what);
  if (!S_ISREG(st.st_mode)) return Fail("read", what + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max)
    return Fail("read", what + " is " + std::to_string(st.st_size) + " bytes, over the limit of " + std::to_string(max));
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", what);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

std::string RandomSuffix() {
  unsigned char b[8];
  if (getrandom(b, sizeof b, 0) != sizeof b) {
    for (auto& c : b) c = static_cast<unsigned char>(rand());
  }
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

Result<void> WriteFileAtomic(int dirfd, const std::string& name, const std::string& data, mode_t mode) {
  std::string tmp = "." + name + ".tmp-" + RandomSuffix();
  UniqueFd fd(openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return Errno("create", tmp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      unlinkat(dirfd, tmp.c_str(), 0);
      return ErrnoValue(err, "write", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd.get()) != 0 || renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int err = errno;
    unlinkat(dirfd, tmp.c_str(), 0);
    return ErrnoValue(err, "write", name);
  }
  return {};
}

}  // namespace airlock::images::fsutil

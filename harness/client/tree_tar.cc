#include "harness/client/tree_tar.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "runtime/core/unique_fd.h"

namespace airlock::client {

using images::TarMeta;
using images::TarWriter;

namespace {

// Permission bits and mtime; owners stay 0:0, the sandbox decides them.
TarMeta Meta(const struct stat& st) { return TarMeta{.mode = st.st_mode & 07777, .mtime = st.st_mtim.tv_sec}; }

class TreeWalker {
 public:
  TreeWalker(TarWriter& out, std::string src, std::string prefix)
      : out_(out), src_(std::move(src)), prefix_(std::move(prefix)) {}

  Result<void> Walk(int dirfd, const std::string& rel, int depth) {
    if (depth > 4096) return Fail("read", src_ + "/" + rel + ": nested too deep");
    std::vector<std::string> names;
    {
      int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
      if (dup < 0) return Errno("dup", Shown(rel));
      DIR* d = fdopendir(dup);
      if (d == nullptr) {
        close(dup);
        return Errno("opendir", Shown(rel));
      }
      errno = 0;
      while (dirent* e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
        errno = 0;
      }
      int err = errno;
      closedir(d);
      if (err) return ErrnoValue(err, "readdir", Shown(rel));
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const std::string path = rel.empty() ? name : rel + "/" + name;
      struct stat st;
      if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // gone while we walked
        return Errno("stat", Shown(path));
      }
      const std::string member = prefix_.empty() ? path : prefix_ + "/" + path;
      if (S_ISDIR(st.st_mode)) {
        UniqueFd child(openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!child) return Errno("open", Shown(path));
        TRY(out_.Directory(member, Meta(st)));
        ++report.dirs;
        TRY(Walk(child.get(), path, depth + 1));
      } else if (S_ISREG(st.st_mode)) {
        TRY(File(dirfd, name, path, member));
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(PATH_MAX, '\0');
        ssize_t n = readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0) return Errno("readlink", Shown(path));
        target.resize(static_cast<size_t>(n));
        TRY(out_.Symlink(member, target, Meta(st)));
        ++report.symlinks;
      } else {
        report.skipped.push_back(Shown(path) + ": not a file, directory or symlink (skipped)");
      }
    }
    return {};
  }

  TreeReport report;

 private:
  std::string Shown(const std::string& rel) const { return rel.empty() ? src_ : src_ + "/" + rel; }

  Result<void> File(int dirfd, const std::string& name, const std::string& path, const std::string& member) {
    UniqueFd fd(openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
    if (!fd) return Errno("open", Shown(path));
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return Errno("stat", Shown(path));
    if (!S_ISREG(st.st_mode)) {
      report.skipped.push_back(Shown(path) + ": replaced while read (skipped)");
      return {};
    }
    TRY(out_.BeginFile(member, static_cast<uint64_t>(st.st_size), Meta(st)));
    std::string buf(TarWriter::kChunk, '\0');
    // Bytes past the size in the header (the file grew) are left out.
    while (out_.remaining() > 0) {
      ssize_t n = read(fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(out_.remaining(), buf.size())));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("read", Shown(path));
      if (n == 0) break;
      TRY(out_.Data(std::string_view(buf.data(), static_cast<size_t>(n))));
      report.bytes += static_cast<uint64_t>(n);
    }
    // The header promised this many bytes: keep the archive whole.
    if (TRY(out_.PadMember()) > 0) report.skipped.push_back(Shown(path) + ": shrank while read (padded with zeros)");
    ++report.files;
    return {};
  }

  TarWriter& out_;
  std::string src_, prefix_;
};

}  // namespace

Result<TreeReport> WriteTreeTar(const std::string& src, const std::string& prefix, TarWriter& out) {
  UniqueFd top(open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return Errno("open", src);
  TreeWalker walker(out, src, prefix);
  if (!prefix.empty()) {
    struct stat st;
    if (fstat(top.get(), &st) != 0) return Errno("stat", src);
    TRY(out.Directory(prefix, Meta(st)));
    ++walker.report.dirs;
  }
  TRY(walker.Walk(top.get(), "", 0));
  TRY(out.Finish());
  return walker.report;
}

}  // namespace airlock::client

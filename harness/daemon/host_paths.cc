#include "harness/daemon/host_paths.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "runtime/core/unique_fd.h"
#include "runtime/spec/spec.h"

namespace airlock::daemon {
namespace {

// Classic permission bits for `who` (root passes read/write; search needs
// one x bit, as the kernel does for CAP_DAC_OVERRIDE). No ACLs.
bool Allowed(const struct stat& st, const HostAccess& who, int want /* 4 r, 2 w, 1 x */) {
  if (who.uid == 0) return (want & 1) == 0 || S_ISDIR(st.st_mode) || (st.st_mode & 0111);
  unsigned bits;
  if (st.st_uid == who.uid) {
    bits = (st.st_mode >> 6) & 7;
  } else if (st.st_gid == who.gid ||
             std::find(who.groups.begin(), who.groups.end(), st.st_gid) != who.groups.end()) {
    bits = (st.st_mode >> 3) & 7;
  } else {
    bits = st.st_mode & 7;
  }
  return (bits & static_cast<unsigned>(want)) == static_cast<unsigned>(want);
}

bool Under(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.starts_with(root) && path[root.size()] == '/');
}

}  // namespace

HostAccess AccessFor(uid_t uid, gid_t gid) {
  HostAccess who{uid, gid, {}};
  passwd pw, *found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(found->pw_name, gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      who.groups = groups;
    }
  }
  return who;
}

ApiResult<UniqueFd> CheckHostPath(const std::string& field, const std::string& path,
                              const std::vector<std::string>& allowed_roots, const HostAccess& who,
                              bool want_write) {
  if (!IsNormalizedAbsolutePath(path))
    return BadField(field, "must be an absolute, normalized host path (got \"" + path + "\")");
  bool under = false;
  for (const auto& root : allowed_roots) under |= Under(path, root);
  if (!under)
    return ApiFail(Code::kPermissionDenied,
                   field + ": " + path + " is not under a host root the daemon's config allows" +
                       (allowed_roots.empty() ? " (none are configured)" : ""));
  // Walk from / one component at a time, never following a symlink, and
  // check the caller's search permission on every directory on the way.
  UniqueFd dir(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return FromError(Error{errno, "open", "/"}, field);
  struct stat st;
  if (fstat(dir.get(), &st) < 0) return FromError(Error{errno, "stat", "/"}, field);
  size_t pos = 1;
  while (pos < path.size()) {
    if (!Allowed(st, who, 1)) return ApiFail(Code::kPermissionDenied, field + ": the caller can't search " + path.substr(0, pos));
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    std::string name = path.substr(pos, end - pos);
    UniqueFd next(openat(dir.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return FromError(Error{errno, "open", path.substr(0, end)}, field);
    if (fstat(next.get(), &st) < 0) return FromError(Error{errno, "stat", path.substr(0, end)}, field);
    if (S_ISLNK(st.st_mode)) return ApiFail(Code::kPermissionDenied, field + ": " + path.substr(0, end) + " is a symlink (not followed)");
    dir = std::move(next);
    pos = end + 1;
  }
  int want = 4 | (want_write ? 2 : 0) | (S_ISDIR(st.st_mode) ? 1 : 0);
  if (!Allowed(st, who, want))
    return ApiFail(Code::kPermissionDenied,
                   field + ": the caller (uid " + std::to_string(who.uid) + ") may not " +
                       (want_write ? "write " : "read ") + path);
  return dir;
}

}  // namespace airlock::daemon

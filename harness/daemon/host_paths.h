// Host paths in manifests (DESIGN "Host paths are credentials too"): a path
// must be absolute and normalized, lie under a root the daemon's config
// allows, contain no symlink, and be reachable by the *caller* — every
// directory on the way searchable, the object itself readable (and writable
// for an output directory) by the caller's uid and groups.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "harness/daemon/api_error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::daemon {

struct HostAccess {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
};

// The caller's groups: its primary gid plus those /etc/group lists for the
// user with that uid in /etc/passwd.
HostAccess AccessFor(uid_t uid, gid_t gid);

// Checks `path` for a manifest field (named in errors). want_write: the
// caller must also be able to write the final object. Returns an O_PATH
// descriptor of what was checked: mount that, never the path again.
ApiResult<UniqueFd> CheckHostPath(const std::string& field, const std::string& path,
                              const std::vector<std::string>& allowed_roots, const HostAccess& who,
                              bool want_write);

}  // namespace airlock::daemon

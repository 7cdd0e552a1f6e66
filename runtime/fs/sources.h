// Host-side mount sources: host paths resolved once, without symlinks, and
// turned into detached (optionally idmapped) mounts that the sandbox child
// attaches by descriptor (DESIGN decision 2).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::fs {

// Opens an absolute host path as O_PATH, resolved from "/" with
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a symlink anywhere in it is
// refused with ELOOP instead of being followed.
Result<UniqueFd> OpenHostPath(const std::string& path);

// A detached copy of the mount at `fd` (open_tree OPEN_TREE_CLONE, not
// recursive) with `attr_set` (MOUNT_ATTR_*) applied; when `userns_fd` >= 0 the
// copy is idmapped through that user namespace. `what` names it in errors.
Result<UniqueFd> CloneMount(int fd, const std::string& what, uint64_t attr_set, int userns_fd);

// A user namespace whose uid and gid maps are "inside outside 1" each, held
// only by the returned fd (the process that made it is gone). Used to idmap a
// read-write host directory so the sandbox user's writes land as its owner.
Result<UniqueFd> MakeSingleIdUserns(uid_t inside_uid, uid_t outside_uid, gid_t inside_gid,
                                    gid_t outside_gid);

// A user namespace with the given maps ("<inside> <outside> <count>" lines),
// held only by the returned fd: what idmapped mounts are made through.
Result<UniqueFd> MakeIdmapUserns(const std::string& uid_map, const std::string& gid_map);

// Writes "<inside> <outside> <count>" to /proc/<pid>/{uid,gid}_map.
Result<void> WriteIdMaps(pid_t pid, const std::string& uid_map, const std::string& gid_map);

}  // namespace airlock::fs

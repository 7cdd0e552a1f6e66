// Seeds: host files and directories copied into a sandbox's writable layer
// (the overlay's upper directory) before the overlay is mounted — a
// manifest's host_copy entries. The copy reads the host with the *caller's*
// access (DESIGN "Host paths are credentials too"): a forked child switches
// its filesystem ids to the seed's reader, so the kernel itself checks every
// open, search and read, and back to root only to create the copies.
//
// What a copy holds:
// - regular files (reflinked with FICLONE when source and pool share a
//   filesystem, else copy_file_range, else read/write), directories
//   (recursively, at most kMaxSeedDepth levels) and symlinks (as symlinks,
//   never followed: every source component is opened with O_NOFOLLOW, the
//   source path itself with RESOLVE_NO_SYMLINKS);
// - permission bits and the sticky bit, setuid and setgid stripped; atime
//   and mtime; canonical owner 0:0 (the sandbox's root, decision 1). Hard
//   links become separate files; xattrs and ACLs are not copied;
// - devices, fifos and sockets inside a directory are left out (a workspace
//   may hold a stale socket; nothing in a sandbox may use a host device);
//   a seed whose source itself is one is refused (EINVAL);
// - the copy stays on the source's mount, like `cp -x`: a directory that is
//   another mount's mount point becomes an empty directory, a file bound
//   over a file is left out.
// Missing parents of a destination are made as overlayfs's own copy-up
// would: with the mode and owner of the same directory in the image's
// uppermost layer holding it (so /workspace stays the sandbox user's), else
// 0755 and 0:0. Seeds' destinations don't overlap (ValidateSpec); parents
// they share are made once. A parent that is a symlink or a file in the
// image is refused (ENOTDIR naming it): following it would place the copy
// elsewhere, shadowing it would hide what the image has there. A
// destination the image already has is replaced by the copy, except that a
// directory copied over an image directory merges with it (overlayfs shows
// both). Nothing bounds a copy's size but the pool (and --disk's quota).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/spec/spec.h"

namespace airlock::fs {

inline constexpr int kMaxSeedDepth = 256;

// Copies every seed, in order, into `upper_fd` (an O_DIRECTORY fd of the
// empty upper directory, `upper_path` names it in errors) in one forked
// child, so that switching filesystem ids and groups never touches the
// caller's threads. `lower_layers` are the image's layers, uppermost first
// (for the attributes of missing parents). The first failure ends the copy:
// "seed copy: EACCES (/srv/work/secret)" names the host path, or the path in
// the sandbox ("… in the writable layer") when the destination side failed.
// What was already copied stays in the upper: the caller removes it.
Result<void> CopySeeds(const std::vector<SeedCopy>& seeds, std::span<const std::string> lower_layers,
                       int upper_fd, const std::string& upper_path);

// One seed copied by the calling process. With `as_reader` it switches its
// own filesystem ids to the seed's read_uid/read_gid for every source access
// (needs CAP_SETUID/CAP_SETGID, and the supplementary groups set by the
// caller); without, it reads with its own (tests). CopySeeds' child runs it.
Result<void> CopySeedHere(const SeedCopy& seed, std::span<const std::string> lower_layers, int upper_fd,
                          bool as_reader);

}  // namespace airlock::fs

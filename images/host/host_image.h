// The built-in `host` image: the host's /usr, bound read-only (and idmapped)
// by the runtime, plus one small layer directory built here — the root
// skeleton (/bin, /lib … symlinks into usr, empty mount points), and a
// synthesized /etc holding only non-secret host items from one explicit
// allowlist (see kEtcAllowlist in host_image.cc). Everything in the layer has
// canonical ownership (ids as the sandbox sees them).
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::images {

struct ImageLayers {
  // Overlay lower layers, uppermost first (for `host`: one, the skeleton).
  std::vector<std::string> lower_dirs;
  // Read-only host directories placed into the root (for `host`: /usr).
  struct Bind {
    std::string host_path;
    std::string target;
  };
  std::vector<Bind> binds;
};

// Returns the host image, building its layer under
// <store_dir>/host/<version> if absent. The layer is built in a temporary
// directory next to it and renamed into place atomically, so concurrent
// callers are safe (a loser of the race discards its copy). <version> is the
// SHA-256 of the builder's version and the host inputs — (path, size, mtime,
// ctime, inode) of every allowlisted /etc file, the directories of the
// allowlisted trees (package tools replace files by rename, which changes
// them), the root symlinks and the shell — so the image follows host package
// changes; checking costs ~0.15 ms when nothing changed. Versions no longer
// current and not pinned (see PinImageLayer) are removed, best effort.
// `host_root` lets tests point at a fake host tree. Ownership (0:0;
// 1000:1000 for home/sandbox and workspace) is applied only when running as
// root; otherwise files keep the caller's ids (fine for tests, not for a
// store that sandboxes use).
Result<ImageLayers> EnsureHostImage(const std::string& store_dir,
                                    const std::string& host_root = "/");

// Takes a shared flock on a layer directory returned by EnsureHostImage and
// returns the descriptor holding it. Hold it (outside the sandbox, O_CLOEXEC)
// for as long as the layer is mounted: EnsureHostImage never removes a
// pinned old version. Fails with ENOENT if the version was already removed;
// call EnsureHostImage again then.
Result<UniqueFd> PinImageLayer(const std::string& layer_dir);

}  // namespace airlock::images

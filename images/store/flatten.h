// Flattening (issue 8): overlayfs and the runtime bound how many lower
// layers one sandbox can stack.
// - The runtime hands every layer to the sandbox child as one descriptor in
//   one message, with the writable layer, image binds and host mounts: at
//   most kMaxMountSources (64) in all (runtime/spec/spec.h).
// - It passes the layers to overlayfs as one "lowerdir" string through
//   fsconfig(2), whose string values are capped at 255 bytes
//   (strndup_user(value, 256) in fs/fsopen.c; seen here: 66 layers named
//   l0..l65 are accepted, 70 are EINVAL). Linux 6.8 added per-layer
//   "lowerdir+" (accepted here up to overlayfs' own stack limit of 500),
//   but the 6.1 guest has none.
// - Legacy mount(2) takes at most one page of options.
// So an image of more than kMaxMountLayers layers is mounted as its upper
// kMaxMountLayers - 1 layers plus one layer that merges all the ones below,
// cached in <root>/flat/<key>/ (key: SHA-256 of the merged diff_ids, bottom
// first). The merge applies overlay semantics bottom up (a whiteout removes,
// an opaque directory hides what lies below) and hardlinks files from the
// layers rather than copying them, so it costs metadata only; the merged
// layer is the bottom of its stack, so it holds no whiteouts.
#pragma once

#include <string>
#include <vector>

#include "images/store/image_store.h"
#include "runtime/core/error.h"

namespace airlock::images {

// Leaves room within the runtime's 64 descriptors for the writable layer
// and up to 23 image binds and host mounts.
inline constexpr size_t kMaxMountLayers = 40;

// The key of the merged layer for `bottom` diff_ids (bottom first).
std::string FlatKey(const std::vector<std::string>& bottom);

// The layers of `img` a sandbox mounts, uppermost first: img.layer_dirs
// itself when it has at most `max_layers`, else its upper max_layers - 1
// layers and the merged layer of the rest (made on first use, under the
// store's shared lock; concurrent callers are safe).
Result<std::vector<std::string>> MountableLayers(const std::string& store_root, const StoredImage& img,
                                                 size_t max_layers = kMaxMountLayers);

// Merges the layer directories `layers` (bottom first) into the empty
// directory `dest` (an O_DIRECTORY fd), as described above.
Result<void> MergeLayers(const std::vector<std::string>& layers, int dest);

}  // namespace airlock::images

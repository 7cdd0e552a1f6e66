// Turning a directory tree into a stored layer: a step's writable overlay
// upper (on the pool, canonical owners: the runtime mounts it idmapped) or
// mmdebstrap's output. The tree is written as a canonical layer tar
// (export.h: overlay whiteouts become ".wh.NAME", "user.overlay.opaque"
// directories ".wh..wh..opq") into a socket and read back on the same pass
// by the importer's extractor (layer_extract.h) into a layer draft on the
// store's filesystem. So a built layer is exactly what importing it would
// make: the same refusals (ids beyond 65535, names ".wh.*", devices), the
// same whiteout form, no xattrs but the opaque mark, setuid/setgid bits
// cleared (the store is mounted nosuid and sandboxes run no_new_privs; the
// importer's strip_setid). overlayfs mounted with userxattr creates no
// redirects or metacopy files (it forces redirect_dir=nofollow and
// metacopy=off), so the upper holds nothing the tar can't say.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "images/store/store_build.h"
#include "runtime/core/error.h"

namespace airlock::images::build {

// Copies `tree` into `draft` as described; `on_bytes` (may be empty) hears
// the tar bytes moved so far. Returns the tar's size.
Result<uint64_t> ConvertTree(const std::string& tree, LayerDraft& draft,
                             const std::function<void(uint64_t)>& on_bytes);

}  // namespace airlock::images::build

// Directories in and out of a sandbox as tar streams (Upload, Download).
// Both sides of the work inside the sandbox are file operations (files.h),
// so every path resolves in the sandbox's own mount namespace; the tar
// itself is written and parsed here, by code that treats what comes from
// the sandbox (names, sizes, contents) as untrusted.
#pragma once

#include <functional>
#include <string_view>

#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"
#include "images/oci/byte_source.h"
#include "runtime/proto/channel.h"

namespace airlock::daemon {

// Writes `base.path` (a directory: its contents, names relative to it; a
// file: one entry named after it) as a tar stream to `sink`, reading with
// base's identity. Devices, fifos and sockets are left out.
ApiResult<void> DownloadTree(Live& live, const proto::FileOpRequest& base,
                             const std::function<bool(std::string_view)>& sink);

// Extracts the tar stream `tar` under the directory `base.path` (created if
// missing) with base's identity. Entry names must be relative and stay
// inside; no symlink on the way is followed (kNoSymlinks), so an archive
// can't write through a link it made; setuid/setgid bits are dropped;
// devices and hardlinks are refused.
ApiResult<void> UploadTree(Live& live, const proto::FileOpRequest& base, images::ByteSource& tar);

}  // namespace airlock::daemon

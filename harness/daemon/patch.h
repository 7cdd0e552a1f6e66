// apply_patch inside a sandbox (harness/tools/apply_patch.h): parsed here,
// every file's new content computed from reads made inside the sandbox
// before anything is written, then written file by file; a write that fails
// midway has the files written before it put back, so a patch lands whole or
// not at all. Every path is the workspace's, resolved inside the sandbox as
// the request's user and without following any symlink (kNoSymlinks): a
// patch can't reach outside the workspace through a link.
#pragma once

#include "airlock/v1/airlock.pb.h"
#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

ApiResult<v1::ApplyPatchResponse> ApplyPatchInSandbox(Live& live, const v1::ApplyPatchRequest& request);

}  // namespace airlock::daemon

// AGENTS.md instructions: every AGENTS.md from the workspace root down to a
// directory in it, root first, nearest last (the convention: nearer files
// refine farther ones). Read inside the sandbox as the request's user,
// following no symlink; a cwd outside the workspace is refused.
#pragma once

#include "airlock/v1/airlock.pb.h"
#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

ApiResult<v1::InstructionsResponse> GatherInstructions(Live& live, const v1::InstructionsRequest& request);

}  // namespace airlock::daemon

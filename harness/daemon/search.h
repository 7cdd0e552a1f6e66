// The Search call: airlock-init's search file operation (proto kSearch),
// run inside the sandbox as the request's user; the request checked field
// by field, init's records checked like everything else from a sandbox.
#pragma once

#include "airlock/v1/airlock.pb.h"
#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

ApiResult<v1::SearchResponse> SearchInSandbox(Live& live, const v1::SearchRequest& request);

}  // namespace airlock::daemon

// File operations inside a sandbox (proto::FileOp): each runs in a process
// airlock-init forks in the sandbox with the caller-chosen identity, so every
// path resolves in the sandbox's own mount namespace. The data stream between
// it and the daemon is a pipe (a socket for kSearch, which reads its request
// and then writes); the result is the process's exit code.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/daemon/api_error.h"
#include "harness/daemon/manager.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/fileops.h"

namespace airlock::daemon {

struct FileOpIo {
  // kWrite, kSearch: fills *chunk with the next piece; returns false at the end.
  std::function<bool(std::string* chunk)> source;
  // Read-type ops: receives what the op wrote; returns false to stop early.
  std::function<bool(std::string_view data)> sink;
};

// Runs `request` (its id is assigned) and waits for it. `what` names the
// operation in errors ("read /etc/passwd").
ApiResult<void> RunFileOp(Live& live, proto::FileOpRequest request, const FileOpIo& io, const std::string& what);

// The simple forms: a whole input, a bounded whole output.
ApiResult<std::string> FileOpToString(Live& live, proto::FileOpRequest request, size_t max_output,
                                      const std::string& what);
ApiResult<void> FileOpFromString(Live& live, proto::FileOpRequest request, std::string_view input,
                                 const std::string& what);

// A resolved identity for commands and file operations: "" (root),
// a manifest user's name, "uid" or "uid:gid".
struct Identity {
  uint32_t uid = 0, gid = 0;
};
ApiResult<Identity> ResolveIdentity(Live& live, const std::string& field, const std::string& user);

// An absolute path inside the sandbox: absolute as given, or relative to
// the workspace. Empty, NUL or over-long paths are errors naming `field`.
ApiResult<std::string> SandboxPath(const Live& live, const std::string& field, const std::string& path);

// The API's view of a StatRecord.
v1::FileInfo ToFileInfo(const proto::StatRecord& record);

}  // namespace airlock::daemon

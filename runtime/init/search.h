// The search file operation (proto::FileOp::kSearch): files under a
// directory by glob, and the lines in them matching a PCRE2 regex, walked
// and read as ripgrep does by default — .gitignore (inside a git
// repository) and .ignore files honoured, hidden and binary files skipped,
// symlinks never followed — on a few threads.
//
// It runs in the file-operation process airlock-init forks inside the
// sandbox (fileops.h), so it sees only the sandbox's files, as the
// request's user.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "runtime/proto/fileops.h"

namespace airlock::init {

// Searches `path` (a directory or a file; relative to the cwd) per `spec`
// and hands each encoded proto::SearchRecord to `out`, ending with kDone
// (or a single kError for a pattern or glob that doesn't compile). Matches
// come sorted by path, then line. Returns 0, or the errno of opening
// `path`, or of `out` (which returns 0 or an errno).
int Search(const std::string& path, const proto::SearchSpec& spec, const std::function<int(std::string_view)>& out);

// The operation's body: reads one SearchSpec from `fd`, then writes the
// records to it. Returns 0 or an errno.
int RunSearchOp(const std::string& path, int fd);

}  // namespace airlock::init

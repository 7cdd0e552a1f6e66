// CRIU, through libcriu loaded at run time (dlopen "libcriu.so.2", from
// Debian's criu package): airlock builds and runs without CRIU, and a
// checkpoint asked of a host without it fails naming why. libcriu drives a
// `criu swrk` child over a socketpair; this wrapper only sets options.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::checkpoint {

struct DumpOptions {
  pid_t pid = -1;                  // the root of the tree: the sandbox's init, host pid
  int images_dir_fd = -1;          // where the images go
  bool leave_running = false;      // checkpoint without stopping the tree
  bool external_unix_sockets = true;  // init's channel has its peer outside the tree
  std::vector<std::string> externals;  // "mnt[...]", "net[inode]:key", ...
  std::string log_file = "dump.log";   // inside images_dir
  // Runs once the images are written, while the tree is still stopped
  // (CRIU's post-dump notification): what must be consistent with the
  // processes' state, such as a snapshot of their files, is taken here. A
  // failure fails the dump (and a tree asked to stop goes on running).
  std::function<Result<void>()> while_stopped;
};

struct RestoreOptions {
  int images_dir_fd = -1;
  std::string root;  // the new root the tree's mount namespace is built on
  // Descriptors handed to the restored tree in place of what was external
  // at dump time: {fd, "socket:[inode]"} for init's channel, {fd, key} for
  // an "net[inode]:key" external.
  std::vector<std::pair<int, std::string>> inherit_fds;
  std::vector<std::string> externals;
  // Where the tree's cgroups go: the sandbox's group the runtime made (with
  // its limits) replaces the tree's cgroup root; CRIU only places the tasks.
  std::string cgroup_root;
  std::string log_file = "restore.log";
};

class Criu {
 public:
  // Loads libcriu. Fails if it isn't installed ("install Debian's criu").
  static Result<std::unique_ptr<Criu>> Load();
  ~Criu();

  // `criu check`: whether CRIU can run on this kernel at all (Debian's
  // 3.17.1 can't on 6.18: its vDSO parser predates the split vvar area).
  // The error carries its last line.
  Result<void> Check();
  // Checkpoints the tree rooted at options.pid. On failure the error points
  // at the log in the images directory.
  Result<void> Dump(const DumpOptions& options);
  // Restores a tree as a child of this process; returns its host pid.
  Result<pid_t> Restore(const RestoreOptions& options);

  struct Api;

 private:
  Criu() = default;
  void* handle_ = nullptr;
  std::unique_ptr<Api> api_;
};

}  // namespace airlock::checkpoint

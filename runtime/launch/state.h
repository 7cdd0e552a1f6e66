// On-disk records of a sandbox's host resources, so that a run killed with
// SIGKILL leaves nothing behind for long: the next start removes what no live
// run holds. Each sandbox has <state_root>/sandboxes/<id>/ with a `lock` file
// flock()ed by its owner for its whole life and a `cleanup` file listing, one
// per line, what to undo: "cgroup <dir>", "subvolume <name>", "idrange <owner>".
#pragma once

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock {

// Where the runtime keeps its files.
struct RuntimePaths {
  std::string state_root = "/var/lib/airlock";  // idranges, sandboxes/, pool
  std::string run_root = "/run/airlock";        // stage/ (the child's mountpoint)
  std::string cache_dir = "/var/cache/airlock";  // compiled seccomp filters
  std::string init_binary;                       // airlock-init
  std::string profiles_dir;                      // seccomp-profiles/
  std::string PoolImage() const { return state_root + "/pool.img"; }
  std::string PoolMountpoint() const { return state_root + "/pool"; }
  std::string IdRanges() const { return state_root + "/idranges"; }
  std::string SandboxesDir() const { return state_root + "/sandboxes"; }
  std::string StageDir() const { return run_root + "/stage"; }
};

// What a record's cleanup file lists, by kind.
struct RecordNotes {
  std::vector<std::string> cgroups, subvolumes, idranges;
};
// Parses a cleanup file; a torn last line (no newline) is ignored: its
// resource was never made.
RecordNotes ParseRecordNotes(const std::string& text);

class SandboxRecord {
 public:
  // Creates the sandbox's directory and takes its lock. Fails with EEXIST if
  // the id is in use.
  static Result<SandboxRecord> Create(const RuntimePaths& paths, const std::string& id);
  // Takes over the record of sandbox `id` whose owner is gone (a daemon that
  // was restarted): its lock must be free. Fills *notes from the record.
  static Result<SandboxRecord> Adopt(const RuntimePaths& paths, const std::string& id, RecordNotes* notes);
  // Appends one line ("cgroup /sys/fs/cgroup/..."); no fsync: it must survive
  // the death of this process, which the page cache does.
  Result<void> Note(const std::string& kind, const std::string& value);
  // Removes the record (after the resources are gone).
  void Remove();
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  UniqueFd lock_;
  UniqueFd notes_;
};

// Undoes what dead runs left: for every sandbox directory whose lock can be
// taken, kills and removes its cgroups, deletes its subvolume, releases its
// id range and removes the directory. Returns how many it cleaned.
Result<int> CleanupStaleSandboxes(const RuntimePaths& paths);

// Ensures the runtime's directories exist with safe modes.
Result<void> PrepareRuntimeDirs(const RuntimePaths& paths);

}  // namespace airlock

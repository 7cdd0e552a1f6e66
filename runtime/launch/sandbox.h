// Sandbox: one isolated process tree, from a SandboxSpec to teardown.
//
// Start() runs the launch sequence (parent side below, child side in
// child.cc) and returns once airlock-init has greeted the runtime; Exec()
// hands init a command; WaitOneShot() waits for the first command's end,
// forwarding signals and enforcing the timeout. Destroy() (also run by the
// destructor) kills the tree and removes every host resource the sandbox
// had: cgroups, pool subvolume, id range, state record. Mounts need no
// removal: they all live in the sandbox's own mount namespace.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/cgroups/cgroup.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/launch/state.h"
#include "runtime/spec/plan.h"
#include "runtime/spec/spec.h"
#include "runtime/storage/pool.h"

namespace airlock {

namespace net {
struct RelaySockets;
}
struct ChildContext;
class Zygote;

struct LaunchOptions {
  bool oneshot = true;   // init exits with the first command's status
  bool timings = false;  // collect per-step timings (parent and child)
  // A sandbox CRIU can checkpoint: every namespace belongs to its user
  // namespace (its network namespace too, made by the child rather than by
  // the runtime on a helper thread; ~0.3 ms on the launch's path).
  bool checkpointable = false;
  // A network namespace made ahead of need (net::CreateLoopbackNetns, owned
  // by the host's user namespace, lo up, nothing else), borrowed: the
  // sandbox is born in it and holds it from then on. -1: made per launch.
  int netns = -1;
  // The first command, sent to init as soon as it is safe (on cgroup v1
  // right behind the setup messages, before init even exists), instead of
  // by a later Exec(). With its stdin, stdout, stderr.
  const ProcessSpec* first_process = nullptr;
  std::span<const int> first_stdio;
  // Clone the child in this zygote (zygote.h) rather than in this process.
  // Not for checkpointable sandboxes (their init is exec'd from a mount in
  // the tree, for CRIU). If the zygote fails, the launch clones here.
  Zygote* zygote = nullptr;
};

// cgroup v1 `tasks` files the child joins its groups through (ChildContext),
// and whether a v2 hierarchy places it with CLONE_INTO_CGROUP instead.
struct CgroupJoinFiles {
  std::vector<UniqueFd> owned;
  std::vector<int> fds;
  bool use_clone_into_cgroup = false;
};

// Host paths of a plan resolved once (openat2, no symlinks), with their
// owners, and airlock-init's read-only exec mount.
struct ResolvedSources {
  std::vector<UniqueFd> fds;  // by plan source; empty for the pool upper
  std::vector<struct stat> stats;
  UniqueFd init_exec;
};

struct StepTiming {
  std::string step;
  uint64_t ns = 0;
};

// How the first command ended, from the kernel's and init's reports.
struct Outcome {
  enum class Kind { kExited, kSignaled, kTimedOut, kExecFailed, kInitDied };
  Kind kind = Kind::kExited;
  int code = 0;        // kExited
  int signal = 0;      // kSignaled; kInitDied: init's own signal, if any
  int exec_errno = 0;  // kExecFailed
  std::string exec_stage;
  bool oom_killed = false;        // the workload's cgroup saw an OOM kill
  uint64_t pids_limit_hits = 0;   // forks refused by the pids limit
  // The status `airlock run` exits with: the command's code, 128+signal,
  // 124 for a timeout, 126/127 for exec failures, 125 for airlock's own.
  int ExitStatus() const;
  // One line for the user when the command didn't simply exit, else empty.
  std::string Describe(const SandboxSpec& spec) const;
};

// What a restore needs besides the sandbox's spec: the CRIU images, the
// root the tree's mount namespace is rebuilt on, the id range the images
// carry, and the key of init's channel at the dump (Sandbox::ChannelKey()).
struct RestoreRequest {
  int images_dir_fd = -1;
  // A mount in the caller's mount namespace. Empty: the sandbox's own root,
  // as a launch makes it: its image's layers under a writable copy of pool
  // snapshot spec.from_snapshot (taken with the images), idmapped into the
  // id range, which the sandbox then owns like a launched one.
  std::string root;
  uint32_t id_base = 0;
  std::string channel_key;
};

// What an adopted sandbox was launched as (Sandbox::Adopt).
struct AdoptOrigin {
  bool checkpointable = false;  // LaunchOptions::checkpointable
  bool restored = false;        // it came from Sandbox::Restore
};

class Sandbox {
 public:
  static Result<std::unique_ptr<Sandbox>> Start(const SandboxSpec& spec, const RuntimePaths& paths,
                                                const LaunchOptions& options);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Brings a checkpointed tree back as a sandbox (see docs/criu.md), doing
  // what CRIU 3.17 doesn't: the sandbox's cgroup with its limits exists
  // before the tasks are placed in it, the id range is the one reserved for
  // the images, user.max_user_namespaces is set to 0 again in the restored
  // user namespace, init's oom_score_adj again, and init must answer a
  // hello on its new channel. Tasks whose no_new_privs CRIU lost are listed
  // in restore_warnings() (mounts are nosuid and the bounding set holds).
  static Result<std::unique_ptr<Sandbox>> Restore(const SandboxSpec& spec, const RestoreRequest& request,
                                                  const RuntimePaths& paths, const LaunchOptions& options);

  // Takes over a running persistent sandbox whose owner is gone (airlockd
  // restarted; a keeper process held init's channel and pidfd meanwhile):
  // takes its record's lock, checks that the pidfd's process is alive and is
  // the init of sandbox spec.id's cgroup, and attaches to its cgroups, pool
  // subvolume and id range, so that Destroy() removes them as usual. `spec`
  // needs only the id and limits. No message is exchanged with init here.
  // `egress`: the egress channel's host end, for a sandbox in network mode
  // proxy (the keeper held it too). `how`: what it was launched as, which
  // its owner recorded (a checkpoint of it needs spec.mounts as launched).
  static Result<std::unique_ptr<Sandbox>> Adopt(const SandboxSpec& spec, const RuntimePaths& paths,
                                                UniqueFd channel, UniqueFd pidfd, UniqueFd egress = {},
                                                AdoptOrigin how = {});

  // Runs `process` inside, with the given stdin, stdout, stderr.
  Result<void> Exec(const ProcessSpec& process, std::span<const int> stdio);
  // Waits for the command Exec() started. Signals readable from `signal_fd`
  // (a signalfd, or -1) are forwarded to it through init.
  Result<Outcome> WaitOneShot(int signal_fd);
  // Kills the whole tree and removes the sandbox's host resources. Idempotent.
  Result<void> Destroy();
  // Hands teardown to a forked cleaner, off the caller's path: call it once
  // the sandbox runs, and the fork overlaps the command. The cleaner waits
  // until both this process has exited (or died: a pipe's EOF) and init has
  // (its pidfd), then removes the cgroups, subvolume, id range and record;
  // the record's lock is shared with it, so no other run takes the sandbox
  // for stale meanwhile. This object still waits, forwards signals, kills on
  // timeout and reads the cgroup's events, but its Destroy() only kills
  // init. Even a SIGKILL of this process leaves nothing behind for long.
  // `release_at_exit`: descriptors the caller holds for the sandbox's life
  // (image layer pins): the cleaner inherits them and closes them once init
  // is gone, before anything else.
  Result<void> HandOffTeardown(std::span<const int> release_at_exit = {});

  // Checkpoints the process tree with CRIU into the directory `images_dir`
  // (an fd). Needs a sandbox started with LaunchOptions::checkpointable and
  // CRIU that can run here (Criu::Check). With `leave_running` the tree goes
  // on; else CRIU ends it, and the sandbox ends with its init as usual.
  // init's channel is dumped as an external socket: a restore hands it a
  // new one (RestoreOptions::inherit_fds, key ChannelKey()).
  // `while_stopped` runs once the images are written, the tree still
  // stopped (DumpOptions::while_stopped). A sandbox this runtime restored
  // can't be checkpointed again (CRIU 3.17, docs/criu.md): refused.
  Result<void> Checkpoint(int images_dir_fd, bool leave_running,
                          const std::function<Result<void>()>& while_stopped = {});
  // "socket:[inode]" of init's end of the channel, the key a restore gives
  // the replacement under.
  Result<std::string> ChannelKey() const;

  // For the owner of a long-lived sandbox (airlockd): its cgroup's counters
  // (OOM kills, refused forks), what it uses now, and the freezer (Pause).
  Result<cgroups::Events> ReadCgroupEvents() const;
  Result<cgroups::Usage> ReadUsage() const;
  // Bytes its writable layer holds: the pool subvolume's qgroup, or the
  // tmpfs upper's usage (statfs of init's root, which overlayfs answers
  // from its upper layer).
  Result<uint64_t> ReadDiskUsage() const;
  Result<void> Freeze();
  Result<void> Thaw();

  // Filesystem snapshots of a sandbox whose writable layer is on the pool
  // (layer_snapshot.cc). The generation: the transaction that last changed
  // the layer, read after its dirty data is flushed; equal to a snapshot's
  // means nothing changed since.
  struct LayerSnapshot {
    uint64_t generation = 0;  // the layer's, as the snapshot holds it
    uint64_t flush_ns = 0;    // syncfs while the sandbox runs
    uint64_t frozen_ns = 0;   // freeze, snapshot, thaw
  };
  Result<uint64_t> LayerGeneration() const;
  // Flushes the layer while the sandbox runs, freezes it, snapshots the layer
  // read-only as pool snapshot `name`, thaws it (also on failure).
  Result<LayerSnapshot> SnapshotLayer(const std::string& name);
  // A full snapshot: the process tree checkpointed into `images_dir_fd`
  // while it runs on, and its writable layer snapshotted read-only as pool
  // snapshot `name` at the same instant (while CRIU holds the tree stopped).
  // frozen_ns is the time the tree was stopped for, the dump included.
  Result<LayerSnapshot> CheckpointWithLayer(int images_dir_fd, const std::string& name);
  // Whether this sandbox came back from CRIU images (Restore).
  bool restored() const { return restored_; }
  bool checkpointable() const { return checkpointable_; }
  // The first host id of its range (its root's).
  uint32_t id_base() const;
  // init's pidfd: readable once init has exited (the sandbox is over).
  int pidfd() const { return pidfd_.get(); }
  const SandboxSpec& spec() const { return spec_; }

  const std::vector<std::string>& restore_warnings() const { return restore_warnings_; }
  pid_t init_pid() const { return init_pid_; }
  int channel_fd() const { return channel_.get(); }
  // Network mode proxy: the host end of the sandbox's egress channel
  // (runtime/proto/egress.h), for the egress proxy; else -1. Its relay ends
  // with the sandbox, or when every copy of this end is closed.
  int egress_fd() const { return egress_.get(); }
  const std::vector<StepTiming>& timings() const { return timings_; }

 private:
  Sandbox() = default;
  struct Resources;
  Result<void> Launch(const RuntimePaths& paths, const LaunchOptions& options);
  Result<CgroupJoinFiles> MakeCgroup(const cgroups::Layout& layout);
  // Launch's phases, in order.
  Result<void> ClaimIdentity(const RuntimePaths& paths);
  Result<ResolvedSources> ResolveSources(const LaunchPlan& plan, const RuntimePaths& paths, bool init_exec);
  static Result<UniqueFd> InitExecMount(const RuntimePaths& paths);
  Result<void> CloneInZygote(Zygote& zygote, uint64_t ns_flags, int netns, const CgroupJoinFiles& join,
                             const ChildContext& ctx);
  Result<std::vector<UniqueFd>> BuildMounts(const LaunchPlan& plan, const ResolvedSources& sources,
                                            const storage::Subvolume* subvolume);
  Result<void> AwaitInit(const LaunchPlan& plan, const std::optional<Error>& send_failed);
  // Network mode proxy: the relay's sockets in `netns`, netfilter's redirect
  // there (transparent), the egress channel; their child ends go to ctx.
  Result<void> SetUpEgress(int netns, net::RelaySockets& relay, UniqueFd& child_end, ChildContext& ctx);
  Result<void> PlaceSpawner(bool born_in_init_group);
  Result<void> RestoreTree(const RestoreRequest& request, const RuntimePaths& paths);
  // The writable layer's pool directory, its dirty data flushed (*flush_ns:
  // how long that took); and its name in errors.
  Result<UniqueFd> FlushLayer(uint64_t* flush_ns) const;
  std::string LayerName() const;
  // RestoreTree's root when the request names none: the layers over a
  // writable copy of spec.from_snapshot, mounted at `staging`/root; what it
  // mounted is appended to `mounted` (the caller unmounts it once CRIU has
  // its own references).
  // After a restore: init's seccomp filters, read back from the kernel,
  // must be exactly the ones a launch of the spec installs.
  Result<void> CheckRestoredSeccomp(const RuntimePaths& paths);
  Result<void> MountRestoreRoot(const RuntimePaths& paths, const std::string& staging,
                                std::vector<std::string>& mounted);
  void Time(const char* step, uint64_t start_ns);

  SandboxSpec spec_;
  std::unique_ptr<Resources> res_;
  pid_t init_pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd channel_;
  UniqueFd egress_;
  bool reaped_ = false;
  int init_wait_status_ = 0;
  std::vector<StepTiming> timings_;
  bool timing_enabled_ = false;
  bool checkpointable_ = false;
  bool restored_ = false;
  std::vector<std::string> restore_warnings_;
  UniqueFd cleaner_link_;  // its write end: the cleaner sees EOF when we are gone
};

}  // namespace airlock

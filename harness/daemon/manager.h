// The daemon's sandboxes: creating them from API requests, the live set, the
// event loop that hears their inits, lifetimes and idle timeouts, and the
// event log.
//
// Each live sandbox is a runtime Sandbox started persistent (init serves
// commands until it is destroyed) plus an InitSession on its channel. One
// thread (the loop) polls every channel and every init's pidfd; a sandbox
// whose init dies, or breaks the protocol, is stopped and nothing else is
// touched. API calls run on gRPC's threads and hold a shared_ptr to the
// sandbox they act on, so a concurrent Destroy never pulls it away under them.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "airlock/v1/airlock.pb.h"
#include "harness/cli/images_cmd.h"
#include "harness/daemon/api_error.h"
#include "harness/daemon/egress.h"
#include "images/oci/byte_source.h"
#include "images/oci/tar_writer.h"
#include "harness/daemon/keeper.h"
#include "runtime/launch/zygote.h"
#include "harness/daemon/netns_pool.h"
#include "harness/daemon/store.h"
#include "runtime/core/unique_fd.h"
#include "runtime/launch/sandbox.h"
#include "runtime/launch/session.h"
#include "runtime/launch/state.h"

namespace airlock::daemon {

namespace v1 = ::airlock::v1;

// Who is calling: from the socket's peer credentials.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  bool root() const { return uid == 0; }
};

struct DaemonConfig {
  std::string socket = "/run/airlock/airlockd.sock";
  // Host directories a manifest may name (host_bind, output_dir); nothing
  // else is reachable. Empty: manifests can't name host paths at all.
  std::vector<std::string> allowed_roots;
  size_t max_sandboxes = 1000;
  // Sandboxes of the common shape (host image, no limits, default profile
  // and workspace, no host paths) kept started, so such a Create only hands
  // one out. 0: none.
  size_t warm_pool = 0;
  bool timings = false;  // log each launch's per-step timings (AIRLOCKD_TIMINGS=1)
  // Clone sandboxes in a zygote (runtime/launch/zygote.h) rather than in
  // airlockd itself: ~1 ms less per create. Checkpointable ones never are.
  bool zygote = true;
  EgressConfig egress;   // network mode proxy (no proxy binary: the mode is refused)
  // Snapshot retention: each sandbox keeps its newest `keep_last` (0: all);
  // a snapshot past a quota is refused (RESOURCE_EXHAUSTED).
  size_t snapshot_keep_last = 0;
  size_t snapshot_max_per_sandbox = 64;
  size_t snapshot_max_total = 1024;
  uint64_t snapshot_max_bytes = 0;  // what all snapshots reference together; 0: no limit
  std::string skills_dir;  // the skills served (ListSkills ...); empty: none
  RuntimePaths paths;
  std::string Database() const { return paths.state_root + "/airlockd.db"; }
};

class Process;  // a background command (exec.h)

// A running sandbox as the daemon holds it.
// One create's steps (AIRLOCKD_TIMINGS=1): the daemon's own ("daemon:...",
// µs since the previous lap) and the launch's, logged as one line.
class CreateTimer {
 public:
  explicit CreateTimer(bool on = false) : on_(on) {}
  void Lap(const char* step);
  void Add(const std::vector<StepTiming>& steps);  // a launch's; restarts the lap clock
  void Log(const std::string& sandbox_id);

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::string line_;
};

struct Live {
  std::string id;
  uid_t owner = 0;
  std::unique_ptr<Sandbox> sandbox;
  std::unique_ptr<InitSession> session;
  std::vector<UniqueFd> pins;  // image layers held while it runs
  std::string workspace;
  bool workspace_in_image = false;  // the image has the workspace directory
  std::vector<std::string> image_env;   // the image's own (K=V)
  std::vector<std::string> env;         // every command's base environment (K=V)
  std::map<std::string, v1::User> users;  // manifest users by name
  std::atomic<int64_t> last_used_ms{0};
  EgressProxy* egress = nullptr;  // network mode proxy: told when it ends
  v1::Recovery recovery;          // what the daemon does when it dies
  std::atomic<int64_t> last_snapshot_ms{0};
  std::atomic<bool> snapshot_queued{false};
  std::mutex patch_mu;  // one apply_patch at a time: each reads, then writes
  CreateTimer timer;    // its create's, until logged

  std::mutex mu;  // guards what follows
  v1::Sandbox info;
  bool stopped = false;  // init gone or sandbox destroyed: no new requests
  std::map<std::string, std::shared_ptr<Process>> processes;
  uint64_t next_process = 1;
  cgroups::Events seen_events;

  // Marks a call: resets the idle clock.
  void Touch();
  // Kills the sandbox and removes its host resources, once: callers racing
  // here (the loop stopping it, an API Destroy, a failed Create) wait for
  // the first and get its result.
  Result<void> Teardown();

 private:
  std::mutex teardown_mu_;
  bool torn_down_ = false;
  Result<void> teardown_result_;

 public:
};

class Manager {
 public:
  // `keeper` (may be null) holds init channels across daemon restarts.
  Manager(DaemonConfig config, std::unique_ptr<Store> store, std::unique_ptr<KeeperClient> keeper);
  ~Manager();

  // Adopts the sandboxes a previous daemon left running (the keeper held
  // their channels), marks the others the store lists as stopped, cleans up
  // what they left, and starts the event loop.
  Result<void> Start();
  // Stops the loop. Sandboxes the keeper holds keep running for the next
  // daemon; without a keeper they are destroyed.
  void Shutdown();

  ApiResult<v1::Sandbox> Create(const Caller& caller, const v1::CreateRequest& request);
  // A live sandbox the caller may use: NOT_FOUND for other owners' too.
  ApiResult<std::shared_ptr<Live>> Find(const Caller& caller, const std::string& id);
  // The record of any sandbox the caller owns, live or stopped.
  ApiResult<v1::Sandbox> Get(const Caller& caller, const std::string& id);
  std::vector<v1::Sandbox> List(const Caller& caller, const v1::ListRequest& request);
  ApiResult<v1::Sandbox> Destroy(const Caller& caller, const std::string& id);
  ApiResult<v1::Sandbox> Pause(const Caller& caller, const std::string& id);
  ApiResult<v1::Sandbox> Resume(const Caller& caller, const std::string& id);
  ApiResult<v1::SandboxStats> Stats(const Caller& caller, const std::string& id);

  // After a Run: a snapshot if the sandbox's recovery policy asks for one.
  void AfterRun(const std::shared_ptr<Live>& live);
  // Filesystem snapshots (snapshots.cc).
  ApiResult<v1::SnapshotInfo> Snapshot(const Caller& caller, const v1::SnapshotRequest& request);
  std::vector<v1::SnapshotInfo> ListSnapshots(const Caller& caller, const std::string& sandbox_id);
  ApiResult<v1::SnapshotInfo> DeleteSnapshot(const Caller& caller, const std::string& id);
  ApiResult<v1::Sandbox> Restore(const Caller& caller, const v1::RestoreRequest& request);
  ApiResult<std::vector<v1::Sandbox>> Fork(const Caller& caller, const v1::ForkRequest& request);
  ApiResult<void> ExportSnapshot(const Caller& caller, const std::string& id, const images::TarSink& sink);
  ApiResult<v1::SnapshotInfo> ImportSnapshot(const Caller& caller, images::ByteSource& archive,
                                             const std::map<std::string, std::string>& labels);

  // Events the caller may see with seq > since; blocks up to `wait_ms` for
  // the first one. Empty on timeout.
  std::vector<v1::Event> WaitEvents(const Caller& caller, const std::string& sandbox_id, uint64_t since,
                                    int wait_ms);
  uint64_t LastEventSeq();

  const DaemonConfig& config() const { return config_; }

 private:
  void Loop();
  // The warm pool: a started sandbox for `request` if it has the common
  // shape and one is ready, else null. RefillLoop keeps the pool full.
  std::shared_ptr<Live> TakeWarm(const v1::CreateRequest& request);
  void RefillLoop();
  void Watch(const std::shared_ptr<Live>& live);
  void Unwatch(const std::shared_ptr<Live>& live);
  // Stops a sandbox whose init is gone or misbehaved: records why, emits the
  // event, releases its resources.
  void Stop(const std::shared_ptr<Live>& live, v1::EventType event, const std::string& reason);
  void CheckTimers();
  void CheckCgroupEvents(const std::shared_ptr<Live>& live);
  void Emit(const std::string& sandbox_id, uid_t owner, v1::EventType type, const std::string& message);
  // EVENT_TYPE_EGRESS with its audit (a serialized EgressAudit).
  void EmitEgress(const std::string& sandbox_id, uid_t owner, const std::string& message, const std::string& audit);
  void Append(const EventRow& row);
  void Persist(const std::shared_ptr<Live>& live);
  // A full snapshot's processes, to restore instead of starting init
  // (verified: its seal checked under the daemon's key).
  struct FullRestore {
    int images_dir_fd = -1;
    uint32_t id_base = 0;
    std::string channel_key;
  };
  ApiResult<std::shared_ptr<Live>> Launch(const Caller& caller, const v1::CreateRequest& request,
                                          const std::string& id, const std::string& from_snapshot,
                                          const FullRestore* full = nullptr);
  // Create, or (from_snapshot) a sandbox on a writable copy of a snapshot,
  // its processes restored too with `full`.
  ApiResult<v1::Sandbox> CreateSandbox(const Caller& caller, const v1::CreateRequest& request,
                                       const std::string& from_snapshot, const std::string& id = {},
                                       const FullRestore* full = nullptr);
  // A sandbox built from snapshot `row` in the shape `create` (under `id`,
  // or a new one): with its processes when the snapshot is full, unless
  // `filesystem_only`.
  ApiResult<v1::Sandbox> RestoreFrom(const Caller& caller, const SnapshotRow& row, const v1::CreateRequest& create,
                                     const std::string& id, bool filesystem_only);
  // Full snapshots: whether CRIU can run here (asked once), the sealing
  // key, and where a snapshot's process images live.
  Result<void> CriuUsable();
  Result<std::string> SealKey();
  std::string CheckpointDir(const std::string& snapshot_id) const;
  void RemoveCheckpointImages(const std::string& snapshot_id);
  // Snapshot's full branch: the images sealed under CheckpointDir(id), the
  // layer as pool snapshot `id`; *generation the layer's, as snapshotted.
  ApiResult<v1::SnapshotInfo> FullSnapshot(const std::shared_ptr<Live>& live, const std::string& id,
                                           uint64_t flush_ns, uint64_t* generation);
  Result<storage::Pool*> SnapshotPool();
  // Deletes pool snapshots no stored snapshot names (a crash between taking
  // one and recording it, or deleting one); called at start.
  void CollectSnapshots();
  // An image's layers, pinned for one sandbox. The host image's freshness
  // check (a stat of each allowlisted /etc item, ~0.2 ms) runs at most once
  // a second; stored images are looked up each time.
  Result<cli::RunImage> ResolveImage(const std::string& name);
  // Takes back one sandbox a previous daemon left running; returns why not.
  Result<std::shared_ptr<Live>> Adopt(const SandboxRow& row, const v1::Sandbox& info, KeeperClient::Held held);
  // Network mode proxy: hands the sandbox to the egress proxy (with
  // listeners for its exposed ports) and sets what its commands need.
  ApiResult<void> AttachEgress(Live& live, const v1::CreateRequest& request);
  void OnEgressAudit(const std::string& sandbox, const v1::EgressAudit& audit);
  // Recovery (recovery.cc): a worker thread takes snapshots the policy asks
  // for and rebuilds sandboxes that died from their last snapshot.
  void RecoveryLoop();
  void QueueSnapshot(const std::shared_ptr<Live>& live);
  // Whether Stop() hands a dead sandbox to the worker for a rebuild.
  bool WantsRebuild(const Live& live) const;
  void Rebuild(const std::shared_ptr<Live>& dead);
  void CheckRecoverySnapshots(const std::shared_ptr<Live>& live, int64_t now);

  DaemonConfig config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<KeeperClient> keeper_;
  std::unique_ptr<Zygote> zygote_;  // null: every launch clones in-process
  NetnsPool netns_pool_{4};
  std::unique_ptr<EgressProxy> egress_;
  std::mutex recovery_mu_;
  std::condition_variable recovery_cv_;
  struct RecoveryWork {
    std::shared_ptr<Live> live;
    bool rebuild = false;  // else a snapshot
    int64_t due_ms = 0;    // not before (a rebuild's back-off)
  };
  std::deque<RecoveryWork> recovery_work_;
  std::thread recovery_;
  std::mutex snapshot_mu_;  // one snapshot at a time; guards pool_
  std::optional<storage::Pool> pool_;
  std::mutex criu_mu_;  // guards what follows
  std::optional<Result<void>> criu_usable_;
  std::string seal_key_;

  std::mutex mu_;  // guards live_, stopped_
  std::map<std::string, std::shared_ptr<Live>> live_;
  std::map<std::string, v1::Sandbox> stopped_;  // stopped, kept for Get/List
  std::map<int, std::weak_ptr<Live>> by_fd_;     // channel and pidfd -> sandbox

  std::mutex events_mu_;
  std::condition_variable events_cv_;
  uint64_t last_seq_ = 0;

  UniqueFd epoll_;
  UniqueFd wake_;   // eventfd: shutdown
  UniqueFd timer_;  // every second: lifetimes, idle timeouts, cgroup events
  std::atomic<bool> stopping_{false};
  std::thread loop_;

  std::mutex host_mu_;
  std::optional<cli::RunImage> host_image_;  // without pins
  std::chrono::steady_clock::time_point host_checked_;

  std::mutex warm_mu_;
  std::condition_variable warm_cv_;
  std::deque<std::shared_ptr<Live>> warm_;
  std::thread refill_;
};

int64_t NowUnixMs();

// Transparent egress: the sandbox's resolver asks the relay (its
// nsswitch.conf and resolv.conf, written inside).
ApiResult<void> UseRelayDns(Live& live);

}  // namespace airlock::daemon

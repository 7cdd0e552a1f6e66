// Recovery: the snapshots a sandbox's policy asks for (every N ms, after
// each Run), and rebuilding a sandbox that died underneath its users from
// its last snapshot, under the same id, with its generation one higher. All
// of it on one worker thread, so a slow flush or rebuild never holds up the
// loop that hears every sandbox's init.
#include <pwd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "harness/daemon/manager.h"

namespace airlock::daemon {

namespace {

constexpr uint32_t kDefaultMaxRebuilds = 3;
constexpr uint32_t kRecoveryKeepLast = 2;

}  // namespace

bool Manager::WantsRebuild(const Live& live) const { return live.recovery.rebuild() && !stopping_; }

void Manager::QueueSnapshot(const std::shared_ptr<Live>& live) {
  if (live->snapshot_queued.exchange(true)) return;  // one at a time per sandbox
  {
    std::lock_guard lock(recovery_mu_);
    recovery_work_.push_back({live, false, 0});
  }
  recovery_cv_.notify_all();
}

void Manager::AfterRun(const std::shared_ptr<Live>& live) {
  if (live->recovery.snapshot_after_exec()) QueueSnapshot(live);
}

void Manager::CheckRecoverySnapshots(const std::shared_ptr<Live>& live, int64_t now) {
  const uint64_t every = live->recovery.snapshot_every_ms();
  if (every > 0 && now - live->last_snapshot_ms.load() >= static_cast<int64_t>(every)) QueueSnapshot(live);
}

void Manager::RecoveryLoop() {
  for (;;) {
    RecoveryWork work;
    {
      std::unique_lock lock(recovery_mu_);
      for (;;) {
        if (stopping_) {
          // Sandboxes waiting for a rebuild are only torn down: the next
          // daemon finds them stopped and rebuilds them (Start).
          for (auto& w : recovery_work_)
            if (w.rebuild) (void)w.live->Teardown();
          recovery_work_.clear();
          return;
        }
        // The first item that is due; else wait for the earliest (or news).
        auto due = std::min_element(recovery_work_.begin(), recovery_work_.end(),
                                    [](const RecoveryWork& a, const RecoveryWork& b) { return a.due_ms < b.due_ms; });
        if (due != recovery_work_.end() && due->due_ms <= NowUnixMs()) {
          work = std::move(*due);
          recovery_work_.erase(due);
          break;
        }
        if (due == recovery_work_.end()) recovery_cv_.wait(lock);
        else recovery_cv_.wait_for(lock, std::chrono::milliseconds(due->due_ms - NowUnixMs()));
      }
    }
    auto& live = work.live;
    const bool rebuild = work.rebuild;
    if (rebuild) {
      Rebuild(live);
      continue;
    }
    live->snapshot_queued = false;
    bool stopped;
    {
      std::lock_guard lock(live->mu);
      stopped = live->stopped;
    }
    if (stopped) continue;
    v1::SnapshotRequest req;
    req.set_sandbox_id(live->id);
    req.set_keep_last(kRecoveryKeepLast);
    (*req.mutable_labels())["airlock.recovery"] = "1";
    Caller root{0, 0, 0};
    req.set_full(live->recovery.full());
    auto taken = Snapshot(root, req);
    if (!taken && req.full() && taken.error().code == Code::kFailedPrecondition) {
      // Its files at least: a rebuild then loses only the processes.
      Emit(live->id, live->owner, v1::EVENT_TYPE_SNAPSHOT,
           "full snapshot not possible, filesystem only: " + taken.error().message);
      req.set_full(false);
      taken = Snapshot(root, req);
    }
    live->last_snapshot_ms = NowUnixMs();
    if (!taken) fprintf(stderr, "airlockd: recovery snapshot of %s: %s\n", live->id.c_str(), taken.error().message.c_str());
  }
}

void Manager::Rebuild(const std::shared_ptr<Live>& dead) {
  if (dead->sandbox) (void)dead->Teardown();  // the id's cgroups and layer go first
  const std::string id = dead->id;
  uint64_t generation;
  {
    std::lock_guard lock(dead->mu);
    generation = dead->info.generation() ? dead->info.generation() : 1;
  }
  auto not_rebuilt = [&](const std::string& why) {
    fprintf(stderr, "airlockd: %s not rebuilt: %s\n", id.c_str(), why.c_str());
    std::lock_guard lock(mu_);
    auto it = stopped_.find(id);
    if (it == stopped_.end()) return;
    it->second.set_stop_reason(it->second.stop_reason() + "; not rebuilt: " + why);
    (void)store_->UpdateSandbox(id, "stopped", it->second.SerializeAsString());
  };
  const uint32_t max = dead->recovery.max_rebuilds() ? dead->recovery.max_rebuilds() : kDefaultMaxRebuilds;
  if (generation - 1 >= max) return not_rebuilt("it died " + std::to_string(generation) + " times (max_rebuilds " +
                                                std::to_string(max) + ")");
  auto rows = store_->Snapshots();
  if (!rows) return not_rebuilt(rows.error().Message());
  const SnapshotRow* last = nullptr;
  for (const auto& r : *rows)
    if (r.sandbox_id == id) last = &r;
  if (!last) return not_rebuilt("it has no snapshot");
  v1::CreateRequest create;
  if (!create.ParseFromString(last->request)) return not_rebuilt("snapshot " + last->id + " has no record of its shape");
  v1::SnapshotInfo snap;
  snap.ParseFromString(last->info);
  // The owner's own access checks host paths again, as at create.
  Caller owner{dead->owner, dead->owner, 0};
  if (passwd* pw = getpwuid(dead->owner)) owner.gid = pw->pw_gid;
  // Full: its processes come back too; if they can't (CRIU, the seal), its
  // files still do.
  std::string processes = "its processes";
  auto made = RestoreFrom(owner, *last, create, id, false);
  if (made && snap.full()) processes = "its processes came back as they were then; ";
  if (!made && snap.full()) {
    processes = "its processes (not restored: " + made.error().message + ")";
    made = RestoreFrom(owner, *last, create, id, true);
  }
  if (!made) return not_rebuilt(made.error().message);
  auto live = Find(Caller{0, 0, 0}, id);
  if (!live) return not_rebuilt(live.error().message);
  {
    std::lock_guard lock(mu_);
    stopped_.erase(id);
  }
  {
    std::lock_guard lock((*live)->mu);
    (*live)->info.set_generation(generation + 1);
    (*live)->info.set_rebuilt_from(last->id);
  }
  Persist(*live);
  const int64_t age_s = (NowUnixMs() - snap.created_unix_ms()) / 1000;
  Emit(id, dead->owner, v1::EVENT_TYPE_REHYDRATED,
       "rebuilt from snapshot " + last->id + " (generation " + std::to_string(generation + 1) + "): " +
           (made->processes_restored() ? processes + "what changed in the last " + std::to_string(age_s) +
                                             " s, since that snapshot, is lost"
                                       : processes + " and what changed in the last " + std::to_string(age_s) +
                                             " s, since that snapshot, are lost"));
}

}  // namespace airlock::daemon

// Filesystem snapshots of a running sandbox's writable layer (a pool
// subvolume holding the overlay's upper and work directories).
#include <unistd.h>

#include "runtime/launch/internal.h"
#include "runtime/launch/sandbox.h"

namespace airlock {

namespace {

uint64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<UniqueFd> Sandbox::FlushLayer(uint64_t* flush_ns) const {
  if (!res_ || !res_->pool || !res_->has_subvolume)
    return Fail("snapshot", "sandbox " + spec_.id + "'s writable layer is not on the pool");
  UniqueFd dir = TRY(res_->pool->OpenSubvolumeDir(spec_.id));
  // Dirty data counts only once it is written: flush it first (the whole
  // pool's, which syncfs can't narrow), while the sandbox runs.
  uint64_t t = Now();
  if (syncfs(dir.get()) < 0) return Errno("syncfs", LayerName());
  if (flush_ns) *flush_ns = Now() - t;
  return dir;
}

std::string Sandbox::LayerName() const { return "sandbox " + spec_.id + "'s writable layer"; }

Result<uint64_t> Sandbox::LayerGeneration() const {
  UniqueFd dir = TRY(FlushLayer(nullptr));
  return storage::SubvolumeGeneration(dir.get(), LayerName());
}

Result<Sandbox::LayerSnapshot> Sandbox::SnapshotLayer(const std::string& name) {
  LayerSnapshot out;
  // The bulk of the flush happens while the sandbox runs; the snapshot's own
  // flush (inside the ioctl, frozen) only catches what came since.
  UniqueFd dir = TRY(FlushLayer(&out.flush_ns));
  const std::string what = LayerName();
  uint64_t t = Now();
  TRY(Freeze());
  auto taken = [&]() -> Result<uint64_t> {
    auto snap = TRY(res_->pool->SnapshotReadOnly(dir.get(), what, name));
    (void)snap;
    // Read while still frozen: a write after the thaw moves it on.
    return storage::SubvolumeGeneration(dir.get(), what);
  }();
  auto thawed = Thaw();
  out.frozen_ns = Now() - t;
  if (!taken) {
    (void)res_->pool->DeleteSnapshot(name);
    return std::unexpected(taken.error());
  }
  if (!thawed) return std::unexpected(thawed.error());
  out.generation = *taken;
  return out;
}

Result<Sandbox::LayerSnapshot> Sandbox::CheckpointWithLayer(int images_dir_fd, const std::string& name) {
  LayerSnapshot out;
  UniqueFd dir = TRY(FlushLayer(&out.flush_ns));
  const std::string what = LayerName();
  // The layer is snapshotted while CRIU holds the tree stopped, after the
  // images are written: files and processes are of one instant (a restore
  // checks the size of every file a process holds open).
  bool taken = false;
  uint64_t t = Now();
  auto dumped = Checkpoint(images_dir_fd, /*leave_running=*/true, [&]() -> Result<void> {
    TRY(res_->pool->SnapshotReadOnly(dir.get(), what, name));
    taken = true;
    out.generation = TRY(storage::SubvolumeGeneration(dir.get(), what));
    return {};
  });
  out.frozen_ns = Now() - t;
  if (!dumped) {
    if (taken) (void)res_->pool->DeleteSnapshot(name);
    return std::unexpected(dumped.error());
  }
  if (!taken) return Fail("snapshot", "CRIU finished the dump without its post-dump notification");
  return out;
}

}  // namespace airlock

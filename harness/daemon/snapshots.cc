// Filesystem snapshots: taken of a running sandbox's writable layer on the
// pool, kept independently of it (a snapshot outlives its sandbox), and the
// source of fresh sandboxes (Restore, Fork) built on writable copies of it.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>

#include "harness/daemon/checkpoint_seal.h"
#include "harness/daemon/files.h"
#include "harness/daemon/manager.h"
#include "harness/daemon/snapshot_archive.h"
#include "runtime/checkpoint/criu.h"
#include "runtime/core/hex.h"

namespace airlock::daemon {

namespace {

constexpr uint32_t kMaxFork = 32;
constexpr char kContents[] =
    "the sandbox's writable layer (the workspace included); not the output directories bound to the host, "
    "nor its processes";
constexpr char kFullContents[] =
    "the sandbox's writable layer (the workspace included) and its processes, checkpointed at the same instant; "
    "not the output directories bound to the host";

// What the files of a (flat) directory hold together.
uint64_t FilesBytes(const std::string& dir) {
  uint64_t bytes = 0;
  if (DIR* listing = opendir(dir.c_str())) {
    while (dirent* e = readdir(listing)) {
      struct stat st;
      if (e->d_name[0] != '.' && fstatat(dirfd(listing), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
        bytes += static_cast<uint64_t>(st.st_size);
    }
    closedir(listing);
  }
  return bytes;
}

}  // namespace

Result<void> Manager::CriuUsable() {
  std::lock_guard lock(criu_mu_);
  if (!criu_usable_) {
    criu_usable_ = [&]() -> Result<void> {
      auto criu = TRY(checkpoint::Criu::Load());
      return criu->Check();
    }();
  }
  return *criu_usable_;
}

Result<std::string> Manager::SealKey() {
  std::lock_guard lock(criu_mu_);
  if (seal_key_.empty()) seal_key_ = TRY(LoadOrCreateSealKey(config_.paths.state_root + "/checkpoint.key"));
  return seal_key_;
}

std::string Manager::CheckpointDir(const std::string& snapshot_id) const {
  return config_.paths.state_root + "/checkpoints/" + snapshot_id;
}

void Manager::RemoveCheckpointImages(const std::string& snapshot_id) {
  // Flat: CRIU writes no subdirectories.
  const std::string dir = CheckpointDir(snapshot_id);
  DIR* listing = opendir(dir.c_str());
  if (listing == nullptr) return;
  while (dirent* e = readdir(listing))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlinkat(dirfd(listing), e->d_name, 0);
  closedir(listing);
  rmdir(dir.c_str());
}

ApiResult<v1::SnapshotInfo> Manager::FullSnapshot(const std::shared_ptr<Live>& live, const std::string& id,
                                                  uint64_t flush_ns, uint64_t* generation) {
  // Called with snapshot_mu_ held. What can't work is said before anything
  // is made.
  Sandbox& sb = *live->sandbox;
  if (!sb.checkpointable())
    return ApiFail(Code::kFailedPrecondition, "snapshot.full: sandbox " + live->id +
                                                  " wasn't created checkpointable (CreateRequest.checkpointable)");
  if (auto usable = CriuUsable(); !usable)
    return ApiFail(Code::kFailedPrecondition, "snapshot.full: CRIU can't checkpoint on this host (" +
                                                  usable.error().Message() + "); filesystem snapshots still work");
  if (sb.restored())
    return ApiFail(Code::kFailedPrecondition, "snapshot.full: sandbox " + live->id +
                                                  " was restored from a full snapshot, and CRIU 3.17 can't checkpoint "
                                                  "a tree it restored; filesystem snapshots still work");
  const std::string key = TRY(FromResult(SealKey(), "snapshot.full"));
  const std::string parent = config_.paths.state_root + "/checkpoints";
  if (mkdir(parent.c_str(), 0700) < 0 && errno != EEXIST)
    return ApiFail(Code::kInternal, "snapshot.full: mkdir " + parent + ": " + strerror(errno));
  const std::string dir = CheckpointDir(id);
  if (mkdir(dir.c_str(), 0700) < 0) return ApiFail(Code::kInternal, "snapshot.full: mkdir " + dir + ": " + strerror(errno));
  uint64_t seal_us = 0;
  auto made = [&]() -> Result<Sandbox::LayerSnapshot> {
    UniqueFd images(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!images) return Errno("open", dir);
    CheckpointSeal seal{live->id, sb.id_base(), TRY(sb.ChannelKey()), {}};
    auto taken = TRY(sb.CheckpointWithLayer(images.get(), id));
    const auto seal_start = std::chrono::steady_clock::now();
    auto sealed = WriteCheckpointSeal(images.get(), key, seal);
    seal_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - seal_start).count());
    if (!sealed) {
      if (auto pool = SnapshotPool()) (void)(*pool)->DeleteSnapshot(id);
      return std::unexpected(sealed.error());
    }
    return taken;
  }();
  if (!made) {
    RemoveCheckpointImages(id);
    // What CRIU or the preflight refused is the sandbox's state, not the
    // daemon's fault: the caller can change it (or take a filesystem one).
    return ApiFail(Code::kFailedPrecondition, "snapshot.full: " + made.error().Message());
  }
  v1::SnapshotInfo info;
  info.set_full(true);
  info.set_flush_us((flush_ns + made->flush_ns) / 1000);
  info.set_frozen_us(made->frozen_ns / 1000);
  info.set_contents(kFullContents);
  info.set_process_images_bytes(FilesBytes(dir));
  info.set_seal_us(seal_us);
  *generation = made->generation;
  return info;
}

Result<storage::Pool*> Manager::SnapshotPool() {
  // Called with snapshot_mu_ held.
  if (!pool_) pool_.emplace(TRY(storage::Pool::Open({config_.paths.PoolImage(), config_.paths.PoolMountpoint(), 0})));
  return &*pool_;
}

ApiResult<v1::SnapshotInfo> Manager::Snapshot(const Caller& caller, const v1::SnapshotRequest& request) {
  auto live = TRY(Find(caller, request.sandbox_id()));
  live->Touch();
  std::lock_guard lock(snapshot_mu_);
  storage::Pool* pool = nullptr;
  if (auto p = SnapshotPool(); p) pool = *p;
  else return FromError(p.error(), "snapshot");
  // The flush happens here, the sandbox running: what SnapshotLayer's own
  // flush then finds is only what was written since.
  const auto flush_start = std::chrono::steady_clock::now();
  auto generation = live->sandbox->LayerGeneration();
  const uint64_t flush_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - flush_start).count());
  if (!generation)
    return ApiFail(Code::kFailedPrecondition,
                   "snapshot: sandbox " + live->id + " keeps its writable layer in memory: create it with snapshots "
                   "(or a disk limit) to take snapshots of it (" + generation.error().Message() + ")");
  // Nothing changed since its last snapshot: that one again.
  auto rows = store_->Snapshots();
  if (!rows) return FromError(rows.error(), "snapshot");
  for (auto it = rows->rbegin(); it != rows->rend() && !request.full(); ++it) {
    if (it->sandbox_id != live->id) continue;
    v1::SnapshotInfo info;
    info.ParseFromString(it->info);
    // A full one holds processes of its moment: not what was asked for.
    if (it->generation == *generation && !info.full()) {
      info.set_reused(true);
      info.set_flush_us(flush_ns / 1000);
      info.set_frozen_us(0);
      return info;
    }
    break;  // only the latest counts
  }
  // Quotas, counted after what keep-last would drop.
  const size_t keep = request.keep_last() ? request.keep_last() : config_.snapshot_keep_last;
  std::vector<std::string> mine;
  size_t total = rows->size();
  uint64_t bytes = 0;
  for (const auto& r : *rows) {
    if (r.sandbox_id == live->id) mine.push_back(r.id);
    v1::SnapshotInfo i;
    if (i.ParseFromString(r.info)) bytes += i.bytes() + i.process_images_bytes();
  }
  const size_t dropped = keep && mine.size() + 1 > keep ? mine.size() + 1 - keep : 0;
  if (mine.size() + 1 - dropped > config_.snapshot_max_per_sandbox)
    return ApiFail(Code::kResourceExhausted, "snapshot: sandbox " + live->id + " has " + std::to_string(mine.size()) +
                                                 " snapshots, the most one may keep (snapshot_max_per_sandbox " +
                                                 std::to_string(config_.snapshot_max_per_sandbox) +
                                                 "); delete some or set keep_last");
  if (total + 1 - dropped > config_.snapshot_max_total)
    return ApiFail(Code::kResourceExhausted, "snapshot: the daemon holds " + std::to_string(total) +
                                                 " snapshots (snapshot_max_total)");
  if (config_.snapshot_max_bytes && bytes >= config_.snapshot_max_bytes)
    return ApiFail(Code::kResourceExhausted, "snapshot: snapshots reference " + std::to_string(bytes) +
                                                 " bytes, the daemon's snapshot_max_bytes");
  const std::string id = "snap-" + RandomHex(8);
  v1::SnapshotInfo info;
  uint64_t snapshot_generation = 0;
  if (request.full()) {
    info = TRY(FullSnapshot(live, id, flush_ns, &snapshot_generation));
  } else {
    auto taken = live->sandbox->SnapshotLayer(id);
    if (!taken) return FromError(taken.error(), "snapshot");
    info.set_flush_us((flush_ns + taken->flush_ns) / 1000);
    info.set_frozen_us(taken->frozen_ns / 1000);
    info.set_contents(kContents);
    snapshot_generation = taken->generation;
  }
  info.set_id(id);
  info.set_sandbox_id(live->id);
  info.set_owner_uid(live->owner);
  info.set_created_unix_ms(NowUnixMs());
  *info.mutable_labels() = request.labels();
  {
    std::lock_guard l(live->mu);
    info.set_image(live->info.image());
  }
  if (auto bytes = pool->SnapshotUsage(id)) info.set_bytes(*bytes);
  std::string source_request;
  if (auto row = store_->Sandboxes()) {
    for (const auto& r : *row)
      if (r.id == live->id) source_request = r.request;
  }
  // The row is what makes it exist for the API: written in one statement
  // after the snapshot is complete. A crash in between leaves an orphan
  // subvolume, never a row without its data.
  SnapshotRow row{id, live->id, live->owner, snapshot_generation, info.SerializeAsString(), source_request};
  if (auto put = store_->PutSnapshot(row); !put) {
    (void)pool->DeleteSnapshot(id);
    RemoveCheckpointImages(id);
    return FromError(put.error(), "snapshot");
  }
  Emit(live->id, live->owner, v1::EVENT_TYPE_SNAPSHOT, info.full() ? id + " (full: processes too)" : id);
  // Keep-last: the oldest go (rows are in the order they were taken).
  for (size_t i = 0; i < dropped && i < mine.size(); ++i) {
    if (auto del = store_->DeleteSnapshot(mine[i]); !del) continue;
    RemoveCheckpointImages(mine[i]);
    if (auto del = pool->DeleteSnapshot(mine[i]); !del)
      fprintf(stderr, "airlockd: snapshot %s: %s (left for collection)\n", mine[i].c_str(), del.error().Message().c_str());
  }
  return info;
}

void Manager::CollectSnapshots() {
  std::lock_guard lock(snapshot_mu_);
  auto rows = store_->Snapshots();
  if (!rows) return;
  // No pool yet: nothing to collect (and not the moment to make one).
  if (access(config_.paths.PoolImage().c_str(), F_OK) != 0) return;
  auto pool = SnapshotPool();
  if (!pool) return;
  std::set<std::string> known;
  for (const auto& r : *rows) known.insert(r.id);
  for (const auto& name : (*pool)->ListSnapshots()) {
    if (known.count(name) || name.rfind("snap-", 0) != 0) continue;
    if (auto del = (*pool)->DeleteSnapshot(name); del)
      fprintf(stderr, "airlockd: collected snapshot %s (no record of it)\n", name.c_str());
  }
  // Process images whose snapshot is gone (or was never recorded).
  if (DIR* listing = opendir((config_.paths.state_root + "/checkpoints").c_str())) {
    std::vector<std::string> orphans;
    while (dirent* e = readdir(listing))
      if (e->d_name[0] != '.' && !known.count(e->d_name)) orphans.push_back(e->d_name);
    closedir(listing);
    for (const auto& name : orphans) RemoveCheckpointImages(name);
  }
}

std::vector<v1::SnapshotInfo> Manager::ListSnapshots(const Caller& caller, const std::string& sandbox_id) {
  std::vector<v1::SnapshotInfo> out;
  auto rows = store_->Snapshots();
  if (!rows) return out;
  for (const auto& r : *rows) {
    if (!caller.root() && r.owner != caller.uid) continue;
    if (!sandbox_id.empty() && r.sandbox_id != sandbox_id) continue;
    v1::SnapshotInfo info;
    if (info.ParseFromString(r.info)) out.push_back(std::move(info));
  }
  return out;
}

namespace {

// The caller's snapshot `id`: NOT_FOUND for other owners' too.
ApiResult<SnapshotRow> FindSnapshot(Store& store, const Caller& caller, const std::string& id) {
  auto rows = store.Snapshots();
  if (!rows) return FromError(rows.error(), "snapshot");
  for (auto& r : *rows)
    if (r.id == id && (caller.root() || r.owner == caller.uid)) return std::move(r);
  return ApiFail(Code::kNotFound, "no snapshot " + id);
}

}  // namespace

ApiResult<v1::SnapshotInfo> Manager::DeleteSnapshot(const Caller& caller, const std::string& id) {
  SnapshotRow row = TRY(FindSnapshot(*store_, caller, id));
  std::lock_guard lock(snapshot_mu_);
  auto pool = SnapshotPool();
  if (!pool) return FromError(pool.error(), "delete snapshot");
  // The row first: a crash after it leaves an orphan subvolume to collect,
  // never a listed snapshot whose data is gone. Sandboxes restored from it
  // hold their own copy-on-write copies and don't notice.
  if (auto del = store_->DeleteSnapshot(id); !del) return FromError(del.error(), "delete snapshot");
  RemoveCheckpointImages(id);
  if (auto del = (*pool)->DeleteSnapshot(id); !del)
    fprintf(stderr, "airlockd: snapshot %s: %s (left for collection)\n", id.c_str(), del.error().Message().c_str());
  v1::SnapshotInfo info;
  info.ParseFromString(row.info);
  return info;
}

ApiResult<v1::Sandbox> Manager::Restore(const Caller& caller, const v1::RestoreRequest& request) {
  SnapshotRow row = TRY(FindSnapshot(*store_, caller, request.snapshot_id()));
  v1::CreateRequest create;
  if (row.request.empty() || !create.ParseFromString(row.request))
    return ApiFail(Code::kFailedPrecondition, "restore: snapshot " + row.id + " has no record of its sandbox's shape");
  // The source's shape (image, limits, network, manifest's binds and
  // environment) on the snapshot's layer; labels are the caller's.
  create.clear_labels();
  *create.mutable_labels() = request.labels();
  return RestoreFrom(caller, row, create, {}, request.filesystem_only());
}

ApiResult<v1::Sandbox> Manager::RestoreFrom(const Caller& caller, const SnapshotRow& row,
                                            const v1::CreateRequest& shape, const std::string& id,
                                            bool filesystem_only) {
  v1::CreateRequest create = shape;
  create.set_snapshots(true);
  v1::SnapshotInfo info;
  info.ParseFromString(row.info);
  if (!info.full() || filesystem_only) {
    // Its processes stay behind: a fresh init in a range of its own.
    return CreateSandbox(caller, create, row.id, id);
  }
  if (auto usable = CriuUsable(); !usable)
    return ApiFail(Code::kFailedPrecondition, "restore: snapshot " + row.id + " is full, and CRIU can't restore on "
                                                  "this host (" + usable.error().Message() +
                                                  "); restore it filesystem_only");
  const std::string key = TRY(FromResult(SealKey(), "restore"));
  const std::string dir = CheckpointDir(row.id);
  UniqueFd images(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!images) return ApiFail(Code::kFailedPrecondition, "restore: snapshot " + row.id + "'s process images are gone");
  // CRIU images are trusted input to a root process: only what this daemon
  // sealed is restored.
  auto seal = VerifyCheckpointSeal(images.get(), key);
  if (!seal)
    return ApiFail(Code::kFailedPrecondition, "restore: snapshot " + row.id + "'s process images are refused: " +
                                                  seal.error().Message() + " (restore filesystem_only instead)");
  // The restored tree is the source sandbox continued: its id range, and
  // its id, whose cgroup path the images name (CRIU 3.17 can't move a tree
  // that runs in a cgroup namespace to another group: it moves the root task
  // into the namespace's root group first, which v2's no-internal-processes
  // rule refuses for a sandbox's group).
  const std::string& target = seal->sandbox_id;
  if (!id.empty() && id != target)
    return ApiFail(Code::kInternal, "restore: snapshot " + row.id + " continues sandbox " + target + ", not " + id);
  std::optional<v1::Sandbox> was_stopped;
  {
    std::lock_guard lock(mu_);
    if (live_.count(target))
      return ApiFail(Code::kFailedPrecondition,
                     "restore: snapshot " + row.id + " is full: its processes continue sandbox " + target +
                         " (its id and id range), which still runs; destroy it first, or restore filesystem_only");
    if (auto it = stopped_.find(target); it != stopped_.end()) was_stopped = it->second;
  }
  // An imported snapshot may continue a sandbox someone else had here (its
  // record outlives it).
  if (!caller.root()) {
    auto rows = store_->Sandboxes();
    if (!rows) return FromError(rows.error(), "restore");
    for (const auto& r : *rows)
      if (r.id == target && r.owner != caller.uid)
        return ApiFail(Code::kFailedPrecondition, "restore: snapshot " + row.id +
                                                      "'s processes continue a sandbox that was not the caller's; "
                                                      "restore it filesystem_only");
  }
  FullRestore full{images.get(), seal->id_base, seal->channel_key};
  create.set_checkpointable(true);
  auto made = CreateSandbox(caller, create, row.id, target, &full);
  {
    std::lock_guard lock(mu_);
    if (made) stopped_.erase(target);
    else if (was_stopped && !live_.count(target)) stopped_[target] = *was_stopped;
  }
  // A rebuild (under its id) says so itself: EVENT_TYPE_REHYDRATED.
  if (made && id.empty())
    Emit(target, made->owner_uid(), v1::EVENT_TYPE_CREATED, "restored with its processes from snapshot " + row.id);
  return made;
}

ApiResult<std::vector<v1::Sandbox>> Manager::Fork(const Caller& caller, const v1::ForkRequest& request) {
  if (request.count() < 1 || request.count() > kMaxFork)
    return BadField("fork.count", "must be 1-" + std::to_string(kMaxFork) + " (got " + std::to_string(request.count()) + ")");
  SnapshotRow row = TRY(FindSnapshot(*store_, caller, request.snapshot_id()));
  v1::SnapshotInfo info;
  info.ParseFromString(row.info);
  if (info.full())
    return ApiFail(Code::kFailedPrecondition,
                   "fork: snapshot " + row.id + " is full: its processes come back only in the id range of the "
                   "sandbox it was taken of, once; fork a filesystem snapshot (or Restore it filesystem_only)");
  v1::CreateRequest shape;
  if (row.request.empty() || !shape.ParseFromString(row.request))
    return ApiFail(Code::kFailedPrecondition, "fork: snapshot " + row.id + " has no record of its sandbox's shape");
  shape.clear_labels();
  *shape.mutable_labels() = request.labels();
  // Each its own hostname: the source's, numbered.
  const std::string base = (shape.hostname().empty() ? std::string("sandbox") : shape.hostname()).substr(0, 60);
  std::vector<v1::Sandbox> made;
  auto undo = [&](const ApiError& e) -> ApiResult<std::vector<v1::Sandbox>> {
    for (const auto& s : made) (void)Destroy(caller, s.id());
    return std::unexpected(e);
  };
  for (uint32_t i = 0; i < request.count(); ++i) {
    v1::CreateRequest create = shape;
    create.set_hostname(base + "-" + std::to_string(i + 1));
    auto sandbox = RestoreFrom(caller, row, create, {}, false);
    if (!sandbox) return undo(sandbox.error());
    made.push_back(*sandbox);
    // Its own identity: a machine-id of its own (the hostname, id range and
    // sandbox id already are).
    auto live = Find(caller, sandbox->id());
    if (!live) return undo(live.error());
    proto::FileOpRequest w;
    w.op = proto::FileOp::kWrite;
    w.path = "/etc/machine-id";
    w.flags = proto::kWriteAtomic;
    if (auto wrote = FileOpFromString(**live, w, RandomHex(16) + "\n", "fork: /etc/machine-id"); !wrote)
      return undo(wrote.error());
  }
  return made;
}

}  // namespace airlock::daemon

namespace airlock::daemon {

ApiResult<void> Manager::ExportSnapshot(const Caller& caller, const std::string& id, const images::TarSink& sink) {
  SnapshotRow row = TRY(FindSnapshot(*store_, caller, id));
  v1::SnapshotInfo info;
  info.ParseFromString(row.info);
  nlohmann::json meta = {{"id", info.id()},
                         {"sandbox_id", info.sandbox_id()},
                         {"created_unix_ms", info.created_unix_ms()},
                         {"image", info.image()},
                         {"labels", std::map<std::string, std::string>(info.labels().begin(), info.labels().end())}};
  auto done = ExportSnapshotArchive(config_.paths.PoolMountpoint() + "/snapshots/" + id, config_.paths.state_root,
                                    meta, row.request, info.full() ? CheckpointDir(id) : std::string(), sink);
  if (!done) return FromError(done.error(), "export snapshot");
  return {};
}

ApiResult<v1::SnapshotInfo> Manager::ImportSnapshot(const Caller& caller, images::ByteSource& archive,
                                                    const std::map<std::string, std::string>& labels) {
  std::lock_guard lock(snapshot_mu_);
  auto rows = store_->Snapshots();
  if (!rows) return FromError(rows.error(), "import snapshot");
  if (rows->size() + 1 > config_.snapshot_max_total)
    return ApiFail(Code::kResourceExhausted, "import snapshot: the daemon holds " + std::to_string(rows->size()) +
                                                 " snapshots (snapshot_max_total)");
  auto p = SnapshotPool();
  if (!p) return FromError(p.error(), "import snapshot");
  storage::Pool* pool = *p;
  const std::string staging = "import-" + RandomHex(8);
  const std::string id = "snap-" + RandomHex(8);
  // Process images land in the new snapshot's directory; only a seal made
  // with this daemon's key lets them stay.
  const std::string parent = config_.paths.state_root + "/checkpoints";
  const std::string dir = CheckpointDir(id);
  if ((mkdir(parent.c_str(), 0700) < 0 && errno != EEXIST) || mkdir(dir.c_str(), 0700) < 0)
    return ApiFail(Code::kInternal, "import snapshot: mkdir " + dir + ": " + strerror(errno));
  UniqueFd images(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!images) {
    RemoveCheckpointImages(id);
    return ApiFail(Code::kInternal, "import snapshot: open " + dir + ": " + strerror(errno));
  }
  auto imported = ImportSnapshotArchive(archive, *pool, staging, images.get());
  if (!imported) {
    RemoveCheckpointImages(id);
    return ApiFail(Code::kInvalidArgument, "import snapshot: " + imported.error().Message());
  }
  std::string process_state = "; imported (filesystem only)";
  bool full = false;
  if (imported->process_images) {
    auto key = SealKey();
    auto seal = key ? VerifyCheckpointSeal(images.get(), *key) : std::unexpected(key.error());
    // Owned as Checkpoint leaves them: by the id range's root, group 0.
    auto owned = [&]() -> Result<void> {
      if (!seal) return std::unexpected(seal.error());
      DIR* listing = opendir(dir.c_str());
      if (listing == nullptr) return Errno("opendir", dir);
      while (dirent* e = readdir(listing))
        if (e->d_name[0] != '.') (void)fchownat(dirfd(listing), e->d_name, seal->id_base, 0, AT_SYMLINK_NOFOLLOW);
      closedir(listing);
      if (fchown(images.get(), seal->id_base, 0) < 0 || fchmod(images.get(), 0750) < 0) return Errno("chown", dir);
      return {};
    }();
    if (owned) {
      full = true;
      process_state = "; imported with its processes (sealed by this daemon)";
    } else {
      process_state = "; imported filesystem only: its process images were dropped (" + owned.error().Message() + ")";
    }
  }
  if (!full) RemoveCheckpointImages(id);
  auto kept = [&]() -> Result<void> {
    UniqueFd layer = TRY(pool->OpenSubvolumeDir(staging));
    TRY(pool->SnapshotReadOnly(layer.get(), "imported layer", id));
    return {};
  }();
  (void)pool->DeleteSubvolume(staging);
  if (!kept) {
    RemoveCheckpointImages(id);
    return FromError(kept.error(), "import snapshot");
  }
  v1::SnapshotInfo info;
  info.set_id(id);
  const auto& m = imported->meta;
  info.set_sandbox_id(m.contains("sandbox_id") && m["sandbox_id"].is_string() ? m["sandbox_id"].get<std::string>() : "");
  info.set_image(m.contains("image") && m["image"].is_string() ? m["image"].get<std::string>() : "");
  info.set_owner_uid(caller.uid);
  info.set_created_unix_ms(NowUnixMs());
  info.set_full(full);
  if (full) info.set_process_images_bytes(FilesBytes(dir));
  info.set_contents(std::string(full ? kFullContents : kContents) + process_state);
  for (const auto& [k, v] : labels) (*info.mutable_labels())[k] = v;
  if (auto bytes = pool->SnapshotUsage(id)) info.set_bytes(*bytes);
  SnapshotRow row{id, info.sandbox_id(), caller.uid, 0, info.SerializeAsString(), imported->request};
  if (auto put = store_->PutSnapshot(row); !put) {
    (void)pool->DeleteSnapshot(id);
    RemoveCheckpointImages(id);
    return FromError(put.error(), "import snapshot");
  }
  return info;
}

}  // namespace airlock::daemon

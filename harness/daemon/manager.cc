#include "harness/daemon/manager.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "harness/cli/images_cmd.h"
#include "images/host/host_image.h"
#include "runtime/core/hex.h"
#include "harness/daemon/files.h"
#include "harness/daemon/host_paths.h"
#include "harness/daemon/manifest.h"

namespace airlock::daemon {
namespace {

std::string NewSandboxId() { return "sb-" + RandomHex(6); }


// True if the uppermost image layer that has `path` has a directory there
// (a whiteout or a file hides it). Layers are host directories, uppermost
// first. Saves a file operation (a fork inside) per create for the common
// workspace the image already has; when unsure, false.
bool ImageHasDirectory(const std::vector<std::string>& layers, const std::string& path) {
  for (const auto& layer : layers) {
    struct stat st;
    if (lstat((layer + path).c_str(), &st) != 0) continue;
    return S_ISDIR(st.st_mode);
  }
  return false;
}


}  // namespace

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void CreateTimer::Lap(const char* step) {
  if (!on_) return;
  auto now = std::chrono::steady_clock::now();
  line_ += std::string(" daemon:") + step + "=" +
           std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now - last_).count());
  last_ = now;
}

void CreateTimer::Add(const std::vector<StepTiming>& steps) {
  if (!on_) return;
  auto now = std::chrono::steady_clock::now();
  int64_t steps_us = 0;
  for (const auto& t : steps) {
    line_ += " " + t.step + "=" + std::to_string(t.ns / 1000);
    if (!t.step.starts_with("child:")) steps_us += static_cast<int64_t>(t.ns / 1000);  // the child's are within await-init
  }
  // What the launch's own steps don't cover (the spec, its checks, the gaps).
  auto total_us = std::chrono::duration_cast<std::chrono::microseconds>(now - last_).count();
  line_ += " daemon:launch-other=" + std::to_string(total_us - steps_us);
  last_ = now;
}

void CreateTimer::Log(const std::string& id) {
  if (on_) fprintf(stderr, "airlockd-timing %s%s\n", id.c_str(), line_.c_str());
  line_.clear();
}

void Live::Touch() { last_used_ms.store(NowUnixMs(), std::memory_order_relaxed); }

Result<void> Live::Teardown() {
  std::lock_guard lock(teardown_mu_);
  if (!torn_down_) {
    torn_down_ = true;
    if (egress) egress->Remove(id);
    teardown_result_ = sandbox->Destroy();
    pins.clear();  // after the mounts went with init
  }
  return teardown_result_;
}

Manager::Manager(DaemonConfig config, std::unique_ptr<Store> store, std::unique_ptr<KeeperClient> keeper)
    : config_(std::move(config)), store_(std::move(store)), keeper_(std::move(keeper)) {}

Manager::~Manager() { Shutdown(); }

// --- sandboxes -------------------------------------------------------------

Result<cli::RunImage> Manager::ResolveImage(const std::string& name) {
  if (name != "host") return cli::ResolveRunImage(config_.paths, name);
  cli::RunImage image;
  {
    std::lock_guard lock(host_mu_);
    auto now = std::chrono::steady_clock::now();
    if (!host_image_ || now - host_checked_ > std::chrono::seconds(1)) {
      auto fresh = cli::ResolveRunImage(config_.paths, name);  // builds or refreshes it
      if (!fresh) return std::unexpected(fresh.error());
      fresh->pins.clear();
      host_image_ = std::move(*fresh);
      host_checked_ = now;
    }
    image.layers = host_image_->layers;
    image.binds = host_image_->binds;
    image.env = host_image_->env;
    image.workdir = host_image_->workdir;
    image.default_user = host_image_->default_user;
    // Pinned under the lock: a refresh elsewhere may collect unpinned layers.
    for (const auto& layer : image.layers) image.pins.push_back(TRY(images::PinImageLayer(layer)));
  }
  return image;
}

ApiResult<std::shared_ptr<Live>> Manager::Launch(const Caller& caller, const v1::CreateRequest& request,
                                                 const std::string& id, const std::string& from_snapshot,
                                                 const FullRestore* full) {
  CreateTimer timer(config_.timings);
  CreatePlan plan = TRY(PlanCreate(request, config_.allowed_roots, caller.uid, caller.gid));
  timer.Lap("plan");
  if (request.checkpointable() && plan.proxy)
    return BadField("create.checkpointable", "not with network mode proxy (CRIU can't dump the egress relay's "
                                             "channel yet); use network none");
  if (request.recovery().full() && !request.checkpointable())
    return BadField("create.recovery.full", "full snapshots need a checkpointable sandbox (create.checkpointable)");
  // A snapshot's layer already holds what host_copy entries copied.
  if (!from_snapshot.empty()) plan.seeds.clear();
  auto image = ResolveImage(plan.image);
  if (!image) return ApiFail(Code::kInvalidArgument, "create.image: " + image.error().Message());
  timer.Lap("image");

  SandboxSpec spec;
  spec.id = id;
  spec.layers = image->layers;
  for (const auto& b : image->binds) spec.image_binds.push_back({b.source, b.target});
  spec.mounts = plan.mounts;
  spec.seeds = plan.seeds;
  spec.on_pool = request.snapshots() || request.has_recovery() || request.checkpointable();
  spec.from_snapshot = from_snapshot;
  spec.hostname = plan.hostname;
  spec.limits = plan.limits;
  spec.seccomp_profile = plan.seccomp_profile;
  UniqueFd bundle;
  if (plan.proxy) {
    if (!egress_) return ApiFail(Code::kUnimplemented, "create.network: this daemon runs no egress proxy (airlock-proxy not found or failed to start)");
    TRY(egress_->Check(request));
    spec.net = NetMode::kProxy;
    spec.egress.transparent = request.egress().transparent();
    // The bundle that trusts the daemon's egress CA (it terminates TLS
    // where secrets are injected).
    bundle.Reset(open(egress_->trust_bundle().c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW));
    if (!bundle) return ApiFail(Code::kInternal, "create: the egress CA bundle: " + std::string(strerror(errno)));
    HostMount m;
    m.source = egress_->trust_bundle();
    m.destination = "/etc/airlock/ca-bundle.pem";
    m.source_fd = bundle.get();
    spec.mounts.push_back(m);
  }
  // The spec's process is only a description here: commands come later.
  spec.process.argv = {"/bin/sh"};
  spec.process.cwd = "/";
  if (auto valid = ValidateSpec(spec); !valid) return ApiFail(Code::kInvalidArgument, "create." + valid.error().Message());

  LaunchOptions options;
  options.oneshot = false;
  options.timings = config_.timings;
  options.zygote = zygote_.get();
  // A checkpointable sandbox's network namespace must be its user
  // namespace's: made by its child, not borrowed from the pool.
  options.checkpointable = request.checkpointable();
  UniqueFd netns = options.checkpointable ? UniqueFd() : netns_pool_.Take();
  options.netns = netns ? netns.get() : -1;
  auto sandbox = full ? Sandbox::Restore(spec, RestoreRequest{full->images_dir_fd, "", full->id_base, full->channel_key},
                                         config_.paths, options)
                      : Sandbox::Start(spec, config_.paths, options);
  if (!sandbox) return FromError(sandbox.error(), "create");
  timer.Add((*sandbox)->timings());

  auto live = std::make_shared<Live>();
  live->timer = std::move(timer);
  live->id = id;
  live->owner = caller.uid;
  live->sandbox = std::move(*sandbox);
  live->session = std::make_unique<InitSession>(live->sandbox->channel_fd());
  live->pins = std::move(image->pins);
  live->workspace = plan.workspace;
  live->workspace_in_image = ImageHasDirectory(image->layers, plan.workspace);
  live->image_env = image->env;
  live->env = BaseEnvironment(image->env, plan.environment);
  for (const auto& u : request.manifest().users()) live->users[u.name()] = u;
  live->Touch();

  v1::Sandbox& info = live->info;
  info.set_id(id);
  info.set_owner_uid(caller.uid);
  info.set_state(v1::SANDBOX_STATE_RUNNING);
  info.set_image(plan.image);
  *info.mutable_limits() = request.limits();
  info.set_network(plan.proxy ? v1::NETWORK_MODE_PROXY : v1::NETWORK_MODE_NONE);
  if (plan.proxy) {
    *info.mutable_egress() = request.egress();
    TRY(AttachEgress(*live, request));
  }
  *info.mutable_labels() = request.labels();
  info.set_created_unix_ms(NowUnixMs());
  if (request.lifetime_ms() > 0) info.set_expires_unix_ms(info.created_unix_ms() + static_cast<int64_t>(request.lifetime_ms()));
  info.set_idle_timeout_ms(request.idle_timeout_ms());
  info.set_workspace(plan.workspace);
  info.set_hostname(plan.hostname);
  info.set_seccomp_profile(plan.seccomp_profile);
  info.set_generation(1);
  info.set_checkpointable(request.checkpointable());
  info.set_processes_restored(full != nullptr);
  for (const auto& w : live->sandbox->restore_warnings()) fprintf(stderr, "airlockd: %s: %s\n", id.c_str(), w.c_str());
  live->recovery = request.recovery();
  return live;
}


ApiResult<v1::Sandbox> Manager::Create(const Caller& caller, const v1::CreateRequest& request) {
  return CreateSandbox(caller, request, {});
}

ApiResult<v1::Sandbox> Manager::CreateSandbox(const Caller& caller, const v1::CreateRequest& request,
                                              const std::string& from_snapshot, const std::string& given_id,
                                              const FullRestore* full) {
  {
    std::lock_guard lock(mu_);
    if (live_.size() >= config_.max_sandboxes)
      return ApiFail(Code::kResourceExhausted, "create: the daemon runs its maximum of " +
                                                   std::to_string(config_.max_sandboxes) + " sandboxes");
  }
  std::shared_ptr<Live> live = from_snapshot.empty() ? TakeWarm(request) : nullptr;
  const bool warm = live != nullptr;
  if (warm) {
    // Made for nobody in particular: it becomes the caller's now.
    live->timer = CreateTimer(config_.timings);  // this create's, not the pool's launch
    CreatePlan plan = TRY(PlanCreate(request, config_.allowed_roots, caller.uid, caller.gid));
    live->owner = caller.uid;
    live->env = BaseEnvironment(live->image_env, plan.environment);
    for (const auto& u : request.manifest().users()) live->users[u.name()] = u;
    v1::Sandbox& info = live->info;
    info.set_owner_uid(caller.uid);
    *info.mutable_labels() = request.labels();
    info.set_created_unix_ms(NowUnixMs());
    if (request.lifetime_ms() > 0) info.set_expires_unix_ms(info.created_unix_ms() + static_cast<int64_t>(request.lifetime_ms()));
    info.set_idle_timeout_ms(request.idle_timeout_ms());
    live->Touch();
  } else {
    live = TRY(Launch(caller, request, given_id.empty() ? NewSandboxId() : given_id, from_snapshot, full));
  }
  CreateTimer& timer = live->timer;
  const std::string id = live->id;
  // The loop hears the new init from here on; the manifest's in-sandbox
  // entries need its reports.
  {
    std::lock_guard lock(mu_);
    live_[id] = live;
  }
  Watch(live);
  timer.Lap("watch");
  auto fail = [&](const ApiError& e) -> ApiResult<v1::Sandbox> {
    {
      // Also if the loop stopped it meanwhile: a failed create leaves no trace.
      std::lock_guard lock(mu_);
      live_.erase(id);
      stopped_.erase(id);
    }
    Unwatch(live);
    if (keeper_) (void)keeper_->Drop(id);
    live->session->FailAll(ECANCELED);
    (void)live->Teardown();
    return std::unexpected(e);
  };
  if (keeper_)
    if (auto kept = keeper_->Put(id, live->sandbox->channel_fd(), live->sandbox->pidfd(), live->sandbox->egress_fd());
        !kept)
      return fail({Code::kInternal, "create: " + kept.error().Message()});
  timer.Lap("keeper");
  // A snapshot's layer holds the manifest's files, users and workspace.
  if (from_snapshot.empty())
    if (auto applied = ApplyManifest(*live, request.manifest(), warm || live->workspace_in_image); !applied)
      return fail(applied.error());
  if (request.egress().transparent())
    if (auto dns = UseRelayDns(*live); !dns) return fail(dns.error());
  if (live->info.hostname() != "sandbox") {
    // The image's /etc/hostname names the default; this one has its own.
    proto::FileOpRequest w;
    w.op = proto::FileOp::kWrite;
    w.path = "/etc/hostname";
    w.flags = proto::kWriteAtomic;
    if (auto wrote = FileOpFromString(*live, w, live->info.hostname() + "\n", "create.hostname"); !wrote)
      return fail(wrote.error());
  }
  timer.Lap("manifest");
  SandboxRow row{id, caller.uid, "running", live->info.SerializeAsString(), request.SerializeAsString()};
  if (auto stored = store_->PutSandbox(row); !stored) return fail({Code::kInternal, "create: " + stored.error().Message()});
  // A rebuild (under a given id) says so itself: EVENT_TYPE_REHYDRATED.
  timer.Lap("store");
  if (given_id.empty()) Emit(id, caller.uid, v1::EVENT_TYPE_CREATED, "image " + live->info.image());
  timer.Lap("event");
  timer.Log(id);
  std::lock_guard lock(live->mu);
  return live->info;
}

std::shared_ptr<Live> Manager::TakeWarm(const v1::CreateRequest& request) {
  if (config_.warm_pool == 0 || !HasCommonShape(request)) return nullptr;
  for (;;) {
    std::shared_ptr<Live> live;
    {
      std::lock_guard lock(warm_mu_);
      if (warm_.empty()) return nullptr;
      live = warm_.front();
      warm_.pop_front();
    }
    warm_cv_.notify_all();  // refill
    // Not watched while it waited: make sure its init is still there.
    pollfd p{live->sandbox->pidfd(), POLLIN, 0};
    if (poll(&p, 1, 0) == 0) return live;
    (void)live->Teardown();
  }
}

void Manager::RefillLoop() {
  v1::CreateRequest common;
  Caller daemon{0, 0, getpid()};
  while (!stopping_) {
    {
      std::unique_lock lock(warm_mu_);
      warm_cv_.wait(lock, [&] { return stopping_ || warm_.size() < config_.warm_pool; });
      if (stopping_) return;
    }
    auto live = Launch(daemon, common, NewSandboxId(), {});
    if (live) {
      // Made ready before it is handed out (the workspace, if the image
      // lacks it): the session needs the loop to hear init meanwhile.
      Watch(*live);
      auto made = ApplyManifest(**live, common.manifest(), (*live)->workspace_in_image);
      Unwatch(*live);
      if (made) {
        std::lock_guard lock(warm_mu_);
        warm_.push_back(std::move(*live));
        continue;
      }
      fprintf(stderr, "airlockd: warm pool: %s\n", made.error().message.c_str());
      (void)(*live)->Teardown();
    } else {
      fprintf(stderr, "airlockd: warm pool: %s\n", live.error().message.c_str());
    }
    // Don't spin on a persistent failure.
    std::unique_lock lock(warm_mu_);
    warm_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_.load(); });
  }
}

ApiResult<std::shared_ptr<Live>> Manager::Find(const Caller& caller, const std::string& id) {
  if (id.empty()) return BadField("sandbox_id", "empty");
  std::lock_guard lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end() || (!caller.root() && it->second->owner != caller.uid)) {
    auto st = stopped_.find(id);
    if (st != stopped_.end() && (caller.root() || st->second.owner_uid() == caller.uid))
      return ApiFail(Code::kFailedPrecondition, "sandbox " + id + " is stopped: " + st->second.stop_reason());
    // Another owner's sandbox is indistinguishable from none.
    return ApiFail(Code::kNotFound, "no sandbox " + id);
  }
  return it->second;
}

ApiResult<v1::Sandbox> Manager::Get(const Caller& caller, const std::string& id) {
  std::shared_ptr<Live> live;
  {
    // One look at both tables: a sandbox that stops between two looks (its
    // init died, a rebuild is coming) is reported stopped, not as an error.
    std::lock_guard lock(mu_);
    auto st = stopped_.find(id);
    if (st != stopped_.end() && (caller.root() || st->second.owner_uid() == caller.uid)) return st->second;
    auto it = live_.find(id);
    if (it != live_.end() && (caller.root() || it->second->owner == caller.uid)) live = it->second;
  }
  if (!live) live = TRY(Find(caller, id));  // its error: an empty id, or none (or live again by now)
  std::lock_guard lock(live->mu);
  return live->info;
}

std::vector<v1::Sandbox> Manager::List(const Caller& caller, const v1::ListRequest& request) {
  std::vector<v1::Sandbox> out;
  auto matches = [&](const v1::Sandbox& s) {
    if (!caller.root() && s.owner_uid() != caller.uid) return false;
    for (const auto& [k, v] : request.labels()) {
      auto it = s.labels().find(k);
      if (it == s.labels().end() || it->second != v) return false;
    }
    return true;
  };
  std::vector<std::shared_ptr<Live>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, l] : live_) all.push_back(l);
    if (request.include_stopped())
      for (auto& [id, s] : stopped_)
        if (matches(s)) out.push_back(s);
  }
  for (auto& l : all) {
    std::lock_guard lock(l->mu);
    if (matches(l->info)) out.push_back(l->info);
  }
  std::sort(out.begin(), out.end(), [](const v1::Sandbox& a, const v1::Sandbox& b) {
    return a.created_unix_ms() < b.created_unix_ms();
  });
  return out;
}

ApiResult<v1::Sandbox> Manager::Destroy(const Caller& caller, const std::string& id) {
  std::shared_ptr<Live> live;
  {
    std::lock_guard lock(mu_);
    auto it = live_.find(id);
    if (it != live_.end() && (caller.root() || it->second->owner == caller.uid)) {
      live = it->second;
      live_.erase(it);
    } else {
      auto st = stopped_.find(id);
      if (st == stopped_.end() || (!caller.root() && st->second.owner_uid() != caller.uid))
        return ApiFail(Code::kNotFound, "no sandbox " + id);
      v1::Sandbox info = st->second;
      stopped_.erase(st);
      info.set_state(v1::SANDBOX_STATE_DESTROYED);
      (void)store_->DeleteSandbox(id);
      Emit(id, info.owner_uid(), v1::EVENT_TYPE_DESTROYED, "destroyed by uid " + std::to_string(caller.uid));
      return info;
    }
  }
  {
    std::lock_guard lock(live->mu);
    live->stopped = true;
  }
  Unwatch(live);
  if (keeper_) (void)keeper_->Drop(id);
  live->session->FailAll(ECANCELED);
  auto destroyed = live->Teardown();
  if (auto deleted = store_->DeleteSandbox(id); !deleted)
    return ApiFail(Code::kInternal, "destroy: " + deleted.error().Message());
  Emit(id, live->owner, v1::EVENT_TYPE_DESTROYED, "destroyed by uid " + std::to_string(caller.uid));
  std::lock_guard lock(live->mu);
  live->info.set_state(v1::SANDBOX_STATE_DESTROYED);
  if (!destroyed) live->info.set_stop_reason("cleanup incomplete (the daemon retries at start): " + destroyed.error().Message());
  return live->info;
}

ApiResult<v1::Sandbox> Manager::Pause(const Caller& caller, const std::string& id) {
  auto live = TRY(Find(caller, id));
  std::lock_guard lock(live->mu);
  if (live->info.state() == v1::SANDBOX_STATE_PAUSED) return live->info;
  if (auto frozen = live->sandbox->Freeze(); !frozen) return FromError(frozen.error(), "pause");
  live->info.set_state(v1::SANDBOX_STATE_PAUSED);
  (void)store_->UpdateSandbox(live->id, "paused", live->info.SerializeAsString());
  Emit(id, live->owner, v1::EVENT_TYPE_PAUSED, "");
  return live->info;
}

ApiResult<v1::Sandbox> Manager::Resume(const Caller& caller, const std::string& id) {
  auto live = TRY(Find(caller, id));
  std::lock_guard lock(live->mu);
  if (live->info.state() != v1::SANDBOX_STATE_PAUSED) return live->info;
  if (auto thawed = live->sandbox->Thaw(); !thawed) return FromError(thawed.error(), "resume");
  live->info.set_state(v1::SANDBOX_STATE_RUNNING);
  (void)store_->UpdateSandbox(live->id, "running", live->info.SerializeAsString());
  Emit(id, live->owner, v1::EVENT_TYPE_RESUMED, "");
  live->Touch();
  return live->info;
}

ApiResult<v1::SandboxStats> Manager::Stats(const Caller& caller, const std::string& id) {
  auto live = TRY(Find(caller, id));
  auto usage = live->sandbox->ReadUsage();
  if (!usage) return FromError(usage.error(), "stats");
  auto events = live->sandbox->ReadCgroupEvents();
  if (!events) return FromError(events.error(), "stats");
  v1::SandboxStats s;
  s.set_id(id);
  s.set_cpu_usage_ns(usage->cpu_ns);
  s.set_memory_bytes(usage->memory_bytes);
  s.set_pids(usage->pids);
  const auto& limits = live->sandbox->spec().limits;
  s.set_memory_limit_bytes(limits.memory_bytes.value_or(0));
  s.set_pids_limit(limits.pids.value_or(0));
  s.set_disk_limit_bytes(limits.disk_bytes.value_or(0));
  if (auto disk = live->sandbox->ReadDiskUsage(); disk) s.set_disk_bytes(*disk);
  s.set_oom_kills(events->oom_kills);
  s.set_pids_limit_hits(events->pids_max_hits);
  return s;
}

}  // namespace airlock::daemon

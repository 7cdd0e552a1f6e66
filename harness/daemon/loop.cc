// The Manager's event loop and its start, adoption and shutdown: hearing
// every sandbox's init and pidfd, timers for lifetimes, idle timeouts and
// cgroup events, and the event log.
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "harness/cli/images_cmd.h"
#include "harness/daemon/manager.h"
#include "harness/daemon/manifest.h"
#include "runtime/proto/channel.h"

namespace airlock::daemon {
namespace {

constexpr uint64_t kEventsKept = 100000;

// Asks init who it is and waits (bounded) for the answer, skipping reports
// still queued for the previous daemon's requests. An init of another
// protocol version fails here: the sandbox needs a restart.
Result<void> HelloInit(int channel) {
  if (int r = proto::SendMessage(channel, proto::Type::kHello, proto::EncodeHello()); r < 0)
    return ErrnoValue(-r, "hello", "airlock-init");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ErrnoValue(ETIMEDOUT, "hello", "airlock-init did not answer");
    pollfd p{channel, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto msg = proto::ReceiveMessage(channel, /*dont_wait=*/true);
    if (!msg) {
      if (msg.error().err == EAGAIN) continue;
      return Fail("hello", "airlock-init needs a restart: " + msg.error().Message());
    }
    if (msg->type != proto::Type::kHello) continue;
    if (auto ok = proto::DecodeHello(msg->payload); !ok)
      return Fail("hello", "airlock-init needs a restart: " + ok.error().Message());
    return {};
  }
}

// epoll data: which sandbox, and whether it is its channel or its pidfd.
enum class WatchKind : uint64_t { kWake = 0, kTimer = 1, kChannel = 2, kPidfd = 3 };

}  // namespace

Result<void> Manager::Start() {
  CollectSnapshots();
  // Called on the main thread, which lives as long as the daemon: the
  // zygote and the children it clones for us die with that thread.
  if (config_.zygote) {
    auto z = Zygote::Start(config_.paths.init_binary);
    if (z) zygote_ = std::move(*z);
    else fprintf(stderr, "airlockd: %s: sandboxes are cloned in-process\n", z.error().Message().c_str());
  }
  // The egress proxy first: adopted sandboxes in network mode proxy are
  // handed to it again.
  if (!config_.egress.proxy_binary.empty() && access(config_.egress.proxy_binary.c_str(), X_OK) == 0) {
    auto proxy = EgressProxy::Start(config_.egress, [this](const std::string& sandbox, const v1::EgressAudit& a) {
      OnEgressAudit(sandbox, a);
    });
    if (proxy) egress_ = std::move(*proxy);
    else fprintf(stderr, "airlockd: egress proxy: %s (network mode proxy is refused)\n", proxy.error().Message().c_str());
  } else {
    fprintf(stderr, "airlockd: no airlock-proxy beside airlockd: network mode proxy is refused\n");
  }
  // What a previous daemon left: sandboxes whose channels the keeper still
  // holds are adopted; the others ended meanwhile.
  std::map<std::string, KeeperClient::Held> held;
  if (keeper_) {
    auto list = keeper_->List();
    if (!list) fprintf(stderr, "airlockd: keeper: %s\n", list.error().Message().c_str());
    else
      for (auto& h : *list) held[h.id] = std::move(h);
  }
  std::vector<std::shared_ptr<Live>> adopted;
  auto rows = TRY(store_->Sandboxes());
  for (auto& row : rows) {
    v1::Sandbox info;
    if (!info.ParseFromString(row.info)) continue;
    if (info.state() != v1::SANDBOX_STATE_RUNNING && info.state() != v1::SANDBOX_STATE_PAUSED) {
      stopped_[info.id()] = info;
      continue;
    }
    std::string why = "its init ended while airlockd was down";
    auto it = held.find(info.id());
    if (it != held.end()) {
      auto live = Adopt(row, info, std::move(it->second));
      held.erase(it);
      if (live) {
        adopted.push_back(*live);
        continue;
      }
      why = "airlockd restarted and could not take it back: " + live.error().Message();
      if (keeper_) (void)keeper_->Drop(info.id());
    }
    info.set_state(v1::SANDBOX_STATE_STOPPED);
    info.set_stop_reason(why);
    TRY(store_->UpdateSandbox(info.id(), "stopped", info.SerializeAsString()));
    Emit(info.id(), info.owner_uid(), v1::EVENT_TYPE_EXITED, why);
    stopped_[info.id()] = info;
    // Its recovery policy may rebuild it (the worker starts below, after the
    // cleanup of what it left).
    v1::CreateRequest request;
    if (request.ParseFromString(row.request) && request.recovery().rebuild()) {
      auto ghost = std::make_shared<Live>();
      ghost->id = info.id();
      ghost->owner = row.owner;
      ghost->info = info;
      ghost->recovery = request.recovery();
      recovery_work_.push_back({ghost, true, 0});
    }
  }
  // Held but unknown to the store (the daemon died between starting it and
  // recording it): let it go; the cleanup below removes it.
  for (auto& [id, h] : held)
    if (keeper_) (void)keeper_->Drop(id);
  held.clear();
  if (auto cleaned = CleanupStaleSandboxes(config_.paths); !cleaned)
    fprintf(stderr, "airlockd: cleanup of stale sandboxes: %s\n", cleaned.error().Message().c_str());
  last_seq_ = TRY(store_->LastEventSeq());

  epoll_ = UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  wake_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  timer_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!epoll_ || !wake_ || !timer_) return Errno("epoll/eventfd/timerfd", "airlockd loop");
  itimerspec every_second{{1, 0}, {1, 0}};
  timerfd_settime(timer_.get(), 0, &every_second, nullptr);
  epoll_event ev{EPOLLIN, {.u64 = static_cast<uint64_t>(WatchKind::kWake)}};
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  ev.data.u64 = static_cast<uint64_t>(WatchKind::kTimer);
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, timer_.get(), &ev);
  for (auto& live : adopted) {
    {
      std::lock_guard lock(mu_);
      live_[live->id] = live;
    }
    Watch(live);
  }
  loop_ = std::thread([this] { Loop(); });
  if (config_.warm_pool > 0) refill_ = std::thread([this] { RefillLoop(); });
  recovery_ = std::thread([this] { RecoveryLoop(); });
  return {};
}

void Manager::Shutdown() {
  if (stopping_.exchange(true)) return;
  if (wake_) {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
  }
  {
    std::lock_guard lock(warm_mu_);  // the refill thread is waiting or about to
  }
  warm_cv_.notify_all();
  {
    std::lock_guard lock(recovery_mu_);
  }
  recovery_cv_.notify_all();
  if (recovery_.joinable()) recovery_.join();
  if (refill_.joinable()) refill_.join();
  if (loop_.joinable()) loop_.join();
  // A rebuild the loop queued as the recovery worker stopped: torn down
  // only, like those the worker dropped (the next daemon rebuilds them).
  for (auto& w : recovery_work_)
    if (w.rebuild) (void)w.live->Teardown();
  recovery_work_.clear();
  for (auto& live : warm_) (void)live->Teardown();
  warm_.clear();
  std::map<std::string, std::shared_ptr<Live>> live;
  {
    std::lock_guard lock(mu_);
    live.swap(live_);
  }
  for (auto& [id, l] : live) {
    l->session->FailAll(ESHUTDOWN);
    if (keeper_) {
      // The keeper holds it for the next daemon: restarting airlockd never
      // ends a sandbox. Only this process's resources go.
      l->sandbox.release();  // NOLINT: its Destroy() must not run
      continue;
    }
    (void)l->Teardown();
    std::lock_guard lock(l->mu);
    l->stopped = true;
    l->info.set_state(v1::SANDBOX_STATE_STOPPED);
    l->info.set_stop_reason("airlockd shut down");
    (void)store_->UpdateSandbox(l->id, "stopped", l->info.SerializeAsString());
  }
  zygote_.reset();
}

// --- the loop ------------------------------------------------------------------

void Manager::Watch(const std::shared_ptr<Live>& live) {
  // The fd number identifies the sandbox in the loop; by_fd_ maps it back.
  {
    std::lock_guard lock(mu_);
    by_fd_[live->sandbox->channel_fd()] = live;
    by_fd_[live->sandbox->pidfd()] = live;
  }
  epoll_event ev{EPOLLIN, {}};
  ev.data.u64 = (static_cast<uint64_t>(live->sandbox->channel_fd()) << 8) | static_cast<uint64_t>(WatchKind::kChannel);
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, live->sandbox->channel_fd(), &ev);
  ev.data.u64 = (static_cast<uint64_t>(live->sandbox->pidfd()) << 8) | static_cast<uint64_t>(WatchKind::kPidfd);
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, live->sandbox->pidfd(), &ev);
}

void Manager::Unwatch(const std::shared_ptr<Live>& live) {
  // Before the fds close (Destroy): a reused number must not find this sandbox.
  std::lock_guard lock(mu_);
  for (int fd : {live->sandbox->channel_fd(), live->sandbox->pidfd()}) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    by_fd_.erase(fd);
  }
}

void Manager::Loop() {
  epoll_event events[64];
  while (!stopping_) {
    int n = epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) continue;
    for (int i = 0; i < n; ++i) {
      auto kind = static_cast<WatchKind>(events[i].data.u64 & 0xff);
      int fd = static_cast<int>(events[i].data.u64 >> 8);
      if (kind == WatchKind::kWake) continue;
      if (kind == WatchKind::kTimer) {
        uint64_t ticks;
        (void)!read(timer_.get(), &ticks, sizeof(ticks));
        CheckTimers();
        continue;
      }
      std::shared_ptr<Live> live;
      {
        std::lock_guard lock(mu_);
        auto it = by_fd_.find(fd);
        if (it != by_fd_.end()) live = it->second.lock();
      }
      if (!live) {
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        continue;
      }
      if (kind == WatchKind::kPidfd) {
        // Reports init sent before it died are still queued: deliver them.
        (void)live->session->OnReadable();
        CheckCgroupEvents(live);
        Stop(live, v1::EVENT_TYPE_EXITED, "airlock-init exited");
        continue;
      }
      if (auto ok = live->session->OnReadable(); !ok) {
        bool gone = ok.error().err == 0 && ok.error().op == "channel closed";
        Stop(live, v1::EVENT_TYPE_EXITED,
             gone ? "airlock-init closed its channel" : "airlock-init broke the protocol: " + ok.error().Message());
      }
    }
  }
}

void Manager::CheckTimers() {
  std::vector<std::shared_ptr<Live>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, l] : live_) all.push_back(l);
  }
  const int64_t now = NowUnixMs();
  for (auto& live : all) {
    CheckCgroupEvents(live);
    CheckRecoverySnapshots(live, now);
    int64_t expires, idle;
    {
      std::lock_guard lock(live->mu);
      expires = live->info.expires_unix_ms();
      idle = static_cast<int64_t>(live->info.idle_timeout_ms());
    }
    if (expires > 0 && now >= expires) {
      Stop(live, v1::EVENT_TYPE_TIMEOUT, "its lifetime ran out");
    } else if (idle > 0 && live->session->pending() == 0 && now - live->last_used_ms.load() >= idle) {
      Stop(live, v1::EVENT_TYPE_IDLE_STOPPED, "idle for " + std::to_string(idle) + " ms");
    }
  }
}

void Manager::CheckCgroupEvents(const std::shared_ptr<Live>& live) {
  auto events = live->sandbox->ReadCgroupEvents();
  if (!events) return;
  uint64_t new_ooms = 0, new_hits = 0;
  {
    std::lock_guard lock(live->mu);
    if (events->oom_kills > live->seen_events.oom_kills) new_ooms = events->oom_kills - live->seen_events.oom_kills;
    if (events->pids_max_hits > live->seen_events.pids_max_hits)
      new_hits = events->pids_max_hits - live->seen_events.pids_max_hits;
    live->seen_events = *events;
  }
  if (new_ooms)
    Emit(live->id, live->owner, v1::EVENT_TYPE_OOM, std::to_string(new_ooms) + " process(es) killed by the OOM killer");
  if (new_hits)
    Emit(live->id, live->owner, v1::EVENT_TYPE_LIMIT_HIT, std::to_string(new_hits) + " fork(s) refused by the pids limit");
}

void Manager::Stop(const std::shared_ptr<Live>& live, v1::EventType event, const std::string& reason) {
  {
    std::lock_guard lock(live->mu);
    if (live->stopped) return;
    live->stopped = true;
    live->info.set_state(v1::SANDBOX_STATE_STOPPED);
    live->info.set_stop_reason(reason);
  }
  Unwatch(live);
  if (keeper_) (void)keeper_->Drop(live->id);
  live->session->FailAll(EPIPE);
  {
    std::lock_guard lock(mu_);
    live_.erase(live->id);
    std::lock_guard l(live->mu);
    stopped_[live->id] = live->info;
  }
  Persist(live);
  Emit(live->id, live->owner, event, reason);
  // Teardown (kill, cgroups, writable layer) off the loop's thread: one
  // slow removal must not hold up other sandboxes' reports. A sandbox whose
  // recovery policy rebuilds it goes to the recovery worker instead, which
  // tears it down and builds it again under the same id.
  if (event == v1::EVENT_TYPE_EXITED && WantsRebuild(*live)) {
    {
      std::lock_guard lock(recovery_mu_);
      // A sandbox that keeps dying is rebuilt ever more slowly: its first
      // death at once, then after 1 s, 2 s, 4 s ... (at most 30 s).
      uint64_t generation;
      {
        std::lock_guard l(live->mu);
        generation = live->info.generation() ? live->info.generation() : 1;
      }
      const int64_t backoff = generation <= 1 ? 0 : std::min<int64_t>(int64_t{1000} << std::min<uint64_t>(generation - 2, 5), 30000);
      recovery_work_.push_back({live, true, NowUnixMs() + backoff});
    }
    recovery_cv_.notify_all();
    return;
  }
  std::thread([live] {
    (void)live->Teardown();
  }).detach();
}

void Manager::Persist(const std::shared_ptr<Live>& live) {
  std::string state, info;
  {
    std::lock_guard lock(live->mu);
    state = live->stopped ? "stopped" : live->info.state() == v1::SANDBOX_STATE_PAUSED ? "paused" : "running";
    info = live->info.SerializeAsString();
  }
  if (auto ok = store_->UpdateSandbox(live->id, state, info); !ok)
    fprintf(stderr, "airlockd: state of %s not saved: %s\n", live->id.c_str(), ok.error().Message().c_str());
}

void Manager::Emit(const std::string& sandbox_id, uid_t owner, v1::EventType type, const std::string& message) {
  Append(EventRow{0, sandbox_id, owner, static_cast<int>(type), message, NowUnixMs(), {}});
}

void Manager::EmitEgress(const std::string& sandbox_id, uid_t owner, const std::string& message,
                         const std::string& audit) {
  Append(EventRow{0, sandbox_id, owner, v1::EVENT_TYPE_EGRESS, message, NowUnixMs(), audit});
}

void Manager::Append(const EventRow& row) {
  const std::string& sandbox_id = row.sandbox_id;
  auto seq = store_->AppendEvent(row);
  if (!seq) {
    fprintf(stderr, "airlockd: event for %s not saved: %s\n", sandbox_id.c_str(), seq.error().Message().c_str());
    return;
  }
  if (*seq % 1000 == 0) (void)store_->TrimEvents(kEventsKept);
  {
    std::lock_guard lock(events_mu_);
    last_seq_ = std::max(last_seq_, *seq);
  }
  events_cv_.notify_all();
}

uint64_t Manager::LastEventSeq() {
  std::lock_guard lock(events_mu_);
  return last_seq_;
}

std::vector<v1::Event> Manager::WaitEvents(const Caller& caller, const std::string& sandbox_id, uint64_t since,
                                           int wait_ms) {
  {
    std::unique_lock lock(events_mu_);
    events_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return last_seq_ > since || stopping_; });
  }
  std::vector<v1::Event> out;
  auto rows = store_->EventsSince(since, 1000);
  if (!rows) return out;
  for (const auto& r : *rows) {
    if (!caller.root() && r.owner != caller.uid) continue;
    if (!sandbox_id.empty() && r.sandbox_id != sandbox_id) continue;
    v1::Event e;
    e.set_seq(r.seq);
    e.set_sandbox_id(r.sandbox_id);
    e.set_type(static_cast<v1::EventType>(r.type));
    e.set_message(r.message);
    e.set_unix_ms(r.unix_ms);
    if (!r.detail.empty() && !e.mutable_egress()->ParseFromString(r.detail)) e.clear_egress();
    out.push_back(std::move(e));
  }
  // The caller resumes after the last row looked at, shown or not.
  if (out.empty() && !rows->empty()) {
    v1::Event marker;
    marker.set_seq(rows->back().seq);
    out.push_back(marker);  // type UNSPECIFIED: the service skips it but advances
  }
  return out;
}

Result<std::shared_ptr<Live>> Manager::Adopt(const SandboxRow& row, const v1::Sandbox& info, KeeperClient::Held held) {
  v1::CreateRequest request;
  if (!request.ParseFromString(row.request)) return Fail("adopt", "stored create request unreadable");
  SandboxSpec spec;
  spec.id = info.id();
  const auto& l = request.limits();
  if (l.memory_bytes()) spec.limits.memory_bytes = l.memory_bytes();
  if (l.pids()) spec.limits.pids = l.pids();
  if (l.cpus() > 0) spec.limits.cpus = l.cpus();
  if (l.disk_bytes()) spec.limits.disk_bytes = l.disk_bytes();
  // init must still answer, in this runtime's protocol version.
  int channel = held.channel.get();
  TRY(HelloInit(channel));
  auto image = ResolveImage(info.image());
  if (!image) return Fail("adopt", "image " + info.image() + ": " + image.error().Message());
  auto live = std::make_shared<Live>();
  live->id = info.id();
  live->owner = row.owner;
  AdoptOrigin origin{request.checkpointable(), info.processes_restored()};
  if (origin.checkpointable) {
    // A checkpoint names each host mount as the launch made them: planned
    // again, as the owner (the same order, the same destinations).
    Caller owner{row.owner, row.owner, 0};
    if (passwd* pw = getpwuid(row.owner)) owner.gid = pw->pw_gid;
    if (auto plan = PlanCreate(request, config_.allowed_roots, owner.uid, owner.gid)) {
      spec.mounts = plan->mounts;
      spec.seccomp_profile = plan->seccomp_profile;
    } else {
      origin.checkpointable = false;
      fprintf(stderr, "airlockd: %s: full snapshots off after the restart (%s)\n", info.id().c_str(),
              plan.error().message.c_str());
    }
  }
  live->sandbox = TRY(Sandbox::Adopt(spec, config_.paths, std::move(held.channel), std::move(held.pidfd),
                                     std::move(held.egress), origin));
  live->session = std::make_unique<InitSession>(live->sandbox->channel_fd());
  // What the previous daemon ran there has no caller any more: its output
  // went with the daemon and no handle names it. It ends, as a command does
  // whenever its caller leaves.
  if (auto ended = live->session->Signal(proto::kAllCommands, SIGKILL); !ended) return std::unexpected(ended.error());
  live->pins = std::move(image->pins);
  live->workspace = info.workspace().empty() ? "/workspace" : info.workspace();
  std::vector<std::string> manifest_env;
  for (const auto& [k, v] : request.manifest().environment()) manifest_env.push_back(k + "=" + v);
  live->image_env = image->env;
  live->env = BaseEnvironment(image->env, manifest_env);
  for (const auto& u : request.manifest().users()) live->users[u.name()] = u;
  live->info = info;
  live->recovery = request.recovery();
  if (request.network() == v1::NETWORK_MODE_PROXY) {
    if (!egress_ || live->sandbox->egress_fd() < 0) return Fail("adopt", "its egress channel can't be served again");
    if (auto attached = AttachEgress(*live, request); !attached) return Fail("adopt", attached.error().message);
  }
  live->Touch();
  return live;
}

}  // namespace airlock::daemon

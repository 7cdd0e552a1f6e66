// The parent side of the launch sequence. Everything that allocates, parses
// or resolves a host path happens before clone; after it the parent only
// writes the id maps, places init in its cgroup, builds the idmapped mounts
// (they need the child's user namespace) and hands them over in one message.
#include "runtime/launch/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <thread>

#include "runtime/checkpoint/criu.h"
#include "runtime/checkpoint/preflight.h"
#include "runtime/core/kernel_check.h"
#include "runtime/core/paths.h"
#include "runtime/fs/seed.h"
#include "runtime/fs/sources.h"
#include "runtime/launch/child.h"
#include "runtime/launch/internal.h"
#include "runtime/launch/zygote.h"
#include "runtime/net/netns.h"
#include "runtime/net/relay_sockets.h"
#include "runtime/net/transparent.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/launch.h"
#include "runtime/security/seccomp.h"
#include "runtime/security/setid_filter.h"
#include "runtime/spec/plan.h"
#include "runtime/storage/idrange.h"
#include "runtime/storage/pool.h"
#include "runtime/sys/syscalls.h"

namespace airlock {
using launch_internal::kRoNoSuidNoDev;
using launch_internal::WriteProcFile;

namespace {

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The detail for a child failure: what the failing step was working on.
std::string FailureDetail(const LaunchPlan& plan, const proto::SetupFailed& f) {
  auto step = static_cast<ChildStep>(f.step);
  if (f.item < 0) {
    if (step == ChildStep::kExecInit)
      return f.err == EPERM || f.err == EACCES
                 ? "airlock-init; does seccomp profile " + plan.spec.seccomp_profile + " allow execveat?"
                 : "airlock-init";
    if (step == ChildStep::kOverlay) return "lowerdir " + plan.overlay_lowerdir;
    if (step == ChildStep::kHostname) return plan.spec.hostname;
    return {};
  }
  size_t i = static_cast<size_t>(f.item);
  switch (step) {
    case ChildStep::kAttachLayers:
      return i < plan.sources.size() ? plan.sources[i].host_path : std::string();
    case ChildStep::kMounts:
      if (i == plan.mounts.size()) return "/dev/.airlock-init from " + std::string("airlock-init");
      if (i < plan.mounts.size()) {
        const auto& m = plan.mounts[i];
        std::string d = "/" + m.target;
        if (m.op == MountOp::kParentFd && m.fd_index >= 0)
          d += " from " + plan.sources[static_cast<size_t>(m.fd_index)].host_path;
        return d;
      }
      return {};
    case ChildStep::kRlimits:
      return i == 0 ? "RLIMIT_NOFILE" : i == 1 ? "RLIMIT_CORE" : "RLIMIT_FSIZE";
    case ChildStep::kCapabilities:
      return i < plan.dropped_caps.size() ? "capability " + std::to_string(plan.dropped_caps[i]) : std::string();
    case ChildStep::kSeccomp:
      return i == 0 ? "profile " + plan.spec.seccomp_profile : "set-id filter";
    case ChildStep::kExecInit:
      return f.err == EPERM || f.err == EACCES
                 ? "airlock-init; does seccomp profile " + plan.spec.seccomp_profile + " allow execveat?"
                 : "airlock-init";
    default:
      return {};
  }
}

Result<CgroupJoinFiles> OpenJoinFiles(const cgroups::Layout& layout, const std::vector<std::string>& paths,
                                      const std::string& id) {
  CgroupJoinFiles j;
  std::vector<UniqueFd> group, init, work;
  const std::string group_suffix = "/airlock-" + id;
  for (const auto& p : paths) {
    const cgroups::Hierarchy* h = nullptr;
    for (const auto& candidate : layout.hierarchies)
      if (p.starts_with(candidate.mountpoint + "/")) h = &candidate;
    if (h == nullptr) return Fail("cgroup", "no hierarchy holds " + p);
    if (h->version == cgroups::Version::kV2) {
      j.use_clone_into_cgroup = true;
      continue;
    }
    std::vector<UniqueFd>* list = p.ends_with(group_suffix) ? &group
                                  : p.ends_with("/init")     ? &init
                                  : p.ends_with("/work")     ? &work
                                                             : nullptr;
    if (list == nullptr) continue;
    std::string tasks = p + "/tasks";
    UniqueFd fd(open(tasks.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return Errno("open", tasks);
    list->push_back(std::move(fd));
  }
  if (group.size() != init.size() || init.size() != work.size())
    return Fail("cgroup", "a hierarchy lacks the group, init or work directory");
  // One message: the group's files, then init's, then work's (ChildContext).
  for (auto* list : {&group, &init, &work})
    for (auto& fd : *list) {
      j.fds.push_back(fd.get());
      j.owned.push_back(std::move(fd));
    }
  return j;
}

}  // namespace

// "sandbox setup failed at step "pivot-root": EINVAL (…)" from a child's
// failure record.

static std::unexpected<Error> SetupFailure(const LaunchPlan& plan, std::string_view payload) {
  auto f = proto::DecodeSetupFailed(payload);
  if (!f) return std::unexpected(f.error());
  if (f->step >= static_cast<uint32_t>(ChildStep::kCount)) return Fail("sandbox setup", "unknown step in report");
  return ErrnoValue(f->err,
                    std::string("sandbox setup failed at step \"") + ChildStepName(static_cast<ChildStep>(f->step)) +
                        "\"",
                    FailureDetail(plan, *f));
}


void Sandbox::Time(const char* step, uint64_t start_ns) {
  if (timing_enabled_) timings_.push_back({step, NowNs() - start_ns});
}

Result<std::unique_ptr<Sandbox>> Sandbox::Start(const SandboxSpec& spec, const RuntimePaths& paths,
                                                const LaunchOptions& options) {
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->spec_ = spec;
  sb->res_ = std::make_unique<Resources>();
  sb->timing_enabled_ = options.timings;
  sb->checkpointable_ = options.checkpointable;
  auto launched = sb->Launch(paths, options);
  if (!launched) {
    sb->Destroy();  // nothing half-made is left behind
    return std::unexpected(launched.error());
  }
  return sb;
}

Result<CgroupJoinFiles> Sandbox::MakeCgroup(const cgroups::Layout& layout) {
  cgroups::Limits limits{spec_.limits.memory_bytes, spec_.limits.pids, spec_.limits.cpus};
  res_->cgroup.emplace(TRY(cgroups::SandboxCgroup::Create(layout, spec_.id, limits)));
  for (const auto& p : res_->cgroup->Paths()) TRY(res_->record->Note("cgroup", p));
  return OpenJoinFiles(layout, res_->cgroup->Paths(), spec_.id);
}

Result<void> Sandbox::ClaimIdentity(const RuntimePaths& paths) {
  res_->record.emplace(TRY(SandboxRecord::Create(paths, spec_.id)));
  res_->idranges_path = paths.IdRanges();
  TRY(res_->record->Note("idrange", spec_.id));
  storage::IdAllocator allocator(paths.IdRanges());
  // No sandbox's processes outlive the host's uptime, and what it stores is
  // kept with canonical ownership (decision 1), so a range needs no fsync
  // (~3-7 ms here) to survive a crash of the machine. What must outlive a
  // reboot, a full snapshot's range, is reserved durably on its own.
  allocator.set_durable(false);
  res_->durable_ids = false;
  res_->ids = TRY(allocator.Allocate(spec_.id));
  res_->has_ids = true;
  return {};
}

Result<ResolvedSources> Sandbox::ResolveSources(const LaunchPlan& plan, const RuntimePaths& paths,
                                                bool init_exec) {
  ResolvedSources out;
  out.fds.resize(plan.sources.size());
  out.stats.resize(plan.sources.size());
  for (size_t i = 0; i < plan.sources.size(); ++i) {
    const auto& s = plan.sources[i];
    if (s.kind == PlannedSource::kUpper) continue;
    Result<UniqueFd> fd = s.fd >= 0 ? Result<UniqueFd>(UniqueFd(fcntl(s.fd, F_DUPFD_CLOEXEC, 3)))
                                    : fs::OpenHostPath(s.host_path);
    if (fd && !*fd) fd = Errno("dup", s.host_path);
    if (!fd) {
      Error e = fd.error();
      e.op = "mount source";
      return std::unexpected(e);
    }
    if (fstat(fd->get(), &out.stats[i]) < 0) return Errno("stat", s.host_path);
    if (s.kind == PlannedSource::kHostRW && out.stats[i].st_uid == 0 && !s.allow_root_owner)
      return Fail("mount source", s.host_path +
                                      " is owned by root: a read-write mount would let the sandbox write as "
                                      "root there; add allow-root (--mount SRC:DST:rw,allow-root) if you mean it");
    out.fds[i] = std::move(*fd);
  }
  if (init_exec) out.init_exec = TRY(InitExecMount(paths));  // (a zygote's child is airlock-init already)
  return out;
}

Result<UniqueFd> Sandbox::InitExecMount(const RuntimePaths& paths) {
  UniqueFd init_path_fd = TRY(fs::OpenHostPath(paths.init_binary));
  // airlock-init runs from a read-only, nosuid copy of its mount: nothing in
  // the sandbox can write the host binary back through /proc/1/exe.
  return fs::CloneMount(init_path_fd.get(), paths.init_binary, kRoNoSuidNoDev, -1);
}

Result<void> Sandbox::CloneInZygote(Zygote& zygote, uint64_t ns_flags, int netns, const CgroupJoinFiles& join,
                                    const ChildContext& ctx) {
  proto::CloneRequest req;
  req.flags = ns_flags;
  std::vector<int> fds{ctx.sock};
  if (netns >= 0) {
    req.has_netns = true;
    fds.push_back(netns);
  }
  if (join.use_clone_into_cgroup) {
    req.has_cgroup = true;
    fds.push_back(res_->cgroup->InitDirFd());
  }
  req.egress_count = static_cast<uint32_t>(ctx.egress_count);
  for (int i = 0; i < ctx.egress_count; ++i) fds.push_back(ctx.egress_fds[i]);
  Zygote::Cloned cloned = TRY(zygote.Clone(req, fds));
  init_pid_ = cloned.pid;
  pidfd_ = std::move(cloned.pidfd);
  return {};
}

Result<std::vector<UniqueFd>> Sandbox::BuildMounts(const LaunchPlan& plan, const ResolvedSources& sources,
                                                   const storage::Subvolume* subvolume) {
  // Idmapped mounts need the child's user namespace: they are made now.
  std::string userns_path = "/proc/" + std::to_string(init_pid_) + "/ns/user";
  UniqueFd userns(open(userns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!userns) return Errno("open", userns_path);
  std::vector<UniqueFd> mounts;
  for (size_t i = 0; i < plan.sources.size(); ++i) {
    const auto& s = plan.sources[i];
    const int fd = sources.fds[i].get();
    switch (s.kind) {
      case PlannedSource::kLayer:
      case PlannedSource::kImageBind:
        mounts.push_back(TRY(fs::CloneMount(fd, s.host_path, kRoNoSuidNoDev, userns.get())));
        break;
      case PlannedSource::kUpper:
        mounts.push_back(TRY(fs::CloneMount(subvolume->dir.get(), subvolume->path,
                                            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, userns.get())));
        break;
      case PlannedSource::kHostRO:
        mounts.push_back(TRY(fs::CloneMount(fd, s.host_path, kRoNoSuidNoDev, -1)));
        break;
      case PlannedSource::kHostRW: {
        // What the sandbox user writes lands as the directory's host owner.
        const auto& st = sources.stats[i];
        UniqueFd ns = TRY(fs::MakeSingleIdUserns(st.st_uid, res_->ids.base + spec_.process.uid, st.st_gid,
                                                 res_->ids.base + spec_.process.gid));
        mounts.push_back(TRY(fs::CloneMount(fd, s.host_path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, ns.get())));
        break;
      }
    }
  }
  return mounts;
}

Result<void> Sandbox::AwaitInit(const LaunchPlan& plan, const std::optional<Error>& send_failed) {
  for (;;) {
    auto msg = proto::ReceiveMessage(channel_.get());
    // A peer that closed with our messages unread makes the first read fail
    // with ECONNRESET; what it sent before is still queued behind it.
    if (!msg && msg.error().err == ECONNRESET) msg = proto::ReceiveMessage(channel_.get());
    if (!msg) {
      if (send_failed) return std::unexpected(*send_failed);
      const bool closed = (msg.error().err == 0 && msg.error().op == "channel closed") ||
                          msg.error().err == ECONNRESET || msg.error().err == EPIPE;
      if (!closed) {
        // Something that isn't this runtime's protocol (an init of another
        // airlock version, or a hostile one): it won't exit by itself.
        syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
        int status;
        if (waitpid(init_pid_, &status, 0) == init_pid_) reaped_ = true;
        return Fail("sandbox setup", "airlock-init does not speak this runtime's protocol: " + msg.error().Message());
      }
      int status = 0;
      if (waitpid(init_pid_, &status, 0) == init_pid_) {
        reaped_ = true;
        init_wait_status_ = status;
      }
      return Fail("sandbox setup", "the sandbox child ended without a report (" + msg.error().Message() +
                                       (WIFSIGNALED(status) ? ", signal " + std::to_string(WTERMSIG(status))
                                                            : ", status " + std::to_string(WEXITSTATUS(status))) +
                                       ")");
    }
    if (msg->type == proto::Type::kTimings && timing_enabled_ &&
        msg->payload.size() == sizeof(uint64_t) * static_cast<size_t>(ChildStep::kCount)) {
      // The steps after init-fds run once the record is sent: their time
      // is part of await-init.
      for (int i = 0; i <= static_cast<int>(ChildStep::kInitFds); ++i) {
        uint64_t ns;
        memcpy(&ns, msg->payload.data() + i * sizeof(uint64_t), sizeof(ns));
        timings_.push_back({std::string("child:") + ChildStepName(static_cast<ChildStep>(i)), ns});
      }
      continue;
    }
    if (msg->type == proto::Type::kSetupFailed) return SetupFailure(plan, msg->payload);
    if (msg->type == proto::Type::kHello) {
      TRY(proto::DecodeHello(msg->payload));
      if (send_failed) return std::unexpected(*send_failed);
      break;
    }
    return Fail("sandbox setup", "unexpected message type " + std::to_string(static_cast<int>(msg->type)));
  }
  return {};
}

Result<void> Sandbox::PlaceSpawner(bool born_in_init_group) {
  // On cgroup v1 the spawner moved itself to the workload group before it
  // read anything. On v2 it was born in init's group: every process there
  // but init is the spawner; move it to the workload group. The egress
  // relay (network mode proxy), forked before the hello, stays with init
  // on v1 and moves with the spawner on v2: either way it is under the
  // sandbox's limits, and outside the workload's OOM group.
  auto pids = TRY(res_->cgroup->InitPids());
  const int relay = spec_.net == NetMode::kProxy ? 1 : 0;
  int others = 0;
  for (pid_t p : pids) {
    if (p == init_pid_) continue;
    if (born_in_init_group) TRY(res_->cgroup->MoveToWork(p));
    ++others;
  }
  if (others != (born_in_init_group ? 1 : 0) + relay)
    return Fail("sandbox setup", "unexpected processes in init's cgroup (" + std::to_string(others) + ")");
  return {};
}

Result<void> Sandbox::SetUpEgress(int netns, net::RelaySockets& relay, UniqueFd& child_end, ChildContext& ctx) {
  uint64_t t = NowNs();
  // The calling thread is in the sandbox's namespace: the sockets are made there.
  relay = TRY(net::MakeRelaySockets(spec_.egress.proxy_port, spec_.egress.transparent));
  if (spec_.egress.transparent) TRY(net::InstallTransparentRedirect(netns, {spec_.egress.proxy_port, 53}));
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return Errno("socketpair", "egress channel");
  egress_.Reset(sv[0]);
  child_end.Reset(sv[1]);
  ctx.egress_fds[ctx.egress_count++] = child_end.get();
  ctx.egress_fds[ctx.egress_count++] = relay.proxy_listener.get();
  if (spec_.egress.transparent) {
    ctx.egress_fds[ctx.egress_count++] = relay.dns_udp.get();
    ctx.egress_fds[ctx.egress_count++] = relay.dns_tcp.get();
  }
  Time("egress", t);
  return {};
}

Result<void> Sandbox::Launch(const RuntimePaths& paths, const LaunchOptions& options) {
  // The network namespace (~0.3 ms, with ~100 ms tails back to back) is
  // the caller's, made ahead of need, or made on another thread meanwhile;
  // unless the sandbox must be checkpointable (then the child makes it).
  Result<UniqueFd> netns = Fail("netns", "not made");
  std::thread netns_thread;
  if (!options.checkpointable && options.netns >= 0) {
    UniqueFd own(fcntl(options.netns, F_DUPFD_CLOEXEC, 3));
    if (!own) return Errno("dup", "the caller's network namespace");
    netns = std::move(own);
  } else if (!options.checkpointable) {
    netns_thread = std::thread([&netns] { netns = net::CreateLoopbackNetns(); });
  }
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{netns_thread};

  uint64_t t = NowNs();
  KernelFeatures features = TRY(CheckKernel());
  TRY(PrepareRuntimeDirs(paths));
  Time("kernel-check", t);

  t = NowNs();
  TRY(CleanupStaleSandboxes(paths));
  Time("cleanup-stale", t);

  t = NowNs();
  TRY(ClaimIdentity(paths));
  Time("id-range", t);

  if (spec_.net == NetMode::kProxy && options.checkpointable)
    return Fail("network", "a sandbox in network mode proxy can't be made checkpointable yet");

  t = NowNs();
  const bool on_pool =
      spec_.limits.disk_bytes.has_value() || !spec_.seeds.empty() || spec_.on_pool || !spec_.from_snapshot.empty();
  LaunchPlan plan = TRY(BuildLaunchPlan(spec_, on_pool, features.time_namespace));
  plan.child_netns = options.checkpointable;
  plan.init_in_tree = options.checkpointable;
  Time("plan", t);

  // On cgroup v2 the child is born in its group (CLONE_INTO_CGROUP), so the
  // group comes first. On v1 a thread of its own makes it (below) while the
  // launch goes on.
  t = NowNs();
  cgroups::Layout layout = TRY(cgroups::DetectLayout());
  bool any_v2 = false;
  for (const auto& h : layout.hierarchies) any_v2 |= h.version == cgroups::Version::kV2;
  CgroupJoinFiles join;
  if (any_v2) join = TRY(MakeCgroup(layout));
  Time("cgroup-layout", t);

  std::optional<storage::Subvolume> subvolume;
  if (on_pool) {
    t = NowNs();
    res_->pool.emplace(TRY(storage::Pool::Open({paths.PoolImage(), paths.PoolMountpoint(), 0})));
    TRY(res_->record->Note("subvolume", spec_.id));
    if (!spec_.from_snapshot.empty()) {
      // A snapshot's layer, with canonical ownership: any id range can use it.
      subvolume.emplace(TRY(res_->pool->CreateSubvolumeFrom(spec_.from_snapshot, spec_.id, spec_.limits.disk_bytes)));
      res_->has_subvolume = true;
    } else {
      subvolume.emplace(TRY(res_->pool->CreateSubvolume(spec_.id, spec_.limits.disk_bytes)));
      res_->has_subvolume = true;
      // Canonical ownership: created by host root, so owned by 0 on disk,
      // which the idmapped mount shows as the sandbox's root.
      if (mkdirat(subvolume->dir.get(), "upper", 0755) < 0) return Errno("mkdir", subvolume->path + "/upper");
      if (mkdirat(subvolume->dir.get(), "work", 0700) < 0) return Errno("mkdir", subvolume->path + "/work");
    }
    if (!spec_.seeds.empty()) {
      // Before the child exists, so the overlay never sees a partial copy.
      UniqueFd upper(openat(subvolume->dir.get(), "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!upper) return Errno("open", subvolume->path + "/upper");
      TRY(fs::CopySeeds(spec_.seeds, spec_.layers, upper.get(), subvolume->path + "/upper"));
    }
    Time("storage", t);
  }

  // cgroup v1: the groups (a dozen mkdirs, ~0.5 ms here) are made from now
  // until the child needs them, on a thread the scheduler may place on an
  // idle CPU: this one and the child's setup would otherwise run them in
  // turn. Nothing else touches the record or the cgroups until the join.
  Result<CgroupJoinFiles> v1_join = Fail("cgroup", "not made");
  std::thread cgroup_thread;
  Joiner cgroup_joiner{cgroup_thread};
  if (!any_v2) cgroup_thread = std::thread([&] { v1_join = MakeCgroup(layout); });

  t = NowNs();
  std::vector<seccomp::Program> programs;
  programs.push_back(TRY(seccomp::LoadCached(spec_.seccomp_profile, paths.profiles_dir, paths.cache_dir + "/seccomp")));
  bool has_rw = false;
  for (const auto& m : spec_.mounts) has_rw |= !m.read_only;
  if (has_rw) programs.push_back(TRY(seccomp::CompileSetidFilter()));
  std::vector<sock_fprog> filters;
  for (const auto& p : programs) filters.push_back(p.fprog());
  Time("seccomp", t);

  // Resolve every host path once, before the child exists.
  t = NowNs();
  Zygote* zygote = plan.child_netns || plan.init_in_tree || !options.zygote || !options.zygote->alive()
                       ? nullptr
                       : options.zygote;
  ResolvedSources sources = TRY(ResolveSources(plan, paths, zygote == nullptr));
  Time("resolve-sources", t);

  t = NowNs();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return Errno("socketpair");
  UniqueFd parent_end(sv[0]), child_end(sv[1]);
  std::string stage = paths.StageDir();
  char init_arg0[] = "airlock-init";
  char init_arg1[] = "--oneshot";
  char* init_argv[] = {init_arg0, nullptr, nullptr, nullptr, nullptr, nullptr};
  char* init_envp[] = {nullptr};
  ChildContext ctx;
  ctx.plan = &plan;
  ctx.sock = child_end.get();
  ctx.init_exec_fd = sources.init_exec.get();
  ctx.stage_path = stage.c_str();
  ctx.filters = filters.data();
  ctx.filter_count = static_cast<int>(filters.size());
  ctx.init_argv = init_argv;
  ctx.init_envp = init_envp;
  ctx.send_timings = timing_enabled_;
  char cgroup_arg[32] = "--cgroup-fds=0";
  ctx.init_cgroup_arg = cgroup_arg;
  ctx.init_cgroup_arg_size = sizeof(cgroup_arg);
  char egress_arg[32] = "--egress-fd=0";
  char transparent_arg[] = "--transparent";
  int argc = 1;
  init_argv[argc++] = cgroup_arg;
  if (spec_.net == NetMode::kProxy) {
    init_argv[argc++] = egress_arg;
    if (spec_.egress.transparent) init_argv[argc++] = transparent_arg;
    ctx.init_egress_arg = egress_arg;
    ctx.init_egress_arg_size = sizeof(egress_arg);
  }
  if (options.oneshot) init_argv[argc++] = init_arg1;

  // The child is born in the network namespace the helper thread made: the
  // launching thread enters it for the clone3 only (and for the egress
  // relay's sockets, made there).
  std::optional<net::ScopedNetns> in_netns;
  net::RelaySockets relay;
  UniqueFd egress_child;
  if (!plan.child_netns) {
    if (netns_thread.joinable()) netns_thread.join();
    if (!netns) return std::unexpected(netns.error());
    if (!zygote || spec_.net == NetMode::kProxy) in_netns.emplace(TRY(net::ScopedNetns::Enter(netns->get())));
    if (spec_.net == NetMode::kProxy) TRY(SetUpEgress(netns->get(), relay, egress_child, ctx));
  }
  uint64_t ns_flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                      (plan.clone_time_ns ? CLONE_NEWTIME : 0);
  // cgroup v2: born in init's group, no migration at all.
  if (join.use_clone_into_cgroup) ns_flags |= CLONE_INTO_CGROUP;
  bool cloned = false;
  if (zygote) {
    if (in_netns) TRY(in_netns->Leave());
    in_netns.reset();
    // The child reads its plan first: queued before it exists.
    proto::ChildOptions child_options;
    child_options.stage_path = stage;
    child_options.send_timings = timing_enabled_;
    child_options.oneshot = options.oneshot;
    child_options.egress_count = static_cast<uint32_t>(ctx.egress_count);
    child_options.transparent = spec_.net == NetMode::kProxy && spec_.egress.transparent;
    std::string payload = proto::EncodeChildPlan(plan, filters, child_options);
    if (payload.size() + 8 > proto::kMaxMessage) return Fail("sandbox setup", "launch plan too large for the channel");
    if (int r = proto::SendMessage(parent_end.get(), proto::Type::kPlan, payload); r < 0)
      return ErrnoValue(-r, "send", "launch plan to the sandbox child");
    Time("child-plan", t);
    t = NowNs();
    if (auto z = CloneInZygote(*zygote, ns_flags, netns ? netns->get() : -1, join, ctx); z) {
      cloned = true;
    } else if (zygote->alive()) {
      return std::unexpected(z.error());  // clone3 itself failed (the zygote said why)
    } else {
      // The zygote is gone (it said so once): this launch clones here, and
      // its child expects no plan on the channel.
      (void)proto::ReceiveMessage(child_end.get(), /*dont_wait=*/true);
      sources.init_exec = TRY(InitExecMount(paths));
      ctx.init_exec_fd = sources.init_exec.get();
      in_netns.emplace(TRY(net::ScopedNetns::Enter(netns->get())));
    }
  }
  if (!cloned) {
    int pidfd = -1;
    clone_args args{};
    args.flags = ns_flags | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    if (join.use_clone_into_cgroup) args.cgroup = static_cast<uint64_t>(res_->cgroup->InitDirFd());
    long pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) return Errno("clone3", "new user, pid, mount, uts, ipc namespaces");
    if (pid == 0) {
      parent_end.Reset();
      LinuxSyscalls().SetParentDeathSignal(SIGKILL);
      RunChild(LinuxSyscalls(), ctx);
    }
    init_pid_ = static_cast<pid_t>(pid);
    pidfd_.Reset(pidfd);
  }
  if (in_netns) TRY(in_netns->Leave());
  child_end.Reset();
  egress_child.Reset();
  relay = {};
  channel_ = std::move(parent_end);
  Time("clone", t);

  t = NowNs();
  std::string map = "0 " + std::to_string(res_->ids.base) + " " + std::to_string(res_->ids.count) + "\n";
  TRY(fs::WriteIdMaps(init_pid_, map, map));
  Time("id-maps", t);
  t = NowNs();
  // init must survive its own sandbox's memory pressure (decision 7). The
  // cgroup layout already guarantees it for the sandbox's own limit (an OOM
  // in the workload group only picks victims there); -1000 also shields init
  // from a host-wide OOM. That needs CAP_SYS_RESOURCE, which a container
  // running airlock may lack: then the layout is the only shield.
  if (auto adj = WriteProcFile(init_pid_, "oom_score_adj", "-1000"); !adj && adj.error().err != EACCES)
    return std::unexpected(adj.error());
  Time("oom-score", t);

  if (plan.child_netns) {
    // The child remade the channel in its own network namespace (see the
    // network step); everything from here goes over the new one.
    auto msg = proto::ReceiveMessage(channel_.get());
    if (msg && msg->type == proto::Type::kSetupFailed) return SetupFailure(plan, msg->payload);
    if (!msg || msg->type != proto::Type::kChannel || msg->fds.size() != 1)
      return Fail("sandbox setup", "the child didn't hand over its channel" +
                                       (msg ? std::string() : " (" + msg.error().Message() + ")"));
    channel_ = std::move(msg->fds[0]);
  }

  t = NowNs();
  std::vector<UniqueFd> mounts = TRY(BuildMounts(plan, sources, subvolume ? &*subvolume : nullptr));
  // A send fails (EPIPE) when the child has already failed a step and
  // exited: its report is then waiting on the channel, and the loop below
  // reads it; the send error is only the fallback.
  std::optional<Error> send_failed;
  std::vector<int> raw;
  for (const auto& m : mounts) raw.push_back(m.get());
  if (int r = proto::SendMessage(channel_.get(), proto::Type::kGo, "", raw); r < 0)
    send_failed = Error{-r, "send", "mount descriptors to the sandbox child"};
  mounts.clear();
  Time("idmap-mounts", t);

  t = NowNs();
  if (!any_v2) {
    cgroup_thread.join();
    if (!v1_join) return std::unexpected(v1_join.error());
    join = std::move(*v1_join);
  }
  if (!send_failed)
    if (int r = proto::SendMessage(channel_.get(), proto::Type::kGo, "", join.fds); r < 0)
      send_failed = Error{-r, "send", "cgroup descriptors to the sandbox child"};
  join.owned.clear();
  Time("cgroup", t);

  // On v1 the spawner places itself before it reads any request, so the
  // first command can be queued now, behind the setup messages; init
  // forwards it as soon as it runs.
  if (options.first_process && !join.use_clone_into_cgroup && !send_failed)
    if (auto sent = Exec(*options.first_process, options.first_stdio); !sent) send_failed = sent.error();

  // The child runs its steps; it answers with a failure record or, once it
  // is airlock-init, a hello.
  t = NowNs();
  TRY(AwaitInit(plan, send_failed));
  Time("await-init", t);

  t = NowNs();
  TRY(PlaceSpawner(join.use_clone_into_cgroup));
  Time("place-spawner", t);
  if (options.first_process && join.use_clone_into_cgroup) TRY(Exec(*options.first_process, options.first_stdio));
  return {};
}

Result<void> Sandbox::Exec(const ProcessSpec& process, std::span<const int> stdio) {
  proto::ExecRequest req = proto::MakeExecRequest(1, process);
  std::string payload = proto::Encode(req);
  if (payload.size() + 8 > proto::kMaxMessage)
    return Fail("exec", "command line and environment exceed " + std::to_string(proto::kMaxMessage / 1024) + " KiB");
  if (int r = proto::SendMessage(channel_.get(), proto::Type::kExec, payload, stdio); r < 0)
    return ErrnoValue(-r, "send", "exec request to airlock-init");
  return {};
}

Result<Outcome> Sandbox::WaitOneShot(int signal_fd) {
  uint64_t t = NowNs();
  Outcome out;
  bool have_result = false, timed_out = false;
  const bool has_deadline = spec_.timeout.count() > 0;
  const uint64_t deadline = NowNs() + static_cast<uint64_t>(spec_.timeout.count()) * 1000000ull;
  bool channel_open = true;
  while (!reaped_) {
    pollfd fds[3] = {{pidfd_.get(), POLLIN, 0}, {channel_open ? channel_.get() : -1, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    int wait_ms = -1;
    if (has_deadline && !timed_out) {
      uint64_t now = NowNs();
      wait_ms = now >= deadline ? 0 : static_cast<int>((deadline - now + 999999) / 1000000);
    }
    int n = poll(fds, 3, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("poll", "sandbox");
    }
    if (n == 0 && has_deadline && !timed_out) {
      timed_out = true;
      syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
      continue;
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(signal_fd, &si, sizeof(si)) == sizeof(si))
        syscall(SYS_pidfd_send_signal, pidfd_.get(), static_cast<int>(si.ssi_signo), nullptr, 0);
    }
    // Everything init said before it died is still queued: read it all
    // before reaping, or an exit report racing init's own exit is lost.
    const bool init_exited = fds[0].revents & POLLIN;
    if (fds[1].revents || (init_exited && channel_open)) {
      for (;;) {
        auto msg = proto::ReceiveMessage(channel_.get(), /*dont_wait=*/true);
        if (!msg) {
          if (msg.error().err != EAGAIN) channel_open = false;  // EOF, or garbage: init's death tells the rest
          break;
        }
        if (msg->type == proto::Type::kExited && !have_result) {
          auto e = proto::DecodeExited(msg->payload);
          if (e) {
            Time("command-exited", t);
            have_result = true;
            out.kind = e->signal ? Outcome::Kind::kSignaled : Outcome::Kind::kExited;
            out.code = e->code;
            out.signal = e->signal;
          }
        } else if (msg->type == proto::Type::kExecFailed && !have_result) {
          auto f = proto::DecodeExecFailed(msg->payload);
          if (f) {
            have_result = true;
            out.kind = Outcome::Kind::kExecFailed;
            out.exec_errno = f->err;
            static const char* kStages[] = {"fork", "set user", "chdir", "stdio", "exec"};
            out.exec_stage = kStages[static_cast<int>(f->stage)];
          }
        }
      }
    }
    if (init_exited) {
      int status = 0;
      if (waitpid(init_pid_, &status, 0) == init_pid_) {
        reaped_ = true;
        init_wait_status_ = status;
      }
    }
  }
  if (timed_out && !have_result) {
    out.kind = Outcome::Kind::kTimedOut;
  } else if (!have_result) {
    out.kind = Outcome::Kind::kInitDied;
    if (WIFSIGNALED(init_wait_status_)) out.signal = WTERMSIG(init_wait_status_);
    else out.code = WEXITSTATUS(init_wait_status_);
  }
  Time("command", t);
  if (res_->cgroup) {
    auto ev = res_->cgroup->ReadEvents();
    if (ev) {
      out.oom_killed = ev->oom_kills > 0;
      out.pids_limit_hits = ev->pids_max_hits;
    }
  }
  return out;
}

Result<void> Sandbox::Destroy() {
  if (!res_) return {};
  if (cleaner_link_) {
    // The cleaner owns the resources; ending init is all that is left here.
    if (init_pid_ > 0 && !reaped_) syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    if (res_->cgroup) res_->cgroup->Release();
    res_.reset();
    cleaner_link_.Reset();
    return {};
  }
  uint64_t t = NowNs();
  Result<void> first;
  auto keep = [&](Result<void> r) {
    if (!r && first) first = std::move(r);
  };
  if (init_pid_ > 0 && !reaped_) {
    // Killing a pid namespace's init kills every process in it.
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    int status;
    if (waitpid(init_pid_, &status, 0) == init_pid_) reaped_ = true;
  }
  channel_.Reset();
  if (res_->cgroup) {
    keep(reaped_ ? res_->cgroup->RemoveEmptied() : res_->cgroup->Remove());
    res_->cgroup.reset();
  }
  if (res_->has_subvolume && res_->pool) {
    keep(res_->pool->DeleteSubvolume(spec_.id));
    res_->has_subvolume = false;
  }
  if (res_->has_ids) {
    storage::IdAllocator allocator(res_->idranges_path);
    allocator.set_durable(res_->durable_ids);
    keep(allocator.Release(spec_.id));
    res_->has_ids = false;
  }
  // Keep the record when something couldn't be undone: the next start retries.
  if (res_->record) {
    if (first) res_->record->Remove();
    res_->record.reset();
  }
  res_.reset();
  Time("teardown", t);
  return first;
}

Result<void> Sandbox::HandOffTeardown(std::span<const int> release_at_exit) {
  if (!res_ || cleaner_link_) return {};
  int link[2];
  if (pipe2(link, O_CLOEXEC) < 0) return Errno("pipe2", "teardown hand-off");
  UniqueFd read_end(link[0]), write_end(link[1]);
  pid_t cleaner = fork();
  if (cleaner < 0) return Errno("fork", "teardown cleaner");
  if (cleaner == 0) {
    // The cleaner: off the caller's terminal and pipes, so a caller reading
    // our output sees EOF when the command is done, not when we are.
    write_end.Reset();
    channel_.Reset();
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3 && null >= 0; ++fd) dup2(null, fd);
    // 1. The launching process is gone (it may still read the cgroup's
    //    events until then). 2. init has exited: the pid namespace, its
    //    processes and its mounts are gone with it. init is not our child:
    //    its parent, or the subreaper that inherits it, reaps it.
    char c;
    while (read(read_end.get(), &c, 1) < 0 && errno == EINTR) {
    }
    if (!reaped_) {
      syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
      pollfd p{pidfd_.get(), POLLIN, 0};
      while (poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
      reaped_ = true;
    }
    // The sandbox's mounts went with its init: what pinned them can go.
    for (int fd : release_at_exit) close(fd);
    _exit(Destroy() ? 0 : 1);
  }
  cleaner_link_ = std::move(write_end);
  return {};
}

Result<cgroups::Events> Sandbox::ReadCgroupEvents() const {
  if (!res_ || !res_->cgroup) return Fail("cgroup events", "sandbox " + spec_.id + " has no cgroup");
  return res_->cgroup->ReadEvents();
}

Result<cgroups::Usage> Sandbox::ReadUsage() const {
  if (!res_ || !res_->cgroup) return Fail("cgroup usage", "sandbox " + spec_.id + " has no cgroup");
  return res_->cgroup->ReadUsage();
}

Result<uint64_t> Sandbox::ReadDiskUsage() const {
  if (!res_) return Fail("disk usage", "sandbox " + spec_.id + " is gone");
  if (res_->has_subvolume && res_->pool) return res_->pool->SubvolumeUsage(spec_.id);
  const std::string root = "/proc/" + std::to_string(init_pid_) + "/root/";
  struct statfs st;
  if (statfs(root.c_str(), &st) != 0) return Errno("statfs", root);
  return static_cast<uint64_t>(st.f_blocks - st.f_bfree) * static_cast<uint64_t>(st.f_bsize);
}

Result<void> Sandbox::Freeze() {
  if (!res_ || !res_->cgroup) return Fail("freeze", "sandbox " + spec_.id + " has no cgroup");
  return res_->cgroup->Freeze();
}

Result<void> Sandbox::Thaw() {
  if (!res_ || !res_->cgroup) return Fail("thaw", "sandbox " + spec_.id + " has no cgroup");
  return res_->cgroup->Thaw();
}

Sandbox::~Sandbox() { Destroy(); }

}  // namespace airlock

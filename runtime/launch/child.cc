// The child's launch steps. Each step is a function of the syscall seam and
// the context; it returns 0 or a StepFailure's errno and item. Nothing here
// allocates: the plan was built before clone, paths are split into stack
// buffers.
#include "runtime/launch/child.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/mount.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace airlock {
namespace {

constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
constexpr const char* kInitInTree = "dev/.airlock-init";

struct StepError {
  int err;
  int item = -1;
};
using StepResult = std::optional<StepError>;  // nullopt: success

#define STEP_CHECK(expr, item)                     \
  do {                                             \
    int _r = (expr);                               \
    if (_r < 0) return StepError{-_r, (item)};     \
  } while (0)

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Applies "k=v,flag" options to an fs context.
int ConfigureOptions(Syscalls& sys, int fsfd, const char* options) {
  char buf[256];
  size_t len = strlen(options);
  if (len >= sizeof(buf)) return -ENAMETOOLONG;
  memcpy(buf, options, len + 1);
  char* save = nullptr;
  for (char* opt = strtok_r(buf, ",", &save); opt != nullptr; opt = strtok_r(nullptr, ",", &save)) {
    char* eq = strchr(opt, '=');
    int r;
    if (eq != nullptr) {
      *eq = '\0';
      r = sys.FsConfigString(fsfd, opt, eq + 1);
    } else {
      r = sys.FsConfigFlag(fsfd, opt);
    }
    if (r < 0) return r;
  }
  return 0;
}

// A new detached mount of `fstype` with `options`. Returns the mount fd or -errno.
int NewMount(Syscalls& sys, const char* fstype, const char* options, uint64_t attr) {
  int fsfd = sys.FsOpen(fstype);
  if (fsfd < 0) return fsfd;
  int r = ConfigureOptions(sys, fsfd, options);
  if (r == 0) r = sys.FsConfigCreate(fsfd);
  if (r == 0) r = sys.FsMount(fsfd, static_cast<unsigned>(attr));
  sys.Close(fsfd);
  return r;
}

// The last parent directory resolved beneath the new root: consecutive
// targets mostly share one (proc/…, dev/…), which saves re-walking it.
struct DirCache {
  int fd = -1;
  char path[512] = {};
};

void DropDirCache(Syscalls& sys, DirCache& cache) {
  if (cache.fd >= 0) sys.Close(cache.fd);
  cache.fd = -1;
  cache.path[0] = '\0';
}

// A mount on `target` covers what a cached fd of it (or of a directory below
// it) refers to: forget it.
void MountedOn(Syscalls& sys, DirCache& cache, const char* target) {
  size_t n = strlen(target);
  if (cache.fd >= 0 && strncmp(cache.path, target, n) == 0 && (cache.path[n] == '\0' || cache.path[n] == '/'))
    DropDirCache(sys, cache);
}

// Opens the directory holding `rel`'s last component beneath `root`,
// creating missing directories one component at a time; a symlink anywhere
// on the way is refused (ELOOP). Returns the parent fd, owned by `cache`
// (valid until the next call), and points *leaf into `buf`.
int OpenParentBeneath(Syscalls& sys, int root, const char* rel, char* buf, size_t bufsize,
                      const char** leaf, bool create, DirCache& cache) {
  size_t len = strlen(rel);
  if (len == 0 || len >= bufsize || len >= sizeof(cache.path)) return -ENAMETOOLONG;
  memcpy(buf, rel, len + 1);
  char* slash = strrchr(buf, '/');
  char* parent = buf + len;  // "" when rel has no slash
  if (slash != nullptr) {
    *slash = '\0';
    *leaf = slash + 1;
    parent = buf;
  } else {
    *leaf = buf;
  }
  if (cache.fd >= 0 && strcmp(cache.path, parent) == 0) return cache.fd;
  char parent_copy[sizeof(cache.path)];
  strcpy(parent_copy, parent);
  int dir = sys.OpenBeneath(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kBeneath);
  if (dir < 0) return dir;
  char* save = nullptr;
  for (char* part = strtok_r(parent, "/", &save); part != nullptr; part = strtok_r(nullptr, "/", &save)) {
    int next = sys.OpenBeneath(dir, part, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kBeneath);
    if (next == -ENOENT && create) {
      int r = sys.MkdirAt(dir, part, 0755);
      if (r < 0 && r != -EEXIST) {
        sys.Close(dir);
        return r;
      }
      next = sys.OpenBeneath(dir, part, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kBeneath);
    }
    sys.Close(dir);
    if (next < 0) return next;
    dir = next;
  }
  DropDirCache(sys, cache);
  cache.fd = dir;
  strcpy(cache.path, parent_copy);
  return dir;
}

// Opens (creating if asked) the mountpoint `rel` beneath `root` as O_PATH.
int OpenMountpoint(Syscalls& sys, int root, const char* rel, bool is_file, bool create, DirCache& cache) {
  char buf[4096];
  const char* leaf = nullptr;
  int dir = OpenParentBeneath(sys, root, rel, buf, sizeof(buf), &leaf, create, cache);
  if (dir < 0) return dir;
  int fd = sys.OpenBeneath(dir, leaf, O_PATH | O_CLOEXEC | (is_file ? 0 : O_DIRECTORY), 0, kBeneath);
  if (fd == -ENOENT && create) {
    if (is_file) {
      int f = sys.OpenBeneath(dir, leaf, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644, kBeneath);
      if (f >= 0) sys.Close(f);
      else if (f != -EEXIST) fd = f;
    } else {
      int r = sys.MkdirAt(dir, leaf, 0755);
      if (r < 0 && r != -EEXIST) fd = r;
    }
    if (fd == -ENOENT)
      fd = sys.OpenBeneath(dir, leaf, O_PATH | O_CLOEXEC | (is_file ? 0 : O_DIRECTORY), 0, kBeneath);
  }
  return fd;
}

int Attach(Syscalls& sys, int mount_fd, int target_fd) {
  return sys.MoveMount(mount_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

// ---- the steps --------------------------------------------------------------

StepResult ReceivePlan(Syscalls&, ChildContext&) {
  // A zygote's child decodes its plan before the steps run (it needs the
  // plan to run them: runtime/init/zygote.cc); a forked child has it already.
  return {};
}

StepResult Network(Syscalls& sys, ChildContext& ctx) {
  // Only for a checkpointable sandbox (see LaunchPlan::child_netns); first,
  // so that it overlaps the parent's work on the id maps and mounts.
  if (!ctx.plan->child_netns) return {};
  STEP_CHECK(sys.Unshare(CLONE_NEWNET), -1);
  STEP_CHECK(sys.LoopbackUp(), -1);
  // A socket belongs to the network namespace it was made in, and CRIU finds
  // sockets through that namespace's sock_diag: the channel to the runtime
  // is remade here, and the runtime's end sent back over the old one.
  int sv[2];
  STEP_CHECK(sys.SocketPair(sv), -1);
  STEP_CHECK(sys.SendFd(ctx.sock, static_cast<uint16_t>(proto::Type::kChannel), sv[0]), -1);
  sys.Close(sv[0]);
  sys.Close(ctx.sock);
  ctx.sock = sv[1];
  return {};
}

StepResult AwaitParent(Syscalls& sys, ChildContext& ctx) {
  int n = sys.ReceiveFds(ctx.sock, ctx.fds, proto::kMaxFds);
  if (n < 0) return StepError{-n};
  if (n != static_cast<int>(ctx.plan->sources.size())) return StepError{EPROTO};
  ctx.fd_count = n;
  return {};
}

StepResult SetIds(Syscalls& sys, ChildContext& ctx) {
  STEP_CHECK(sys.SetIds(0, 0), -1);
  // Changing credentials cleared the parent-death signal: set it again, then
  // make sure the parent didn't die before it was set.
  STEP_CHECK(sys.SetParentDeathSignal(SIGKILL), -1);
  if (sys.PeerHungUp(ctx.sock)) return StepError{EPIPE};
  return {};
}

enum CgroupList { kGroupList = 0, kInitList = 1, kWorkList = 2 };

int JoinCgroups(Syscalls& sys, const ChildContext& ctx, CgroupList list) {
  for (int i = 0; i < ctx.cg_per_list; ++i) {
    int r = sys.WriteAll(ctx.cg_fds[list * ctx.cg_per_list + i], "0", 1);
    if (r < 0) return r;
  }
  return 0;
}

StepResult CgroupNamespace(Syscalls& sys, ChildContext& ctx) {
  // The parent made the cgroups while this process set up its mounts.
  int n = sys.ReceiveFds(ctx.sock, ctx.cg_fds, proto::kMaxFds);
  STEP_CHECK(n, -1);
  if (n % 3 != 0) return StepError{EPROTO};
  ctx.cg_per_list = n / 3;
  // The cgroup namespace is made while in the sandbox's group, so that group
  // is its root and init sees itself in /init, commands in /work.
  STEP_CHECK(JoinCgroups(sys, ctx, kGroupList), 0);
  STEP_CHECK(sys.Unshare(ctx.plan->late_unshare_flags), -1);
  STEP_CHECK(JoinCgroups(sys, ctx, kInitList), 1);
  return {};
}

StepResult MakePrivate(Syscalls& sys, ChildContext&) {
  // The mount namespace is a copy of the host's; without this, mounts could
  // propagate back to the host's peer groups.
  STEP_CHECK(sys.Mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), -1);
  return {};
}

StepResult Stage(Syscalls& sys, ChildContext& ctx) {
  int mnt = NewMount(sys, "tmpfs", "mode=0700", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  STEP_CHECK(mnt, -1);
  STEP_CHECK(sys.MoveMount(mnt, "", AT_FDCWD, ctx.stage_path, MOVE_MOUNT_F_EMPTY_PATH), -1);
  ctx.stage_fd = mnt;
  // overlayfs takes its layers as path strings: relative ones resolve from
  // the working directory, which is the stage from here on.
  STEP_CHECK(sys.Fchdir(mnt), -1);
  return {};
}

StepResult AttachLayers(Syscalls& sys, ChildContext& ctx) {
  const LaunchPlan& plan = *ctx.plan;
  for (int i = 0; i < plan.layer_count; ++i) {
    char name[16];
    snprintf(name, sizeof(name), "l%d", i);
    STEP_CHECK(sys.MkdirAt(ctx.stage_fd, name, 0700), i);
    STEP_CHECK(sys.MoveMount(ctx.fds[i], "", ctx.stage_fd, name, MOVE_MOUNT_F_EMPTY_PATH), i);
  }
  STEP_CHECK(sys.MkdirAt(ctx.stage_fd, "rw", 0755), plan.upper_source);
  if (plan.upper_source >= 0) {
    STEP_CHECK(sys.MoveMount(ctx.fds[plan.upper_source], "", ctx.stage_fd, "rw", MOVE_MOUNT_F_EMPTY_PATH),
               plan.upper_source);
  } else {
    STEP_CHECK(sys.MkdirAt(ctx.stage_fd, "rw/upper", 0755), -1);
    STEP_CHECK(sys.MkdirAt(ctx.stage_fd, "rw/work", 0700), -1);
  }
  return {};
}

StepResult Overlay(Syscalls& sys, ChildContext& ctx) {
  int fsfd = sys.FsOpen("overlay");
  STEP_CHECK(fsfd, -1);
  int r = sys.FsConfigString(fsfd, "lowerdir", ctx.plan->overlay_lowerdir.c_str());
  if (r == 0) r = sys.FsConfigString(fsfd, "upperdir", "rw/upper");
  if (r == 0) r = sys.FsConfigString(fsfd, "workdir", "rw/work");
  // Mounted inside the user namespace: overlay keeps its metadata in user.*
  // xattrs, so the writable layer can move to another id range.
  if (r == 0) r = sys.FsConfigFlag(fsfd, "userxattr");
  if (r == 0) r = sys.FsConfigCreate(fsfd);
  int mnt = r == 0 ? sys.FsMount(fsfd, 0) : r;
  sys.Close(fsfd);
  STEP_CHECK(mnt, -1);
  STEP_CHECK(sys.MkdirAt(ctx.stage_fd, "root", 0755), -1);
  STEP_CHECK(sys.MoveMount(mnt, "", ctx.stage_fd, "root", MOVE_MOUNT_F_EMPTY_PATH), -1);
  sys.Close(mnt);
  ctx.root_fd = sys.OpenBeneath(ctx.stage_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kBeneath);
  STEP_CHECK(ctx.root_fd, -1);
  return {};
}

int MountOne(Syscalls& sys, ChildContext& ctx, const PlannedMount& m, DirCache& cache) {
  const int root = ctx.root_fd;
  const char* target = m.target.c_str();
  switch (m.op) {
    case MountOp::kParentFd: {
      int src = ctx.fds[m.fd_index];
      int dir = sys.IsDirectory(src);
      if (dir < 0) return dir;
      int t = OpenMountpoint(sys, root, target, dir == 0, true, cache);
      if (t < 0) return t;
      int r = Attach(sys, src, t);
      sys.Close(t);
      return r;
    }
    case MountOp::kTmpfs:
    case MountOp::kProc:
    case MountOp::kMaskDir:
    case MountOp::kDevpts: {
      int t = OpenMountpoint(sys, root, target, false, !m.optional, cache);
      if (t < 0) return t;
      const char* fstype = m.op == MountOp::kProc ? "proc" : m.op == MountOp::kDevpts ? "devpts" : "tmpfs";
      int mnt = NewMount(sys, fstype, m.data.c_str(), m.attr);
      int r = mnt < 0 ? mnt : Attach(sys, mnt, t);
      if (mnt >= 0) sys.Close(mnt);
      sys.Close(t);
      return r;
    }
    case MountOp::kUsernsLimit: {
      char buf[4096];
      const char* leaf = nullptr;
      int dir = OpenParentBeneath(sys, root, target, buf, sizeof(buf), &leaf, false, cache);
      if (dir < 0) return dir;
      int fd = sys.OpenBeneath(dir, leaf, O_WRONLY | O_CLOEXEC, 0, kBeneath);
      if (fd < 0) return fd;
      int r = sys.WriteAll(fd, "0\n", 2);
      sys.Close(fd);
      return r;
    }
    case MountOp::kMaskFile:
    case MountOp::kHostDevice: {
      int t = OpenMountpoint(sys, root, target, true, m.op == MountOp::kHostDevice, cache);
      if (t < 0) return t;
      // Before pivot_root the host's /dev is still the child's /dev.
      const char* source = m.op == MountOp::kHostDevice ? m.data.c_str() : "/dev/null";
      int src = sys.OpenTree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
      int r = src;
      if (src >= 0 && m.attr != 0) r = sys.MountSetattr(src, "", AT_EMPTY_PATH, m.attr, 0);
      if (r >= 0) r = Attach(sys, src, t);
      if (src >= 0) sys.Close(src);
      sys.Close(t);
      return r;
    }
    case MountOp::kReadOnly: {
      int t = OpenMountpoint(sys, root, target, false, false, cache);
      if (t == -ENOTDIR) t = OpenMountpoint(sys, root, target, true, false, cache);
      if (t < 0) return t;
      int src = sys.OpenTree(t, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
      int r = src;
      if (src >= 0)
        r = sys.MountSetattr(src, "", AT_EMPTY_PATH | AT_RECURSIVE,
                             MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0);
      if (r >= 0) r = Attach(sys, src, t);
      if (src >= 0) sys.Close(src);
      sys.Close(t);
      return r;
    }
    case MountOp::kSymlink: {
      char buf[4096];
      const char* leaf = nullptr;
      int dir = OpenParentBeneath(sys, root, target, buf, sizeof(buf), &leaf, true, cache);
      if (dir < 0) return dir;
      int r = sys.SymlinkAt(m.data.c_str(), dir, leaf);
      return r == -EEXIST ? 0 : r;
    }
  }
  return -EINVAL;
}

StepResult Mounts(Syscalls& sys, ChildContext& ctx) {
  const auto& mounts = ctx.plan->mounts;
  DirCache cache;
  for (size_t i = 0; i < mounts.size(); ++i) {
    int r = MountOne(sys, ctx, mounts[i], cache);
    if (r >= 0 && mounts[i].op != MountOp::kSymlink && mounts[i].op != MountOp::kUsernsLimit)
      MountedOn(sys, cache, mounts[i].target.c_str());
    if (r == -ENOENT && mounts[i].optional) continue;
    if (r < 0) DropDirCache(sys, cache);
    STEP_CHECK(r, static_cast<int>(i));
  }
  if (ctx.plan->init_in_tree) {
    // The fd keeps naming the same mount once it is attached: the exec
    // below maps the file from a mount inside the sandbox's namespace.
    int t = OpenMountpoint(sys, ctx.root_fd, kInitInTree, true, true, cache);
    int r = t < 0 ? t : Attach(sys, ctx.init_exec_fd, t);
    if (t >= 0) sys.Close(t);
    DropDirCache(sys, cache);
    STEP_CHECK(r, static_cast<int>(mounts.size()));
  }
  DropDirCache(sys, cache);
  return {};
}

StepResult PivotRoot(Syscalls& sys, ChildContext& ctx) {
  // pivot_root(".", ".") stacks the old root on top of the new one; the
  // detach then drops the whole host tree from this namespace, including the
  // stage and every layer's original mount.
  STEP_CHECK(sys.Fchdir(ctx.root_fd), -1);
  STEP_CHECK(sys.PivotRoot(".", "."), -1);
  STEP_CHECK(sys.Umount2(".", MNT_DETACH), -1);
  STEP_CHECK(sys.Chdir("/"), -1);
  return {};
}

// Descriptors are first lifted to kLiftBase and up (F_DUPFD takes the
// lowest free number there, so nothing is overwritten), then placed at the
// small fixed numbers init expects: 0-2 the sandbox's /dev/null, 3 the
// channel, 4.. the workload group's tasks files, then the exec fd.
constexpr int kLiftBase = 256;
static_assert(kLiftBase > proto::kInitCgroupFdBase + proto::kMaxFds);

StepResult Stdio(Syscalls& sys, ChildContext& ctx) {
  int null = sys.OpenBeneath(AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC, 0, 0);
  STEP_CHECK(null, -1);
  ctx.sock = sys.DupAbove(ctx.sock, kLiftBase);
  STEP_CHECK(ctx.sock, -1);
  if (ctx.init_exec_fd >= 0) {
    ctx.init_exec_fd = sys.DupAbove(ctx.init_exec_fd, kLiftBase);
    STEP_CHECK(ctx.init_exec_fd, -1);
  }
  for (int i = 0; i < 3 * ctx.cg_per_list; ++i) {
    ctx.cg_fds[i] = sys.DupAbove(ctx.cg_fds[i], kLiftBase);
    STEP_CHECK(ctx.cg_fds[i], i);
  }
  for (int i = 0; i < ctx.egress_count; ++i) {
    ctx.egress_fds[i] = sys.DupAbove(ctx.egress_fds[i], kLiftBase);
    STEP_CHECK(ctx.egress_fds[i], i);
  }
  for (int fd = 0; fd < 3; ++fd) STEP_CHECK(sys.Dup2(null, fd), -1);
  STEP_CHECK(sys.Dup2(ctx.sock, proto::kInitChannelFd), -1);  // not close-on-exec
  ctx.sock = proto::kInitChannelFd;
  return {};
}

StepResult Hostname(Syscalls& sys, ChildContext& ctx) {
  const auto& h = ctx.plan->spec.hostname;
  STEP_CHECK(sys.SetHostname(h.c_str(), h.size()), -1);
  return {};
}

StepResult Rlimits(Syscalls& sys, ChildContext& ctx) {
  const auto& l = ctx.plan->spec.limits;
  rlimit nofile{l.nofile, l.nofile};
  STEP_CHECK(sys.SetRlimit(RLIMIT_NOFILE, nofile), 0);
  rlimit core{0, 0};
  STEP_CHECK(sys.SetRlimit(RLIMIT_CORE, core), 1);
  if (l.fsize_bytes) {
    rlimit fsize{*l.fsize_bytes, *l.fsize_bytes};
    STEP_CHECK(sys.SetRlimit(RLIMIT_FSIZE, fsize), 2);
  }
  return {};
}

StepResult Capabilities(Syscalls& sys, ChildContext& ctx) {
  const auto& caps = ctx.plan->dropped_caps;
  for (size_t i = 0; i < caps.size(); ++i) STEP_CHECK(sys.DropBoundingCap(caps[i]), static_cast<int>(i));
  STEP_CHECK(sys.LimitCapabilities(), -1);
  return {};
}

StepResult NoNewPrivs(Syscalls& sys, ChildContext&) {
  STEP_CHECK(sys.SetNoNewPrivs(), -1);
  return {};
}

StepResult Seccomp(Syscalls& sys, ChildContext& ctx) {
  for (int i = 0; i < ctx.filter_count; ++i) STEP_CHECK(sys.InstallSeccomp(ctx.filters[i]), i);
  return {};
}

// Arranges init's descriptors: 3 the channel, 4.. the workload group's
// cgroup v1 `tasks` files (the spawner init forks moves itself with them,
// then both close them: by the time anything untrusted runs, neither holds
// a host descriptor), the exec fd after them, close-on-exec. Before seccomp,
// so that the profile only has to allow the exec itself.
StepResult InitFds(Syscalls& sys, ChildContext& ctx) {
  // A session of its own (CRIU needs init to lead one inside the pid
  // namespace), and off the caller's terminal: its ^C goes to airlock run,
  // which forwards it.
  STEP_CHECK(sys.Setsid(), -1);
  const int n = ctx.cg_per_list;
  const int* work = ctx.cg_fds + kWorkList * n;
  // Every source sits at kLiftBase or above (Stdio): these can't clobber one.
  for (int i = 0; i < n; ++i) STEP_CHECK(sys.Dup2(work[i], proto::kInitCgroupFdBase + i), i);
  const int exec_fd = proto::kInitCgroupFdBase + n;
  if (ctx.init_exec_fd >= 0) {
    STEP_CHECK(sys.Dup2(ctx.init_exec_fd, exec_fd), -1);
    STEP_CHECK(sys.SetCloexec(exec_fd, true), -1);
  } else {
    sys.Close(exec_fd);  // no exec: the slot stays empty (whatever held it closes)
  }
  // The egress channel and the relay's sockets follow, inherited by init.
  for (int i = 0; i < ctx.egress_count; ++i) STEP_CHECK(sys.Dup2(ctx.egress_fds[i], exec_fd + 1 + i), i);
  STEP_CHECK(sys.CloseRangeFrom(static_cast<unsigned>(exec_fd + 1 + ctx.egress_count)), -1);
  ctx.init_exec_fd = exec_fd;
  if (ctx.init_cgroup_arg != nullptr)
    snprintf(ctx.init_cgroup_arg, ctx.init_cgroup_arg_size, "--cgroup-fds=%d", n);
  if (ctx.init_egress_arg != nullptr)
    snprintf(ctx.init_egress_arg, ctx.init_egress_arg_size, "--egress-fd=%d", exec_fd + 1);
  if (ctx.send_timings) {
    // Sent now: after seccomp the profile may allow nothing but the exec.
    // The last three steps' times are missing from it.
    char msg[8 + sizeof(ctx.step_ns)];
    uint16_t version = proto::kVersion, type = static_cast<uint16_t>(proto::Type::kTimings);
    uint32_t len = sizeof(ctx.step_ns);
    memcpy(msg, &version, 2);
    memcpy(msg + 2, &type, 2);
    memcpy(msg + 4, &len, 4);
    memcpy(msg + 8, ctx.step_ns, sizeof(ctx.step_ns));
    sys.Send(ctx.sock, msg, sizeof(msg));
  }
  return {};
}

// Becomes airlock-init, under everything the steps set up (seccomp
// included): the profile must allow execveat.
StepResult ExecInit(Syscalls& sys, ChildContext& ctx) {
  if (ctx.become_init != nullptr) ctx.become_init(ctx.init_argv);
  STEP_CHECK(sys.ExecveAt(ctx.init_exec_fd, ctx.init_argv, ctx.init_envp), -1);
  return {};
}

using StepFn = StepResult (*)(Syscalls&, ChildContext&);
constexpr StepFn kSteps[] = {
    ReceivePlan, Network,     AwaitParent, SetIds,   MakePrivate, Stage,        AttachLayers,
    Overlay,     Mounts,      CgroupNamespace, PivotRoot, Stdio,   Hostname,
    Rlimits,     InitFds,     Capabilities, NoNewPrivs, Seccomp,  ExecInit,
};
static_assert(sizeof(kSteps) / sizeof(kSteps[0]) == static_cast<size_t>(ChildStep::kCount));

}  // namespace

std::optional<StepFailure> RunChildSteps(Syscalls& sys, ChildContext& ctx) {
  for (int i = 0; i < static_cast<int>(ChildStep::kCount); ++i) {
    uint64_t start = ctx.send_timings ? NowNs() : 0;
    StepResult r = kSteps[i](sys, ctx);
    if (r) return StepFailure{static_cast<ChildStep>(i), r->err, r->item};
    if (ctx.send_timings) ctx.step_ns[i] += NowNs() - start;  // kReceivePlan's is the zygote's
  }
  return std::nullopt;
}

void RunChild(Syscalls& sys, ChildContext& ctx) {
  auto failure = RunChildSteps(sys, ctx);
  if (failure) proto::SendSetupFailed(ctx.sock, static_cast<uint32_t>(failure->step), failure->err, failure->item);
  _exit(125);
}

}  // namespace airlock

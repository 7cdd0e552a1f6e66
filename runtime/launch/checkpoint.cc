// Sandbox's checkpoint and restore with CRIU (docs/criu.md): what the
// runtime does around libcriu so that a sandbox comes back whole.
#include <dirent.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <linux/filter.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "runtime/cgroups/cgroup.h"
#include "runtime/checkpoint/criu.h"
#include "runtime/checkpoint/preflight.h"
#include "runtime/core/kernel_check.h"
#include "runtime/core/paths.h"
#include "runtime/fs/sources.h"
#include "runtime/launch/internal.h"
#include "runtime/launch/sandbox.h"
#include "runtime/proto/channel.h"
#include "runtime/security/seccomp.h"
#include "runtime/security/setid_filter.h"
#include "runtime/storage/idrange.h"

namespace airlock {
using launch_internal::HostMountKey;
using launch_internal::kRoNoSuidNoDev;
using launch_internal::WriteProcFile;

uint32_t Sandbox::id_base() const { return res_ && res_->has_ids ? res_->ids.base : 0; }

Result<std::string> Sandbox::ChannelKey() const {
  std::string link = "/proc/" + std::to_string(init_pid_) + "/fd/" + std::to_string(proto::kInitChannelFd);
  char buf[64];
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) return Errno("readlink", link);
  std::string key(buf, static_cast<size_t>(n));
  if (!key.starts_with("socket:[")) return Fail("checkpoint", link + " is not init's channel socket: " + key);
  return key;
}

Result<void> Sandbox::Checkpoint(int images_dir_fd, bool leave_running,
                                 const std::function<Result<void>()>& while_stopped) {
  if (!checkpointable_)
    return Fail("checkpoint", "the sandbox wasn't started checkpointable (LaunchOptions::checkpointable)");
  if (reaped_) return Fail("checkpoint", "the sandbox has ended");
  // Seen in the guest lane: CRIU makes the restored network namespace in
  // the host's user namespace, and then can't dump it ("One or more
  // namespaces doesn't belong to the target user namespace").
  if (restored_)
    return Fail("checkpoint", "sandbox " + spec_.id + " was itself restored from CRIU images, and CRIU 3.17 can't "
                              "checkpoint a tree it restored; its filesystem can still be snapshotted");
  TRY(checkpoint::CheckCheckpointable(init_pid_));
  auto criu = TRY(checkpoint::Criu::Load());
  std::string key = TRY(ChannelKey());
  // A restore opens images from inside the restored user namespace, with
  // two sets of credentials: most after it became the sandbox's root (seen:
  // "Unable to open tty-info.img: Permission denied" when they were root's),
  // but timens-N.img in a window where the uid map may not be written yet
  // (criu/cr-restore.c calls prepare_timens before it waits for
  // prepare_userns), as host root with no capability over the images. So:
  // owned by the sandbox's root id, readable through group 0 (host root's
  // fsgid in both states), nothing for others.
  if (fchown(images_dir_fd, res_->ids.base, 0) < 0) return Errno("chown", "CRIU images directory");
  if (fchmod(images_dir_fd, 0750) < 0) return Errno("chmod", "CRIU images directory");
  checkpoint::DumpOptions d;
  d.pid = init_pid_;
  d.images_dir_fd = images_dir_fd;
  d.leave_running = leave_running;
  d.external_unix_sockets = false;
  // init's channel is the one socket whose peer is outside the tree; every
  // bind from the host (layers, /usr, device nodes, masks, init's binary,
  // host mounts) is an external mount a restore supplies again.
  d.externals = {"unix[" + key.substr(8, key.size() - 9) + "]"};
  // Host mounts by name: a restore hands them back idmapped as they were
  // (CRIU 3.17 would bring an idmapped bind back as a plain one).
  for (size_t i = 0; i < spec_.mounts.size(); ++i)
    d.externals.push_back("mnt[" + spec_.mounts[i].destination + "]:" + HostMountKey(i));
  d.externals.push_back("mnt[]");
  d.while_stopped = while_stopped;
  TRY(criu->Dump(d));
  // Its files too, the same way. The listing gets a description of its own:
  // a dup() would share the caller's (and CRIU's) directory offset.
  UniqueFd dir(openat(images_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* listing = dir ? fdopendir(dir.Release()) : nullptr;
  if (listing == nullptr) return Errno("opendir", "CRIU images directory");
  while (dirent* e = readdir(listing)) {
    if (e->d_name[0] == '.') continue;
    if (fchownat(dirfd(listing), e->d_name, res_->ids.base, 0, AT_SYMLINK_NOFOLLOW) < 0 ||
        fchmodat(dirfd(listing), e->d_name, 0640, 0) < 0) {
      int err = errno;
      closedir(listing);
      return ErrnoValue(err, "chown", std::string("CRIU image ") + e->d_name);
    }
  }
  closedir(listing);
  return {};
}

Result<std::unique_ptr<Sandbox>> Sandbox::Restore(const SandboxSpec& spec, const RestoreRequest& request,
                                                  const RuntimePaths& paths, const LaunchOptions& options) {
  TRY(ValidateSpec(spec));
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->spec_ = spec;
  sb->res_ = std::make_unique<Resources>();
  sb->timing_enabled_ = options.timings;
  sb->checkpointable_ = true;
  sb->restored_ = true;
  if (auto restored = sb->RestoreTree(request, paths); !restored) {
    sb->Destroy();
    return std::unexpected(restored.error());
  }
  return sb;
}

namespace {

// Sets user.max_user_namespaces to 0 in the user namespace of `pid`: the
// limit is per namespace, and a restore makes a new one, at the maximum.
Result<void> ShutNestedUserns(pid_t pid) {
  std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/user";
  UniqueFd ns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return Errno("open", ns_path);
  pid_t helper = fork();
  if (helper < 0) return Errno("fork", "user namespace limit");
  if (helper == 0) {
    // Joining a user namespace gives every capability in it, which is what
    // writing its limit takes; /proc/sys/user shows the writer's namespace.
    if (setns(ns.get(), CLONE_NEWUSER) < 0) _exit(1);
    int fd = open("/proc/sys/user/max_user_namespaces", O_WRONLY | O_CLOEXEC);
    _exit(fd >= 0 && write(fd, "0\n", 2) == 2 ? 0 : 2);
  }
  int status = 0;
  waitpid(helper, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Fail("restore", "couldn't set user.max_user_namespaces to 0 in the restored user namespace");
  return {};
}

std::string StatusLine(pid_t pid, const char* field) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  char buf[4096];
  ssize_t n = read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string text(buf, static_cast<size_t>(n));
  size_t at = text.find(std::string("\n") + field + ":");
  if (at == std::string::npos) return {};
  size_t end = text.find('\n', at + 1);
  std::string value = text.substr(at + strlen(field) + 2, end - at - strlen(field) - 2);
  value.erase(0, value.find_first_not_of(" \t"));
  return value;
}

// The seccomp filters `pid` runs under, in the order they were installed
// (PTRACE_SECCOMP_GET_FILTER's index 0 is the oldest: kernel/seccomp.c's
// get_nth_filter walks back from the newest), read in a ptrace stop.
Result<std::vector<std::vector<sock_filter>>> ReadSeccompFilters(pid_t pid) {
  if (ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) < 0) return Errno("ptrace seize", "restored init");
  std::vector<std::vector<sock_filter>> out;
  auto read = [&]() -> Result<void> {
    if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) < 0) return Errno("ptrace interrupt", "restored init");
    int status = 0;
    if (waitpid(pid, &status, __WALL) != pid) return Errno("waitpid", "restored init's ptrace stop");
    if (!WIFSTOPPED(status)) return Fail("restore", "the restored init ended while its filters were read");
    for (unsigned long i = 0; i < 64; ++i) {
      long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, reinterpret_cast<void*>(i), nullptr);
      if (n < 0 && errno == ENOENT) break;  // past the oldest
      if (n < 0) return Errno("ptrace seccomp filter", "restored init");
      std::vector<sock_filter> insns(static_cast<size_t>(n));
      if (ptrace(PTRACE_SECCOMP_GET_FILTER, pid, reinterpret_cast<void*>(i), insns.data()) != n)
        return Errno("ptrace seccomp filter", "restored init");
      out.push_back(std::move(insns));
    }
    return {};
  }();
  ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  if (!read) return std::unexpected(read.error());
  return out;
}

bool SameProgram(const std::vector<sock_filter>& a, const std::vector<sock_filter>& b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(sock_filter)) == 0);
}

}  // namespace

Result<void> Sandbox::CheckRestoredSeccomp(const RuntimePaths& paths) {
  // What a launch of this spec installs, in order (sandbox.cc): the profile,
  // then the set-id filter when a host mount is writable.
  std::vector<std::vector<sock_filter>> want;
  want.push_back(TRY(seccomp::LoadCached(spec_.seccomp_profile, paths.profiles_dir, paths.cache_dir + "/seccomp")).insns);
  bool has_rw = false;
  for (const auto& m : spec_.mounts) has_rw |= !m.read_only;
  if (has_rw) want.push_back(TRY(seccomp::CompileSetidFilter()).insns);
  auto got = TRY(ReadSeccompFilters(init_pid_));
  bool same = got.size() == want.size();
  for (size_t i = 0; same && i < want.size(); ++i) same = SameProgram(got[i], want[i]);
  if (!same)
    return Fail("restore", "the restored init's seccomp filters (" + std::to_string(got.size()) +
                               ") are not those of the sandbox's profile \"" + spec_.seccomp_profile + "\" (" +
                               std::to_string(want.size()) + "): refused");
  return {};
}

Result<void> Sandbox::MountRestoreRoot(const RuntimePaths& paths, const std::string& staging,
                                       std::vector<std::string>& mounted) {
  if (spec_.from_snapshot.empty())
    return Fail("restore", "no root given and no pool snapshot (spec.from_snapshot) to make one from");
  res_->pool.emplace(TRY(storage::Pool::Open({paths.PoolImage(), paths.PoolMountpoint(), 0})));
  TRY(res_->record->Note("subvolume", spec_.id));
  storage::Subvolume layer =
      TRY(res_->pool->CreateSubvolumeFrom(spec_.from_snapshot, spec_.id, spec_.limits.disk_bytes));
  res_->has_subvolume = true;
  // As a launch makes it (DESIGN decision 1): the image's layers and the
  // writable layer hold canonical ids, idmapped into the sandbox's range.
  // The overlay is mounted here, in the host's namespaces, with its
  // metadata in user.* xattrs as the sandbox's own overlay keeps it.
  const std::string range = "0 " + std::to_string(res_->ids.base) + " " + std::to_string(res_->ids.count) + "\n";
  UniqueFd userns = TRY(fs::MakeIdmapUserns(range, range));
  auto attach = [&](UniqueFd mnt, const std::string& name) -> Result<std::string> {
    std::string at = staging + "/" + name;
    if (mkdir(at.c_str(), 0700) < 0) return Errno("mkdir", at);
    if (syscall(SYS_move_mount, mnt.get(), "", AT_FDCWD, at.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      int err = errno;
      rmdir(at.c_str());
      return ErrnoValue(err, "move_mount", at);
    }
    mounted.push_back(at);
    return at;
  };
  std::string lowerdir;
  for (size_t i = 0; i < spec_.layers.size(); ++i) {
    UniqueFd src = TRY(fs::OpenHostPath(spec_.layers[i]));
    UniqueFd mnt = TRY(fs::CloneMount(src.get(), spec_.layers[i], kRoNoSuidNoDev, userns.get()));
    lowerdir += (i ? ":" : "") + TRY(attach(std::move(mnt), "l" + std::to_string(i)));
  }
  UniqueFd rw = TRY(fs::CloneMount(layer.dir.get(), layer.path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, userns.get()));
  const std::string upper = TRY(attach(std::move(rw), "rw"));
  const std::string root = staging + "/root";
  if (mkdir(root.c_str(), 0755) < 0) return Errno("mkdir", root);
  const std::string options =
      "lowerdir=" + lowerdir + ",upperdir=" + upper + "/upper,workdir=" + upper + "/work,userxattr";
  if (mount("overlay", root.c_str(), "overlay", MS_NOSUID | MS_NODEV, options.c_str()) < 0) {
    int err = errno;
    rmdir(root.c_str());
    return ErrnoValue(err, "mount", "overlay root for the restore at " + root);
  }
  mounted.push_back(root);
  return {};
}

Result<void> Sandbox::RestoreTree(const RestoreRequest& request, const RuntimePaths& paths) {
  if (!request.root.empty() && (!request.root.starts_with("/") || request.root.find("/../") != std::string::npos))
    return Fail("restore", "root must be an absolute path (got \"" + request.root + "\")");
  TRY(CheckKernel());
  TRY(PrepareRuntimeDirs(paths));
  TRY(CleanupStaleSandboxes(paths));
  res_->record.emplace(TRY(SandboxRecord::Create(paths, spec_.id)));
  res_->idranges_path = paths.IdRanges();
  TRY(res_->record->Note("idrange", spec_.id));
  storage::IdAllocator allocator(paths.IdRanges());
  res_->ids = storage::IdRange{request.id_base, storage::kIdRangeSize};
  TRY(allocator.Reserve(spec_.id, res_->ids));
  res_->has_ids = true;

  // The sandbox's groups, with their limits, before any task arrives
  // (CRIU restores membership, not limits).
  cgroups::Layout layout = TRY(cgroups::DetectLayout());
  CgroupJoinFiles join = TRY(MakeCgroup(layout));
  join.owned.clear();
  std::string cgroup_root;
  const std::string group_suffix = "/airlock-" + spec_.id;
  for (const auto& p : res_->cgroup->Paths())
    for (const auto& h : layout.hierarchies)
      if (p.ends_with(group_suffix) && p.starts_with(h.mountpoint + "/"))
        cgroup_root = p.substr(h.mountpoint.size());

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return Errno("socketpair");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  auto criu = TRY(checkpoint::Criu::Load());
  checkpoint::RestoreOptions r;
  r.images_dir_fd = request.images_dir_fd;
  r.root = request.root;
  r.inherit_fds = {{theirs.get(), request.channel_key}};
  // Each host mount, made again as the launch makes it (idmapped for rw) and
  // attached where CRIU can bind it from, in this mount namespace; the
  // mountpoints in the new root too (they were in the writable layer).
  std::string staging = paths.run_root + "/restore-" + spec_.id;
  struct Staging {
    std::string dir;
    std::vector<std::string> mounts;  // unmounted in reverse: the root's layers last
    ~Staging() {
      for (auto m = mounts.rbegin(); m != mounts.rend(); ++m) {
        umount2(m->c_str(), MNT_DETACH);
        rmdir(m->c_str());
      }
      if (!dir.empty()) rmdir(dir.c_str());
    }
  } staged;
  if (!spec_.mounts.empty() || request.root.empty()) {
    if (mkdir(staging.c_str(), 0700) < 0 && errno != EEXIST) return Errno("mkdir", staging);
    staged.dir = staging;
    // CRIU binds these from inside the restored user namespace: only host
    // root and the sandbox's root id may walk in.
    if (chown(staging.c_str(), res_->ids.base, res_->ids.base) < 0) return Errno("chown", staging);
  }
  if (request.root.empty()) {
    r.root = staging + "/root";
    TRY(MountRestoreRoot(paths, staging, staged.mounts));
  }
  const std::string& root = r.root;
  for (size_t i = 0; i < spec_.mounts.size(); ++i) {
    const HostMount& m = spec_.mounts[i];
    UniqueFd src = TRY(fs::OpenHostPath(m.source));
    struct stat st;
    if (fstat(src.get(), &st) < 0) return Errno("stat", m.source);
    UniqueFd mnt;
    if (m.read_only) {
      mnt = TRY(fs::CloneMount(src.get(), m.source, kRoNoSuidNoDev, -1));
    } else {
      if (st.st_uid == 0 && !m.allow_root_owner) return Fail("mount source", m.source + " is owned by root");
      UniqueFd ns = TRY(fs::MakeSingleIdUserns(st.st_uid, res_->ids.base + spec_.process.uid, st.st_gid,
                                               res_->ids.base + spec_.process.gid));
      mnt = TRY(fs::CloneMount(src.get(), m.source, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, ns.get()));
    }
    std::string at = staging + "/" + HostMountKey(i);
    if (S_ISDIR(st.st_mode)) {
      if (mkdir(at.c_str(), 0700) < 0) return Errno("mkdir", at);
    } else {
      UniqueFd f(open(at.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
      if (!f) return Errno("create", at);
    }
    if (syscall(SYS_move_mount, mnt.get(), "", AT_FDCWD, at.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0)
      return Errno("move_mount", at);
    staged.mounts.push_back(at);
    r.externals.push_back("mnt[" + HostMountKey(i) + "]:" + at);
    // The mountpoint in the new root (it was in the writable layer). The
    // root is the runtime's own tree, before anything of the sandbox runs.
    if (S_ISDIR(st.st_mode)) TRY(MakeDirs(root + m.destination));
  }
  r.externals.push_back("mnt[]");
  r.cgroup_root = cgroup_root;
  init_pid_ = TRY(criu->Restore(r));
  theirs.Reset();
  channel_ = std::move(ours);
  pidfd_.Reset(static_cast<int>(syscall(SYS_pidfd_open, init_pid_, 0)));
  if (!pidfd_) return Errno("pidfd_open", "restored init");

  // The namespaces CRIU made from the images must be the sandbox's: its
  // user namespace maps exactly the range reserved for it.
  {
    std::ifstream map("/proc/" + std::to_string(init_pid_) + "/uid_map");
    uint64_t inside = 1, outside = 0, count = 0;
    if (!(map >> inside >> outside >> count) || inside != 0 || outside != res_->ids.base || count != res_->ids.count)
      return Fail("restore", "the restored init's user namespace doesn't map the sandbox's id range " +
                                 std::to_string(res_->ids.base) + "+" + std::to_string(res_->ids.count) + ": refused");
  }
  // What CRIU doesn't bring back, or can't from inside the user namespace.
  if (auto adj = WriteProcFile(init_pid_, "oom_score_adj", "-1000"); !adj && adj.error().err != EACCES)
    return std::unexpected(adj.error());
  TRY(ShutNestedUserns(init_pid_));
  if (StatusLine(init_pid_, "Seccomp") != "2")
    return Fail("restore", "the restored init has no seccomp filter (Seccomp: " + StatusLine(init_pid_, "Seccomp") + ")");
  TRY(CheckRestoredSeccomp(paths));
  if (StatusLine(init_pid_, "NoNewPrivs") != "1")
    restore_warnings_.push_back("CRIU did not restore no_new_privs of init (pid " + std::to_string(init_pid_) +
                                "); mounts are nosuid and the bounding set is reduced");

  // init answers on the channel it was handed.
  if (int e = proto::SendMessage(channel_.get(), proto::Type::kHello, proto::EncodeHello()); e < 0)
    return ErrnoValue(-e, "send", "hello to the restored init");
  auto hello = TRY(proto::ReceiveMessage(channel_.get()));
  if (hello.type != proto::Type::kHello) return Fail("restore", "the restored init didn't answer the hello");
  TRY(proto::DecodeHello(hello.payload));
  return {};
}

}  // namespace airlock

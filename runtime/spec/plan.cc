#include "runtime/spec/plan.h"

#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>

#include <algorithm>

namespace airlock {
namespace {

// Paths under /proc a sandbox must not read (kernel memory, other tenants'
// keys, timing side channels), as Docker and Podman mask them. (kallsyms
// shows zeros without CAP_SYSLOG in the host's namespace; kpage* are 0400
// host root: no need to cover them.) Missing ones are skipped.
constexpr const char* kMaskedProcFiles[] = {
    "proc/kcore",       "proc/keys",        "proc/latency_stats",
    "proc/timer_list",  "proc/timer_stats", "proc/sched_debug",
};
constexpr const char* kMaskedProcDirs[] = {"proc/acpi", "proc/scsi", "proc/asound", "proc/firmware"};
// Writable knobs of the whole machine: read-only.
constexpr const char* kReadOnlyProc[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys",
                                         "proc/sysrq-trigger"};
constexpr const char* kDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};

constexpr uint64_t kNoSuidNoDev = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

std::string Relative(const std::string& absolute) { return absolute.substr(1); }

}  // namespace

const char* ChildStepName(ChildStep step) {
  switch (step) {
    case ChildStep::kReceivePlan: return "receive-plan";
    case ChildStep::kNetwork: return "network";
    case ChildStep::kAwaitParent: return "await-parent";
    case ChildStep::kSetIds: return "set-ids";
    case ChildStep::kCgroupNamespace: return "cgroup-namespace";
    case ChildStep::kMakePrivate: return "make-private";
    case ChildStep::kStage: return "stage";
    case ChildStep::kAttachLayers: return "attach-layers";
    case ChildStep::kOverlay: return "mount-overlay";
    case ChildStep::kMounts: return "mounts";
    case ChildStep::kPivotRoot: return "pivot-root";
    case ChildStep::kStdio: return "stdio";
    case ChildStep::kHostname: return "hostname";
    case ChildStep::kRlimits: return "rlimits";
    case ChildStep::kCapabilities: return "capabilities";
    case ChildStep::kNoNewPrivs: return "no-new-privs";
    case ChildStep::kSeccomp: return "seccomp";
    case ChildStep::kInitFds: return "init-fds";
    case ChildStep::kExecInit: return "exec-init";
    case ChildStep::kCount: break;
  }
  return "unknown";
}

std::vector<int> KeptCapabilities() {
  return {CAP_CHOWN,        CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
          CAP_SETGID,       CAP_SETUID,       CAP_SETFCAP,          CAP_SETPCAP,
          CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL,           CAP_AUDIT_WRITE};
}

Result<LaunchPlan> BuildLaunchPlan(const SandboxSpec& spec, bool upper_on_pool, bool has_time_ns) {
  TRY(ValidateSpec(spec));
  LaunchPlan plan;
  plan.spec = spec;

  for (size_t i = 0; i < spec.layers.size(); ++i) {
    plan.sources.push_back({PlannedSource::kLayer, spec.layers[i]});
    if (i > 0) plan.overlay_lowerdir += ':';
    plan.overlay_lowerdir += "l" + std::to_string(i);
  }
  plan.layer_count = static_cast<int>(spec.layers.size());
  if (upper_on_pool) {
    plan.upper_source = static_cast<int>(plan.sources.size());
    plan.sources.push_back({PlannedSource::kUpper, ""});  // the runtime fills in the subvolume
  }

  auto& m = plan.mounts;
  for (const auto& bind : spec.image_binds) {
    m.push_back({MountOp::kParentFd, Relative(bind.destination), "", 0, static_cast<int>(plan.sources.size())});
    plan.sources.push_back({PlannedSource::kImageBind, bind.source});
  }

  m.push_back({MountOp::kProc, "proc", "", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC});
  // Nested user namespaces are shut twice: seccomp filters the clone flags,
  // and the per-namespace limit is 0 (a restore's new namespace must redo it).
  m.push_back({MountOp::kUsernsLimit, "proc/sys/user/max_user_namespaces"});
  for (const char* f : kMaskedProcFiles) m.push_back({MountOp::kMaskFile, f, "", 0, -1, true, true});
  for (const char* d : kMaskedProcDirs)
    m.push_back({MountOp::kMaskDir, d, "mode=0555,size=0,nr_inodes=1", MOUNT_ATTR_RDONLY | kNoSuidNoDev, -1, false, true});
  for (const char* r : kReadOnlyProc) m.push_back({MountOp::kReadOnly, r, "", 0, -1, false, true});

  m.push_back({MountOp::kTmpfs, "dev", "mode=0755,size=64k,nr_inodes=256", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC});
  for (const char* dev : kDevices)
    m.push_back({MountOp::kHostDevice, std::string("dev/") + dev, std::string("/dev/") + dev,
                 MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, -1, true});
  m.push_back({MountOp::kDevpts, "dev/pts", "newinstance,ptmxmode=0666,mode=0620",
               MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC});
  m.push_back({MountOp::kSymlink, "dev/ptmx", "pts/ptmx"});
  m.push_back({MountOp::kTmpfs, "dev/shm", "mode=1777", kNoSuidNoDev});
  m.push_back({MountOp::kSymlink, "dev/fd", "/proc/self/fd"});
  m.push_back({MountOp::kSymlink, "dev/stdin", "/proc/self/fd/0"});
  m.push_back({MountOp::kSymlink, "dev/stdout", "/proc/self/fd/1"});
  m.push_back({MountOp::kSymlink, "dev/stderr", "/proc/self/fd/2"});
  m.push_back({MountOp::kTmpfs, "tmp", "mode=1777", kNoSuidNoDev});

  // Host mounts last, so nothing the plan adds can cover them.
  for (const auto& hm : spec.mounts) {
    m.push_back({MountOp::kParentFd, Relative(hm.destination), "", 0, static_cast<int>(plan.sources.size())});
    plan.sources.push_back({hm.read_only ? PlannedSource::kHostRO : PlannedSource::kHostRW, hm.source,
                            hm.allow_root_owner, hm.source_fd});
  }

  std::vector<int> kept = KeptCapabilities();
  for (int cap = 0; cap <= CAP_LAST_CAP + 8; ++cap)
    if (std::find(kept.begin(), kept.end(), cap) == kept.end()) plan.dropped_caps.push_back(cap);

  plan.late_unshare_flags = CLONE_NEWCGROUP;
  // The time namespace comes with clone3, so init itself is in it: after an
  // unshare only init's children would be, and CRIU refuses such a tree
  // ("Can't dump nested time namespace"), seen in the guest lane.
  plan.clone_time_ns = has_time_ns;
  return plan;
}

}  // namespace airlock

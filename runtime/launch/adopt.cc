// Sandbox::Adopt: a restarted daemon takes its running sandboxes back.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "runtime/launch/internal.h"
#include "runtime/launch/sandbox.h"
#include "runtime/storage/idrange.h"

namespace airlock {
namespace {

// The pid a pidfd refers to, from /proc/self/fdinfo ("Pid:\t123"); -1 once
// the process is gone (the kernel then reports -1).
pid_t PidOfPidfd(int pidfd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(pidfd));
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("Pid:")) return static_cast<pid_t>(std::stol(line.substr(4)));
  return -1;
}

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::Adopt(const SandboxSpec& spec, const RuntimePaths& paths, UniqueFd channel,
                                                UniqueFd pidfd, UniqueFd egress, AdoptOrigin how) {
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->spec_ = spec;
  sb->checkpointable_ = how.checkpointable;
  sb->restored_ = how.restored;
  sb->res_ = std::make_unique<Resources>();
  RecordNotes notes;
  sb->res_->record = TRY(SandboxRecord::Adopt(paths, spec.id, &notes));
  if (syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) < 0) return Errno("adopt", spec.id + ": init is gone");
  pid_t pid = PidOfPidfd(pidfd.get());
  if (pid <= 0) return ErrnoValue(ESRCH, "adopt", spec.id + ": init is gone");
  // The pidfd pins the process, so /proc/<pid> is it while it lives: it must
  // sit in this sandbox's init group.
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  std::stringstream text;
  text << cg.rdbuf();
  if (text.str().find("/airlock-" + spec.id + "/init\n") == std::string::npos)
    return Fail("adopt", spec.id + ": pid " + std::to_string(pid) + " is not the sandbox's init");
  auto layout = TRY(cgroups::DetectLayout());
  sb->res_->cgroup = TRY(cgroups::SandboxCgroup::Attach(layout, spec.id));
  if (!notes.subvolumes.empty()) {
    sb->res_->pool = TRY(storage::Pool::Open({paths.PoolImage(), paths.PoolMountpoint(), 0}));
    sb->res_->has_subvolume = true;
  }
  if (!notes.idranges.empty()) {
    sb->res_->has_ids = true;
    sb->res_->durable_ids = false;
    sb->res_->idranges_path = paths.IdRanges();
    // Its range as the kernel holds it: init's uid map, "0 <base> <count>".
    std::ifstream map("/proc/" + std::to_string(pid) + "/uid_map");
    uint32_t inside = 1, base = 0, count = 0;
    if (!(map >> inside >> base >> count) || inside != 0 || count != storage::kIdRangeSize)
      return Fail("adopt", spec.id + ": init's uid map is not a sandbox's id range");
    sb->res_->ids = storage::IdRange{base, count};
  }
  sb->init_pid_ = pid;
  sb->pidfd_ = std::move(pidfd);
  sb->channel_ = std::move(channel);
  sb->egress_ = std::move(egress);
  return sb;
}

}  // namespace airlock

// airlock-init: PID 1 of every sandbox.
//
// It is exec'd by the launch child after the jail is complete: the seccomp
// filter, the reduced bounding set and no_new_privs already apply to it. It
// holds the channel to the runtime (fd 3) and, on cgroup v1, the workload
// group's `tasks` files (fds 4..). It makes itself non-dumpable (it already
// leads its session, as CRIU needs), forks the spawner, which moves itself
// into the workload group by writing "0" to those files (a self-move skips
// the kernel's global threadgroup lock), and closes them; so does init. Then
// init greets the runtime and:
//   - forwards exec requests (with their stdin/stdout/stderr) to the spawner,
//     which forks each command with CLONE_PARENT so that init is its parent
//     and the only source of its exit status;
//   - reaps every process and reports commands' exits;
//   - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
//     to the running commands;
//   - in --oneshot mode exits with the first command's status.
// Commands (and fork bombs) thus never share init's cgroup.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/proto/channel.h"

namespace airlock::init {
namespace {

using proto::Type;

constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

// Messages from the spawner to init (inside the sandbox only).
struct SpawnReport {
  uint32_t id;
  int32_t pid;     // pid of the command, or -1
  int32_t err;     // 0 on success
  uint32_t stage;  // proto::ExecStage when err != 0
};

[[noreturn]] void Die(int code) { _exit(code); }

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int s : kForwardedSignals) sigaddset(&set, s);
  return set;
}

// The command's child side: runs between clone and execve, reports failures
// through `report_fd` (close-on-exec, so a successful exec closes it).
// With `as_spawn_report` the failure goes out as a SpawnReport (the
// one-shot spawner reports straight to init), else as {stage, errno}.
[[noreturn]] void ExecCommand(const proto::ExecRequest& req, const std::vector<UniqueFd>& stdio,
                              int report_fd, bool as_spawn_report) {
  auto fail = [&](proto::ExecStage stage) {
    int err = errno;
    if (as_spawn_report) {
      SpawnReport r{req.id, static_cast<int32_t>(getpid()), err, static_cast<uint32_t>(stage)};
      (void)!write(report_fd, &r, sizeof(r));
    } else {
      int32_t rec[2] = {static_cast<int32_t>(stage), err};
      (void)!write(report_fd, rec, sizeof(rec));
    }
    _exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  for (int s : kForwardedSignals) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setsid() < 0) fail(proto::ExecStage::kIdentity);
  std::vector<gid_t> groups(req.groups.begin(), req.groups.end());
  if (syscall(SYS_setgroups, groups.size(), groups.data()) < 0) fail(proto::ExecStage::kIdentity);
  if (syscall(SYS_setresgid, req.gid, req.gid, req.gid) < 0) fail(proto::ExecStage::kIdentity);
  if (syscall(SYS_setresuid, req.uid, req.uid, req.uid) < 0) fail(proto::ExecStage::kIdentity);
  if (chdir(req.cwd.c_str()) < 0) fail(proto::ExecStage::kChdir);
  // Move the report pipe out of the way of 0-2 before installing stdio.
  int high = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  if (high < 0) fail(proto::ExecStage::kStdio);
  report_fd = high;
  for (int i = 0; i < 3; ++i) {
    int fd = i < static_cast<int>(stdio.size()) ? stdio[i].get() : -1;
    if (fd < 0) {
      fd = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (fd < 0) fail(proto::ExecStage::kStdio);
    }
    if (fd == i) {
      if (fcntl(i, F_SETFD, 0) < 0) fail(proto::ExecStage::kStdio);
    } else if (dup2(fd, i) < 0) {
      fail(proto::ExecStage::kStdio);
    }
  }
  // A command starts with stdin, stdout and stderr only.
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail(proto::ExecStage::kStdio);
  if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0) fail(proto::ExecStage::kStdio);
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  // execvpe searches the PATH of the calling process's environment; give it
  // the command's own.
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : req.env)
    if (e.starts_with("PATH=")) path = e.substr(5);
  setenv("PATH", path.c_str(), 1);
  execvpe(argv[0], argv.data(), envp.data());
  fail(proto::ExecStage::kExec);
  _exit(127);
}

// The spawner: forks commands on request. It runs in the workload cgroup.
// In one-shot mode it becomes the one command itself (one process creation
// fewer): a failure is reported on `sock`, success closes it (close-on-exec).
[[noreturn]] void SpawnerMain(int sock, bool oneshot) {
  for (;;) {
    auto msg = proto::ReceiveMessage(sock);
    if (!msg) Die(msg.error().err == 0 ? 0 : 1);
    if (msg->type != Type::kExec) continue;
    auto req = proto::DecodeExecRequest(msg->payload);
    if (!req) continue;
    if (oneshot) ExecCommand(*req, msg->fds, sock, /*as_spawn_report=*/true);
    SpawnReport report{req->id, -1, 0, 0};
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
      report.err = errno;
      report.stage = static_cast<uint32_t>(proto::ExecStage::kFork);
    } else {
      // CLONE_PARENT: the command becomes init's child, so its exit status
      // reaches init and nothing else.
      long pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
      if (pid == 0) {
        close(pipefd[0]);
        ExecCommand(*req, msg->fds, pipefd[1], /*as_spawn_report=*/false);
      }
      close(pipefd[1]);
      if (pid < 0) {
        report.err = errno;
        report.stage = static_cast<uint32_t>(proto::ExecStage::kFork);
      } else {
        report.pid = static_cast<int32_t>(pid);
        int32_t rec[2];
        ssize_t n;
        do {
          n = read(pipefd[0], rec, sizeof(rec));
        } while (n < 0 && errno == EINTR);
        if (n == sizeof(rec)) {
          report.stage = static_cast<uint32_t>(rec[0]);
          report.err = rec[1] > 0 ? rec[1] : EIO;
        }
      }
      close(pipefd[0]);
    }
    msg->fds.clear();
    (void)!write(sock, &report, sizeof(report));
  }
}

struct Command {
  uint32_t id;
};

class Init {
 public:
  Init(int channel, int cgroup_fds, bool oneshot)
      : channel_(channel), oneshot_(oneshot), cgroup_fds_(cgroup_fds) {}

  [[noreturn]] void Run() {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    sigset_t handled = HandledSignals();
    sigprocmask(SIG_BLOCK, &handled, nullptr);
    sigfd_ = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd_ < 0) Die(125);

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) Die(125);
    pid_t spawner = fork();
    if (spawner < 0) Die(125);
    if (spawner == 0) {
      // init's -1000 (set by the runtime where it may) must not pass to the
      // workload: with memory.oom.group the kernel would find nothing it may
      // kill ("no killable processes") and the sandbox would hang instead of
      // losing a process. Raising one's own score needs no privilege.
      int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      if (adj < 0 || write(adj, "0", 1) != 1) _exit(125);
      close(adj);
      for (int i = 0; i < cgroup_fds_; ++i)
        if (write(proto::kInitCgroupFdBase + i, "0", 1) != 1) _exit(125);
      CloseCgroupFds();
      if (write(sp[1], "p", 1) != 1) _exit(125);  // placed
      close(sp[0]);
      close(channel_);
      close(sigfd_);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      SpawnerMain(sp[1], oneshot_);
    }
    CloseCgroupFds();
    close(sp[1]);
    spawner_sock_ = sp[0];
    spawner_ = spawner;
    // The runtime checks the placement after the hello: wait for it.
    char placed;
    ssize_t n;
    do {
      n = read(spawner_sock_, &placed, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) Die(125);
    std::string hello = proto::EncodeHello();
    if (proto::SendMessage(channel_, Type::kHello, hello) < 0) Die(125);
    Loop();
  }

 private:
  void CloseCgroupFds() {
    for (int i = 0; i < cgroup_fds_; ++i) close(proto::kInitCgroupFdBase + i);
  }

  [[noreturn]] void Loop() {
    for (;;) {
      pollfd fds[3] = {{channel_, POLLIN, 0}, {spawner_sock_, POLLIN, 0}, {sigfd_, POLLIN, 0}};
      int n = poll(fds, 3, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die(125);
      }
      if (fds[2].revents) HandleSignals();
      if (fds[1].revents) HandleSpawner();
      if (fds[0].revents) HandleChannel();
    }
  }

  void HandleChannel() {
    auto msg = proto::ReceiveMessage(channel_);
    // The runtime is gone (or spoke garbage): nothing can be reported any
    // more, so the sandbox ends with init.
    if (!msg) Die(msg.error().err == 0 ? 0 : 125);
    if (msg->type == Type::kHello) {
      // The runtime asks who is there: after a restore, this is how the
      // restored init greets it on the channel it was handed.
      proto::SendMessage(channel_, Type::kHello, proto::EncodeHello());
      return;
    }
    if (msg->type != Type::kExec) return;
    auto req = proto::DecodeExecRequest(msg->payload);
    if (!req) return;
    std::vector<int> fds;
    for (const auto& fd : msg->fds) fds.push_back(fd.get());
    if (oneshot_ && oneshot_command_) return;  // one command only
    if (proto::SendMessage(spawner_sock_, Type::kExec, msg->payload, fds) < 0) {
      proto::ExecFailed f{req->id, EIO, proto::ExecStage::kFork};
      proto::SendMessage(channel_, Type::kExecFailed, proto::Encode(f));
      return;
    }
    if (oneshot_) {
      // The spawner becomes the command.
      oneshot_command_ = true;
      commands_[spawner_] = Command{req->id};
      return;
    }
    ++in_flight_;
    // msg->fds close here: init keeps no descriptor of the caller's.
  }

  void HandleSpawner() {
    SpawnReport r;
    ssize_t n = read(spawner_sock_, &r, sizeof(r));
    if (n != sizeof(r)) {
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) spawner_sock_closed_ = true;
      if (!spawner_sock_closed_) return;
      if (!oneshot_command_) Die(125);
      // One-shot: the spawner's exec closed its end; it is the command now.
      close(spawner_sock_);
      spawner_sock_ = -1;
      proto::Started s{commands_[spawner_].id, static_cast<uint32_t>(spawner_)};
      proto::SendMessage(channel_, Type::kStarted, proto::Encode(s));
      return;
    }
    if (in_flight_ > 0) --in_flight_;
    if (r.err != 0) {
      proto::ExecFailed f{r.id, r.err, static_cast<proto::ExecStage>(r.stage)};
      proto::SendMessage(channel_, Type::kExecFailed, proto::Encode(f));
      if (r.pid > 0 && !early_exits_.erase(r.pid)) failed_pids_.insert({r.pid, true});
      if (oneshot_) Die(r.err == ENOENT ? 127 : 126);
    } else {
      commands_[r.pid] = Command{r.id};
      proto::Started s{r.id, static_cast<uint32_t>(r.pid)};
      proto::SendMessage(channel_, Type::kStarted, proto::Encode(s));
      // The command may have been reaped before its report arrived.
      auto early = early_exits_.find(r.pid);
      if (early != early_exits_.end()) {
        int status = early->second;
        early_exits_.erase(early);
        CommandExited(r.pid, status);
      }
    }
    // With no request in flight, an unknown pid reaped earlier was an orphan.
    if (in_flight_ == 0) early_exits_.clear();
  }

  void HandleSignals() {
    signalfd_siginfo si;
    while (read(sigfd_, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGCHLD) {
        Reap();
      } else {
        for (const auto& [pid, cmd] : commands_) kill(pid, static_cast<int>(si.ssi_signo));
      }
    }
  }

  void Reap() {
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      if (pid == spawner_) {
        if (!oneshot_command_) Die(125);  // no way to run anything any more
        // A failure report written before the spawner's _exit wins over
        // its exit status.
        if (spawner_sock_ >= 0) {
          int flags = fcntl(spawner_sock_, F_GETFL);
          fcntl(spawner_sock_, F_SETFL, flags | O_NONBLOCK);
          HandleSpawner();
        }
        CommandExited(pid, status);
        continue;
      }
      if (failed_pids_.erase(pid)) continue;
      if (commands_.count(pid)) {
        CommandExited(pid, status);
      } else if (in_flight_ > 0) {
        // A command whose report hasn't arrived yet, or an orphan: kept
        // until the spawner's reports catch up.
        early_exits_[pid] = status;
      }
    }
  }

  void CommandExited(pid_t pid, int status) {
    Command cmd = commands_[pid];
    commands_.erase(pid);
    proto::Exited e{cmd.id, 0, 0};
    if (WIFSIGNALED(status)) {
      e.signal = WTERMSIG(status);
    } else {
      e.code = WEXITSTATUS(status);
    }
    proto::SendMessage(channel_, Type::kExited, proto::Encode(e));
    if (oneshot_) Die(e.signal != 0 ? 128 + e.signal : e.code);
  }

  int channel_;
  bool oneshot_;
  int cgroup_fds_;
  int spawner_sock_ = -1;
  pid_t spawner_ = -1;
  int sigfd_ = -1;
  bool spawner_sock_closed_ = false;
  bool oneshot_command_ = false;  // one-shot: the spawner has become the command
  unsigned in_flight_ = 0;
  std::map<pid_t, Command> commands_;
  std::map<pid_t, int> early_exits_;
  std::map<pid_t, bool> failed_pids_;
};

}  // namespace
}  // namespace airlock::init

int main(int argc, char** argv) {
  using airlock::proto::kInitChannelFd;
  if (fcntl(kInitChannelFd, F_GETFD) < 0) return 125;
  bool oneshot = false;
  long cgroup_fds = 0;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--oneshot") == 0) oneshot = true;
    else if (strncmp(argv[i], "--cgroup-fds=", 13) == 0) cgroup_fds = strtol(argv[i] + 13, nullptr, 10);
  }
  if (cgroup_fds < 0 || cgroup_fds > 16) return 125;
  airlock::init::Init init(kInitChannelFd, static_cast<int>(cgroup_fds), oneshot);
  init.Run();
}

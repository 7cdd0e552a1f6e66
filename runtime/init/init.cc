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
//   - forwards exec requests (with their stdin/stdout/stderr) and file
//     operations (with their data fd) to the spawner, which forks each with
//     CLONE_PARENT so that init is its parent and the only source of its
//     exit status; a command with a tty gets a pty the spawner opens, whose
//     master travels spawner -> init -> runtime with the start report;
//   - reaps every process and reports commands' and file operations' exits;
//   - sends a kSignal to one command's process group (or to every one);
//   - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
//     to the running commands;
//   - in --oneshot mode exits with the first command's status;
//   - in network mode proxy (--egress-fd), forks the relay (relay.h), which
//     alone holds the egress channel and the sockets that came after it,
//     and forks another if it dies (a root process inside can kill it), a
//     few times a second at most.
// Commands (and fork bombs) thus never share init's cgroup. A request init
// can't decode is answered with kExecFailed (EINVAL) when its id can be
// read, and otherwise ignored: never fatal.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/init/fileops.h"
#include "runtime/init/relay.h"
#include "runtime/init/zygote.h"
#include "runtime/proto/channel.h"

namespace airlock::init {
namespace {

using proto::Type;

constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
// Signals for commands not started yet, kept while their reports are due.
constexpr size_t kMaxPendingSignals = 1024;
// A relay that died is replaced this long after the last one was forked at
// the earliest: a loop killing it can't make init spin.
constexpr int64_t kRelayForkIntervalMs = 250;

// What the spawner tells init (inside the sandbox only), as the payload of
// a kStarted datagram on their socketpair, so that a pty master can travel
// with it (SCM_RIGHTS).
struct SpawnReport {
  uint32_t id;
  int32_t pid;       // pid of the command or file operation, or -1
  int32_t err;       // 0 on success
  uint32_t stage;    // proto::ExecStage when err != 0
  uint32_t file_op;  // 1 for a file operation
};

int SendReport(int sock, const SpawnReport& r, int fd = -1) noexcept {
  std::string_view payload(reinterpret_cast<const char*>(&r), sizeof(r));
  if (fd < 0) return proto::SendMessage(sock, Type::kStarted, payload);
  return proto::SendMessage(sock, Type::kStarted, payload, std::span<const int>(&fd, 1));
}

[[noreturn]] void Die(int code) { _exit(code); }

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int s : kForwardedSignals) sigaddset(&set, s);
  return set;
}

// A command's stdin, stdout, stderr (-1: /dev/null), and its controlling
// terminal when it has a pty (then all three are that pty's slave).
struct CommandStdio {
  int fds[3] = {-1, -1, -1};
  int ctty = -1;
};

// The command's child side: runs between clone and execve, reports failures
// through `report_fd` (close-on-exec, so a successful exec closes it).
// With `as_spawn_report` the failure goes out as a SpawnReport (the
// one-shot spawner reports straight to init), else as {stage, errno}.
[[noreturn]] void ExecCommand(const proto::ExecRequest& req, const CommandStdio& stdio, int report_fd,
                              bool as_spawn_report) {
  auto fail = [&](proto::ExecStage stage) {
    int err = errno;
    if (as_spawn_report) {
      SendReport(report_fd, SpawnReport{req.id, static_cast<int32_t>(getpid()), err, static_cast<uint32_t>(stage), 0});
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
  if (stdio.ctty >= 0) {
    // A new session has no terminal: the first one it claims is its own.
    if (ioctl(stdio.ctty, TIOCSCTTY, 0) < 0) fail(proto::ExecStage::kStdio);
    // The user owns its terminal, as after a login: programs that reopen
    // /dev/pts/N (or chmod it, like mesg) need that.
    if (fchown(stdio.ctty, req.uid, req.gid) < 0) fail(proto::ExecStage::kStdio);
  }
  if (int err = SetIdentity(req.uid, req.gid, req.groups)) {
    errno = err;
    fail(proto::ExecStage::kIdentity);
  }
  if (chdir(req.cwd.c_str()) < 0) fail(proto::ExecStage::kChdir);
  // Move the report pipe out of the way of 0-2 before installing stdio.
  int high = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  if (high < 0) fail(proto::ExecStage::kStdio);
  report_fd = high;
  for (int i = 0; i < 3; ++i) {
    int fd = stdio.fds[i];
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

struct Pty {
  UniqueFd master, slave;
};

// Opens a pty in the sandbox's own devpts (/dev/ptmx -> pts/ptmx). Returns
// 0 or an errno.
int OpenPty(uint16_t rows, uint16_t cols, Pty* pty) {
  pty->master.Reset(open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty->master) return errno;
  int unlock = 0;
  if (ioctl(pty->master.get(), TIOCSPTLCK, &unlock) < 0) return errno;
  // TIOCGPTPEER opens the slave through the master, not by a /dev/pts path
  // that something else in the sandbox could have replaced.
  pty->slave.Reset(ioctl(pty->master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty->slave) return errno;
  if (rows != 0) {
    winsize ws{rows, cols, 0, 0};
    if (ioctl(pty->master.get(), TIOCSWINSZ, &ws) < 0) return errno;
  }
  return 0;
}

// Forks (or, one-shot, becomes) the command of an exec request.
void SpawnCommand(int sock, const proto::Message& msg, bool oneshot) {
  auto req = proto::DecodeExecRequest(msg.payload);
  if (!req) return;  // init forwards only requests it decoded
  SpawnReport report{req->id, -1, 0, 0, 0};
  CommandStdio stdio;
  Pty pty;
  if (req->tty) {
    if (int err = OpenPty(req->rows, req->cols, &pty)) {
      report.err = err;
      report.stage = static_cast<uint32_t>(proto::ExecStage::kStdio);
      SendReport(sock, report);  // one-shot: init ends the sandbox on it
      return;
    }
    stdio = CommandStdio{{pty.slave.get(), pty.slave.get(), pty.slave.get()}, pty.slave.get()};
  } else {
    for (size_t i = 0; i < 3 && i < msg.fds.size(); ++i) stdio.fds[i] = msg.fds[i].get();
  }
  if (oneshot) {
    // The spawner becomes the command. init keeps the master until the exec
    // closes this socket, and reports it with the start.
    if (pty.master) {
      SendReport(sock, SpawnReport{req->id, static_cast<int32_t>(getpid()), 0, 0, 0}, pty.master.get());
      pty.master.Reset();
    }
    ExecCommand(*req, stdio, sock, /*as_spawn_report=*/true);
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    report.err = errno;
    report.stage = static_cast<uint32_t>(proto::ExecStage::kFork);
    SendReport(sock, report);
    return;
  }
  // CLONE_PARENT: the command becomes init's child, so its exit status
  // reaches init and nothing else.
  long pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
  if (pid == 0) {
    close(pipefd[0]);
    ExecCommand(*req, stdio, pipefd[1], /*as_spawn_report=*/false);
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
  // The slave lives on in the command only: when it exits, the master
  // reads EOF (EIO).
  pty.slave.Reset();
  SendReport(sock, report, report.err == 0 ? pty.master.get() : -1);
}

// Forks the process of a file operation (see fileops.h). It reports
// nothing before its exit: its exit code is its result.
void SpawnFileOp(int sock, const proto::Message& msg) {
  auto req = proto::DecodeFileOpRequest(msg.payload);
  if (!req) return;  // init forwards only requests it decoded
  SpawnReport report{req->id, -1, 0, 0, 1};
  int data = msg.fds.empty() ? -1 : msg.fds[0].get();
  long pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
  if (pid == 0) RunFileOp(*req, data);
  if (pid < 0) {
    report.err = errno;
    report.stage = static_cast<uint32_t>(proto::ExecStage::kFork);
  } else {
    report.pid = static_cast<int32_t>(pid);
  }
  SendReport(sock, report);
}

// The spawner: forks commands and file operations on request. It runs in
// the workload cgroup. In one-shot mode it becomes the one command itself
// (one process creation fewer): a failure is reported on `sock`, success
// closes it (close-on-exec).
[[noreturn]] void SpawnerMain(int sock, bool oneshot) {
  for (;;) {
    auto msg = proto::ReceiveMessage(sock);
    if (!msg) Die(msg.error().err == 0 ? 0 : 1);
    if (msg->type == Type::kExec) SpawnCommand(sock, *msg, oneshot);
    else if (msg->type == Type::kFileOp && !oneshot) SpawnFileOp(sock, *msg);
    // The request's descriptors close here: the spawner keeps none.
  }
}

bool IsEof(const Error& e) { return e.err == 0 && e.op == "channel closed"; }

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// The relay's descriptors (--egress-fd=N): N the egress channel, N+1 the
// proxy port's listener and, with --transparent, N+2 DNS over UDP and N+3
// DNS over TCP. Consecutive; init keeps them (close-on-exec) only to fork
// a new relay.
struct RelayFds {
  int egress = -1, listener = -1, dns_udp = -1, dns_tcp = -1;
  int first() const { return egress; }
  int count() const { return egress < 0 ? 0 : (dns_udp < 0 ? 2 : 4); }
};

struct Command {
  uint32_t id = 0;
  bool file_op = false;
};

class Init {
 public:
  Init(int channel, int cgroup_fds, bool oneshot, RelayFds relay_fds)
      : channel_(channel), oneshot_(oneshot), cgroup_fds_(cgroup_fds), relay_fds_(relay_fds) {}

  [[noreturn]] void Run() {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    // The launch armed a parent-death SIGKILL. It fires when the *thread*
    // that cloned us exits: a daemon's worker thread ending, or the daemon
    // restarting while a keeper holds our channel, must not end a long-lived
    // sandbox. Its end is the channel's EOF instead. One-shot keeps it.
    if (!oneshot_) prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    // Ignored signals survive exec: what the runtime's process ignores (a
    // daemon ignores SIGPIPE) would pass through init to every command.
    for (int s = 1; s < NSIG; ++s)
      if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
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
      // losing a process. Raising one's own score needs no privilege; the
      // file's owner does: a non-dumpable process's /proc files belong to
      // the root of its memory's user namespace, which for an init a
      // zygote cloned (no exec) is the host's. Dumpable for this one write,
      // before anything else runs in the sandbox.
      prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
      int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      if (adj < 0 || write(adj, "0", 1) != 1) _exit(125);
      close(adj);
      prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
      for (int i = 0; i < cgroup_fds_; ++i)
        if (write(proto::kInitCgroupFdBase + i, "0", 1) != 1) _exit(125);
      CloseCgroupFds();
      CloseRelayFds();  // neither the spawner nor its file operations hold them
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
    // init never blocks on the spawner: while it waited for room to send a
    // request, the spawner could be waiting for room to send a report. A
    // full queue fails that request with EAGAIN instead.
    if (fcntl(spawner_sock_, F_SETFL, O_NONBLOCK) < 0) Die(125);
    if (relay_fds_.count() > 0) ForkRelay();
    std::string hello = proto::EncodeHello();
    if (proto::SendMessage(channel_, Type::kHello, hello) < 0) Die(125);
    Loop();
  }

 private:
  void CloseCgroupFds() {
    for (int i = 0; i < cgroup_fds_; ++i) close(proto::kInitCgroupFdBase + i);
  }

  void CloseRelayFds() {
    for (int i = 0; i < relay_fds_.count(); ++i) close(relay_fds_.first() + i);
  }

  // Forks the relay (a failed fork is retried like a death). It keeps its
  // own descriptors and stdio only: not the runtime's channel, the
  // spawner's socket, the signalfd or a pty master.
  void ForkRelay() {
    relay_forked_at_ = MonotonicMs();
    pid_t pid = fork();
    if (pid == 0) {
      const unsigned first = static_cast<unsigned>(relay_fds_.first());
      const unsigned end = first + static_cast<unsigned>(relay_fds_.count());
      if (syscall(SYS_close_range, 3, first - 1, 0) < 0 || syscall(SYS_close_range, end, ~0U, 0) < 0) {
        close(channel_);
        close(spawner_sock_);
        close(sigfd_);
        oneshot_master_.Reset();
      }
      RelayMain(relay_fds_.egress, relay_fds_.listener, relay_fds_.dns_udp, relay_fds_.dns_tcp);
    }
    relay_ = pid;
  }

  // Forks a relay in place of one that died, when it is due; the poll
  // timeout until then (-1: none due).
  int RestartRelay() {
    if (relay_fds_.count() == 0 || relay_ > 0) return -1;
    int64_t wait = relay_forked_at_ + kRelayForkIntervalMs - MonotonicMs();
    if (wait > 0) return static_cast<int>(wait);
    ForkRelay();
    return relay_ > 0 ? -1 : static_cast<int>(kRelayForkIntervalMs);
  }

  void RelayExited(int status) {
    relay_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      // Its egress channel ended: the proxy's end is gone for good, so a
      // new relay would exit at once. Closing the listeners refuses new
      // connections instead of leaving them in the backlog.
      CloseRelayFds();
      relay_fds_ = RelayFds{};
    }
  }

  [[noreturn]] void Loop() {
    for (;;) {
      pollfd fds[3] = {{channel_, POLLIN, 0}, {spawner_sock_, POLLIN, 0}, {sigfd_, POLLIN, 0}};
      int n = poll(fds, 3, RestartRelay());
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
    switch (msg->type) {
      case Type::kHello:
        // The runtime asks who is there: after a restore, this is how the
        // restored init greets it on the channel it was handed.
        proto::SendMessage(channel_, Type::kHello, proto::EncodeHello());
        return;
      case Type::kExec:
        return ForwardExec(*msg);
      case Type::kFileOp:
        return ForwardFileOp(*msg);
      case Type::kSignal:
        return SignalCommand(msg->payload);
      default:
        return;
    }
    // msg->fds close here: init keeps no descriptor of the caller's.
  }

  // Answers a request init won't run, if its id (its first field) can be
  // read, so that whoever sent it isn't left waiting.
  void Refuse(std::string_view payload, int err) {
    if (payload.size() < sizeof(uint32_t)) return;
    uint32_t id;
    memcpy(&id, payload.data(), sizeof(id));
    proto::ExecFailed f{id, err, proto::ExecStage::kFork};
    proto::SendMessage(channel_, Type::kExecFailed, proto::Encode(f));
  }

  // Hands a request to the spawner; false (and the runtime told) if it
  // can't take it now.
  bool ToSpawner(Type type, uint32_t id, const std::string& payload, const std::vector<int>& fds) {
    int r = proto::SendMessage(spawner_sock_, type, payload, fds);
    if (r == 0) return true;
    proto::ExecFailed f{id, r == -EAGAIN ? EAGAIN : EIO, proto::ExecStage::kFork};
    proto::SendMessage(channel_, Type::kExecFailed, proto::Encode(f));
    return false;
  }

  void ForwardExec(const proto::Message& msg) {
    if (oneshot_ && oneshot_command_) return;  // one command only
    auto req = proto::DecodeExecRequest(msg.payload);
    if (!req) {
      Refuse(msg.payload, EINVAL);
      if (oneshot_) Die(126);  // its one command can't run
      return;
    }
    std::vector<int> fds;
    if (!req->tty)  // a tty command's stdio is its pty
      for (const auto& fd : msg.fds) fds.push_back(fd.get());
    if (!ToSpawner(Type::kExec, req->id, msg.payload, fds)) return;
    if (oneshot_) {
      // The spawner becomes the command.
      oneshot_command_ = true;
      commands_[spawner_] = Command{req->id, false};
      return;
    }
    ++in_flight_;
  }

  void ForwardFileOp(const proto::Message& msg) {
    auto req = proto::DecodeFileOpRequest(msg.payload);
    if (!req || msg.fds.size() > 1) return Refuse(msg.payload, EINVAL);
    // One-shot: the spawner is (or will be) the command; nothing forks.
    if (oneshot_) return Refuse(msg.payload, EOPNOTSUPP);
    std::vector<int> fds;
    if (!msg.fds.empty()) fds.push_back(msg.fds[0].get());
    if (ToSpawner(Type::kFileOp, req->id, msg.payload, fds)) ++in_flight_;
  }

  // Commands lead their own session, so their group is their pid; before
  // the setsid (one-shot: the spawner turning into the command) it isn't.
  static void SignalGroup(pid_t pid, int signo) {
    if (kill(-pid, signo) < 0 && errno == ESRCH) kill(pid, signo);
  }

  void SignalCommand(std::string_view payload) {
    auto s = proto::DecodeSignal(payload);
    if (!s) return;
    if (s->id == proto::kAllCommands) {
      for (const auto& [pid, cmd] : commands_) SignalGroup(pid, s->signo);
      return;
    }
    for (const auto& [pid, cmd] : commands_) {
      if (cmd.id == s->id) return SignalGroup(pid, s->signo);
    }
    // Not started yet as far as init knows (its report is on the way):
    // delivered with the report. Unknown and finished ids are dropped.
    if (in_flight_ > 0 && pending_signals_.size() < kMaxPendingSignals) pending_signals_[s->id] = s->signo;
  }

  // Reads one report from the spawner (its socket is non-blocking); false
  // if none was waiting.
  bool HandleSpawner() {
    auto msg = proto::ReceiveMessage(spawner_sock_, /*dont_wait=*/true);
    if (!msg) {
      // Nothing yet, or a datagram that isn't a report: skipped.
      if (!IsEof(msg.error()) && (msg.error().err == 0 || msg.error().err == EAGAIN)) return false;
      SpawnerClosed();
      return false;
    }
    SpawnReport r;
    if (msg->payload.size() != sizeof(r)) return true;
    memcpy(&r, msg->payload.data(), sizeof(r));
    if (oneshot_ && r.err == 0) {
      // The pty master of the command the spawner is turning into.
      if (!msg->fds.empty()) oneshot_master_ = std::move(msg->fds[0]);
      return true;
    }
    if (in_flight_ > 0) --in_flight_;
    if (r.err != 0) {
      proto::ExecFailed f{r.id, r.err, static_cast<proto::ExecStage>(r.stage)};
      proto::SendMessage(channel_, Type::kExecFailed, proto::Encode(f));
      if (r.pid > 0 && !early_exits_.erase(r.pid)) failed_pids_.insert({r.pid, true});
      pending_signals_.erase(r.id);
      if (oneshot_) Die(r.err == ENOENT ? 127 : 126);
    } else if (r.pid > 1) {  // never a signal for every process (-1) or init's group
      Started(r, msg->fds);
    }
    // With no request in flight, an unknown pid reaped earlier was an orphan.
    if (in_flight_ == 0) {
      early_exits_.clear();
      pending_signals_.clear();
    }
    return true;
  }

  // A successful report: kStarted (with a pty master, which init then
  // closes), then whatever happened to the process meanwhile.
  void Started(const SpawnReport& r, const std::vector<UniqueFd>& fds) {
    commands_[r.pid] = Command{r.id, r.file_op != 0};
    proto::Started s{r.id, static_cast<uint32_t>(r.pid)};
    std::vector<int> master;
    if (!fds.empty()) master.push_back(fds[0].get());
    proto::SendMessage(channel_, Type::kStarted, proto::Encode(s), master);
    // The process may have been reaped before its report arrived.
    auto early = early_exits_.find(r.pid);
    if (early != early_exits_.end()) {
      int status = early->second;
      early_exits_.erase(early);
      pending_signals_.erase(r.id);
      CommandExited(r.pid, status);
      return;
    }
    auto pending = pending_signals_.find(r.id);
    if (pending != pending_signals_.end()) {
      SignalGroup(r.pid, pending->second);
      pending_signals_.erase(pending);
    }
  }

  void SpawnerClosed() {
    if (!oneshot_command_) Die(125);  // no way to run anything any more
    // One-shot: the spawner's exec closed its end; it is the command now.
    close(spawner_sock_);
    spawner_sock_ = -1;
    proto::Started s{commands_[spawner_].id, static_cast<uint32_t>(spawner_)};
    std::vector<int> master;
    if (oneshot_master_) master.push_back(oneshot_master_.get());
    proto::SendMessage(channel_, Type::kStarted, proto::Encode(s), master);
    oneshot_master_.Reset();
  }

  void HandleSignals() {
    signalfd_siginfo si;
    while (read(sigfd_, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGCHLD) {
        Reap();
      } else {
        for (const auto& [pid, cmd] : commands_)
          if (!cmd.file_op) kill(pid, static_cast<int>(si.ssi_signo));
      }
    }
  }

  void Reap() {
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      if (pid == relay_) {  // not a command: nothing to report
        RelayExited(status);
        continue;
      }
      if (pid == spawner_) {
        if (!oneshot_command_) Die(125);  // no way to run anything any more
        // A failure report written before the spawner's _exit wins over
        // its exit status.
        while (spawner_sock_ >= 0 && HandleSpawner()) {
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
  RelayFds relay_fds_;
  pid_t relay_ = -1;
  int64_t relay_forked_at_ = 0;
  int spawner_sock_ = -1;
  pid_t spawner_ = -1;
  int sigfd_ = -1;
  bool oneshot_command_ = false;  // one-shot: the spawner has become the command
  UniqueFd oneshot_master_;       // one-shot with a tty: reported with the start
  unsigned in_flight_ = 0;
  std::map<pid_t, Command> commands_;
  std::map<pid_t, int> early_exits_;
  std::map<pid_t, bool> failed_pids_;
  std::map<uint32_t, int> pending_signals_;  // by request id
};

}  // namespace

int InitMain(int argc, char** argv) {
  using airlock::proto::kInitChannelFd;
  if (fcntl(kInitChannelFd, F_GETFD) < 0) return 125;
  bool oneshot = false, transparent = false;
  long cgroup_fds = 0, egress_fd = -1;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--oneshot") == 0) oneshot = true;
    else if (strncmp(argv[i], "--cgroup-fds=", 13) == 0) cgroup_fds = strtol(argv[i] + 13, nullptr, 10);
    else if (strncmp(argv[i], "--egress-fd=", 12) == 0) egress_fd = strtol(argv[i] + 12, nullptr, 10);
    else if (strcmp(argv[i], "--transparent") == 0) transparent = true;
  }
  if (cgroup_fds < 0 || cgroup_fds > 16) return 125;
  RelayFds relay;
  if (egress_fd >= 0) {
    // After the channel and the cgroup fds; inherited, so that no command
    // may: close-on-exec from here on.
    if (egress_fd < airlock::proto::kInitCgroupFdBase + cgroup_fds || egress_fd > 1024) return 125;
    relay.egress = static_cast<int>(egress_fd);
    relay.listener = relay.egress + 1;
    if (transparent) {
      relay.dns_udp = relay.egress + 2;
      relay.dns_tcp = relay.egress + 3;
    }
    for (int i = 0; i < relay.count(); ++i)
      if (fcntl(relay.first() + i, F_SETFD, FD_CLOEXEC) < 0) return 125;
  } else if (transparent) {
    return 125;
  }
  Init init(kInitChannelFd, static_cast<int>(cgroup_fds), oneshot, relay);
  init.Run();
}

}  // namespace airlock::init

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--zygote") == 0) return airlock::init::ZygoteMain(argc, argv);
  return airlock::init::InitMain(argc, argv);
}

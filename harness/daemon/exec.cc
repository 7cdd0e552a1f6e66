#include "harness/daemon/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "harness/daemon/files.h"

namespace airlock::daemon {
namespace {

constexpr auto kStartWait = std::chrono::seconds(30);
constexpr size_t kChunk = 64 * 1024;
constexpr int kCancelCheckMs = 200;

int64_t MonotonicMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void SetNonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

std::string ExecErrorText(const InitReport& r) {
  static const char* kStages[] = {"fork", "set user", "chdir", "stdio", "exec"};
  auto stage = static_cast<uint32_t>(r.stage);
  return std::string(stage < 5 ? kStages[stage] : "exec") + ": " + ErrnoName(r.err) + " (" + strerror(r.err) + ")";
}

}  // namespace

ApiResult<std::shared_ptr<CommandHandle>> CommandHandle::Start(const std::shared_ptr<Live>& live,
                                                               const v1::Command& c, bool keep_stdin,
                                                               const std::string& field) {
  if (c.argv_size() == 0) return BadField(field + ".argv", "no command given");
  if (c.argv(0).empty()) return BadField(field + ".argv[0]", "empty command");
  ProcessSpec p;
  for (int i = 0; i < c.argv_size(); ++i) {
    if (c.argv(i).find('\0') != std::string::npos) return BadField(field + ".argv[" + std::to_string(i) + "]", "contains NUL");
    p.argv.push_back(c.argv(i));
  }
  p.env = live->env;
  for (const auto& [k, v] : c.env()) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
      return BadField(field + ".env", "bad name \"" + k.substr(0, 64) + "\"");
    if (v.find('\0') != std::string::npos) return BadField(field + ".env[" + k + "]", "contains NUL");
    std::string key = k + "=";
    std::erase_if(p.env, [&](const std::string& e) { return e.starts_with(key); });
    p.env.push_back(key + v);
  }
  p.cwd = c.cwd().empty() ? live->workspace : TRY(SandboxPath(*live, field + ".cwd", c.cwd()));
  Identity who = TRY(ResolveIdentity(*live, field + ".user", c.user()));
  p.uid = who.uid;
  p.gid = who.gid;
  if (c.size().rows() > 65535 || c.size().cols() > 65535) return BadField(field + ".size", "rows and cols must be 0-65535");
  {
    std::lock_guard lock(live->mu);
    if (live->stopped) return ApiFail(Code::kFailedPrecondition, "sandbox " + live->id + " is stopped");
    if (live->info.state() == v1::SANDBOX_STATE_PAUSED)
      return ApiFail(Code::kFailedPrecondition, "sandbox " + live->id + " is paused");
  }
  live->Touch();

  std::shared_ptr<CommandHandle> h(new CommandHandle());
  h->live_ = live;
  h->tty_ = c.tty();
  h->done_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!h->done_) return FromError(Error{errno, "eventfd", "exec"});
  if (c.timeout_ms() > 0) h->deadline_ms_ = MonotonicMs() + static_cast<int64_t>(c.timeout_ms());
  {
    std::lock_guard lock(live->mu);
    h->ooms_at_start_ = live->seen_events.oom_kills;
  }
  // The sandbox's ends go to init; ours stay. Without stdin the command
  // gets /dev/null (init's default for a missing fd).
  UniqueFd theirs[3];
  int fds[3] = {-1, -1, -1};
  if (!h->tty_) {
    int p[2];
    if (keep_stdin) {
      if (pipe2(p, O_CLOEXEC) < 0) return FromError(Error{errno, "pipe2", "stdin"});
      theirs[0] = UniqueFd(p[0]);
      h->stdin_ = UniqueFd(p[1]);
    } else {
      theirs[0] = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    for (int i = 1; i < 3; ++i) {
      if (pipe2(p, O_CLOEXEC) < 0) return FromError(Error{errno, "pipe2", "output"});
      theirs[i] = UniqueFd(p[1]);
      (i == 1 ? h->stdout_ : h->stderr_) = UniqueFd(p[0]);
      SetNonblocking(p[0]);
    }
    for (int i = 0; i < 3; ++i) fds[i] = theirs[i].get();
  }
  std::weak_ptr<CommandHandle> weak = h;
  auto id = live->session->Exec(p, h->tty_, static_cast<uint16_t>(c.size().rows()),
                                static_cast<uint16_t>(c.size().cols()), fds, [weak](InitReport&& r) {
                                  if (auto self = weak.lock()) self->OnReport(std::move(r));
                                });
  if (!id) return FromError(id.error(), "exec");
  h->id_ = *id;
  for (auto& fd : theirs) fd.Reset();
  std::unique_lock lock(h->mu_);
  if (!h->cv_.wait_for(lock, kStartWait, [&] { return h->started_ || h->ended_; })) {
    live->session->Forget(h->id_);
    return ApiFail(Code::kDeadlineExceeded, "exec: airlock-init did not report the command started");
  }
  if (h->ended_ && !h->started_) {
    // It never ran (no such program, ...): that is its exit status, as for
    // any command; only a sandbox that went away is the call's own failure.
    if (h->end_.kind == InitReport::Kind::kExecFailed) return h;
    return ApiFail(Code::kUnavailable, "exec: sandbox " + live->id + " stopped");
  }
  if (h->tty_) {
    if (!h->pty_) return ApiFail(Code::kInternal, "exec: airlock-init sent no terminal");
    SetNonblocking(h->pty_.get());
  }
  if (h->stdin_) SetNonblocking(h->stdin_.get());
  return h;
}

CommandHandle::~CommandHandle() {
  std::lock_guard lock(mu_);
  if (!ended_ && live_ && id_) {
    // Nobody waits for it any more: it must not outlive its caller.
    (void)live_->session->Signal(id_, SIGKILL);
    live_->session->Forget(id_);
  }
}

void CommandHandle::OnReport(InitReport&& r) {
  std::lock_guard lock(mu_);
  if (r.kind == InitReport::Kind::kStarted) {
    started_ = true;
    pid_ = r.pid;
    pty_ = std::move(r.pty_master);
  } else {
    ended_ = true;
    end_ = std::move(r);
    uint64_t one = 1;
    (void)!write(done_.get(), &one, sizeof(one));
  }
  cv_.notify_all();
}

ApiResult<void> CommandHandle::Signal(int signo) {
  if (signo < 1 || signo > 64) return BadField("signal.signo", "must be 1-64 (got " + std::to_string(signo) + ")");
  if (auto sent = live_->session->Signal(id_, signo); !sent) return FromError(sent.error(), "signal");
  return {};
}

ApiResult<void> CommandHandle::Resize(uint32_t rows, uint32_t cols) {
  if (!tty_) return ApiFail(Code::kFailedPrecondition, "resize: the command has no terminal");
  if (rows > 65535 || cols > 65535) return BadField("resize", "rows and cols must be 0-65535");
  winsize ws{static_cast<unsigned short>(rows), static_cast<unsigned short>(cols), 0, 0};
  // TIOCSWINSZ on the master: the kernel signals SIGWINCH to the terminal's
  // foreground group inside.
  if (ioctl(pty_.get(), TIOCSWINSZ, &ws) < 0) return FromError(Error{errno, "resize", "pty"});
  return {};
}

void CommandHandle::CloseStdin() {
  if (tty_) {
    // A terminal has no half-close: send EOF (^D) as a line discipline does.
    (void)!write(pty_.get(), "\x04", 1);
    return;
  }
  stdin_.Reset();
}

void CommandHandle::Timeout() {
  {
    std::lock_guard lock(mu_);
    if (ended_ || timed_out_) return;
    timed_out_ = true;
  }
  (void)live_->session->Signal(id_, SIGKILL);
}

void CommandHandle::Kill() {
  {
    std::lock_guard lock(mu_);
    if (ended_) return;
  }
  (void)live_->session->Signal(id_, SIGKILL);
}

bool CommandHandle::WriteStdin(std::string_view data) {
  int fd = stdin_fd();
  while (!data.empty()) {
    if (fd < 0) return false;
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      pollfd d{done_.get(), POLLIN, 0};
      pollfd both[2] = {p, d};
      poll(both, 2, 1000);
      if (both[1].revents) return false;
      continue;
    }
    if (n < 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

v1::ExitStatus CommandHandle::Exit() {
  std::lock_guard lock(mu_);
  v1::ExitStatus s;
  switch (end_.kind) {
    case InitReport::Kind::kExited:
      s.set_code(end_.code);
      s.set_signal(end_.signal);
      s.set_reported_by("init");
      break;
    case InitReport::Kind::kExecFailed:
      s.set_code(end_.err == ENOENT ? 127 : 126);
      s.set_exec_error(ExecErrorText(end_));
      s.set_reported_by("init");
      break;
    default:
      s.set_signal(SIGKILL);
      s.set_exec_error("the sandbox stopped");
      s.set_reported_by("kernel");
      break;
  }
  s.set_timed_out(timed_out_);
  // An OOM kill shows as SIGKILL; the kernel's counter says whether it was one.
  if (s.signal() == SIGKILL && !timed_out_) {
    auto events = live_->sandbox->ReadCgroupEvents();
    if (events && events->oom_kills > ooms_at_start_) s.set_oom_killed(true);
  }
  return s;
}

v1::ExitStatus Pump(CommandHandle& cmd, const OutputSink& sink, std::string_view stdin_data, bool close_stdin,
                    const std::function<bool()>& cancelled) {
  thread_local std::string buf(kChunk, '\0');  // per handler thread, not per command
  bool out_open = cmd.stdout_fd() >= 0, err_open = !cmd.tty() && cmd.stderr_fd() >= 0;
  bool stdin_pending = !stdin_data.empty() || close_stdin;
  bool done = false, caller_gone = false;
  // Reads what is there now; false at EOF or error.
  auto drain = [&](int fd, bool is_out) {
    for (;;) {
      ssize_t n = read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;  // EOF, or EIO from a pty whose slave closed
      std::string_view data(buf.data(), static_cast<size_t>(n));
      if (!caller_gone && !(is_out ? sink.out(data) : sink.err(data))) {
        caller_gone = true;
        cmd.Kill();  // the caller left: the command goes too
      }
      if (static_cast<size_t>(n) < buf.size()) return true;
    }
  };
  while (!done || out_open || err_open) {
    pollfd fds[4];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1, done_i = -1;
    if (out_open) out_i = n, fds[n++] = {cmd.stdout_fd(), POLLIN, 0};
    if (err_open) err_i = n, fds[n++] = {cmd.stderr_fd(), POLLIN, 0};
    if (stdin_pending && cmd.stdin_fd() >= 0) in_i = n, fds[n++] = {cmd.stdin_fd(), POLLOUT, 0};
    if (!done) done_i = n, fds[n++] = {cmd.done_fd(), POLLIN, 0};
    int timeout = -1;
    if (cmd.deadline_ms() > 0 && !done) timeout = static_cast<int>(std::max<int64_t>(0, cmd.deadline_ms() - MonotonicMs()));
    // A caller that goes away while the command is quiet is noticed too.
    if (cancelled && !caller_gone && (timeout < 0 || timeout > kCancelCheckMs)) timeout = kCancelCheckMs;
    int r = poll(fds, static_cast<nfds_t>(n), timeout);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && !done) {
      if (cmd.deadline_ms() > 0 && MonotonicMs() >= cmd.deadline_ms()) {
        cmd.Timeout();
      } else if (cancelled && !caller_gone && cancelled()) {
        caller_gone = true;
        cmd.Kill();
      }
      continue;
    }
    if (in_i >= 0 && fds[in_i].revents) {
      ssize_t w = stdin_data.empty() ? 0 : write(cmd.stdin_fd(), stdin_data.data(), stdin_data.size());
      if (w > 0) stdin_data.remove_prefix(static_cast<size_t>(w));
      if (w < 0 && errno != EAGAIN && errno != EINTR) stdin_data = {};
      if (stdin_data.empty()) {
        if (close_stdin) cmd.CloseStdin();
        stdin_pending = false;
      }
    }
    if (out_i >= 0 && fds[out_i].revents) out_open = drain(cmd.stdout_fd(), true);
    if (err_i >= 0 && fds[err_i].revents) err_open = drain(cmd.stderr_fd(), false);
    if (done_i >= 0 && fds[done_i].revents) {
      done = true;
      // Everything the command wrote before it ended is in the pipes now;
      // what a leftover background child writes later is not its output.
      if (out_open) drain(cmd.stdout_fd(), true);
      if (err_open) drain(cmd.stderr_fd(), false);
      out_open = err_open = false;
    }
  }
  return cmd.Exit();
}

// --- background processes ---------------------------------------------------

ApiResult<std::shared_ptr<Process>> Process::Start(const std::shared_ptr<Live>& live, const std::string& process_id,
                                                   const v1::StartProcessRequest& request) {
  auto cmd = TRY(CommandHandle::Start(live, request.command(), request.stdin(), "start_process.command"));
  std::shared_ptr<Process> p(new Process());
  p->command_ = std::move(cmd);
  p->sandbox_id_ = live->id;
  p->process_id_ = process_id;
  p->argv_.assign(request.command().argv().begin(), request.command().argv().end());
  p->started_unix_ms_ = NowUnixMs();
  p->pump_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

Process::~Process() {
  {
    std::lock_guard lock(mu_);
    if (!finished_) command_->Kill();
    out_.clear();
    err_.clear();
  }
  cv_.notify_all();
  if (pump_.joinable()) pump_.join();
}

void Process::Run() {
  // A full buffer makes the sink wait: the command then blocks on its pipe.
  auto append = [this](std::string* buf, std::string_view data) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return buf->size() < kBufferLimit || finished_; });
    buf->append(data);
    cv_.notify_all();
    return true;
  };
  OutputSink sink{[&](std::string_view d) { return append(&out_, d); },
                  [&](std::string_view d) { return append(&err_, d); }};
  v1::ExitStatus exit = Pump(*command_, sink, {}, false);
  std::lock_guard lock(mu_);
  exit_ = exit;
  finished_ = true;
  cv_.notify_all();
}

v1::Process Process::Describe() {
  v1::Process p;
  p.set_sandbox_id(sandbox_id_);
  p.set_process_id(process_id_);
  for (const auto& a : argv_) p.add_argv(a);
  p.set_pid(command_->pid());
  p.set_started_unix_ms(started_unix_ms_);
  std::lock_guard lock(mu_);
  p.set_running(!finished_);
  if (finished_) *p.mutable_exit() = exit_;
  p.set_stdout_buffered(out_.size());
  p.set_stderr_buffered(err_.size());
  return p;
}

v1::ReadProcessOutputResponse Process::Read(uint64_t max_bytes, uint64_t wait_ms) {
  if (max_bytes == 0) max_bytes = 64 * 1024;
  max_bytes = std::min<uint64_t>(max_bytes, 4 << 20);
  v1::ReadProcessOutputResponse r;
  {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(std::min<uint64_t>(wait_ms, 60000)),
                 [&] { return !out_.empty() || !err_.empty() || finished_; });
    size_t n = std::min<size_t>(out_.size(), max_bytes);
    r.set_stdout(out_.substr(0, n));
    out_.erase(0, n);
    n = std::min<size_t>(err_.size(), max_bytes);
    r.set_stderr(err_.substr(0, n));
    err_.erase(0, n);
    r.set_eof(finished_ && out_.empty() && err_.empty());
    cv_.notify_all();  // room in the buffers again
  }
  *r.mutable_process() = Describe();
  return r;
}

ApiResult<void> Process::WriteStdin(std::string_view data, bool close) {
  std::lock_guard lock(stdin_mu_);
  if (command_->stdin_fd() < 0) return ApiFail(Code::kFailedPrecondition, "write_stdin: the process was started without stdin");
  if (!data.empty() && !command_->WriteStdin(data)) return ApiFail(Code::kFailedPrecondition, "write_stdin: the process no longer reads stdin");
  if (close) command_->CloseStdin();
  return {};
}

ApiResult<void> Process::Signal(int signo) { return command_->Signal(signo); }

bool Process::Finished() {
  std::lock_guard lock(mu_);
  return finished_;
}

}  // namespace airlock::daemon

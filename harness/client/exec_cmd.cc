// `airlock exec`: one bidirectional Exec stream. The main thread reads the
// command's output and copies it to ours as it comes; one thread forwards
// our stdin (-i), another our signals and terminal resizes. Writes to the
// stream are serialized (gRPC allows one writer at a time).
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "harness/client/commands.h"
#include "harness/client/output.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

constexpr const char* kExecUsage =
    "usage: airlock exec [OPTIONS] ID [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD in sandbox ID and exits with its status (128+N: killed by signal N,\n"
    "124: timed out, 126/127: it could not be run, 125: airlock failed).\n"
    "\n"
    "  -i, --interactive      forward stdin (EOF closes the command's stdin)\n"
    "  -t, --tty              run it on a terminal; ours goes to raw mode\n"
    "  -e, --env K=V          add to its environment (repeatable)\n"
    "  -w, --cwd DIR          working directory (default: the workspace)\n"
    "  -u, --user USER        a manifest user's name, or UID[:GID] (default: root)\n"
    "  --timeout DURATION     kill it after e.g. 10s\n"
    "  --json                 print each output message as a JSON line instead\n"
    "\n"
    "Without -t, SIGINT, SIGTERM and SIGHUP are forwarded to the command; with -t,\n"
    "^C is just a byte the terminal inside interprets.\n";

using ExecStream = grpc::ClientReaderWriter<v1::ExecInput, v1::ExecOutput>;

// Our terminal in raw mode for the duration of a -t exec, restored on every
// way out (the destructor; signals are handled as events, never in a
// handler, so the destructor runs for them too).
class RawTerminal {
 public:
  RawTerminal() = default;
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal() { Restore(); }

  bool Enter(int fd) {
    if (!isatty(fd) || tcgetattr(fd, &saved_) != 0) return false;
    termios raw = saved_;
    cfmakeraw(&raw);
    if (tcsetattr(fd, TCSADRAIN, &raw) != 0) return false;
    fd_ = fd;
    return true;
  }
  void Restore() {
    if (fd_ >= 0) tcsetattr(fd_, TCSADRAIN, &saved_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  termios saved_{};
};

bool WindowSize(v1::TerminalSize* size) {
  winsize ws{};
  for (int fd : {0, 1, 2})
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
      size->set_rows(ws.ws_row);
      size->set_cols(ws.ws_col);
      return true;
    }
  return false;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, -1);
      continue;
    }
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

struct Session {
  ExecStream* stream = nullptr;
  grpc::ClientContext* ctx = nullptr;
  std::timed_mutex write_mu;
  bool writes_done = false;
  UniqueFd wake;  // eventfd: the exit arrived, threads stop
  std::atomic<int> fatal_signal{0};  // -t: a signal that ends the client
  std::atomic<bool> stdin_done{false};

  // Sends one message unless the request side is already closed.
  bool Send(const v1::ExecInput& in, std::chrono::milliseconds wait = std::chrono::hours(24)) {
    std::unique_lock lock(write_mu, std::defer_lock);
    if (!lock.try_lock_for(wait)) return false;
    if (writes_done) return false;
    return stream->Write(in);
  }
  void HalfClose() {
    std::lock_guard lock(write_mu);
    if (!writes_done) stream->WritesDone();
    writes_done = true;
  }
};

// Forwards stdin until EOF (then close_stdin) or until woken.
void PumpStdin(Session* s) {
  struct Done {
    Session* s;
    ~Done() { s->stdin_done = true; }
  } done{s};
  std::string buf(32 * 1024, '\0');
  for (;;) {
    pollfd fds[2] = {{0, POLLIN, 0}, {s->wake.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    ssize_t n = read(0, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    v1::ExecInput in;
    if (n <= 0) {
      in.set_close_stdin(true);
      s->Send(in);
      return;
    }
    in.set_stdin(buf.data(), static_cast<size_t>(n));
    if (!s->Send(in)) return;
  }
}

// Forwards signals (not with -t) and window size changes (with -t).
void PumpSignals(Session* s, int sigfd, bool tty) {
  for (;;) {
    pollfd fds[2] = {{sigfd, POLLIN, 0}, {s->wake.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    signalfd_siginfo si;
    if (read(sigfd, &si, sizeof si) != sizeof si) continue;
    const int sig = static_cast<int>(si.ssi_signo);
    v1::ExecInput in;
    if (sig == SIGWINCH) {
      if (!tty || !WindowSize(in.mutable_resize())) continue;
      s->Send(in, std::chrono::seconds(1));
      continue;
    }
    in.mutable_signal()->set_signo(sig);
    if (tty) {
      // In raw mode ^C is a byte; a signal here came from outside (kill,
      // a closed terminal): the command hears of it, and we give the
      // terminal back and end rather than wait on a screen nobody sees.
      s->Send(in, std::chrono::seconds(1));
      s->fatal_signal = sig;
      s->ctx->TryCancel();
      return;
    }
    // A command that doesn't read its stdin can stall the stream; then the
    // signal can't be delivered and the call is cut instead.
    if (!s->Send(in, std::chrono::seconds(2))) {
      s->fatal_signal = sig;
      s->ctx->TryCancel();
      return;
    }
  }
}

int ExitCodeOf(const v1::ExitStatus& exit) {
  if (!exit.exec_error().empty()) {
    Failed(exit.exec_error());
    return exit.exec_error().find("ENOENT") != std::string::npos ? 127 : 126;
  }
  if (exit.oom_killed()) fprintf(stderr, "airlock: the sandbox ran out of memory while the command ran (OOM kill)\n");
  if (exit.timed_out()) return 124;
  if (exit.signal() > 0) return 128 + (exit.signal() & 0x7f);
  return exit.code() & 0xff;
}

}  // namespace

int ExecCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args,
                        {{"--interactive", 'i', false}, {"--tty", 't', false}, {"--env", 'e', true}, {"--cwd", 'w', true},
                         {"--user", 'u', true}, {"--timeout", 0, true}},
                        kExecUsage, true, &g, &a, &code))
    return code;
  if (a.positional.empty() || a.command.empty()) return Failed("usage: airlock exec [OPTIONS] ID -- CMD [ARGS...] (see --help)");
  const bool interactive = a.Has("--interactive"), tty = a.Has("--tty");

  v1::ExecInput start;
  v1::Command* cmd = start.mutable_start()->mutable_command();
  cmd->set_sandbox_id(a.positional[0]);
  for (const auto& arg : a.command) cmd->add_argv(arg);
  for (const auto& kv : a.All("--env")) {
    auto p = ParseKeyValue("--env", kv);
    if (!p) return Failed(p.error().detail);
    (*cmd->mutable_env())[p->first] = p->second;
  }
  if (auto v = a.Last("--cwd")) cmd->set_cwd(*v);
  if (auto v = a.Last("--user")) cmd->set_user(*v);
  if (auto v = a.Last("--timeout")) {
    auto ms = ParseDurationMs("--timeout", *v);
    if (!ms) return Failed(ms.error().detail);
    cmd->set_timeout_ms(*ms);
  }
  if (tty) {
    cmd->set_tty(true);
    WindowSize(cmd->mutable_size());
  }
  start.mutable_start()->set_stdin(interactive);

  // Blocked before gRPC starts its threads, which inherit the mask: only
  // the signal pump sees these.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  UniqueFd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC));
  if (!sigfd) return Failed(std::string("signalfd: ") + strerror(errno));

  Connection conn(g.socket);
  grpc::ClientContext ctx;
  std::unique_ptr<ExecStream> stream = conn.stub().Exec(&ctx);
  Session s;
  s.stream = stream.get();
  s.ctx = &ctx;
  s.wake = UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!s.Send(start)) {
    grpc::Status st = stream->Finish();
    return Failed(StatusMessage(st, g.socket));
  }
  RawTerminal terminal;
  if (tty && !g.json) terminal.Enter(0);

  std::thread stdin_pump, signal_pump;
  if (interactive) stdin_pump = std::thread(PumpStdin, &s);
  signal_pump = std::thread(PumpSignals, &s, sigfd.get(), tty);

  std::optional<v1::ExitStatus> exit;
  bool output_broken = false;
  v1::ExecOutput out;
  while (stream->Read(&out)) {
    if (g.json) {
      if (!WriteAll(1, ToJson(out, false) + "\n")) output_broken = true;
    } else if (out.has_stdout()) {
      if (!WriteAll(1, out.stdout())) output_broken = true;
    } else if (out.has_stderr()) {
      (void)WriteAll(2, out.stderr());
    }
    if (out.has_exit()) {
      exit = out.exit();
      break;
    }
    if (output_broken) {
      // Our reader went away (`airlock exec ... | head -1`): end the call,
      // as a local program would die of SIGPIPE.
      ctx.TryCancel();
      break;
    }
  }
  // Wake the pumps, then close our side: the daemon waits for the
  // half-close once it has sent the exit.
  uint64_t one = 1;
  (void)!write(s.wake.get(), &one, sizeof one);
  if (stdin_pump.joinable()) {
    // Stdin the command never read can hold the pump in a Write the daemon
    // won't accept; with the exit in hand the call has nothing left to give.
    for (int i = 0; i < 20 && !s.stdin_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!s.stdin_done) ctx.TryCancel();
    stdin_pump.join();
  }
  signal_pump.join();
  s.HalfClose();
  while (exit && stream->Read(&out)) {
  }
  grpc::Status st = stream->Finish();
  terminal.Restore();
  if (output_broken) return 128 + SIGPIPE;
  if (int sig = s.fatal_signal.load(); sig != 0 && !exit) return 128 + sig;
  if (!exit) {
    if (st.ok()) return Failed("exec: the stream ended without the command's exit status");
    return Failed(StatusMessage(st, g.socket));
  }
  return ExitCodeOf(*exit);
}

}  // namespace airlock::client

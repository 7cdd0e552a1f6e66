// `airlock mcp`: the agent's tools and the sandbox lifecycle as a Model
// Context Protocol server, a client of airlockd like the other daemon
// commands. Over stdio (the default: newline-delimited JSON-RPC on stdin and
// stdout, logs on stderr) or Streamable HTTP (--http, mcp_http.h). The
// sandboxes it creates are configured by the options it was started with,
// the same as `airlock create` takes; nothing a model sends reaches them.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <thread>

#include "harness/client/commands.h"
#include "harness/client/mcp_http.h"
#include "harness/client/mcp_tools.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

using mcp::Json;

constexpr size_t kMaxConcurrentCalls = 16;  // stdio: requests handled at once

constexpr const char* kMcpUsage =
    "usage: airlock mcp [--http [ADDR:]PORT [--token-file FILE] [--tls-cert FILE --tls-key FILE]\n"
    "                   [--allow-origin ORIGIN]...] [--keep-sandboxes] [CREATE OPTIONS]\n"
    "\n"
    "Serves the agent's tools (exec_command, write_stdin, apply_patch, read_file,\n"
    "write_file, list_dir, search, view_image, get_instructions, skills) and the\n"
    "sandbox lifecycle (create, list, destroy, snapshot, restore, fork) as an MCP\n"
    "server. The model names no host path and no setting: every sandbox it creates\n"
    "is configured by the CREATE OPTIONS given here (those of `airlock create`:\n"
    "--image, --manifest, --memory, --network, --allow, --lifetime, --label, ...),\n"
    "carries the label airlock.mcp=1, and the tools act on such sandboxes only.\n"
    "\n"
    "  (default)              stdio: JSON-RPC lines on stdin/stdout, logs on stderr\n"
    "  --http [ADDR:]PORT     Streamable HTTP at http://ADDR:PORT/mcp (default address\n"
    "                         127.0.0.1; port 0 picks one). Every request needs\n"
    "                         `Authorization: Bearer TOKEN`; stderr gets a line\n"
    "                         \"airlock mcp: listening on URL\"\n"
    "  --token-file FILE      the token (mode 0600 or stricter); without it one is made\n"
    "                         and printed once on stderr: \"airlock mcp: token HEX\"\n"
    "  --tls-cert FILE        TLS (1.2+) with this certificate chain and --tls-key FILE:\n"
    "                         required to listen beyond loopback\n"
    "  --allow-origin ORIGIN  also accept requests whose Origin header is this\n"
    "                         (default: loopback origins only; requests without Origin pass)\n"
    "  --keep-sandboxes       leave the sandboxes it created when it exits (default:\n"
    "                         destroyed at exit: end of stdin, SIGINT, SIGTERM)\n"
    "\n"
    "See docs/mcp.md.\n";

constexpr const char* kInstructions =
    "Tools to run commands and edit files inside airlock sandboxes (isolated Linux environments). "
    "Call create_sandbox (or list_sandboxes) first and pass its sandbox_id to the other tools. File paths are "
    "relative to the sandbox's workspace (or absolute under it). exec_command runs shell commands; when one "
    "outlives yield_time_ms it returns a session_id for write_stdin and kill_session. get_instructions returns "
    "the workspace's AGENTS.md files.";

// Writes whole lines to stdout; several request threads share it.
class LineWriter {
 public:
  void Write(const std::string& line) {
    std::lock_guard lock(mu_);
    std::string out = line + "\n";
    const char* p = out.data();
    size_t left = out.size();
    while (left > 0) {
      ssize_t w = write(STDOUT_FILENO, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // the client went away; stdin's end follows
      p += w;
      left -= static_cast<size_t>(w);
    }
  }

 private:
  std::mutex mu_;
};

// Runs each request on a thread of its own (a long exec_command doesn't hold
// up a ping), at most kMaxConcurrentCalls at once.
class Calls {
 public:
  void Run(std::function<void()> fn) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return running_ < kMaxConcurrentCalls; });
    ++running_;
    lock.unlock();
    std::thread([this, fn = std::move(fn)] {
      fn();
      std::lock_guard l(mu_);
      --running_;
      cv_.notify_all();
    }).detach();
  }
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return running_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t running_ = 0;
};

void Log(const std::string& line) {
  fprintf(stderr, "airlock mcp: %s\n", line.c_str());
  fflush(stderr);
}

// stdio: one JSON-RPC message per line until stdin ends or a signal comes.
void ServeStdio(mcp::Dispatcher& dispatcher, mcp::Toolbox& toolbox, int sigfd) {
  mcp::SessionState session;
  LineWriter out;
  Calls calls;
  std::string buf;
  bool discarding = false;  // inside a line longer than kMaxBody
  auto handle = [&](std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) return;
    calls.Run([&dispatcher, &session, &out, line = std::move(line)] {
      if (auto reply = dispatcher.HandleText(line, &session)) out.Write(*reply);
    });
  };
  char chunk[65536];
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Log(std::string("poll: ") + strerror(errno));
      break;
    }
    if (fds[1].revents) {
      Log("signal: stopping");
      toolbox.Stop();
      break;
    }
    ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      if (!discarding && !buf.empty()) handle(std::move(buf));
      break;
    }
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (discarding) discarding = false;
      else handle(buf.substr(start, nl - start));
    }
    buf.erase(0, start);
    if (buf.size() > mcp::kMaxBody) {
      if (!discarding)
        out.Write(mcp::Dump(mcp::ErrorReply(nullptr, mcp::kInvalidRequest,
                                            "message larger than " + std::to_string(mcp::kMaxBody) + " bytes")));
      discarding = true;
      buf.clear();
    }
  }
  calls.Wait();
}

}  // namespace

int McpCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  std::vector<OptionSpec> specs = CreateOptionSpecs();
  for (OptionSpec s : std::initializer_list<OptionSpec>{{"--http", 0, true},
                                                        {"--token-file", 0, true},
                                                        {"--tls-cert", 0, true},
                                                        {"--tls-key", 0, true},
                                                        {"--allow-origin", 0, true},
                                                        {"--keep-sandboxes", 0, false}})
    specs.push_back(s);
  if (!ParseCommandArgs(args, specs, kMcpUsage, false, &g, &a, &code)) return code;
  if (!a.positional.empty()) return Failed("mcp takes no operands (got \"" + a.positional[0] + "\"; see --help)");
  auto create = BuildCreateRequest(a);
  if (!create) return Failed(create.error().Message().starts_with("invalid option: ") ? create.error().detail
                                                                                     : create.error().Message());
  const bool http = a.Has("--http");
  if (!http)
    for (const char* o : {"--token-file", "--tls-cert", "--tls-key", "--allow-origin"})
      if (a.Has(o)) return Failed(std::string(o) + ": only with --http");

  mcp::HttpOptions http_options;
  bool printed_token = false;
  if (http) {
    auto listen = mcp::ParseListenAddress(*a.Last("--http"));
    if (!listen) return Failed(listen.error().Message());
    http_options.listen = *listen;
    if (auto f = a.Last("--token-file")) {
      auto t = mcp::LoadTokenFile(*f);
      if (!t) return Failed(t.error().Message());
      http_options.token = *t;
    } else {
      auto t = mcp::NewToken();
      if (!t) return Failed(t.error().Message());
      http_options.token = *t;
      printed_token = true;
    }
    http_options.tls_cert = a.Last("--tls-cert").value_or("");
    http_options.tls_key = a.Last("--tls-key").value_or("");
    http_options.allowed_origins = a.All("--allow-origin");
  }

  // Signals are taken through a signalfd: blocked before gRPC starts its
  // threads, which inherit the mask.
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  UniqueFd sigfd(signalfd(-1, &stop, SFD_CLOEXEC));
  if (!sigfd) return Failed(std::string("signalfd: ") + strerror(errno));

  Connection conn(g.socket);
  v1::VersionResponse version;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::Empty empty;
    grpc::Status st = conn.stub().Version(&ctx, empty, &version);
    if (!st.ok()) return Failed(StatusMessage(st, g.socket));
  }
  mcp::Toolbox toolbox(&conn, {*create, a.Has("--keep-sandboxes")});
  mcp::Dispatcher dispatcher(&toolbox, version.version().empty() ? "0" : version.version(), kInstructions);

  int status = 0;
  if (!http) {
    Log("serving on stdio (airlockd at " + g.socket + ")");
    ServeStdio(dispatcher, toolbox, sigfd.get());
  } else {
    auto server = mcp::HttpServer::Listen(http_options, &dispatcher);
    if (!server) return Failed(server.error().Message());
    UniqueFd wake(eventfd(0, EFD_CLOEXEC));
    if (!wake) return Failed(std::string("eventfd: ") + strerror(errno));
    // The token goes to stderr once, in a line a script can pick out.
    if (printed_token) Log("token " + http_options.token);
    Log("listening on " + (*server)->Url() + " (airlockd at " + g.socket + ")");
    std::thread watcher([&] {
      pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
      while (poll(fds, 2, -1) < 0 && errno == EINTR) {
      }
      if (fds[0].revents) {
        Log("signal: stopping");
        toolbox.Stop();
        uint64_t one = 1;
        (void)!write(wake.get(), &one, sizeof one);
      }
    });
    auto served = (*server)->Serve(wake.get());
    uint64_t one = 1;
    (void)!write(wake.get(), &one, sizeof one);  // the watcher's way out when Serve failed
    watcher.join();
    if (!served) status = Failed(served.error().Message());
  }
  for (const auto& problem : toolbox.Shutdown()) {
    Log(problem);
    status = kExitFailure;
  }
  return status;
}

}  // namespace airlock::client

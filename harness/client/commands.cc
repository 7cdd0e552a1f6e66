#include "harness/client/commands.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "harness/client/manifest.h"
#include "harness/client/output.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client {
namespace {

constexpr const char* kUsage =
    "usage: airlock COMMAND [OPTIONS] ...   (commands served by airlockd)\n"
    "\n"
    "  create [OPTIONS]                 create a sandbox; prints its id\n"
    "  exec [-i] [-t] ID -- CMD...      run a command in it; exits with its status\n"
    "  ps [--all] [--label k=v]         list sandboxes\n"
    "  inspect ID                       show one sandbox\n"
    "  rm [-f] ID...                    destroy sandboxes\n"
    "  pause ID / resume ID             freeze / thaw every process\n"
    "  stats ID                         cpu, memory, pids, disk\n"
    "  events [--since SEQ] [ID]        follow events until ^C\n"
    "  cp SRC DST                       copy files in or out (one side ID:/path)\n"
    "  snapshot ID [--full]             snapshot its writable layer (needs create --snapshots;\n"
    "                                   --full: its processes too, needs --checkpointable)\n"
    "  snapshots [ID]                   list snapshots\n"
    "  restore SNAP / fork SNAP N       new sandboxes on copies of a snapshot\n"
    "  rmsnap SNAP...                   delete snapshots\n"
    "  snapshot-export SNAP FILE|-      a snapshot as one checksummed archive\n"
    "  snapshot-import FILE|-           and back (processes only if sealed by this daemon's key)\n"
    "  mcp [--http [ADDR:]PORT] [CREATE OPTIONS]\n"
    "                                   serve the agent's tools and sandboxes over MCP (stdio, or\n"
    "                                   HTTP with a bearer token; docs/mcp.md)\n"
    "\n"
    "Every command takes --socket PATH (default $AIRLOCK_SOCKET, else\n"
    "/run/airlock/airlockd.sock) and --json (machine-readable output); see\n"
    "airlock COMMAND --help. Exit status 125: airlock itself failed.\n";

constexpr const char* kCreateUsage =
    "usage: airlock create [OPTIONS]\n"
    "\n"
    "Creates a sandbox and prints its id (--json: the whole sandbox).\n"
    "\n"
    "  --image NAME           image (default: host)\n"
    "  --manifest FILE        workspace manifest, YAML or JSON (keys: root, entries,\n"
    "                         environment, users)\n"
    "  --env K=V              add to the manifest's environment (repeatable)\n"
    "  --memory SIZE          memory limit, e.g. 512M\n"
    "  --pids N               process limit\n"
    "  --cpus X               CPU quota, e.g. 1.5\n"
    "  --disk SIZE            limit on what the sandbox writes\n"
    "  --nofile N             RLIMIT_NOFILE (default 1024)\n"
    "  --seccomp NAME         seccomp profile name (default, strict, ...)\n"
    "  --label K=V            label (repeatable)\n"
    "  --lifetime DURATION    destroy it after e.g. 30m\n"
    "  --idle-timeout DUR     stop it after this long without a call, e.g. 5m\n"
    "  --hostname NAME        hostname inside (default: sandbox)\n"
    "  --snapshots            keep the writable layer on the pool, so `airlock snapshot`\n"
    "                         works (implied by --disk)\n"
    "  --checkpointable       namespaces CRIU can dump: `airlock snapshot --full` then\n"
    "                         checkpoints its processes too (not with --network proxy)\n"
    "  --network MODE         none (default: loopback only) or proxy: out only through\n"
    "                         the daemon's egress proxy (docs/egress.md)\n"
    "  --allow DEST           proxy: allow a destination: host, *.suffix, host:port,\n"
    "                         an address or CIDR (repeatable; default deny)\n"
    "  --secret NAME          proxy: a secret of the daemon's config the sandbox's\n"
    "                         requests may carry (it sees a placeholder; repeatable)\n"
    "  --transparent          proxy: also programs that ignore proxy settings\n"
    "  --expose PORT          proxy: forward this port of the sandbox from the daemon's\n"
    "                         expose address (repeatable; see inspect)\n";

constexpr const char* kPsUsage =
    "usage: airlock ps [--all] [--label K=V]... [-q] [--json]\n"
    "\n"
    "Lists your sandboxes (root: all). --all includes stopped ones; -q prints ids only.\n";
constexpr const char* kInspectUsage = "usage: airlock inspect ID [--json]\n";
constexpr const char* kRmUsage =
    "usage: airlock rm [-f] ID... [--json]\n"
    "\n"
    "Destroys each sandbox: kills its processes, removes its host resources.\n"
    "-f: a sandbox that doesn't exist is not an error.\n";
constexpr const char* kPauseUsage = "usage: airlock pause ID [--json]\n";
constexpr const char* kResumeUsage = "usage: airlock resume ID [--json]\n";
constexpr const char* kStatsUsage = "usage: airlock stats ID [--json]\n";
constexpr const char* kEventsUsage =
    "usage: airlock events [--since SEQ | --all] [ID] [--json]\n"
    "\n"
    "Prints events (one line each; --json: one JSON object per line) after SEQ\n"
    "(default: only new ones; --all: the whole stored log) until interrupted.\n";

void Print(const std::string& text) {
  fputs(text.c_str(), stdout);
  fflush(stdout);
}

Result<uint64_t> ParseCount(const std::string& option, const std::string& v) {
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
    return Fail("invalid option", option + ": not a whole number: \"" + v + "\"");
  return std::stoull(v);
}

}  // namespace

std::vector<OptionSpec> CreateOptionSpecs() {
  return {{"--image", 0, true},        {"--manifest", 0, true},     {"--env", 'e', true},
          {"--memory", 'm', true},     {"--pids", 0, true},         {"--cpus", 0, true},
          {"--disk", 0, true},         {"--nofile", 0, true},       {"--seccomp", 0, true},
          {"--label", 'l', true},      {"--lifetime", 0, true},     {"--idle-timeout", 0, true},
          {"--hostname", 0, true},     {"--snapshots", 0, false},   {"--checkpointable", 0, false},
          {"--network", 0, true},      {"--allow", 0, true},        {"--secret", 0, true},
          {"--transparent", 0, false}, {"--expose", 0, true}};
}

Result<v1::CreateRequest> BuildCreateRequest(const ParsedArgs& a) {
  v1::CreateRequest req;
  if (auto v = a.Last("--image")) req.set_image(*v);
  if (auto v = a.Last("--manifest")) *req.mutable_manifest() = TRY(LoadManifest(*v));
  for (const auto& kv : a.All("--env")) {
    auto [k, v] = TRY(ParseKeyValue("--env", kv));
    (*req.mutable_manifest()->mutable_environment())[k] = v;
  }
  auto* l = req.mutable_limits();
  if (auto v = a.Last("--memory")) l->set_memory_bytes(TRY(ParseSize("--memory", *v)));
  if (auto v = a.Last("--pids")) l->set_pids(TRY(ParseCount("--pids", *v)));
  if (auto v = a.Last("--cpus")) {
    char* end = nullptr;
    double n = strtod(v->c_str(), &end);
    if (v->empty() || *end || !(n >= 0) || n > 1e6) return Fail("invalid option", "--cpus: not a number of CPUs: \"" + *v + "\"");
    l->set_cpus(n);
  }
  if (auto v = a.Last("--disk")) l->set_disk_bytes(TRY(ParseSize("--disk", *v)));
  if (auto v = a.Last("--nofile")) l->set_nofile(TRY(ParseCount("--nofile", *v)));
  if (auto v = a.Last("--seccomp")) req.set_seccomp_profile(*v);
  for (const auto& kv : a.All("--label")) {
    auto [k, v] = TRY(ParseKeyValue("--label", kv));
    (*req.mutable_labels())[k] = v;
  }
  if (auto v = a.Last("--lifetime")) req.set_lifetime_ms(TRY(ParseDurationMs("--lifetime", *v)));
  if (auto v = a.Last("--idle-timeout")) req.set_idle_timeout_ms(TRY(ParseDurationMs("--idle-timeout", *v)));
  if (auto v = a.Last("--hostname")) req.set_hostname(*v);
  req.set_snapshots(a.Has("--snapshots"));
  req.set_checkpointable(a.Has("--checkpointable"));
  if (auto v = a.Last("--network")) {
    if (*v == "none") req.set_network(v1::NETWORK_MODE_NONE);
    else if (*v == "proxy") req.set_network(v1::NETWORK_MODE_PROXY);
    else return Fail("invalid option", "--network: none or proxy (got \"" + *v + "\")");
  }
  for (const auto& d : a.All("--allow")) req.mutable_egress()->add_allow(d);
  for (const auto& s : a.All("--secret")) req.mutable_egress()->add_secrets(s);
  if (a.Has("--transparent")) req.mutable_egress()->set_transparent(true);
  for (const auto& p : a.All("--expose")) {
    uint64_t port = TRY(ParseCount("--expose", p));
    if (port == 0 || port > 65535) return Fail("invalid option", "--expose: a port 1-65535 (got " + p + ")");
    req.add_expose_ports(static_cast<uint32_t>(port));
  }
  return req;
}

namespace {

// inspect, pause, resume and stats: one id in, one message out.
template <typename Reply, typename Call>
int OneSandbox(const Globals& g0, const std::vector<std::string>& args, const char* usage, const Call& call,
               const std::function<std::string(const Reply&)>& human) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, {}, usage, false, &g, &a, &code)) return code;
  if (a.positional.size() != 1) return Failed(std::string(usage).substr(0, std::string(usage).find('\n')));
  Connection conn(g.socket);
  v1::SandboxRef ref;
  ref.set_id(a.positional[0]);
  Reply reply;
  grpc::ClientContext ctx;
  grpc::Status st = call(conn.stub(), &ctx, ref, &reply);
  if (!st.ok()) return Failed(StatusMessage(st, g.socket));
  Print(g.json ? ToJson(reply, true) + "\n" : human(reply));
  return 0;
}

}  // namespace

bool ParseCommandArgs(const std::vector<std::string>& args, std::vector<OptionSpec> specs, const char* usage,
                      bool command_after_first_operand, Globals* g, ParsedArgs* out, int* exit_code) {
  for (auto& s : GlobalOptionSpecs()) specs.push_back(s);
  auto parsed = ParseArgs(args, specs, command_after_first_operand);
  if (!parsed) {
    *exit_code = Failed(parsed.error().detail + " (see --help)");
    return false;
  }
  if (parsed->Has("--help")) {
    Print(usage);
    *exit_code = 0;
    return false;
  }
  ApplyGlobals(*parsed, g);
  *out = std::move(*parsed);
  return true;
}

int CreateCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, CreateOptionSpecs(), kCreateUsage, false, &g, &a, &code)) return code;
  if (!a.positional.empty()) return Failed("create takes no operands (got \"" + a.positional[0] + "\"; see --help)");
  auto req = BuildCreateRequest(a);
  if (!req) return Failed(req.error().Message().starts_with("invalid option: ") ? req.error().detail : req.error().Message());
  Connection conn(g.socket);
  v1::Sandbox sandbox;
  grpc::ClientContext ctx;
  grpc::Status st = conn.stub().Create(&ctx, *req, &sandbox);
  if (!st.ok()) return Failed(StatusMessage(st, g.socket));
  Print(g.json ? ToJson(sandbox, true) + "\n" : sandbox.id() + "\n");
  return 0;
}

int PsCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, {{"--all", 'a', false}, {"--label", 'l', true}, {"--quiet", 'q', false}}, kPsUsage, false,
                        &g, &a, &code))
    return code;
  if (!a.positional.empty()) return Failed("ps takes no operands (see --help)");
  v1::ListRequest req;
  req.set_include_stopped(a.Has("--all"));
  for (const auto& kv : a.All("--label")) {
    auto p = ParseKeyValue("--label", kv);
    if (!p) return Failed(p.error().detail);
    (*req.mutable_labels())[p->first] = p->second;
  }
  Connection conn(g.socket);
  v1::ListResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn.stub().List(&ctx, req, &resp);
  if (!st.ok()) return Failed(StatusMessage(st, g.socket));
  if (g.json) {
    Print(ToJson(resp, true) + "\n");
    return 0;
  }
  std::vector<const v1::Sandbox*> list;
  for (const auto& s : resp.sandboxes()) list.push_back(&s);
  std::sort(list.begin(), list.end(), [](auto* x, auto* y) {
    return x->created_unix_ms() != y->created_unix_ms() ? x->created_unix_ms() < y->created_unix_ms() : x->id() < y->id();
  });
  if (a.Has("--quiet")) {
    for (auto* s : list) Print(s->id() + "\n");
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "IMAGE", "CREATED", "LABELS"}};
  const int64_t now = NowUnixMs();
  for (auto* s : list)
    rows.push_back({s->id(), StateName(s->state()), s->image(), Ago(s->created_unix_ms(), now), LabelsText(s->labels())});
  Print(FormatTable(rows));
  return 0;
}

int InspectCommand(const Globals& g, const std::vector<std::string>& args) {
  return OneSandbox<v1::Sandbox>(
      g, args, kInspectUsage,
      [](v1::Airlock::Stub& s, grpc::ClientContext* c, const v1::SandboxRef& r, v1::Sandbox* o) { return s.Get(c, r, o); },
      [](const v1::Sandbox& s) { return DescribeSandbox(s); });
}

int PauseCommand(const Globals& g, const std::vector<std::string>& args) {
  return OneSandbox<v1::Sandbox>(
      g, args, kPauseUsage,
      [](v1::Airlock::Stub& s, grpc::ClientContext* c, const v1::SandboxRef& r, v1::Sandbox* o) { return s.Pause(c, r, o); },
      [](const v1::Sandbox& s) { return s.id() + "\n"; });
}

int ResumeCommand(const Globals& g, const std::vector<std::string>& args) {
  return OneSandbox<v1::Sandbox>(
      g, args, kResumeUsage,
      [](v1::Airlock::Stub& s, grpc::ClientContext* c, const v1::SandboxRef& r, v1::Sandbox* o) { return s.Resume(c, r, o); },
      [](const v1::Sandbox& s) { return s.id() + "\n"; });
}

int StatsCommand(const Globals& g, const std::vector<std::string>& args) {
  return OneSandbox<v1::SandboxStats>(
      g, args, kStatsUsage,
      [](v1::Airlock::Stub& s, grpc::ClientContext* c, const v1::SandboxRef& r, v1::SandboxStats* o) {
        return s.Stats(c, r, o);
      },
      [](const v1::SandboxStats& s) { return DescribeStats(s); });
}

int RmCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, {{"--force", 'f', false}}, kRmUsage, false, &g, &a, &code)) return code;
  if (a.positional.empty()) return Failed("usage: airlock rm [-f] ID...");
  const bool force = a.Has("--force");
  Connection conn(g.socket);
  int status = 0;
  std::vector<std::string> json;
  for (const auto& id : a.positional) {
    v1::SandboxRef ref;
    ref.set_id(id);
    v1::Sandbox gone;
    grpc::ClientContext ctx;
    grpc::Status st = conn.stub().Destroy(&ctx, ref, &gone);
    if (!st.ok()) {
      if (force && st.error_code() == grpc::StatusCode::NOT_FOUND) continue;
      status = Failed(StatusMessage(st, g.socket));
      continue;
    }
    if (g.json) json.push_back(ToJson(gone, false));
    else Print(id + "\n");
  }
  if (g.json) {
    std::string out = "[";
    for (size_t i = 0; i < json.size(); ++i) out += (i ? ",\n " : "") + json[i];
    Print(out + "]\n");
  }
  return status;
}

int EventsCommand(const Globals& g0, const std::vector<std::string>& args) {
  Globals g = g0;
  ParsedArgs a;
  int code;
  if (!ParseCommandArgs(args, {{"--since", 0, true}, {"--all", 0, false}}, kEventsUsage, false, &g, &a, &code))
    return code;
  if (a.positional.size() > 1) return Failed("usage: airlock events [--since SEQ | --all] [ID]");
  v1::EventsRequest req;
  if (!a.positional.empty()) req.set_sandbox_id(a.positional[0]);
  if (auto v = a.Last("--since")) {
    auto n = ParseCount("--since", *v);
    if (!n) return Failed(n.error().detail);
    req.set_since_seq(*n);
  }
  if (a.Has("--all")) req.set_from_start(true);
  // ^C ends the stream cleanly: a thread waits for the signals (blocked
  // before gRPC starts threads of its own, which inherit the mask) and
  // cancels the call; it is joined before the call's context goes away.
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  UniqueFd sigfd(signalfd(-1, &stop, SFD_CLOEXEC));
  UniqueFd wake(eventfd(0, EFD_CLOEXEC));
  if (!sigfd || !wake) return Failed(std::string("signalfd: ") + strerror(errno));
  Connection conn(g.socket);
  grpc::ClientContext ctx;
  std::atomic<bool> interrupted{false};
  std::thread waiter([&] {
    pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    while (poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    if (fds[0].revents) {
      interrupted = true;
      ctx.TryCancel();
    }
  });
  auto reader = conn.stub().Events(&ctx, req);
  v1::Event e;
  while (reader->Read(&e)) Print((g.json ? ToJson(e, false) : EventLine(e)) + "\n");
  uint64_t one = 1;
  (void)!write(wake.get(), &one, sizeof one);
  waiter.join();
  grpc::Status st = reader->Finish();
  if (interrupted) return 0;
  if (!st.ok()) return Failed(StatusMessage(st, g.socket));
  return 0;
}

int Main(int argc, char** argv) {
  // Writes to a closed pipe (`airlock ps | head -1`) fail with EPIPE.
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  // Global options may come before the command (airlock-remote --socket S ps).
  Globals g;
  size_t i = 0;
  while (i < args.size() && args[i].starts_with("--") && args[i] != "--help") {
    if (args[i] == "--json") {
      g.json = true;
      ++i;
    } else if (args[i] == "--socket" && i + 1 < args.size()) {
      g.socket = args[i + 1];
      i += 2;
    } else if (args[i].starts_with("--socket=")) {
      g.socket = args[i].substr(9);
      ++i;
    } else {
      break;
    }
  }
  args.erase(args.begin(), args.begin() + static_cast<long>(i));
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? kExitFailure : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "create") return CreateCommand(g, args);
  if (cmd == "exec") return ExecCommand(g, args);
  if (cmd == "ps" || cmd == "list" || cmd == "ls") return PsCommand(g, args);
  if (cmd == "inspect") return InspectCommand(g, args);
  if (cmd == "rm") return RmCommand(g, args);
  if (cmd == "pause") return PauseCommand(g, args);
  if (cmd == "resume") return ResumeCommand(g, args);
  if (cmd == "stats") return StatsCommand(g, args);
  if (cmd == "events") return EventsCommand(g, args);
  if (cmd == "cp") return CpCommand(g, args);
  if (cmd == "mcp") return McpCommand(g, args);
  if (cmd == "snapshot" || cmd == "snapshots" || cmd == "restore" || cmd == "fork" || cmd == "rmsnap" ||
      cmd == "snapshot-export" || cmd == "snapshot-import")
    return SnapshotCommand(g, cmd, args);
  return Failed("unknown command \"" + cmd +
                "\" (create, exec, ps, inspect, rm, pause, resume, stats, events, cp, snapshot, snapshots, restore, "
                "fork, rmsnap, snapshot-export, snapshot-import, mcp)");
}

}  // namespace airlock::client

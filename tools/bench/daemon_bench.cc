// daemon_bench: the client side of tools/bench/daemon.sh, airlockd's
// benchmarks. It keeps one gRPC channel to airlockd open for its whole life
// and times each call in-process (CLOCK_MONOTONIC around the call), so no
// process start-up, dynamic linking or connection set-up is in the numbers:
// what is measured is what an agent framework holding a client sees.
//
//   daemon_bench --socket S create [--memory BYTES] [--pids N]   prints the id
//   daemon_bench --socket S destroy ID...
//   daemon_bench --socket S init-pid ID --daemon-pid P   host pid of its init
//   daemon_bench --socket S exec ID [--runs N] [--warmup W] [--json OUT] [--tag T]
//   daemon_bench --socket S cold [--runs N] [--gap-ms MS]   (MS idle before each create)
//   daemon_bench --socket S throughput [--threads 1,2] [--cycles K]
//   daemon_bench --socket S idle --daemon-pid P [--count M] [--settle-ms MS] [--rounds R]
//
// Sandboxes are made with memory 512 MiB and pids 1024 (the crun/runc
// bundles' limits) unless --memory/--pids say otherwise. Nothing here asserts
// a timing: a benchmark reports; only failed calls make the exit status 1.
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "airlock/v1/airlock.grpc.pb.h"

namespace {

namespace v1 = ::airlock::v1;

[[noreturn]] void Die(const std::string& msg) {
  fprintf(stderr, "daemon_bench: %s\n", msg.c_str());
  exit(1);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// --- options ---------------------------------------------------------------

struct Options {
  std::string socket;
  std::string mode;
  std::vector<std::string> args;  // positional, after the mode
  uint64_t memory = 512ull << 20;
  uint64_t pids = 1024;
  int runs = -1;
  int warmup = 20;
  int cycles = 50;
  int count = 500;
  int settle_ms = 2000;
  int gap_ms = 0;
  int rounds = 2;
  pid_t daemon_pid = 0;
  std::string json, tag;
  std::vector<int> threads{1, 2};
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() -> long long {
      std::string v = value();
      char* end = nullptr;
      long long n = strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0) Die(a + ": not a number: " + v);
      return n;
    };
    if (a == "--socket") o.socket = value();
    else if (a == "--memory") o.memory = static_cast<uint64_t>(number());
    else if (a == "--pids") o.pids = static_cast<uint64_t>(number());
    else if (a == "--runs") o.runs = static_cast<int>(number());
    else if (a == "--warmup") o.warmup = static_cast<int>(number());
    else if (a == "--cycles") o.cycles = static_cast<int>(number());
    else if (a == "--count") o.count = static_cast<int>(number());
    else if (a == "--settle-ms") o.settle_ms = static_cast<int>(number());
    else if (a == "--gap-ms") o.gap_ms = static_cast<int>(number());
    else if (a == "--rounds") o.rounds = static_cast<int>(number());
    else if (a == "--daemon-pid") o.daemon_pid = static_cast<pid_t>(number());
    else if (a == "--json") o.json = value();
    else if (a == "--tag") o.tag = value();
    else if (a == "--threads") {
      o.threads.clear();
      std::stringstream ss(value());
      for (std::string t; std::getline(ss, t, ',');) {
        int n = atoi(t.c_str());
        if (n <= 0) Die("--threads: a comma-separated list of positive numbers");
        o.threads.push_back(n);
      }
    } else if (a.starts_with("--")) Die("unknown option " + a);
    else if (o.mode.empty()) o.mode = a;
    else o.args.push_back(a);
  }
  if (o.socket.empty()) Die("--socket is required");
  if (o.mode.empty()) Die("no mode (create, destroy, init-pid, exec, cold, throughput, idle)");
  return o;
}

// --- statistics ------------------------------------------------------------

struct Summary {
  size_t n = 0;
  double median = 0, p90 = 0, mean = 0, stddev = 0, min = 0, max = 0;
};

// Median, p90 (nearest rank, as tools/bench/report.py), mean, σ, min, max.
Summary Summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p90 = v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * 0.9))];
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  double sq = 0;
  for (double x : v) sq += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(sq / static_cast<double>(v.size() - 1)) : 0;
  s.min = v.front();
  s.max = v.back();
  return s;
}

// "median 1.23  p90 1.50  max 2.00 ms" from seconds.
std::string Ms(const std::vector<double>& seconds) {
  Summary s = Summarize(seconds);
  char buf[160];
  snprintf(buf, sizeof(buf), "median %7.3f  p90 %7.3f  min %7.3f  max %8.3f ms  (n=%zu)", s.median * 1e3,
           s.p90 * 1e3, s.min * 1e3, s.max * 1e3, s.n);
  return buf;
}

// --- the API -----------------------------------------------------------------

// One connection. `own_pool` gives the channel its own subchannel (its own
// HTTP/2 connection): used for the throughput threads, which stand for
// independent clients.
struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Airlock::Stub> stub;
};

Client Connect(const std::string& socket, bool own_pool) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  if (own_pool) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  Client c;
  c.channel = grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args);
  if (!c.channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)))
    Die("cannot connect to airlockd at " + socket + " within 10 s");
  c.stub = v1::Airlock::NewStub(c.channel);
  return c;
}

void Deadline(grpc::ClientContext* ctx, int seconds) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

std::string StatusText(const std::string& call, const grpc::Status& s) {
  return call + ": gRPC status " + std::to_string(static_cast<int>(s.error_code())) + ": " + s.error_message();
}

// What went wrong with a command that should have exited 0; "" if nothing.
std::string CheckExit(const std::string& call, const v1::ExitStatus& e) {
  if (!e.exec_error().empty()) return call + ": exec error: " + e.exec_error();
  if (e.signal() != 0) return call + ": killed by signal " + std::to_string(e.signal());
  if (e.code() != 0) return call + ": exit code " + std::to_string(e.code());
  return "";
}

// Each call returns "" on success, else a description of the failure.
std::string Create(v1::Airlock::Stub& stub, const Options& o, std::string* id) {
  v1::CreateRequest req;
  req.mutable_limits()->set_memory_bytes(o.memory);
  req.mutable_limits()->set_pids(o.pids);
  (*req.mutable_labels())["airlock-bench"] = "daemon";
  v1::Sandbox out;
  grpc::ClientContext ctx;
  Deadline(&ctx, 60);
  grpc::Status s = stub.Create(&ctx, req, &out);
  if (!s.ok()) return StatusText("Create", s);
  *id = out.id();
  return "";
}

std::string Destroy(v1::Airlock::Stub& stub, const std::string& id) {
  v1::SandboxRef ref;
  ref.set_id(id);
  v1::Sandbox out;
  grpc::ClientContext ctx;
  Deadline(&ctx, 60);
  grpc::Status s = stub.Destroy(&ctx, ref, &out);
  return s.ok() ? "" : StatusText("Destroy " + id, s);
}

void TrueCommand(v1::Command* cmd, const std::string& id) {
  cmd->set_sandbox_id(id);
  cmd->add_argv("true");
}

// Unary Run of `true`.
std::string RunTrue(v1::Airlock::Stub& stub, const std::string& id) {
  v1::RunRequest req;
  TrueCommand(req.mutable_command(), id);
  v1::RunResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx, 30);
  grpc::Status s = stub.Run(&ctx, req, &resp);
  if (!s.ok()) return StatusText("Run " + id, s);
  return CheckExit("Run " + id, resp.exit());
}

// `true` over the bidi Exec stream. write_last: the start message half-closes
// the stream (WriteLast); else start, read to the exit, then half-close, as
// an interactive client that might have sent stdin does.
std::string ExecTrue(v1::Airlock::Stub& stub, const std::string& id, bool write_last) {
  grpc::ClientContext ctx;
  Deadline(&ctx, 30);
  auto stream = stub.Exec(&ctx);
  v1::ExecInput in;
  TrueCommand(in.mutable_start()->mutable_command(), id);
  bool wrote = true;
  if (write_last) stream->WriteLast(in, grpc::WriteOptions());  // void in gRPC 1.51
  else wrote = stream->Write(in);
  v1::ExecOutput out;
  std::optional<v1::ExitStatus> exit;
  if (wrote)
    while (stream->Read(&out))
      if (out.has_exit()) {
        exit = out.exit();
        break;
      }
  if (!write_last) stream->WritesDone();
  while (stream->Read(&out)) {
  }
  grpc::Status s = stream->Finish();
  if (!s.ok()) return StatusText("Exec " + id, s);
  if (!exit) return "Exec " + id + ": the stream ended without an exit message";
  return CheckExit("Exec " + id, *exit);
}

// --- cgroups and /proc -------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) out.push_back(part);
  return out;
}

// Where `controller` lives in this mount namespace (v1 hierarchy, else the
// cgroup2 mount) and whether it is v2.
struct Hierarchy {
  std::string mount;
  bool v2 = false;
};

std::optional<Hierarchy> FindHierarchy(const std::string& controller) {
  std::optional<Hierarchy> v2;
  for (const std::string& line : Split(ReadFile("/proc/self/mountinfo"), '\n')) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto before = Split(line.substr(0, dash), ' ');
    auto after = Split(line.substr(dash + 3), ' ');
    if (before.size() < 5 || after.size() < 3) continue;
    if (after[0] == "cgroup") {
      for (const std::string& opt : Split(after[2], ','))
        if (opt == controller) return Hierarchy{before[4], false};
    } else if (after[0] == "cgroup2" && !v2) {
      v2 = Hierarchy{before[4], true};
    }
  }
  return v2;
}

// The directory airlockd creates its sandboxes' `controller` groups in: its
// own cgroup (on v2: the parent of its airlock.self leaf).
std::string SandboxBase(pid_t daemon, const std::string& controller) {
  auto h = FindHierarchy(controller);
  if (!h) Die("no cgroup hierarchy carries " + controller);
  for (const std::string& line : Split(ReadFile("/proc/" + std::to_string(daemon) + "/cgroup"), '\n')) {
    auto f = Split(line, ':');
    if (f.size() < 3) continue;
    std::string path = line.substr(f[0].size() + f[1].size() + 2);
    bool match = h->v2 ? f[1].empty() : false;
    if (!h->v2)
      for (const std::string& c : Split(f[1], ','))
        match |= c == controller;
    if (!match) continue;
    if (h->v2 && path.ends_with("/airlock.self")) path.resize(path.size() - strlen("/airlock.self"));
    return h->mount + (path == "/" ? "" : path);
  }
  Die("airlockd (pid " + std::to_string(daemon) + ") has no " + controller + " cgroup");
}

std::vector<pid_t> Procs(const std::string& dir) {
  std::vector<pid_t> out;
  for (const std::string& l : Split(ReadFile(dir + "/cgroup.procs"), '\n'))
    if (!l.empty()) out.push_back(static_cast<pid_t>(atoi(l.c_str())));
  return out;
}

// One process's memory as /proc says, in KiB.
struct Mem {
  long rss_kib = 0, pss_kib = 0;
};

Mem MemOf(pid_t pid) {
  Mem m;
  for (const std::string& l : Split(ReadFile("/proc/" + std::to_string(pid) + "/smaps_rollup"), '\n')) {
    if (l.starts_with("Rss:")) m.rss_kib = atol(l.c_str() + 4);
    else if (l.starts_with("Pss:")) m.pss_kib = atol(l.c_str() + 4);
  }
  return m;
}

long StatusField(pid_t pid, const std::string& field) {
  for (const std::string& l : Split(ReadFile("/proc/" + std::to_string(pid) + "/status"), '\n'))
    if (l.starts_with(field + ":")) return atol(l.c_str() + field.size() + 1);
  return -1;
}

int CountEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

std::vector<std::string> SubgroupsNamed(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_type == DT_DIR && std::string(e->d_name).starts_with(prefix)) out.push_back(e->d_name);
  closedir(d);
  return out;
}

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> out;
  for (const std::string& l : Split(ReadFile(path), '\n'))
    if (!l.empty()) out.push_back(l);
  return out;
}

// mountinfo without the mount ids (which change on remount) for comparing.
std::multiset<std::string> MountSet(pid_t pid) {
  std::multiset<std::string> out;
  for (const std::string& l : Lines("/proc/" + std::to_string(pid) + "/mountinfo")) {
    auto f = Split(l, ' ');
    if (f.size() > 4) out.insert(f[3] + " " + f[4] + " " + l.substr(l.find(" - ") + 3));
  }
  return out;
}

// A memory cgroup's charge in KiB (-1 if unreadable).
long MemcgKib(const std::string& dir) {
  bool v2 = FindHierarchy("memory")->v2;
  std::string v = ReadFile(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
  return v.empty() ? -1 : atol(v.c_str()) / 1024;
}

// The daemon's own footprint, and its helpers' (the keeper: every other
// process in the daemon's pids group). memcg_total is the daemon's memory
// group with its sandboxes' groups (hierarchical), memcg_sandboxes theirs
// alone: the difference is what is charged to the daemon itself, kernel
// objects it makes for sandboxes (their network namespaces) included.
struct DaemonState {
  Mem daemon;
  long threads = 0;
  int fds = 0;
  std::map<pid_t, Mem> others;
  long memcg_total = 0, memcg_sandboxes = 0;
  long memcg_own() const { return memcg_total - memcg_sandboxes; }
};

DaemonState SampleDaemon(pid_t daemon) {
  DaemonState s;
  s.daemon = MemOf(daemon);
  s.threads = StatusField(daemon, "Threads");
  s.fds = CountEntries("/proc/" + std::to_string(daemon) + "/fd");
  std::string pids = SandboxBase(daemon, "pids");
  for (const std::string& dir : {pids, pids + "/airlock.self"})
    for (pid_t p : Procs(dir))
      if (p != daemon) s.others[p] = MemOf(p);
  std::string mem = SandboxBase(daemon, "memory");
  s.memcg_total = MemcgKib(mem);
  for (const std::string& g : SubgroupsNamed(mem, "airlock-")) s.memcg_sandboxes += std::max(0L, MemcgKib(mem + "/" + g));
  return s;
}

// System-wide /proc/meminfo fields, KiB.
std::map<std::string, long> MemInfo() {
  std::map<std::string, long> out;
  for (const std::string& l : Split(ReadFile("/proc/meminfo"), '\n')) {
    size_t colon = l.find(':');
    if (colon != std::string::npos) out[l.substr(0, colon)] = atol(l.c_str() + colon + 1);
  }
  return out;
}

std::string Comm(pid_t pid) {
  std::string c = ReadFile("/proc/" + std::to_string(pid) + "/comm");
  if (!c.empty() && c.back() == '\n') c.pop_back();
  return c;
}

// --- modes -------------------------------------------------------------------

int ModeCreate(const Options& o) {
  Client c = Connect(o.socket, false);
  std::string id;
  if (auto e = Create(*c.stub, o, &id); !e.empty()) Die(e);
  printf("%s\n", id.c_str());
  return 0;
}

int ModeDestroy(const Options& o) {
  Client c = Connect(o.socket, false);
  int failed = 0;
  for (const std::string& id : o.args)
    if (auto e = Destroy(*c.stub, id); !e.empty()) {
      fprintf(stderr, "daemon_bench: %s\n", e.c_str());
      ++failed;
    }
  return failed ? 1 : 0;
}

int ModeInitPid(const Options& o) {
  if (o.args.size() != 1 || o.daemon_pid <= 0) Die("init-pid ID --daemon-pid P");
  std::string dir = SandboxBase(o.daemon_pid, "pids") + "/airlock-" + o.args[0] + "/init";
  auto procs = Procs(dir);
  if (procs.empty()) Die("no process in " + dir);
  printf("%d\n", procs[0]);
  return 0;
}

// Writes results in hyperfine's JSON shape (seconds), so one report reads both.
void WriteJson(const std::string& path, const std::vector<std::pair<std::string, std::vector<double>>>& rows) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) Die("can't write " + path);
  fprintf(f, "{\"results\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    Summary s = Summarize(rows[i].second);
    fprintf(f, "  {\"command\": \"%s\", \"median\": %.9f, \"mean\": %.9f, \"stddev\": %.9f, \"min\": %.9f, "
               "\"max\": %.9f, \"times\": [",
            rows[i].first.c_str(), s.median, s.mean, s.stddev, s.min, s.max);
    for (size_t j = 0; j < rows[i].second.size(); ++j) fprintf(f, "%s%.9f", j ? ", " : "", rows[i].second[j]);
    fprintf(f, "]}%s\n", i + 1 < rows.size() ? "," : "");
  }
  fprintf(f, "]}\n");
  fclose(f);
}

// Run, Exec and Exec-with-WriteLast of `true`, interleaved round-robin so
// the three share the machine's conditions.
int ModeExec(const Options& o) {
  if (o.args.size() != 1) Die("exec ID");
  const std::string& id = o.args[0];
  int runs = o.runs < 0 ? 300 : o.runs;
  Client c = Connect(o.socket, false);
  struct Way {
    std::string name;
    std::function<std::string()> call;
    std::vector<double> times;
  };
  std::string suffix = o.tag.empty() ? "" : " (" + o.tag + ")";
  std::vector<Way> ways = {
      {"api Run" + suffix, [&] { return RunTrue(*c.stub, id); }, {}},
      {"api Exec stream" + suffix, [&] { return ExecTrue(*c.stub, id, false); }, {}},
      {"api Exec stream, WriteLast" + suffix, [&] { return ExecTrue(*c.stub, id, true); }, {}},
      // The floor under every row above: a unary call that does no work
      // in the sandbox (the gRPC round trip, the caller check, a lookup).
      {"api Get (no command)" + suffix,
       [&]() -> std::string {
         v1::SandboxRef ref;
         ref.set_id(id);
         v1::Sandbox out;
         grpc::ClientContext ctx;
         Deadline(&ctx, 30);
         grpc::Status s = c.stub->Get(&ctx, ref, &out);
         return s.ok() ? "" : StatusText("Get " + id, s);
       },
       {}},
  };
  for (int i = 0; i < o.warmup; ++i)
    for (auto& w : ways)
      if (auto e = w.call(); !e.empty()) Die("warm-up: " + e);
  for (int i = 0; i < runs; ++i)
    for (auto& w : ways) {
      double t = Now();
      std::string e = w.call();
      double dt = Now() - t;
      if (!e.empty()) Die(e);
      w.times.push_back(dt);
    }
  for (auto& w : ways) printf("  %-40s %s\n", w.name.c_str(), Ms(w.times).c_str());
  if (!o.json.empty()) {
    std::vector<std::pair<std::string, std::vector<double>>> rows;
    for (auto& w : ways) rows.emplace_back(w.name, w.times);
    WriteJson(o.json, rows);
  }
  return 0;
}

// N cold creates: Create, first Run(true), Destroy, each timed.
int ModeCold(const Options& o) {
  int runs = o.runs < 0 ? 50 : o.runs;
  Client c = Connect(o.socket, false);
  std::vector<double> create, first, second, both, destroy;
  for (int i = 0; i < runs; ++i) {
    // With a gap, each create starts after the previous sandbox's
    // asynchronous teardown (its namespaces, freed by kernel workers).
    if (o.gap_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.gap_ms));
    std::string id;
    double t0 = Now();
    if (auto e = Create(*c.stub, o, &id); !e.empty()) Die(e);
    double t1 = Now();
    std::string run_error = RunTrue(*c.stub, id);
    double t2 = Now();
    if (run_error.empty()) run_error = RunTrue(*c.stub, id);
    double t2b = Now();
    std::string destroy_error = Destroy(*c.stub, id);
    double t3 = Now();
    if (!run_error.empty()) Die(run_error);
    if (!destroy_error.empty()) Die(destroy_error);
    create.push_back(t1 - t0);
    first.push_back(t2 - t1);
    second.push_back(t2b - t2);
    both.push_back(t2 - t0);
    destroy.push_back(t3 - t2b);
  }
  printf("  %-33s %s\n", "Create", Ms(create).c_str());
  printf("  %-33s %s\n", "first Run(true)", Ms(first).c_str());
  printf("  %-33s %s\n", "Create + first Run (to 1st exec)", Ms(both).c_str());
  printf("  %-33s %s\n", "second Run(true)", Ms(second).c_str());
  printf("  %-33s %s\n", "Destroy (kill, cgroups, records)", Ms(destroy).c_str());
  return 0;
}

// T client threads, each with its own connection, each doing K cycles of
// Create, Run(true), Destroy; cycles per second of wall time.
int ModeThroughput(const Options& o) {
  for (int threads : o.threads) {
    std::vector<Client> clients;
    for (int t = 0; t < threads; ++t) clients.push_back(Connect(o.socket, true));
    std::mutex mu;
    std::vector<double> cycle;
    std::string first_error;
    std::atomic<int> done{0};
    double start = Now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < o.cycles; ++i) {
          double c0 = Now();
          std::string id, e = Create(*clients[t].stub, o, &id);
          if (e.empty()) e = RunTrue(*clients[t].stub, id);
          if (!id.empty()) {
            std::string d = Destroy(*clients[t].stub, id);
            if (e.empty()) e = d;
          }
          double c1 = Now();
          std::lock_guard lock(mu);
          if (!e.empty()) {
            if (first_error.empty()) first_error = e;
            return;
          }
          cycle.push_back(c1 - c0);
          ++done;
        }
      });
    for (auto& th : pool) th.join();
    double wall = Now() - start;
    if (!first_error.empty()) Die("throughput: " + first_error);
    printf("  %d client thread%s: %4d cycles in %6.2f s = %6.1f create/exec/destroy per s;  per cycle %s\n",
           threads, threads == 1 ? " " : "s", done.load(), wall, done.load() / wall, Ms(cycle).c_str());
  }
  return 0;
}

std::string KibRow(const std::vector<double>& v) {
  Summary s = Summarize(v);
  char buf[160];
  snprintf(buf, sizeof(buf), "median %7.0f  p90 %7.0f  min %7.0f  max %7.0f KiB", s.median, s.p90, s.min, s.max);
  return buf;
}

// M idle sandboxes: what each costs in memory, what the daemon costs, that
// all still answer, and that destroying them leaves nothing behind.
int ModeIdle(const Options& o) {
  if (o.daemon_pid <= 0) Die("idle needs --daemon-pid");
  const pid_t daemon = o.daemon_pid;
  Client c = Connect(o.socket, false);
  // Controllers whose groups must be gone after the destroys.
  std::vector<std::pair<std::string, std::string>> bases;  // controller, dir
  for (const char* ctl : {"pids", "memory", "cpu", "freezer"})
    if (FindHierarchy(ctl)) bases.emplace_back(ctl, SandboxBase(daemon, ctl));
  auto mounts_before = MountSet(daemon);
  DaemonState before = SampleDaemon(daemon);
  auto meminfo_before = MemInfo();

  printf("  creating %d sandboxes (memory %llu MiB, pids %llu each), one after another\n", o.count,
         static_cast<unsigned long long>(o.memory >> 20), static_cast<unsigned long long>(o.pids));
  fflush(stdout);
  std::vector<std::string> ids;
  std::vector<double> create;
  double t0 = Now();
  for (int i = 0; i < o.count; ++i) {
    std::string id;
    double t = Now();
    if (auto e = Create(*c.stub, o, &id); !e.empty()) {
      fprintf(stderr, "daemon_bench: sandbox %d of %d: %s\n", i + 1, o.count, e.c_str());
      break;
    }
    create.push_back(Now() - t);
    ids.push_back(id);
    if ((i + 1) % 100 == 0) {
      printf("    %d created, %.1f s\n", i + 1, Now() - t0);
      fflush(stdout);
    }
  }
  double create_wall = Now() - t0;
  printf("  created %zu in %.1f s (%.1f per s); Create %s\n", ids.size(), create_wall, ids.size() / create_wall,
         Ms(create).c_str());
  if (create.size() >= 200) {
    std::vector<double> first(create.begin(), create.begin() + 100), last(create.end() - 100, create.end());
    printf("  Create, the first 100: %s\n  Create, the last 100:  %s\n", Ms(first).c_str(), Ms(last).c_str());
  }
  int rc = ids.size() == static_cast<size_t>(o.count) ? 0 : 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(o.settle_ms));
  auto meminfo_during = MemInfo();

  // Per sandbox: its processes (init + spawner) by cgroup, their PSS/RSS,
  // and the memory cgroup's charge (which also counts kernel memory and the
  // tmpfs upper's pages, which no process's PSS shows).
  std::string pids_base = SandboxBase(daemon, "pids");
  std::string mem_base = SandboxBase(daemon, "memory");
  std::vector<double> pss, rss, memcg, nprocs;
  std::map<std::string, int> names;
  for (const std::string& id : ids) {
    std::string dir = pids_base + "/airlock-" + id;
    double p = 0, r = 0;
    int n = 0;
    for (const char* child : {"/init", "/work"})
      for (pid_t pid : Procs(dir + child)) {
        Mem m = MemOf(pid);
        p += static_cast<double>(m.pss_kib);
        r += static_cast<double>(m.rss_kib);
        ++n;
        ++names[Comm(pid)];
      }
    pss.push_back(p);
    rss.push_back(r);
    nprocs.push_back(n);
    if (long kib = MemcgKib(mem_base + "/airlock-" + id); kib >= 0) memcg.push_back(static_cast<double>(kib));
  }
  DaemonState during = SampleDaemon(daemon);
  std::string who;
  for (auto& [name, n] : names) who += (who.empty() ? "" : ", ") + name + " x" + std::to_string(n);
  printf("  processes per sandbox: median %.0f, max %.0f  (all: %s)\n", Summarize(nprocs).median,
         Summarize(nprocs).max, who.c_str());
  printf("  per sandbox PSS (init + spawner)   %s\n", KibRow(pss).c_str());
  printf("  per sandbox RSS (init + spawner)   %s\n", KibRow(rss).c_str());
  if (!memcg.empty())
    printf("  per sandbox memory cgroup charge   %s  (kernel memory, page tables, tmpfs upper included)\n",
           KibRow(memcg).c_str());
  double pss_total = 0;
  for (double x : pss) pss_total += x;
  printf("  all %zu sandboxes' PSS: %.1f MiB;  target <= 1024 KiB PSS per idle sandbox: %s (median %.0f KiB)\n",
         ids.size(), pss_total / 1024, Summarize(pss).median <= 1024 ? "met" : "NOT MET", Summarize(pss).median);
  auto per = [&](long a, long b) { return ids.empty() ? 0.0 : static_cast<double>(b - a) / static_cast<double>(ids.size()); };
  printf("  airlockd: RSS %ld -> %ld KiB (%+.1f KiB per sandbox), PSS %ld -> %ld KiB, threads %ld -> %ld, fds %d -> %d\n",
         before.daemon.rss_kib, during.daemon.rss_kib, per(before.daemon.rss_kib, during.daemon.rss_kib),
         before.daemon.pss_kib, during.daemon.pss_kib, before.threads, during.threads, before.fds, during.fds);
  printf("  airlockd's memory cgroup without its sandboxes' groups (daemon + keeper; kernel objects the daemon "
         "makes for sandboxes, page cache of its state): %ld -> %ld KiB (%+.1f KiB per sandbox)\n",
         before.memcg_own(), during.memcg_own(), per(before.memcg_own(), during.memcg_own()));
  if (!ids.empty()) {
    auto drop = [&](const char* f) {
      return static_cast<double>(meminfo_before[f] - meminfo_during[f]) / static_cast<double>(ids.size());
    };
    auto grow = [&](const char* f) { return -drop(f); };
    printf("  system-wide, per sandbox (/proc/meminfo; UNRELIABLE while other processes on the host allocate): "
           "MemAvailable fell %.0f KiB; Slab grew %.0f, PageTables %.0f, KernelStack %.0f, Shmem %.0f KiB\n",
           drop("MemAvailable"), grow("Slab"), grow("PageTables"), grow("KernelStack"), grow("Shmem"));
  }
  for (auto& [pid, m] : during.others)
    printf("  %s (pid %d, in airlockd's group): RSS %ld KiB, PSS %ld KiB\n", Comm(pid).c_str(), pid, m.rss_kib,
           m.pss_kib);

  // Still responsive: Run(true) in each, while all exist; round 1 is each
  // sandbox's first command after its idle time.
  for (int round = 1; round <= o.rounds; ++round) {
    std::vector<double> run;
    for (const std::string& id : ids) {
      double t = Now();
      std::string e = RunTrue(*c.stub, id);
      run.push_back(Now() - t);
      if (!e.empty()) {
        fprintf(stderr, "daemon_bench: %s\n", e.c_str());
        rc = 1;
      }
    }
    printf("  Run(true) in each of the %zu sandboxes while all exist, round %d: %s\n", ids.size(), round,
           Ms(run).c_str());
  }

  // Destroy them all; then wait (bounded) in case any teardown is left to
  // a background thread (the daemon's Stop path works that way).
  t0 = Now();
  for (const std::string& id : ids)
    if (auto e = Destroy(*c.stub, id); !e.empty()) {
      fprintf(stderr, "daemon_bench: %s\n", e.c_str());
      rc = 1;
    }
  double destroy_wall = Now() - t0;
  std::map<std::string, std::vector<std::string>> left;
  double waited = 0;
  for (;;) {
    left.clear();
    for (auto& [ctl, dir] : bases)
      for (const std::string& id : ids)
        if (access((dir + "/airlock-" + id).c_str(), F_OK) == 0) left[ctl].push_back(id);
    if (left.empty() || waited >= 60) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    waited = Now() - t0 - destroy_wall;
  }
  printf("  destroyed %zu in %.1f s; their cgroups gone %.1f s after the last Destroy returned\n", ids.size(),
         destroy_wall, waited);
  for (auto& [ctl, l] : left) {
    printf("  !!! LEAK: %zu %s groups still there after 60 s, e.g. %s/airlock-%s\n", l.size(), ctl.c_str(),
           SandboxBase(daemon, ctl).c_str(), l[0].c_str());
    rc = 1;
  }
  // Let the daemon finish its teardown threads before comparing.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto mounts_after = MountSet(daemon);
  std::vector<std::string> extra;
  std::set_difference(mounts_after.begin(), mounts_after.end(), mounts_before.begin(), mounts_before.end(),
                      std::back_inserter(extra));
  printf("  airlockd's mount table: %zu entries before, %zu after%s\n", mounts_before.size(), mounts_after.size(),
         extra.empty() ? " (no new mount)" : "");
  for (size_t i = 0; i < extra.size() && i < 5; ++i) printf("  !!! LEAK: new mount: %s\n", extra[i].c_str());
  if (!extra.empty()) rc = 1;
  DaemonState after = SampleDaemon(daemon);
  printf("  airlockd after: RSS %ld KiB, threads %ld, fds %d (before the creates: %ld KiB, %ld, %d)\n",
         after.daemon.rss_kib, after.threads, after.fds, before.daemon.rss_kib, before.threads, before.fds);
  if (after.fds > before.fds) {
    printf("  !!! airlockd holds %d more descriptors than before the creates\n", after.fds - before.fds);
    rc = 1;
  }
  v1::ListRequest lreq;
  (*lreq.mutable_labels())["airlock-bench"] = "daemon";
  v1::ListResponse lresp;
  grpc::ClientContext ctx;
  Deadline(&ctx, 30);
  if (grpc::Status s = c.stub->List(&ctx, lreq, &lresp); !s.ok()) {
    fprintf(stderr, "daemon_bench: %s\n", StatusText("List", s).c_str());
    rc = 1;
  } else {
    std::set<std::string> mine(ids.begin(), ids.end());
    int listed = 0;
    for (const auto& sb : lresp.sandboxes()) listed += mine.count(sb.id()) ? 1 : 0;
    printf("  List: %d of the destroyed sandboxes still listed as running\n", listed);
    if (listed > 0) rc = 1;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  if (o.mode == "create") return ModeCreate(o);
  if (o.mode == "destroy") return ModeDestroy(o);
  if (o.mode == "init-pid") return ModeInitPid(o);
  if (o.mode == "exec") return ModeExec(o);
  if (o.mode == "cold") return ModeCold(o);
  if (o.mode == "throughput") return ModeThroughput(o);
  if (o.mode == "idle") return ModeIdle(o);
  Die("unknown mode " + o.mode);
}

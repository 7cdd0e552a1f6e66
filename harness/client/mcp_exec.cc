// The Toolbox's shell: exec_command, write_stdin and kill_session, in the
// manner of Codex's unified exec. A command runs as a background process of
// airlockd (StartProcess); a call waits up to yield_time_ms for it to end
// (ReadProcessOutput with a wait), and returns a session_id when it didn't,
// so that later calls can wait for more of its output or type into it.
#include <signal.h>

#include <chrono>

#include "harness/client/mcp_tools.h"
#include "harness/tools/output_cap.h"

namespace airlock::client::mcp {
namespace {

constexpr size_t kMaxSessions = 64;
constexpr uint64_t kDefaultExecYieldMs = 10000;
constexpr uint64_t kDefaultStdinYieldMs = 1000;
constexpr size_t kDefaultMaxOutput = 32768;
constexpr uint64_t kReadChunk = 1 << 20;
// Each wait on the daemon is at most this long, so that a shutdown is seen.
constexpr uint64_t kWaitSliceMs = 1000;

int64_t IntArg(const Json& a, const char* key, int64_t fallback) {
  auto it = a.find(key);
  if (it == a.end()) return fallback;
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Seconds(int64_t ms) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

// "Process exited with code 2", "Process was killed by signal 9 (its
// timeout_ms passed)", ...; also fills the structured fields.
std::string Ending(const v1::ExitStatus& e, Json* s) {
  if (!e.exec_error().empty()) {
    (*s)["exec_error"] = e.exec_error();
    return "Process could not start: " + e.exec_error();
  }
  std::string line;
  if (e.signal() != 0) {
    (*s)["signal"] = e.signal();
    line = "Process was killed by signal " + std::to_string(e.signal());
  } else {
    (*s)["exit_code"] = e.code();
    line = "Process exited with code " + std::to_string(e.code());
  }
  if (e.timed_out()) {
    (*s)["timed_out"] = true;
    line += " (its timeout_ms passed)";
  }
  if (e.oom_killed()) {
    (*s)["oom_killed"] = true;
    line += " (the sandbox ran out of memory)";
  }
  return line;
}

}  // namespace

Result<ToolResult> Toolbox::ExecCommand(const Json& a) {
  std::string cwd = TRY(Path("exec_command", a, "workdir", true));
  {
    std::lock_guard lock(mu_);
    if (sessions_.size() >= kMaxSessions)
      return Fail("exec_command", std::to_string(kMaxSessions) +
                                      " sessions are still running: wait for them with write_stdin or end them "
                                      "with kill_session first");
  }
  const bool tty = a.value("tty", false);
  v1::StartProcessRequest req;
  auto* c = req.mutable_command();
  c->set_sandbox_id(a["sandbox_id"].get<std::string>());
  c->add_argv("/bin/sh");
  c->add_argv("-lc");
  c->add_argv(a["cmd"].get<std::string>());
  c->set_cwd(cwd);
  c->set_tty(tty);
  if (tty) {
    c->mutable_size()->set_rows(40);
    c->mutable_size()->set_cols(120);
  }
  c->set_timeout_ms(static_cast<uint64_t>(IntArg(a, "timeout_ms", 0)));
  req.set_stdin(tty);  // without a tty stdin reads EOF: a stray `cat` ends at once
  const auto yield_ms = static_cast<uint64_t>(IntArg(a, "yield_time_ms", kDefaultExecYieldMs));
  // Started and first read in one call: a quick command costs one round trip.
  v1::StartProcessAndReadRequest start;
  *start.mutable_start() = std::move(req);
  start.set_max_bytes(kReadChunk);
  start.set_wait_ms(std::min(yield_ms, kWaitSliceMs));
  v1::ReadProcessOutputResponse first;
  const int64_t called_ms = SteadyMs();
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().StartProcessAndRead(&ctx, start, &first);
  if (!st.ok()) return DaemonError(st, *conn_);
  const v1::Process& p = first.process();
  auto s = std::make_shared<Session>();
  s->sandbox_id = p.sandbox_id();
  s->process_id = p.process_id();
  s->tty = tty;
  s->started_ms = SteadyMs();
  {
    std::lock_guard lock(mu_);
    s->id = next_session_++;
    sessions_[s->id] = s;
  }
  return Collect(s, yield_ms, static_cast<size_t>(IntArg(a, "max_output_bytes", kDefaultMaxOutput)), &first, called_ms);
}

Result<std::shared_ptr<Toolbox::Session>> Toolbox::FindSession(const std::string& tool, const Json& a) {
  const int64_t id = IntArg(a, "session_id", 0);
  std::lock_guard lock(mu_);
  auto it = sessions_.find(static_cast<int>(id));
  if (it == sessions_.end())
    return Fail(tool + ".session_id",
                "no running session " + std::to_string(id) + " (it ended, was killed, or never existed)");
  return it->second;
}

Result<ToolResult> Toolbox::WriteStdin(const Json& a) {
  auto s = TRY(FindSession("write_stdin", a));
  const std::string chars = a.value("chars", "");
  if (!chars.empty()) {
    if (!s->tty)
      return Fail("write_stdin.chars", "session " + std::to_string(s->id) +
                                           " was started without a tty, so its stdin is closed; run the command "
                                           "with exec_command tty: true to type into it (empty chars only waits)");
    v1::WriteProcessStdinRequest req;
    req.mutable_process()->set_sandbox_id(s->sandbox_id);
    req.mutable_process()->set_process_id(s->process_id);
    req.set_data(chars);
    v1::Process p;
    grpc::ClientContext ctx;
    grpc::Status st = conn_->stub().WriteProcessStdin(&ctx, req, &p);
    if (!st.ok()) return DaemonError(st, *conn_);
  }
  return Collect(s, static_cast<uint64_t>(IntArg(a, "yield_time_ms", kDefaultStdinYieldMs)),
                 static_cast<size_t>(IntArg(a, "max_output_bytes", kDefaultMaxOutput)));
}

Result<ToolResult> Toolbox::KillSession(const Json& a) {
  auto s = TRY(FindSession("kill_session", a));
  v1::SignalProcessRequest req;
  req.mutable_process()->set_sandbox_id(s->sandbox_id);
  req.mutable_process()->set_process_id(s->process_id);
  req.set_signo(SIGKILL);
  v1::Process p;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().SignalProcess(&ctx, req, &p);
  // One that ended on its own in the meantime is reported as it ended.
  if (!st.ok() && p.running()) return DaemonError(st, *conn_);
  return Collect(s, 5000, kDefaultMaxOutput);
}

Result<ToolResult> Toolbox::Collect(const std::shared_ptr<Session>& s, uint64_t yield_ms, size_t max_output,
                                    const v1::ReadProcessOutputResponse* first, int64_t since_ms) {
  std::lock_guard session_lock(s->mu);
  const int64_t start = since_ms != 0 ? since_ms : SteadyMs();
  const int64_t deadline = start + static_cast<int64_t>(yield_ms);
  tools::OutputCap out(max_output, /*keep_tail=*/true);
  bool ended = false;
  v1::ExitStatus exit;
  for (;;) {
    v1::ReadProcessOutputResponse resp;
    if (first != nullptr) {
      resp = *first;
      first = nullptr;
    } else {
      const int64_t remaining = std::max<int64_t>(0, deadline - SteadyMs());
      v1::ReadProcessOutputRequest req;
      req.mutable_process()->set_sandbox_id(s->sandbox_id);
      req.mutable_process()->set_process_id(s->process_id);
      req.set_max_bytes(kReadChunk);
      req.set_wait_ms(std::min<uint64_t>(static_cast<uint64_t>(remaining), kWaitSliceMs));
      grpc::ClientContext ctx;
      grpc::Status st = conn_->stub().ReadProcessOutput(&ctx, req, &resp);
      if (!st.ok()) {
        if (st.error_code() == grpc::StatusCode::NOT_FOUND) {  // its sandbox is gone
          std::lock_guard lock(mu_);
          sessions_.erase(s->id);
        }
        return DaemonError(st, *conn_);
      }
    }
    out.Append(resp.stdout());
    out.Append(resp.stderr());
    if (resp.eof()) {
      ended = true;
      exit = resp.process().exit();
      break;
    }
    // An ended process's buffered output is read without waiting.
    if (!resp.process().running()) continue;
    if (SteadyMs() >= deadline || stopping_) break;
  }
  const int64_t wall = SteadyMs() - start;
  const uint64_t omitted = out.omitted(), total = out.total();
  const std::string output = out.Take();
  Json structured = {{"output", output}, {"omitted_bytes", omitted}, {"wall_time_ms", wall}};
  std::string head;
  if (ended) {
    std::lock_guard lock(mu_);
    sessions_.erase(s->id);
    head = Ending(exit, &structured);
    structured["running"] = false;
  } else {
    head = "Process running with session ID " + std::to_string(s->id);
    structured["running"] = true;
    structured["session_id"] = s->id;
  }
  std::string text = head + "\nWall time: " + Seconds(wall) + " seconds\n";
  if (omitted > 0)
    text += "Output (" + std::to_string(total) + " bytes; " + std::to_string(omitted) + " omitted in the middle):\n";
  else
    text += "Output:\n";
  ToolResult r = ToolResult::Text(text + output);
  r.structured = std::move(structured);
  return r;
}

}  // namespace airlock::client::mcp

// The Toolbox: dispatch, the check that a sandbox is one of MCP's, and the
// lifecycle tools (create, list, destroy, snapshot, restore, fork).
#include "harness/client/mcp_tools.h"

#include <signal.h>

#include <functional>

#include "harness/client/output.h"

namespace airlock::client::mcp {
namespace {

std::string SandboxLine(const v1::Sandbox& s) {
  std::string line = s.id() + "  " + StateName(s.state()) + "  workspace " + s.workspace() + "  created " +
                     FormatTime(s.created_unix_ms());
  if (!s.stop_reason().empty()) line += "  (" + s.stop_reason() + ")";
  return line;
}

Json SandboxJson(const v1::Sandbox& s) {
  return {{"sandbox_id", s.id()}, {"state", StateName(s.state())}, {"workspace", s.workspace()},
          {"created_unix_ms", s.created_unix_ms()}};
}

std::string SnapshotLine(const v1::SnapshotInfo& s) {
  return s.id() + "  of " + s.sandbox_id() + "  " + FormatTime(s.created_unix_ms()) + "  " + HumanBytes(s.bytes());
}

}  // namespace

std::unexpected<Error> DaemonError(const grpc::Status& status, const Connection& conn) {
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty())
    return std::unexpected(Error{0, "", "this airlockd does not implement the call (an older version?)"});
  return std::unexpected(Error{0, "", StatusMessage(status, conn.socket())});
}

std::string ErrorText(const Error& e) { return e.op.empty() ? e.detail : e.Message(); }

Toolbox::Toolbox(Connection* conn, ToolboxOptions options)
    : conn_(conn), options_(std::move(options)), specs_(ToolSpecs()) {}

Toolbox::~Toolbox() = default;

ToolResult Toolbox::Call(const std::string& name, const Json& a) {
  using Fn = Result<ToolResult> (Toolbox::*)(const Json&);
  static const std::map<std::string, Fn> kTools = {
      {"create_sandbox", &Toolbox::CreateSandbox},   {"list_sandboxes", &Toolbox::ListSandboxes},
      {"destroy_sandbox", &Toolbox::DestroySandbox}, {"exec_command", &Toolbox::ExecCommand},
      {"write_stdin", &Toolbox::WriteStdin},         {"kill_session", &Toolbox::KillSession},
      {"apply_patch", &Toolbox::ApplyPatch},         {"read_file", &Toolbox::ReadFile},
      {"write_file", &Toolbox::WriteFile},           {"list_dir", &Toolbox::ListDir},
      {"search", &Toolbox::Search},                  {"view_image", &Toolbox::ViewImage},
      {"get_instructions", &Toolbox::GetInstructions}, {"list_skills", &Toolbox::ListSkills},
      {"get_skill", &Toolbox::GetSkill},             {"read_skill_file", &Toolbox::ReadSkillFile},
      {"stage_skills", &Toolbox::StageSkills},       {"snapshot_sandbox", &Toolbox::SnapshotSandbox},
      {"list_snapshots", &Toolbox::ListSnapshots},   {"restore_snapshot", &Toolbox::RestoreSnapshot},
      {"fork_sandbox", &Toolbox::ForkSandbox},
  };
  auto it = kTools.find(name);
  if (it == kTools.end()) return ToolResult::Error(name + ": no such tool");
  if (stopping_) return ToolResult::Error(name + ": the server is shutting down");
  auto r = (this->*(it->second))(a);
  if (!r) return ToolResult::Error(ErrorText(r.error()));
  return std::move(*r);
}

std::map<std::string, std::string> Toolbox::McpLabels() const {
  std::map<std::string, std::string> labels(options_.create.labels().begin(), options_.create.labels().end());
  labels[kMcpLabel] = kMcpLabelValue;
  return labels;
}

v1::CreateRequest Toolbox::CreateTemplate() const {
  v1::CreateRequest req = options_.create;
  (*req.mutable_labels())[kMcpLabel] = kMcpLabelValue;
  return req;
}

void Toolbox::Track(const v1::Sandbox& s) {
  std::lock_guard lock(mu_);
  created_.insert(s.id());
  workspaces_[s.id()] = s.workspace();
}

void Toolbox::Forget(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  workspaces_.erase(sandbox_id);
  created_.erase(sandbox_id);
  for (auto it = sessions_.begin(); it != sessions_.end();)
    it = it->second->sandbox_id == sandbox_id ? sessions_.erase(it) : std::next(it);
}

Result<std::string> Toolbox::Workspace(const std::string& tool, const Json& args) {
  const std::string id = args.value("sandbox_id", "");
  {
    std::lock_guard lock(mu_);
    if (auto it = workspaces_.find(id); it != workspaces_.end()) return it->second;
  }
  // Another owner's sandbox and one that isn't MCP's read the same: the
  // model learns nothing about sandboxes it may not touch.
  auto not_mcp = Fail(tool + ".sandbox_id", "no sandbox \"" + id + "\" of this server (list_sandboxes shows them)");
  if (id.empty()) return not_mcp;
  v1::SandboxRef ref;
  ref.set_id(id);
  v1::Sandbox s;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Get(&ctx, ref, &s);
  if (st.error_code() == grpc::StatusCode::NOT_FOUND || st.error_code() == grpc::StatusCode::PERMISSION_DENIED)
    return not_mcp;
  if (!st.ok()) return DaemonError(st, *conn_);
  auto label = s.labels().find(kMcpLabel);
  if (label == s.labels().end() || label->second != kMcpLabelValue) return not_mcp;
  std::lock_guard lock(mu_);
  workspaces_[id] = s.workspace();
  return s.workspace();
}

Result<std::string> Toolbox::Path(const std::string& tool, const Json& args, const std::string& key, bool optional) {
  std::string ws = TRY(Workspace(tool, args));
  auto it = args.find(key);
  if (it == args.end()) {
    if (!optional) return Fail(tool + "." + key, "required");
    return ws;
  }
  return ConfinePath(ws, it->get<std::string>(), tool + "." + key);
}

Result<ToolResult> Toolbox::CreateSandbox(const Json&) {
  v1::Sandbox s;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Create(&ctx, CreateTemplate(), &s);
  if (!st.ok()) return DaemonError(st, *conn_);
  Track(s);
  ToolResult r = ToolResult::Text("Created sandbox " + s.id() + " (workspace " + s.workspace() +
                                  "). Pass sandbox_id \"" + s.id() + "\" to the other tools.");
  r.structured = SandboxJson(s);
  return r;
}

Result<ToolResult> Toolbox::ListSandboxes(const Json&) {
  v1::ListRequest req;
  (*req.mutable_labels())[kMcpLabel] = kMcpLabelValue;
  req.set_include_stopped(true);
  v1::ListResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().List(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::vector<const v1::Sandbox*> list;
  for (const auto& s : resp.sandboxes()) list.push_back(&s);
  std::sort(list.begin(), list.end(), [](auto* x, auto* y) { return x->created_unix_ms() < y->created_unix_ms(); });
  std::string text;
  Json items = Json::array();
  for (auto* s : list) {
    text += SandboxLine(*s) + "\n";
    items.push_back(SandboxJson(*s));
  }
  ToolResult r = ToolResult::Text(text.empty() ? "No sandboxes (create_sandbox makes one)." : text);
  r.structured = {{"sandboxes", items}};
  return r;
}

Result<ToolResult> Toolbox::DestroySandbox(const Json& a) {
  TRY(Workspace("destroy_sandbox", a));
  v1::SandboxRef ref;
  ref.set_id(a["sandbox_id"].get<std::string>());
  v1::Sandbox gone;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Destroy(&ctx, ref, &gone);
  if (!st.ok()) return DaemonError(st, *conn_);
  Forget(ref.id());
  return ToolResult::Text("Destroyed sandbox " + ref.id() + ".");
}

Result<ToolResult> Toolbox::SnapshotSandbox(const Json& a) {
  TRY(Workspace("snapshot_sandbox", a));
  v1::SnapshotRequest req;
  req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  (*req.mutable_labels())[kMcpLabel] = kMcpLabelValue;
  v1::SnapshotInfo info;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Snapshot(&ctx, req, &info);
  if (!st.ok()) return DaemonError(st, *conn_);
  ToolResult r = ToolResult::Text("Snapshot " + info.id() + " of sandbox " + info.sandbox_id() +
                                  (info.reused() ? " (nothing changed since the last one: that one again)" : "") + ".");
  r.structured = {{"snapshot_id", info.id()}, {"sandbox_id", info.sandbox_id()}};
  return r;
}

Result<ToolResult> Toolbox::ListSnapshots(const Json& a) {
  v1::ListSnapshotsRequest req;
  if (a.contains("sandbox_id")) {
    TRY(Workspace("list_snapshots", a));
    req.set_sandbox_id(a["sandbox_id"].get<std::string>());
  }
  v1::ListSnapshotsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ListSnapshots(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string text;
  Json items = Json::array();
  for (const auto& s : resp.snapshots()) {
    auto label = s.labels().find(kMcpLabel);
    if (label == s.labels().end() || label->second != kMcpLabelValue) continue;
    text += SnapshotLine(s) + "\n";
    items.push_back({{"snapshot_id", s.id()}, {"sandbox_id", s.sandbox_id()}, {"created_unix_ms", s.created_unix_ms()}});
  }
  ToolResult r = ToolResult::Text(text.empty() ? "No snapshots." : text);
  r.structured = {{"snapshots", items}};
  return r;
}

Result<v1::SnapshotInfo> Toolbox::McpSnapshot(const std::string& tool, const std::string& snapshot_id) {
  v1::ListSnapshotsRequest req;
  v1::ListSnapshotsResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().ListSnapshots(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  for (const auto& s : resp.snapshots()) {
    auto label = s.labels().find(kMcpLabel);
    if (s.id() == snapshot_id && label != s.labels().end() && label->second == kMcpLabelValue) return s;
  }
  return Fail(tool + ".snapshot_id", "no snapshot \"" + snapshot_id + "\" of this server (list_snapshots shows them)");
}

Result<ToolResult> Toolbox::RestoreSnapshot(const Json& a) {
  v1::SnapshotInfo snap = TRY(McpSnapshot("restore_snapshot", a["snapshot_id"].get<std::string>()));
  v1::RestoreRequest req;
  req.set_snapshot_id(snap.id());
  for (const auto& [k, v] : McpLabels()) (*req.mutable_labels())[k] = v;
  v1::Sandbox s;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Restore(&ctx, req, &s);
  if (!st.ok()) return DaemonError(st, *conn_);
  Track(s);
  ToolResult r = ToolResult::Text("Restored snapshot " + snap.id() + " as sandbox " + s.id() + " (workspace " +
                                  s.workspace() + ").");
  r.structured = SandboxJson(s);
  return r;
}

Result<ToolResult> Toolbox::ForkSandbox(const Json& a) {
  v1::SnapshotInfo snap = TRY(McpSnapshot("fork_sandbox", a["snapshot_id"].get<std::string>()));
  v1::ForkRequest req;
  req.set_snapshot_id(snap.id());
  req.set_count(static_cast<uint32_t>(a.value("count", 1)));
  for (const auto& [k, v] : McpLabels()) (*req.mutable_labels())[k] = v;
  v1::ForkResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = conn_->stub().Fork(&ctx, req, &resp);
  if (!st.ok()) return DaemonError(st, *conn_);
  std::string ids;
  Json items = Json::array();
  for (const auto& s : resp.sandboxes()) {
    Track(s);
    ids += (ids.empty() ? "" : ", ") + s.id();
    items.push_back(SandboxJson(s));
  }
  ToolResult r = ToolResult::Text("Forked snapshot " + snap.id() + " into " + ids + ".");
  r.structured = {{"sandboxes", items}};
  return r;
}

std::vector<std::string> Toolbox::Shutdown() {
  stopping_ = true;
  std::vector<std::string> problems;
  std::map<int, std::shared_ptr<Session>> sessions;
  std::set<std::string> created;
  {
    std::lock_guard lock(mu_);
    sessions.swap(sessions_);
    if (!options_.keep_sandboxes) created.swap(created_);
  }
  for (auto& [id, s] : sessions) {
    if (created.contains(s->sandbox_id)) continue;  // going with its sandbox
    v1::SignalProcessRequest req;
    req.mutable_process()->set_sandbox_id(s->sandbox_id);
    req.mutable_process()->set_process_id(s->process_id);
    req.set_signo(SIGKILL);
    v1::Process p;
    grpc::ClientContext ctx;
    (void)conn_->stub().SignalProcess(&ctx, req, &p);  // it may have ended on its own
  }
  for (const auto& id : created) {
    v1::SandboxRef ref;
    ref.set_id(id);
    v1::Sandbox gone;
    grpc::ClientContext ctx;
    grpc::Status st = conn_->stub().Destroy(&ctx, ref, &gone);
    if (!st.ok() && st.error_code() != grpc::StatusCode::NOT_FOUND)
      problems.push_back("destroying sandbox " + id + ": " + StatusMessage(st, conn_->socket()));
  }
  return problems;
}

}  // namespace airlock::client::mcp

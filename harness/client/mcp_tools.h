// The tools `airlock mcp` serves, each a call (or a few) to airlockd: the
// sandbox lifecycle (create, list, destroy, snapshot, restore, fork), the
// shell (exec_command, write_stdin, kill_session), apply_patch, the file
// tools (read_file, write_file, list_dir, search, view_image),
// get_instructions and the skills.
//
// A model drives these, so nothing in them names a host path or a secret:
// sandboxes are created from the operator's configuration (the options
// `airlock mcp` was started with), only sandboxes carrying the label
// airlock.mcp=1 are acted on, and every path argument is confined to the
// sandbox's workspace.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "harness/client/mcp_protocol.h"
#include "harness/client/rpc.h"

namespace airlock::client::mcp {

// The label every sandbox created through MCP carries; the tools act only
// on sandboxes that have it.
inline constexpr const char* kMcpLabel = "airlock.mcp";
inline constexpr const char* kMcpLabelValue = "1";

// Every tool's name, description and input schema (no daemon needed).
std::vector<ToolSpec> ToolSpecs();

struct ToolboxOptions {
  v1::CreateRequest create;     // the operator's sandbox (kMcpLabel is added)
  bool keep_sandboxes = false;  // leave the sandboxes it created when it exits
};

class Toolbox : public ToolProvider {
 public:
  Toolbox(Connection* conn, ToolboxOptions options);
  ~Toolbox() override;

  const std::vector<ToolSpec>& Tools() const override { return specs_; }
  ToolResult Call(const std::string& name, const Json& arguments) override;

  // Makes waiting tools return soon and new calls fail (a signal came).
  void Stop() { stopping_ = true; }
  // Stop(); then kills the running sessions and,
  // unless keep_sandboxes, destroys the sandboxes this process created.
  // Returns a line per problem (for stderr).
  std::vector<std::string> Shutdown();

 private:
  // A command started by exec_command, until it ends or is killed.
  struct Session {
    int id = 0;
    std::string sandbox_id;
    std::string process_id;
    bool tty = false;
    int64_t started_ms = 0;
    std::mutex mu;  // one caller reads its output at a time
  };

  // The sandbox's workspace, once it is known to be one of MCP's
  // sandboxes; else an error naming `tool`.sandbox_id.
  Result<std::string> Workspace(const std::string& tool, const Json& args);
  Result<std::string> Path(const std::string& tool, const Json& args, const std::string& key, bool optional);
  void Forget(const std::string& sandbox_id);
  void Track(const v1::Sandbox& s);
  v1::CreateRequest CreateTemplate() const;
  std::map<std::string, std::string> McpLabels() const;

  // Lifecycle and snapshots (mcp_tools.cc).
  Result<ToolResult> CreateSandbox(const Json& a);
  Result<ToolResult> ListSandboxes(const Json& a);
  Result<ToolResult> DestroySandbox(const Json& a);
  Result<ToolResult> SnapshotSandbox(const Json& a);
  Result<ToolResult> ListSnapshots(const Json& a);
  Result<ToolResult> RestoreSnapshot(const Json& a);
  Result<ToolResult> ForkSandbox(const Json& a);
  Result<v1::SnapshotInfo> McpSnapshot(const std::string& tool, const std::string& snapshot_id);
  // Files, search, instructions, skills (mcp_files.cc).
  Result<ToolResult> ApplyPatch(const Json& a);
  Result<ToolResult> ReadFile(const Json& a);
  Result<ToolResult> WriteFile(const Json& a);
  Result<ToolResult> ListDir(const Json& a);
  Result<ToolResult> Search(const Json& a);
  Result<ToolResult> ViewImage(const Json& a);
  Result<ToolResult> GetInstructions(const Json& a);
  Result<ToolResult> ListSkills(const Json& a);
  Result<ToolResult> GetSkill(const Json& a);
  Result<ToolResult> ReadSkillFile(const Json& a);
  Result<ToolResult> StageSkills(const Json& a);
  // The shell (mcp_exec.cc).
  Result<ToolResult> ExecCommand(const Json& a);
  Result<ToolResult> WriteStdin(const Json& a);
  Result<ToolResult> KillSession(const Json& a);
  Result<std::shared_ptr<Session>> FindSession(const std::string& tool, const Json& a);
  // Reads `s`'s output for up to `yield_ms` (less once it ends) into a
  // result; a session that ended is dropped from the table.
  // Output until the command ends or `yield_ms` passes (counted from
  // `since_ms`, SteadyMs(); 0: now); `first` is what StartProcessAndRead
  // already read, if anything.
  Result<ToolResult> Collect(const std::shared_ptr<Session>& s, uint64_t yield_ms, size_t max_output,
                             const v1::ReadProcessOutputResponse* first = nullptr, int64_t since_ms = 0);

  Connection* conn_;
  ToolboxOptions options_;
  std::vector<ToolSpec> specs_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::map<std::string, std::string> workspaces_;  // MCP sandboxes seen: id -> workspace
  std::set<std::string> created_;                  // by this process
  std::map<int, std::shared_ptr<Session>> sessions_;
  int next_session_ = 1;
};

// The message of a failed call to airlockd, as a tool error: the daemon's
// text verbatim (it names the field).
std::unexpected<Error> DaemonError(const grpc::Status& status, const Connection& conn);

// The text a tool error shows: an argument's error reads
// "read_file.path: ...", the daemon's its own message.
std::string ErrorText(const Error& e);

}  // namespace airlock::client::mcp

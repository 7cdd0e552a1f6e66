// airlock-remote: the CLI's daemon commands. `airlock` execs this binary
// for create, exec, ps, inspect, rm, pause, resume, stats, events and cp
// (so `airlock run` never loads gRPC); it may also be run directly as
// `airlock-remote CMD ...`. Exit status: 0, the command's own status for
// exec, or 125 when airlock itself failed (one line on stderr:
// "airlock: <message>", the daemon's message verbatim).
#pragma once

#include <string>
#include <vector>

#include "harness/client/rpc.h"

namespace airlock::client {

// The whole program: argv[0] is "airlock" or "airlock-remote", argv[1]
// the command. Global options (--socket, --json) may also come before it.
int Main(int argc, char** argv);

// One command each; `args` follow the command name, `g` holds global
// options given before it.
int CreateCommand(const Globals& g, const std::vector<std::string>& args);
int ExecCommand(const Globals& g, const std::vector<std::string>& args);
int PsCommand(const Globals& g, const std::vector<std::string>& args);
int InspectCommand(const Globals& g, const std::vector<std::string>& args);
int RmCommand(const Globals& g, const std::vector<std::string>& args);
int PauseCommand(const Globals& g, const std::vector<std::string>& args);
int ResumeCommand(const Globals& g, const std::vector<std::string>& args);
int StatsCommand(const Globals& g, const std::vector<std::string>& args);
int EventsCommand(const Globals& g, const std::vector<std::string>& args);
int CpCommand(const Globals& g, const std::vector<std::string>& args);
// snapshot, snapshots, restore, fork, rmsnap, snapshot-export, snapshot-import
int SnapshotCommand(const Globals& g, const std::string& cmd, const std::vector<std::string>& args);
// `airlock mcp`: the tools and the sandbox lifecycle as an MCP server (mcp.cc).
int McpCommand(const Globals& g, const std::vector<std::string>& args);

// The options of `airlock create` (also taken by `airlock mcp`, whose
// sandboxes they configure), and the request they describe. Errors name
// the option: "invalid option: --memory: ...".
std::vector<OptionSpec> CreateOptionSpecs();
Result<v1::CreateRequest> BuildCreateRequest(const ParsedArgs& args);

// Parses `args` for a command: its own `specs` plus the global options;
// prints `usage` for -h/--help. Returns false (and sets *exit_code: 0 for
// help, 125 for a usage error, printed) when the command must not run.
bool ParseCommandArgs(const std::vector<std::string>& args, std::vector<OptionSpec> specs, const char* usage,
                      bool command_after_first_operand, Globals* g, ParsedArgs* out, int* exit_code);

}  // namespace airlock::client

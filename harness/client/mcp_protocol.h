// The Model Context Protocol side of `airlock mcp`, without a daemon or a
// socket: JSON-RPC 2.0 framing and dispatch (initialize, ping, tools/list,
// tools/call), version negotiation, checking a tool's arguments against its
// input schema, confining a path to a sandbox's workspace, and the
// head-and-tail output cap of the shell tool. Pure code, unit-tested
// (tests/unit/mcp_test.cc).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::client::mcp {

using Json = nlohmann::json;

// The revision this server speaks; older ones it also accepts in initialize.
inline constexpr const char* kLatestProtocol = "2025-06-18";
// What a Streamable HTTP request without MCP-Protocol-Version is taken to be.
inline constexpr const char* kDefaultHttpProtocol = "2025-03-26";

// JSON-RPC error codes (protocol problems only; a tool's failure is a
// result with isError).
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;

// True for the revisions this server accepts: 2025-06-18, 2025-03-26, 2024-11-05.
bool IsSupportedProtocol(std::string_view version);

// The revision to answer initialize with: the client's when supported,
// else the latest this server speaks (the client then decides).
std::string NegotiateProtocol(const Json& requested);

// `j` as one line of JSON. Strings that are not valid UTF-8 (a command's
// raw output) get U+FFFD for the bad bytes instead of failing.
std::string Dump(const Json& j);

// A tool's answer: MCP content blocks, optional structured content, and
// whether it is an error the model should see (isError: true).
struct ToolResult {
  Json content = Json::array();
  Json structured;  // null: none
  bool is_error = false;

  static ToolResult Text(std::string text);
  static ToolResult Error(std::string text);
  // The result object of tools/call.
  Json ToJson() const;
};

// One tool as tools/list shows it.
struct ToolSpec {
  std::string name;
  std::string title;
  std::string description;
  Json input_schema;
  Json annotations;  // null: none (readOnlyHint, destructiveHint, ...)
};

// What tools/list and tools/call reach: `airlock mcp`'s Toolbox, or a fake
// in the unit tests.
class ToolProvider {
 public:
  virtual ~ToolProvider() = default;
  virtual const std::vector<ToolSpec>& Tools() const = 0;
  // Runs tool `name` with `arguments` that already passed its schema.
  virtual ToolResult Call(const std::string& name, const Json& arguments) = 0;
};

// One client's state: the revision initialize settled on.
struct SessionState {
  std::mutex mu;
  std::string protocol_version;  // empty until initialize
  bool initialized = false;      // notifications/initialized arrived
};

// JSON-RPC 2.0 dispatch for MCP's server side. Thread-safe: transports call
// it from several threads at once.
class Dispatcher {
 public:
  Dispatcher(ToolProvider* tools, std::string server_version, std::string instructions);

  // One decoded message (or a batch, which 2025-03-26 clients may send):
  // the reply, or null when nothing is owed (notifications, responses).
  Json Handle(const Json& message, SessionState* session);

  // One line of the stdio transport (or an HTTP body): the reply as text,
  // or nullopt. Text that is not JSON gets a -32700 reply with id null.
  std::optional<std::string> HandleText(std::string_view text, SessionState* session);

 private:
  Json HandleOne(const Json& message, SessionState* session);
  Json Initialize(const Json& params, SessionState* session);
  Json ListTools() const;
  Json CallTool(const Json& params, const Json& id);

  ToolProvider* tools_;
  std::string server_version_;
  std::string instructions_;
};

// A JSON-RPC error reply.
Json ErrorReply(const Json& id, int code, std::string message);

// Checks `arguments` against `schema`, the subset of JSON Schema the tools
// use: an object with typed properties (string, integer with minimum and
// maximum, boolean, array of strings, object of strings), `required`, and
// additionalProperties false. The error names the argument:
// "exec_command.timeout_ms: must be an integer (got a string)".
Result<void> CheckArguments(const std::string& tool, const Json& schema, const Json& arguments);

// `path` (a tool's argument `field`) made absolute against `workspace` and
// normalized lexically; an error naming the argument when it is empty of
// meaning (NUL bytes) or lands outside the workspace (an absolute path
// elsewhere, ".." climbing out). The sandbox itself is the real boundary
// (the daemon runs file calls inside it); this keeps a model's paths where
// the tools promise they are.
Result<std::string> ConfinePath(const std::string& workspace, const std::string& path, const std::string& field);

}  // namespace airlock::client::mcp

#include "harness/client/mcp_protocol.h"

#include <algorithm>

#include "harness/client/args.h"

namespace airlock::client::mcp {
namespace {

constexpr const char* kSupported[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

// "a string", "an integer", ... for an error about a value's type.
std::string TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "a number";
  }
}

// Integers arrive as JSON numbers; 5.0 counts, 5.5 doesn't.
std::optional<int64_t> AsInteger(const Json& v) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return INT64_MAX;
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    // The range first: converting a double beyond int64_t is undefined.
    if (d > -9.2e18 && d < 9.2e18 && d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

Result<void> CheckValue(const std::string& field, const Json& schema, const Json& v) {
  const std::string type = schema.value("type", "");
  if (type == "string") {
    if (!v.is_string()) return Fail(field, "must be a string (got " + TypeName(v) + ")");
    if (auto max = schema.find("maxLength"); max != schema.end() && v.get_ref<const std::string&>().size() > max->get<size_t>())
      return Fail(field, "longer than " + std::to_string(max->get<size_t>()) + " bytes");
    if (auto e = schema.find("enum"); e != schema.end() && std::find(e->begin(), e->end(), v) == e->end())
      return Fail(field, "must be one of " + e->dump() + " (got " + Dump(v) + ")");
    return {};
  }
  if (type == "integer") {
    auto n = AsInteger(v);
    if (!n) return Fail(field, "must be an integer (got " + (v.is_number() ? Dump(v) : TypeName(v)) + ")");
    if (auto min = schema.find("minimum"); min != schema.end() && *n < min->get<int64_t>())
      return Fail(field, "must be at least " + std::to_string(min->get<int64_t>()) + " (got " + std::to_string(*n) + ")");
    if (auto max = schema.find("maximum"); max != schema.end() && *n > max->get<int64_t>())
      return Fail(field, "must be at most " + std::to_string(max->get<int64_t>()) + " (got " + std::to_string(*n) + ")");
    return {};
  }
  if (type == "boolean") {
    if (!v.is_boolean()) return Fail(field, "must be true or false (got " + TypeName(v) + ")");
    return {};
  }
  if (type == "array") {
    if (!v.is_array()) return Fail(field, "must be an array (got " + TypeName(v) + ")");
    if (auto max = schema.find("maxItems"); max != schema.end() && v.size() > max->get<size_t>())
      return Fail(field, "more than " + std::to_string(max->get<size_t>()) + " items");
    const Json items = schema.value("items", Json::object());
    for (size_t i = 0; i < v.size(); ++i) TRY(CheckValue(field + "[" + std::to_string(i) + "]", items, v[i]));
    return {};
  }
  if (type == "object") {
    if (!v.is_object()) return Fail(field, "must be an object (got " + TypeName(v) + ")");
    const Json values = schema.value("additionalProperties", Json::object());
    if (values.is_object())
      for (const auto& [k, item] : v.items()) TRY(CheckValue(field + "." + k, values, item));
    return {};
  }
  return Fail(field, "has no type in its schema");  // a bug in a tool's definition
}

}  // namespace

bool IsSupportedProtocol(std::string_view version) {
  return std::find(std::begin(kSupported), std::end(kSupported), version) != std::end(kSupported);
}

std::string NegotiateProtocol(const Json& requested) {
  if (requested.is_string() && IsSupportedProtocol(requested.get_ref<const std::string&>()))
    return requested.get<std::string>();
  return kLatestProtocol;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

ToolResult ToolResult::Text(std::string text) {
  ToolResult r;
  r.content.push_back({{"type", "text"}, {"text", std::move(text)}});
  return r;
}

ToolResult ToolResult::Error(std::string text) {
  ToolResult r = Text(std::move(text));
  r.is_error = true;
  return r;
}

Json ToolResult::ToJson() const {
  Json out = {{"content", content}, {"isError", is_error}};
  if (!structured.is_null()) out["structuredContent"] = structured;
  return out;
}

Json ErrorReply(const Json& id, int code, std::string message) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", std::move(message)}}}};
}

Dispatcher::Dispatcher(ToolProvider* tools, std::string server_version, std::string instructions)
    : tools_(tools), server_version_(std::move(server_version)), instructions_(std::move(instructions)) {}

std::optional<std::string> Dispatcher::HandleText(std::string_view text, SessionState* session) {
  Json message = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) return Dump(ErrorReply(nullptr, kParseError, "parse error: not a JSON text"));
  Json reply = Handle(message, session);
  if (reply.is_null()) return std::nullopt;
  return Dump(reply);
}

Json Dispatcher::Handle(const Json& message, SessionState* session) {
  if (!message.is_array()) return HandleOne(message, session);
  if (message.empty()) return ErrorReply(nullptr, kInvalidRequest, "invalid request: an empty batch");
  Json replies = Json::array();
  for (const auto& m : message) {
    Json r = HandleOne(m, session);
    if (!r.is_null()) replies.push_back(std::move(r));
  }
  return replies.empty() ? Json() : replies;
}

Json Dispatcher::HandleOne(const Json& m, SessionState* session) {
  if (!m.is_object()) return ErrorReply(nullptr, kInvalidRequest, "invalid request: not a JSON-RPC object");
  auto id_it = m.find("id");
  const bool has_id = id_it != m.end();
  Json id = has_id ? *id_it : Json();
  if (has_id && !id.is_string() && !id.is_number_integer())
    return ErrorReply(nullptr, kInvalidRequest, "invalid request: id must be a string or an integer");
  auto version = m.find("jsonrpc");
  if (version == m.end() || *version != "2.0")
    return has_id || !m.contains("method") ? ErrorReply(id, kInvalidRequest, "invalid request: jsonrpc must be \"2.0\"")
                                           : Json();
  auto method_it = m.find("method");
  if (method_it == m.end()) {
    // A response to a request of ours: this server sends none, so none is owed.
    if (m.contains("result") || m.contains("error")) return Json();
    return ErrorReply(id, kInvalidRequest, "invalid request: no method");
  }
  if (!method_it->is_string()) return ErrorReply(id, kInvalidRequest, "invalid request: method must be a string");
  const std::string& method = method_it->get_ref<const std::string&>();
  Json params = m.value("params", Json::object());
  if (!params.is_object()) return has_id ? ErrorReply(id, kInvalidParams, "invalid params: params must be an object") : Json();

  if (!has_id) {  // notifications: nothing is owed, whatever they say
    if (method == "notifications/initialized") {
      std::lock_guard lock(session->mu);
      session->initialized = true;
    }
    return Json();
  }
  Json result;
  if (method == "initialize") {
    result = Initialize(params, session);
    if (result.contains("error")) return ErrorReply(id, kInvalidParams, result["error"].get<std::string>());
  } else if (method == "ping") {
    result = Json::object();
  } else if (method == "tools/list") {
    if (auto c = params.find("cursor"); c != params.end() && !c->is_null() && !c->is_string())
      return ErrorReply(id, kInvalidParams, "invalid params: cursor must be a string");
    result = ListTools();
  } else if (method == "tools/call") {
    return CallTool(params, id);
  } else {
    return ErrorReply(id, kMethodNotFound, "method not found: " + method);
  }
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

Json Dispatcher::Initialize(const Json& params, SessionState* session) {
  auto v = params.find("protocolVersion");
  if (v == params.end() || !v->is_string()) return {{"error", "invalid params: initialize needs protocolVersion (a string)"}};
  std::string version = NegotiateProtocol(*v);
  {
    std::lock_guard lock(session->mu);
    session->protocol_version = version;
  }
  Json result = {
      {"protocolVersion", version},
      {"capabilities", {{"tools", {{"listChanged", false}}}}},
      {"serverInfo", {{"name", "airlock"}, {"title", "airlock sandboxes"}, {"version", server_version_}}},
  };
  if (!instructions_.empty()) result["instructions"] = instructions_;
  return result;
}

Json Dispatcher::ListTools() const {
  Json tools = Json::array();
  for (const auto& t : tools_->Tools()) {
    Json j = {{"name", t.name}, {"description", t.description}, {"inputSchema", t.input_schema}};
    if (!t.title.empty()) j["title"] = t.title;
    if (!t.annotations.is_null()) j["annotations"] = t.annotations;
    tools.push_back(std::move(j));
  }
  return {{"tools", std::move(tools)}};
}

Json Dispatcher::CallTool(const Json& params, const Json& id) {
  auto name_it = params.find("name");
  if (name_it == params.end() || !name_it->is_string())
    return ErrorReply(id, kInvalidParams, "invalid params: tools/call needs name (a string)");
  const std::string& name = name_it->get_ref<const std::string&>();
  const auto& tools = tools_->Tools();
  auto tool = std::find_if(tools.begin(), tools.end(), [&](const ToolSpec& t) { return t.name == name; });
  if (tool == tools.end()) return ErrorReply(id, kInvalidParams, "unknown tool: " + name);
  Json arguments = params.value("arguments", Json::object());
  if (arguments.is_null()) arguments = Json::object();
  ToolResult r;
  if (!arguments.is_object()) {
    r = ToolResult::Error(name + ": arguments must be an object (got " + TypeName(arguments) + ")");
  } else if (auto ok = CheckArguments(name, tool->input_schema, arguments); !ok) {
    r = ToolResult::Error(ok.error().Message());
  } else {
    r = tools_->Call(name, arguments);
  }
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", r.ToJson()}};
}

Result<void> CheckArguments(const std::string& tool, const Json& schema, const Json& arguments) {
  const Json props = schema.value("properties", Json::object());
  std::string known;
  for (const auto& [k, _] : props.items()) known += (known.empty() ? "" : ", ") + k;
  for (const auto& [k, v] : arguments.items()) {
    auto p = props.find(k);
    if (p == props.end())
      return Fail(tool + "." + k, "unknown argument (" + tool + " takes " + (known.empty() ? "none" : known) + ")");
    TRY(CheckValue(tool + "." + k, *p, v));
  }
  for (const auto& r : schema.value("required", Json::array()))
    if (!arguments.contains(r.get<std::string>())) return Fail(tool + "." + r.get<std::string>(), "required");
  return {};
}

Result<std::string> ConfinePath(const std::string& workspace, const std::string& path, const std::string& field) {
  if (path.find('\0') != std::string::npos) return Fail(field, "contains a NUL byte");
  const std::string ws = AbsoluteLexical("/", workspace);
  const std::string full = AbsoluteLexical(ws, path.empty() ? "." : path);
  if (ws == "/" || full == ws || full.starts_with(ws + "/")) return full;
  return Fail(field, "\"" + path + "\" is outside the sandbox's workspace " + ws +
                         " (give a path relative to it, or an absolute path under it)");
}

}  // namespace airlock::client::mcp

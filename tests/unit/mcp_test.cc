// `airlock mcp` without a daemon: JSON-RPC dispatch and framing, argument
// checks against the tools' schemas, workspace confinement, the output cap,
// HTTP request parsing, the bearer and Origin checks, the token file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <set>

#include "harness/client/mcp_http.h"
#include "harness/client/mcp_protocol.h"
#include "harness/client/mcp_tools.h"

using namespace airlock::client::mcp;

namespace {

// Records the calls it gets; answers with their arguments.
class FakeTools : public ToolProvider {
 public:
  FakeTools() : specs_(ToolSpecs()) {}
  const std::vector<ToolSpec>& Tools() const override { return specs_; }
  ToolResult Call(const std::string& name, const Json& arguments) override {
    calls.push_back(name);
    ToolResult r = ToolResult::Text("called " + name);
    r.structured = arguments;
    return r;
  }
  std::vector<std::string> calls;

 private:
  std::vector<ToolSpec> specs_;
};

Json Req(int id, const std::string& method, Json params = Json::object()) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
}

Json Call(Dispatcher& d, SessionState& s, const std::string& tool, Json args) {
  return d.Handle(Req(7, "tools/call", {{"name", tool}, {"arguments", args}}), &s);
}

std::string ErrorTextOf(const Json& reply) {
  REQUIRE(reply["result"]["isError"] == true);
  return reply["result"]["content"][0]["text"].get<std::string>();
}

}  // namespace

TEST_CASE("initialize negotiates the protocol revision", "[mcp]") {
  FakeTools tools;
  Dispatcher d(&tools, "1.2.3", "use the tools");
  SessionState s;
  for (const char* v : {"2025-06-18", "2025-03-26", "2024-11-05"}) {
    Json r = d.Handle(Req(1, "initialize", {{"protocolVersion", v}, {"capabilities", Json::object()},
                                            {"clientInfo", {{"name", "t"}, {"version", "1"}}}}),
                      &s);
    CHECK(r["result"]["protocolVersion"] == v);
    CHECK(r["result"]["capabilities"]["tools"].is_object());
    CHECK(r["result"]["serverInfo"]["version"] == "1.2.3");
    CHECK(r["result"]["instructions"] == "use the tools");
    CHECK(r["id"] == 1);
  }
  // A newer (or unknown) revision gets the latest this server speaks.
  Json r = d.Handle(Req(2, "initialize", {{"protocolVersion", "2099-01-01"}}), &s);
  CHECK(r["result"]["protocolVersion"] == kLatestProtocol);
  CHECK(s.protocol_version == kLatestProtocol);
  r = d.Handle(Req(3, "initialize", Json::object()), &s);
  CHECK(r["error"]["code"] == kInvalidParams);
  CHECK(d.Handle({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, &s).is_null());
  CHECK(s.initialized);
}

TEST_CASE("JSON-RPC framing: parse errors, invalid requests, unknown methods, batches", "[mcp]") {
  FakeTools tools;
  Dispatcher d(&tools, "1", "");
  SessionState s;
  Json r = Json::parse(*d.HandleText("{not json", &s));
  CHECK(r["error"]["code"] == kParseError);
  CHECK(r["id"].is_null());
  CHECK(Json::parse(*d.HandleText("42", &s))["error"]["code"] == kInvalidRequest);
  CHECK(Json::parse(*d.HandleText(R"({"jsonrpc":"1.0","id":1,"method":"ping"})", &s))["error"]["code"] == kInvalidRequest);
  CHECK(Json::parse(*d.HandleText(R"({"jsonrpc":"2.0","id":{"x":1},"method":"ping"})", &s))["error"]["code"] ==
        kInvalidRequest);
  CHECK(Json::parse(*d.HandleText(R"({"jsonrpc":2,"id":1,"method":"ping"})", &s))["error"]["code"] == kInvalidRequest);
  r = Json::parse(*d.HandleText(R"({"jsonrpc":"2.0","id":"a","method":"resources/list"})", &s));
  CHECK(r["error"]["code"] == kMethodNotFound);
  CHECK(r["id"] == "a");
  CHECK(Json::parse(*d.HandleText(R"({"jsonrpc":"2.0","id":1,"method":"ping","params":[1]})", &s))["error"]["code"] ==
        kInvalidParams);
  // ping answers {}, notifications and client responses get nothing.
  CHECK(Json::parse(*d.HandleText(R"({"jsonrpc":"2.0","id":9,"method":"ping"})", &s))["result"] == Json::object());
  CHECK_FALSE(d.HandleText(R"({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}})", &s));
  CHECK_FALSE(d.HandleText(R"({"jsonrpc":"2.0","id":5,"result":{}})", &s));
  // A batch: one reply per request, none for its notifications.
  r = Json::parse(*d.HandleText(
      R"([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"nope"}])",
      &s));
  REQUIRE(r.is_array());
  REQUIRE(r.size() == 2);
  CHECK(r[0]["result"] == Json::object());
  CHECK(r[1]["error"]["code"] == kMethodNotFound);
  CHECK(Json::parse(*d.HandleText("[]", &s))["error"]["code"] == kInvalidRequest);
  // Invalid UTF-8 in a tool's output still makes a JSON line.
  Json bad = {{"text", std::string("a\xff\xfe" "b")}};
  CHECK(Dump(bad).find("\xef\xbf\xbd") != std::string::npos);
}

TEST_CASE("tools/list: every tool has a closed object schema", "[mcp]") {
  FakeTools tools;
  Dispatcher d(&tools, "1", "");
  SessionState s;
  Json r = d.Handle(Req(1, "tools/list"), &s);
  std::set<std::string> names;
  for (const auto& t : r["result"]["tools"]) {
    names.insert(t["name"].get<std::string>());
    CHECK(t["description"].get<std::string>().size() > 20);
    CHECK(t["inputSchema"]["type"] == "object");
    CHECK(t["inputSchema"]["additionalProperties"] == false);
    for (const auto& [k, p] : t["inputSchema"]["properties"].items()) CHECK(p.contains("description"));
  }
  for (const char* n : {"create_sandbox", "list_sandboxes", "destroy_sandbox", "exec_command", "write_stdin",
                        "kill_session", "apply_patch", "read_file", "write_file", "list_dir", "search", "view_image",
                        "get_instructions", "list_skills", "get_skill", "read_skill_file", "stage_skills",
                        "snapshot_sandbox", "list_snapshots", "restore_snapshot", "fork_sandbox"})
    CHECK(names.contains(n));
}

TEST_CASE("tools/call: bad arguments are tool errors naming the argument", "[mcp]") {
  FakeTools tools;
  Dispatcher d(&tools, "1", "");
  SessionState s;
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", 5}})) ==
        "exec_command.cmd: must be a string (got a number)");
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"timeout_ms", "5"}})) ==
        "exec_command.timeout_ms: must be an integer (got a string)");
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"timeout_ms", 1.5}})) ==
        "exec_command.timeout_ms: must be an integer (got 1.5)");
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"yield_time_ms", -1}})) ==
        "exec_command.yield_time_ms: must be at least 0 (got -1)");
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"timeout_ms", 1e30}})) ==
        "exec_command.timeout_ms: must be an integer (got 1e+30)");
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"timeout_ms", 18446744073709551615u}}))
            .starts_with("exec_command.timeout_ms: must be at most 86400000"));
  CHECK(ErrorTextOf(Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"tty", "yes"}})) ==
        "exec_command.tty: must be true or false (got a string)");
  std::string unknown = ErrorTextOf(Call(d, s, "read_file", {{"sandbox_id", "x"}, {"path", "a"}, {"host_path", "/"}}));
  CHECK(unknown.starts_with("read_file.host_path: unknown argument (read_file takes "));
  CHECK(ErrorTextOf(Call(d, s, "read_file", {{"path", "a"}})) == "read_file.sandbox_id: required");
  CHECK(ErrorTextOf(Call(d, s, "search", {{"sandbox_id", "x"}, {"globs", {"*.py", 3}}})) ==
        "search.globs[1]: must be a string (got a number)");
  CHECK(ErrorTextOf(d.Handle(Req(1, "tools/call", {{"name", "list_dir"}, {"arguments", "x"}}), &s))
            .starts_with("list_dir: arguments must be an object"));
  CHECK(tools.calls.empty());  // none of them reached the tool
  // Valid ones do; 5.0 is an integer.
  Json ok = Call(d, s, "exec_command", {{"sandbox_id", "x"}, {"cmd", "ls"}, {"timeout_ms", 5.0}});
  CHECK(ok["result"]["isError"] == false);
  CHECK(ok["result"]["structuredContent"]["cmd"] == "ls");
  CHECK(Call(d, s, "list_sandboxes", Json())["result"]["isError"] == false);
  CHECK(tools.calls == std::vector<std::string>{"exec_command", "list_sandboxes"});
  // An unknown tool is a protocol error.
  CHECK(Call(d, s, "rm_rf", Json::object())["error"]["code"] == kInvalidParams);
}

TEST_CASE("paths are confined to the workspace", "[mcp]") {
  CHECK(*ConfinePath("/workspace", "a/b.txt", "f") == "/workspace/a/b.txt");
  CHECK(*ConfinePath("/workspace", "", "f") == "/workspace");
  CHECK(*ConfinePath("/workspace", ".", "f") == "/workspace");
  CHECK(*ConfinePath("/workspace", "/workspace/x/../y", "f") == "/workspace/y");
  CHECK(*ConfinePath("/workspace/", "./a//b/", "f") == "/workspace/a/b");
  for (const char* bad : {"/etc/shadow", "../../etc/passwd", "/proc/1/root/etc/passwd", "..", "a/../../x",
                          "/workspace/../etc", "/workspacex/a", "/"}) {
    auto r = ConfinePath("/workspace", bad, "read_file.path");
    REQUIRE_FALSE(r);
    CHECK(r.error().Message() == std::string("read_file.path: \"") + bad +
                                     "\" is outside the sandbox's workspace /workspace (give a path relative to it, "
                                     "or an absolute path under it)");
  }
  CHECK_FALSE(ConfinePath("/workspace", std::string("a\0b", 3), "f"));
}

TEST_CASE("HTTP requests: parsed whole, bounded, or refused", "[mcp]") {
  std::string req = "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nabcdGET";
  HttpParse p = ParseHttpRequest(req);
  REQUIRE(p.status == HttpParse::kDone);
  CHECK(p.request.method == "POST");
  CHECK(p.request.target == "/mcp");
  CHECK(p.request.body == "abcd");
  CHECK(p.consumed == req.size() - 3);
  CHECK(*p.request.Header("content-type") == "application/json");
  CHECK(p.request.KeepAlive());
  CHECK(ParseHttpRequest(req.substr(0, 40)).status == HttpParse::kIncomplete);
  CHECK(ParseHttpRequest(req.substr(0, req.size() - 5)).status == HttpParse::kIncomplete);
  auto error = [](const std::string& r, size_t max = kMaxBody) {
    HttpParse e = ParseHttpRequest(r, max);
    return e.status == HttpParse::kError ? e.error_status : 0;
  };
  CHECK(error("POST /mcp HTTP/1.1\r\nContent-Length: 20\r\n\r\n", 10) == 413);
  CHECK(error("POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 411);
  CHECK(error("POST /mcp HTTP/2\r\n\r\n") == 505);
  CHECK(error("POST  /mcp HTTP/1.1\r\n\r\n") == 400);
  CHECK(error("POST /mcp HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == 400);
  CHECK(error("POST /mcp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == 400);
  CHECK(error("POST /mcp HTTP/1.1\r\nBad Header: x\r\n\r\n") == 400);
  CHECK(error("POST /mcp HTTP/1.1\r\nX: a\r\n folded\r\n\r\n") == 400);
  CHECK(error("POST /mcp HTTP/1.1\r\nX: " + std::string(kMaxHeaderBytes, 'a')) == 431);
  HttpParse close = ParseHttpRequest("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK_FALSE(close.request.KeepAlive());
  CHECK_FALSE(ParseHttpRequest("GET / HTTP/1.0\r\n\r\n").request.KeepAlive());
}

TEST_CASE("bearer tokens and origins", "[mcp]") {
  const std::string token = "0123456789abcdef0123";
  CHECK(BearerMatches("Bearer " + token, token));
  CHECK(BearerMatches("bearer " + token, token));
  CHECK_FALSE(BearerMatches("Bearer " + token + "x", token));
  CHECK_FALSE(BearerMatches("Bearer " + token.substr(1), token));
  CHECK_FALSE(BearerMatches("Basic " + token, token));
  CHECK_FALSE(BearerMatches(std::nullopt, token));
  CHECK_FALSE(BearerMatches("Bearer ", ""));
  CHECK(ConstantTimeEquals("abc", "abc"));
  CHECK_FALSE(ConstantTimeEquals("abc", "abd"));
  CHECK_FALSE(ConstantTimeEquals("abc", "ab"));

  for (const char* ok : {"http://localhost:3000", "http://127.0.0.1", "https://127.1.2.3:8443", "http://[::1]:80",
                         "http://LOCALHOST"})
    CHECK(OriginAllowed(ok, {}));
  for (const char* bad : {"http://evil.example", "http://127.0.0.1.evil.example", "null", "file://", "http://10.0.0.1",
                          "http://localhost@evil.example", "http://[::2]", "ftp://localhost"})
    CHECK_FALSE(OriginAllowed(bad, {}));
  CHECK(OriginAllowed("https://app.example", {"https://app.example"}));
}

TEST_CASE("listen addresses: loopback unless TLS", "[mcp]") {
  auto a = ParseListenAddress("8080");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 8080);
  CHECK(IsLoopback(*a));
  auto b = ParseListenAddress("[::1]:0");
  REQUIRE(b);
  CHECK(b->ipv6);
  CHECK(IsLoopback(*b));
  auto c = ParseListenAddress("0.0.0.0:9000");
  REQUIRE(c);
  CHECK_FALSE(IsLoopback(*c));
  CHECK(ParseListenAddress("localhost:1")->host == "127.0.0.1");
  CHECK_FALSE(ParseListenAddress("example.com:80"));
  CHECK_FALSE(ParseListenAddress("127.0.0.1:70000"));
  CHECK_FALSE(ParseListenAddress("127.0.0.1:"));
  HttpOptions o;
  o.listen = *c;
  o.token = "0123456789abcdef";
  auto refused = HttpServer::Listen(o, nullptr);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().Message().find("needs TLS") != std::string::npos);
}

TEST_CASE("token files: private, long enough", "[mcp]") {
  char dir[] = "/tmp/mcp-test-XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string f = std::string(dir) + "/token";
  std::ofstream(f) << "  s3cr3t-t0ken-0123456789\n";
  chmod(f.c_str(), 0600);
  auto t = LoadTokenFile(f);
  REQUIRE(t);
  CHECK(*t == "s3cr3t-t0ken-0123456789");
  chmod(f.c_str(), 0640);
  auto open = LoadTokenFile(f);
  REQUIRE_FALSE(open);
  CHECK(open.error().Message() == "--token-file: " + f + ": mode 0640 lets group or others at it (chmod 600 " + f + ")");
  std::ofstream(f) << "short\n";
  chmod(f.c_str(), 0600);
  CHECK_FALSE(LoadTokenFile(f));
  std::string link = std::string(dir) + "/link";
  REQUIRE(symlink(f.c_str(), link.c_str()) == 0);
  CHECK_FALSE(LoadTokenFile(link));
  auto n1 = NewToken(), n2 = NewToken();
  REQUIRE(n1);
  CHECK(n1->size() == 64);
  CHECK(*n1 != *n2);
  unlink(link.c_str());
  unlink(f.c_str());
  rmdir(dir);
}

TEST_CASE("HTTP transport: auth, origin, sessions, methods", "[mcp]") {
  FakeTools tools;
  Dispatcher d(&tools, "1", "");
  HttpOptions o;
  o.token = "0123456789abcdef0123456789abcdef";
  HttpServer server(o, &d);
  auto post = [&](std::string body, std::vector<std::pair<std::string, std::string>> extra = {}, bool auth = true) {
    HttpRequest r;
    r.method = "POST";
    r.target = "/mcp";
    r.version = "HTTP/1.1";
    r.headers = {{"content-type", "application/json"}, {"accept", "application/json, text/event-stream"}};
    if (auth) r.headers.emplace_back("authorization", "Bearer " + o.token);
    for (auto& h : extra) r.headers.push_back(h);
    r.body = std::move(body);
    return server.Respond(r);
  };
  const std::string init = R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}})";
  CHECK(post(init, {}, false).status == 401);
  CHECK(post(init, {{"authorization", "Bearer wrong"}}, false).status == 401);
  CHECK(post(init, {{"origin", "http://evil.example"}}).status == 403);
  CHECK(post(init, {{"mcp-protocol-version", "1999-01-01"}}).status == 400);
  HttpResponse r = post(init, {{"origin", "http://localhost:6274"}});
  REQUIRE(r.status == 200);
  std::string sid;
  for (auto& [k, v] : r.headers)
    if (k == "Mcp-Session-Id") sid = v;
  REQUIRE(sid.size() == 32);
  CHECK(Json::parse(r.body)["result"]["protocolVersion"] == "2025-06-18");
  const std::string list = R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})";
  CHECK(post(list).status == 400);  // no session
  CHECK(post(list, {{"mcp-session-id", "nope"}}).status == 404);
  HttpResponse l = post(list, {{"mcp-session-id", sid}, {"mcp-protocol-version", "2025-06-18"}});
  CHECK(l.status == 200);
  CHECK(Json::parse(l.body)["result"]["tools"].size() > 10);
  CHECK(post(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", {{"mcp-session-id", sid}}).status == 202);
  CHECK(post("{oops", {{"mcp-session-id", sid}}).status == 400);
  HttpRequest get;
  get.method = "GET";
  get.target = "/mcp";
  get.headers = {{"authorization", "Bearer " + o.token}};
  CHECK(server.Respond(get).status == 405);
  get.target = "/other";
  CHECK(server.Respond(get).status == 404);
  HttpRequest del = get;
  del.method = "DELETE";
  del.target = "/mcp";
  del.headers.emplace_back("mcp-session-id", sid);
  CHECK(server.Respond(del).status == 200);
  CHECK(post(list, {{"mcp-session-id", sid}}).status == 404);
  std::string wire = l.Serialize(true);
  CHECK(wire.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(wire.find("Content-Length: " + std::to_string(l.body.size()) + "\r\n") != std::string::npos);
}

// MCP's Streamable HTTP transport for `airlock mcp --http`: POST /mcp with
// one JSON-RPC message (or a batch), answered with application/json (202 for
// notifications); GET answers 405 (no server-initiated stream); DELETE ends
// a session. Every request needs `Authorization: Bearer <token>`; an Origin
// header must name a loopback host (or one the operator allowed); sessions
// are named by the Mcp-Session-Id header the initialize answer carries.
// A thread per connection, a bounded number of them, bounded requests; TLS
// (OpenSSL, 1.2 or later) when a certificate is given, required beyond
// loopback.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness/client/mcp_protocol.h"
#include "runtime/core/unique_fd.h"

namespace airlock::client::mcp {

inline constexpr size_t kMaxBody = 16u << 20;
inline constexpr size_t kMaxHeaderBytes = 64u << 10;

// One parsed request. Header names are lower-case.
struct HttpRequest {
  std::string method;
  std::string target;
  std::string version;  // "HTTP/1.1"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `name` (lower-case), if any.
  std::optional<std::string> Header(std::string_view name) const;
  // HTTP/1.1 without "Connection: close", or HTTP/1.0 with keep-alive.
  bool KeepAlive() const;
};

// What ParseHttpRequest made of the bytes so far.
struct HttpParse {
  enum Status { kIncomplete, kDone, kError } status = kIncomplete;
  HttpRequest request;
  size_t consumed = 0;       // kDone: bytes of `buf` the request took
  int error_status = 0;      // kError: 400, 411, 413, 431, 501, 505
  std::string error;         // kError: why, for the body
};

// Parses one HTTP/1.x request from the start of `buf`: request line,
// headers (at most kMaxHeaderBytes), a Content-Length body (at most
// `max_body`). Chunked bodies are refused (411): MCP clients send a length.
HttpParse ParseHttpRequest(std::string_view buf, size_t max_body = kMaxBody);

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";

  // The whole response, status line to body, with Content-Length and
  // Connection headers.
  std::string Serialize(bool keep_alive) const;
};

// Compares in time that depends only on the lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// True when `authorization` (the header's value) is "Bearer <token>".
bool BearerMatches(const std::optional<std::string>& authorization, std::string_view token);

// True for an Origin header naming a loopback host (localhost, 127.0.0.0/8,
// [::1]) on any port, or one of `allowed` exactly ("https://app.example").
bool OriginAllowed(std::string_view origin, const std::vector<std::string>& allowed);

// "[ADDR:]PORT": an IPv4 or bracketed IPv6 address ("[::1]:8080"),
// "localhost", default 127.0.0.1; port 0 picks a free one.
struct ListenAddress {
  std::string host;  // numeric
  uint16_t port = 0;
  bool ipv6 = false;
};
Result<ListenAddress> ParseListenAddress(std::string_view value);

// 127.0.0.0/8 and ::1.
bool IsLoopback(const ListenAddress& a);

// The token for --token-file: the file's content without surrounding
// whitespace. Refused when the file is a symlink, not regular, readable or
// writable by group or others, or the token is shorter than 16 characters.
Result<std::string> LoadTokenFile(const std::string& path);

// 32 random bytes, hex.
Result<std::string> NewToken();

struct HttpOptions {
  ListenAddress listen;
  std::string token;
  std::string tls_cert;  // PEM files; both or neither
  std::string tls_key;
  std::vector<std::string> allowed_origins;
  size_t max_connections = 32;
  size_t max_sessions = 256;
};

class HttpServer {
 public:
  // Binds and listens (and loads the TLS certificate). Refuses a
  // non-loopback address without TLS.
  static Result<std::unique_ptr<HttpServer>> Listen(HttpOptions options, Dispatcher* dispatcher);
  // Without a socket: Respond only (the unit tests).
  HttpServer(HttpOptions options, Dispatcher* dispatcher);
  ~HttpServer();

  uint16_t port() const { return port_; }
  // "http://127.0.0.1:PORT/mcp".
  std::string Url() const;
  // Serves until `stop_fd` becomes readable; then closes the connections
  // and waits for their threads.
  Result<void> Serve(int stop_fd);

  // One request, without a socket (also the unit tests' way in).
  HttpResponse Respond(const HttpRequest& request);

 private:
  struct Session;
  void ServeConnection(int fd);
  std::shared_ptr<Session> FindSession(const std::string& id);
  std::string NewSession(const std::string& protocol_version);

  HttpOptions options_;
  Dispatcher* dispatcher_ = nullptr;
  UniqueFd listen_fd_;
  uint16_t port_ = 0;
  std::shared_ptr<SSL_CTX> tls_;

  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace airlock::client::mcp

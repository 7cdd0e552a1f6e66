#include "harness/client/mcp_http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace airlock::client::mcp {
namespace {

constexpr int kIoTimeoutSec = 60;  // a request must arrive, and a reply leave, within this
constexpr int kMaxRequestsPerConnection = 100000;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c) != nullptr) return false;
  return true;
}

HttpParse ParseError(int status, std::string why) {
  HttpParse p;
  p.status = HttpParse::kError;
  p.error_status = status;
  p.error = std::move(why);
  return p;
}

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

HttpResponse Plain(int status, std::string text) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(text) + "\n";
  return r;
}

HttpResponse JsonResponse(int status, const Json& body) {
  HttpResponse r;
  r.status = status;
  r.body = Dump(body);
  return r;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string OpenSslError(const std::string& what) {
  char buf[256] = "unknown error";
  if (unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return what + ": " + buf;
}

// A connection's bytes, in the clear or through TLS.
struct Stream {
  int fd = -1;
  SSL* ssl = nullptr;

  ssize_t Read(char* buf, size_t n) {
    if (ssl == nullptr) {
      ssize_t r;
      do r = recv(fd, buf, n, 0);
      while (r < 0 && errno == EINTR);
      return r;
    }
    int r = SSL_read(ssl, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
    return r > 0 ? r : -1;
  }
  bool WriteAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t w;
      if (ssl == nullptr) {
        w = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
      } else {
        w = SSL_write(ssl, data.data(), static_cast<int>(std::min<size_t>(data.size(), INT32_MAX)));
      }
      if (w <= 0) return false;
      data.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }
};

}  // namespace

std::optional<std::string> HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return std::nullopt;
}

bool HttpRequest::KeepAlive() const {
  std::string c = Lower(Header("connection").value_or(""));
  if (version == "HTTP/1.0") return c.find("keep-alive") != std::string::npos;
  return c.find("close") == std::string::npos;
}

HttpParse ParseHttpRequest(std::string_view buf, size_t max_body) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos || end + 4 > kMaxHeaderBytes) {
    if (buf.size() > kMaxHeaderBytes || end != std::string_view::npos)
      return ParseError(431, "request headers larger than " + std::to_string(kMaxHeaderBytes) + " bytes");
    return {};
  }
  HttpParse p;
  std::string_view head = buf.substr(0, end + 2);
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return ParseError(400, "malformed request line");
  p.request.method = std::string(line.substr(0, sp1));
  p.request.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  p.request.version = std::string(line.substr(sp2 + 1));
  if (!IsToken(p.request.method) || p.request.target.empty()) return ParseError(400, "malformed request line");
  if (p.request.version != "HTTP/1.1" && p.request.version != "HTTP/1.0")
    return ParseError(505, "only HTTP/1.1 and HTTP/1.0 are spoken here");
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    std::string_view h = head.substr(pos, next - pos);
    pos = next + 2;
    if (h.empty()) break;
    if (h.front() == ' ' || h.front() == '\t') return ParseError(400, "folded header lines are not accepted");
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || !IsToken(h.substr(0, colon)))
      return ParseError(400, "malformed header line");
    std::string_view value = Trim(h.substr(colon + 1));
    if (value.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos)
      return ParseError(400, "control characters in a header");
    p.request.headers.emplace_back(Lower(h.substr(0, colon)), std::string(value));
  }
  if (p.request.Header("transfer-encoding"))
    return ParseError(411, "chunked request bodies are not accepted: send Content-Length");
  size_t length = 0;
  std::optional<std::string> seen;
  for (const auto& [k, v] : p.request.headers) {
    if (k != "content-length") continue;
    if (seen && *seen != v) return ParseError(400, "conflicting Content-Length headers");
    seen = v;
    if (v.empty() || v.size() > 12 || v.find_first_not_of("0123456789") != std::string::npos)
      return ParseError(400, "Content-Length is not a number");
    length = std::stoull(v);
  }
  if (length > max_body)
    return ParseError(413, "request body larger than " + std::to_string(max_body) + " bytes");
  if (buf.size() < end + 4 + length) return {};
  p.request.body = std::string(buf.substr(end + 4, length));
  p.consumed = end + 4 + length;
  p.status = HttpParse::kDone;
  return p;
}

std::string HttpResponse::Serialize(bool keep_alive) const {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + Reason(status) + "\r\n";
  if (!body.empty()) out += "Content-Type: " + content_type + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "Cache-Control: no-store\r\n\r\n";
  return out + body;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // CRYPTO_memcmp over equal lengths; a length mismatch still compares
  // something so the time doesn't tell how much of a prefix matched.
  if (a.size() != b.size()) {
    (void)CRYPTO_memcmp(a.data(), a.data(), a.size());
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool BearerMatches(const std::optional<std::string>& authorization, std::string_view token) {
  if (!authorization || token.empty()) return false;
  std::string_view v = *authorization;
  if (v.size() < 7 || Lower(v.substr(0, 7)) != "bearer ") return false;
  return ConstantTimeEquals(Trim(v.substr(7)), token);
}

bool OriginAllowed(std::string_view origin, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), origin) != allowed.end()) return true;
  size_t scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return false;
  std::string scheme = Lower(origin.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return false;
  std::string_view rest = origin.substr(scheme_end + 3);
  if (rest.find_first_of("/?#@") != std::string_view::npos) return false;
  std::string host;
  if (rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
  } else {
    host = std::string(rest.substr(0, rest.find(':')));
  }
  host = Lower(host);
  if (host == "localhost") return true;
  in_addr a4;
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

Result<ListenAddress> ParseListenAddress(std::string_view value) {
  ListenAddress out;
  std::string_view host = "127.0.0.1", port = value;
  if (value.starts_with('[')) {
    size_t close = value.find("]:");
    if (close == std::string_view::npos) return Fail("--http", "expected [ADDRESS]:PORT (got \"" + std::string(value) + "\")");
    host = value.substr(1, close - 1);
    port = value.substr(close + 2);
  } else if (size_t colon = value.rfind(':'); colon != std::string_view::npos) {
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535)
    return Fail("--http", "not a port 0-65535: \"" + std::string(port) + "\"");
  out.port = static_cast<uint16_t>(std::stoul(std::string(port)));
  out.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  in_addr a4;
  in6_addr a6;
  if (inet_pton(AF_INET, out.host.c_str(), &a4) == 1) return out;
  if (inet_pton(AF_INET6, out.host.c_str(), &a6) == 1) {
    out.ipv6 = true;
    return out;
  }
  return Fail("--http", "not a numeric address: \"" + std::string(host) + "\" (e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8443)");
}

bool IsLoopback(const ListenAddress& a) {
  if (!a.ipv6) {
    in_addr a4;
    return inet_pton(AF_INET, a.host.c_str(), &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, a.host.c_str(), &a6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

Result<std::string> LoadTokenFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Errno("--token-file", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("--token-file", path);
  if (!S_ISREG(st.st_mode)) return Fail("--token-file", path + ": not a regular file");
  if (st.st_mode & 077) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return Fail("--token-file", path + ": mode " + mode + " lets group or others at it (chmod 600 " + path + ")");
  }
  std::string data(4097, '\0');
  ssize_t n = read(fd.get(), data.data(), data.size());
  if (n < 0) return Errno("--token-file", path);
  if (n > 4096) return Fail("--token-file", path + ": longer than 4096 bytes");
  data.resize(static_cast<size_t>(n));
  std::string token(Trim(std::string_view(data).substr(0, data.find_last_not_of("\r\n \t") + 1)));
  if (token.size() < 16) return Fail("--token-file", path + ": the token must be at least 16 characters");
  for (unsigned char c : token)
    if (c <= 32 || c >= 127) return Fail("--token-file", path + ": the token must be printable ASCII without spaces");
  return token;
}

Result<std::string> NewToken() {
  unsigned char bytes[32];
  if (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) return Errno("getrandom");
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// --- the server -----------------------------------------------------------------

struct HttpServer::Session {
  SessionState state;
  int64_t last_used_ms = 0;
};

struct HttpServer::State {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::shared_ptr<Session>> sessions;
  std::set<int> fds;  // open connections, to shut down on stop
  size_t active = 0;
  bool stopping = false;
};

HttpServer::HttpServer(HttpOptions options, Dispatcher* dispatcher)
    : options_(std::move(options)), dispatcher_(dispatcher), state_(std::make_shared<State>()) {}

HttpServer::~HttpServer() = default;

Result<std::unique_ptr<HttpServer>> HttpServer::Listen(HttpOptions options, Dispatcher* dispatcher) {
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  if (tls && (options.tls_cert.empty() || options.tls_key.empty()))
    return Fail("--tls-cert", "--tls-cert and --tls-key go together");
  if (!tls && !IsLoopback(options.listen))
    return Fail("--http", options.listen.host + " is not a loopback address: serving beyond loopback needs TLS "
                          "(--tls-cert FILE --tls-key FILE), or the bearer token would cross the network in clear");
  auto server = std::make_unique<HttpServer>(std::move(options), dispatcher);
  const HttpOptions& o = server->options_;
  if (tls) {
    std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    if (!ctx) return Fail("tls", OpenSslError("SSL_CTX_new"));
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), o.tls_cert.c_str()) != 1)
      return Fail("--tls-cert", OpenSslError(o.tls_cert));
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return Fail("--tls-key", OpenSslError(o.tls_key));
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
      return Fail("--tls-key", OpenSslError(o.tls_key + " does not match " + o.tls_cert));
    server->tls_ = std::move(ctx);
  }
  const int family = o.listen.ipv6 ? AF_INET6 : AF_INET;
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (o.listen.ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(o.listen.port);
    inet_pton(AF_INET6, o.listen.host.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(o.listen.port);
    inet_pton(AF_INET, o.listen.host.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  const std::string where = o.listen.host + ":" + std::to_string(o.listen.port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return Errno("bind", where);
  if (listen(fd.get(), 64) != 0) return Errno("listen", where);
  len = sizeof ss;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return Errno("getsockname", where);
  server->port_ = ntohs(o.listen.ipv6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                      : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  server->listen_fd_ = std::move(fd);
  return server;
}

std::string HttpServer::Url() const {
  std::string host = options_.listen.ipv6 ? "[" + options_.listen.host + "]" : options_.listen.host;
  return std::string(tls_ ? "https" : "http") + "://" + host + ":" + std::to_string(port_) + "/mcp";
}

std::shared_ptr<HttpServer::Session> HttpServer::FindSession(const std::string& id) {
  std::lock_guard lock(state_->mu);
  auto it = state_->sessions.find(id);
  if (it == state_->sessions.end()) return nullptr;
  it->second->last_used_ms = NowMs();
  return it->second;
}

std::string HttpServer::NewSession(const std::string& protocol_version) {
  auto token = NewToken();
  std::string id = token ? token->substr(0, 32) : std::to_string(NowMs());
  auto s = std::make_shared<Session>();
  s->state.protocol_version = protocol_version;
  s->last_used_ms = NowMs();
  std::lock_guard lock(state_->mu);
  if (state_->sessions.size() >= options_.max_sessions) {  // forget the least recently used
    auto oldest = std::min_element(state_->sessions.begin(), state_->sessions.end(), [](const auto& x, const auto& y) {
      return x.second->last_used_ms < y.second->last_used_ms;
    });
    state_->sessions.erase(oldest);
  }
  state_->sessions[id] = std::move(s);
  return id;
}

HttpResponse HttpServer::Respond(const HttpRequest& req) {
  // Browsers send Origin; a page on another site reaching this port through
  // DNS rebinding is refused before anything else (the MCP transport spec).
  if (auto origin = req.Header("origin"); origin && !OriginAllowed(*origin, options_.allowed_origins))
    return Plain(403, "origin " + *origin + " is not allowed (only loopback origins, or --allow-origin)");
  if (!BearerMatches(req.Header("authorization"), options_.token)) {
    HttpResponse r = Plain(401, "a bearer token is required (Authorization: Bearer TOKEN)");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"airlock mcp\"");
    return r;
  }
  std::string_view path = req.target;
  path = path.substr(0, path.find('?'));
  if (path != "/mcp") return Plain(404, "the MCP endpoint is /mcp");
  auto session_id = req.Header("mcp-session-id");
  if (req.method == "DELETE") {
    if (!session_id) return Plain(400, "DELETE needs an Mcp-Session-Id header");
    std::lock_guard lock(state_->mu);
    if (state_->sessions.erase(*session_id) == 0) return Plain(404, "no such session");
    return HttpResponse{200, {}, "", ""};
  }
  if (req.method != "POST") {
    HttpResponse r = Plain(405, "this server offers no event stream: POST JSON-RPC messages to /mcp");
    r.headers.emplace_back("Allow", "POST, DELETE");
    return r;
  }
  if (auto v = req.Header("mcp-protocol-version"); v && !IsSupportedProtocol(*v))
    return Plain(400, "unsupported MCP-Protocol-Version " + *v + " (2025-06-18, 2025-03-26, 2024-11-05)");
  if (auto ct = req.Header("content-type"); ct && Lower(*ct).find("application/json") == std::string::npos)
    return Plain(415, "the body must be application/json");
  Json message = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) return JsonResponse(400, ErrorReply(nullptr, kParseError, "parse error: not a JSON text"));
  const bool initialize = message.is_object() && message.contains("id") && message.value("method", Json()) == "initialize";
  std::shared_ptr<Session> session;
  std::string new_id;
  if (initialize) {
    session = std::make_shared<Session>();
  } else {
    if (!session_id)
      return JsonResponse(400, ErrorReply(nullptr, kInvalidRequest, "an Mcp-Session-Id header is required (initialize first)"));
    session = FindSession(*session_id);
    if (!session) return JsonResponse(404, ErrorReply(nullptr, kInvalidRequest, "session not found: initialize again"));
  }
  Json reply = dispatcher_->Handle(message, &session->state);
  if (reply.is_null()) return HttpResponse{202, {}, "", ""};
  HttpResponse r = JsonResponse(200, reply);
  if (initialize && reply.contains("result")) {
    std::lock_guard lock(session->state.mu);
    r.headers.emplace_back("Mcp-Session-Id", NewSession(session->state.protocol_version));
  }
  return r;
}

void HttpServer::ServeConnection(int fd) {
  timeval tv{kIoTimeoutSec, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Stream s{fd, nullptr};
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(nullptr, SSL_free);
  if (tls_) {
    ssl.reset(SSL_new(tls_.get()));
    if (!ssl || SSL_set_fd(ssl.get(), fd) != 1 || SSL_accept(ssl.get()) != 1) {
      ERR_clear_error();
      return;
    }
    s.ssl = ssl.get();
  }
  std::string buf;
  char chunk[65536];
  for (int served = 0; served < kMaxRequestsPerConnection;) {
    HttpParse p = ParseHttpRequest(buf);
    if (p.status == HttpParse::kIncomplete) {
      ssize_t n = s.Read(chunk, sizeof chunk);
      if (n <= 0) break;  // closed, timed out, or shut down by Serve
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (p.status == HttpParse::kError) {
      s.WriteAll(Plain(p.error_status, p.error).Serialize(false));
      break;
    }
    buf.erase(0, p.consumed);
    ++served;
    const bool keep = p.request.KeepAlive();
    if (!s.WriteAll(Respond(p.request).Serialize(keep)) || !keep) break;
  }
  if (ssl) SSL_shutdown(ssl.get());
}

Result<void> HttpServer::Serve(int stop_fd) {
  auto state = state_;
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Errno("poll", "the MCP listener");
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client gave up, or out of descriptors for a moment
    {
      std::lock_guard lock(state->mu);
      if (state->active >= options_.max_connections) {
        // A plain client learns why; a TLS one sees the connection close.
        if (!tls_) Stream{fd, nullptr}.WriteAll(Plain(503, "too many connections").Serialize(false));
        close(fd);
        continue;
      }
      ++state->active;
      state->fds.insert(fd);
    }
    std::thread([this, state, fd] {
      ServeConnection(fd);
      std::lock_guard lock(state->mu);
      state->fds.erase(fd);
      close(fd);
      --state->active;
      state->cv.notify_all();
    }).detach();
  }
  std::unique_lock lock(state->mu);
  state->stopping = true;
  for (int fd : state->fds) shutdown(fd, SHUT_RDWR);  // their reads return; calls in flight finish
  state->cv.wait(lock, [&] { return state->active == 0; });
  return {};
}

}  // namespace airlock::client::mcp

// One connection a sandbox opened through its relay: an HTTP proxy request
// (explicit mode) or a redirected connection (transparent mode), decided
// against the sandbox's policy, then tunnelled, forwarded, or intercepted
// to inject its secrets. Everything read here comes from the sandbox.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "harness/proxy/http.h"
#include "harness/proxy/server.h"
#include "harness/proxy/sni.h"
#include "runtime/proto/egress.h"

namespace airlock::proxy {
namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr int kConnectTimeoutMs = 10000;
constexpr int kHelloTimeoutMs = 10000;

// A byte stream: a socket, or TLS over one.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual Result<size_t> Read(char* buf, size_t n) = 0;  // 0: EOF
  virtual Result<void> Write(std::string_view data) = 0;
};

class FdStream : public Stream {
 public:
  explicit FdStream(int fd) : fd_(fd) {}
  Result<size_t> Read(char* buf, size_t n) override {
    for (;;) {
      ssize_t got = recv(fd_, buf, n, 0);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return Errno("recv");
    }
  }
  Result<void> Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Errno("send");
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

 private:
  int fd_;
};

class TlsAdapter : public Stream {
 public:
  explicit TlsAdapter(TlsStream& s) : s_(s) {}
  Result<size_t> Read(char* buf, size_t n) override { return s_.Read(buf, n); }
  Result<void> Write(std::string_view data) override { return s_.WriteAll(data); }

 private:
  TlsStream& s_;
};

// Writes gathered into records of up to 64 KiB: a response's head, chunks
// and terminator leave as one TLS record and one segment instead of three
// (which Nagle and a delayed ACK on the way would hold ~40 ms).
class Coalescing : public Stream {
 public:
  explicit Coalescing(Stream& s) : s_(s) {}
  Result<size_t> Read(char* buf, size_t n) override { return s_.Read(buf, n); }
  Result<void> Write(std::string_view data) override {
    buf_.append(data);
    if (buf_.size() >= 64 * 1024) return Flush();
    return {};
  }
  Result<void> Flush() {
    if (buf_.empty()) return {};
    auto r = s_.Write(buf_);
    buf_.clear();
    return r;
  }

 private:
  Stream& s_;
  std::string buf_;
};

// Buffered reading on a Stream: heads, lines and counted bytes.
class Reader {
 public:
  explicit Reader(Stream& s) : s_(s) {}
  // A head up to CRLFCRLF; an empty string at a clean EOF before any byte.
  Result<std::string> Head() {
    for (;;) {
      size_t end = FindHeadEnd(buf_);
      if (end != std::string_view::npos) {
        std::string head = buf_.substr(0, end);
        buf_.erase(0, end);
        return head;
      }
      if (buf_.size() > kMaxHead) return Fail("http", "head larger than 64 KiB");
      size_t got = TRY(Fill());
      if (got == 0) {
        if (buf_.empty()) return std::string();
        return Fail("http", "connection closed inside a head");
      }
    }
  }
  // One CRLF-terminated line, without the CRLF.
  Result<std::string> Line() {
    for (;;) {
      size_t at = buf_.find("\r\n");
      if (at != std::string::npos) {
        std::string line = buf_.substr(0, at);
        buf_.erase(0, at + 2);
        return line;
      }
      if (buf_.size() > 8192) return Fail("http", "line longer than 8 KiB");
      if (TRY(Fill()) == 0) return Fail("http", "connection closed inside a line");
    }
  }
  // Up to `max` bytes (what is buffered first); empty at EOF.
  Result<std::string> Some(size_t max) {
    if (buf_.empty() && TRY(Fill()) == 0) return std::string();
    size_t n = std::min(max, buf_.size());
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

 private:
  Result<size_t> Fill() {
    char tmp[16384];
    size_t got = TRY(s_.Read(tmp, sizeof(tmp)));
    buf_.append(tmp, got);
    return got;
  }
  Stream& s_;
  std::string buf_;
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// A comma-separated header (Connection) that lists `token`.
bool HeaderHasToken(const Headers& headers, std::string_view name, std::string_view token) {
  for (const auto& h : headers) {
    if (!HeaderNameEquals(h.name, name)) continue;
    size_t start = 0;
    while (start <= h.value.size()) {
      size_t comma = h.value.find(',', start);
      std::string_view part(h.value.data() + start, (comma == std::string::npos ? h.value.size() : comma) - start);
      while (!part.empty() && (part.front() == ' ' || part.front() == '\t')) part.remove_prefix(1);
      while (!part.empty() && (part.back() == ' ' || part.back() == '\t')) part.remove_suffix(1);
      if (HeaderNameEquals(part, token)) return true;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return false;
}

// The address literal `host` names (policy.h's strict parser), if it is one.
bool IsLiteral(const std::string& host, sockaddr_storage* out, uint16_t port) {
  auto ip = ParseIpLiteral(host);
  if (!ip) return false;
  if (out) *out = MakeSockaddr(*ip, port);
  return true;
}

std::string AddressText(const sockaddr_storage& ss) {
  auto ip = AddressFromSockaddr(ss);
  return ip ? FormatIp(*ip) : std::string();
}

void SetPort(sockaddr_storage& ss, uint16_t port) {
  if (auto ip = AddressFromSockaddr(ss)) ss = MakeSockaddr(*ip, port);
}

class Connection {
 public:
  Connection(const ConnContext& ctx, UniqueFd fd, const EgressOpenInfo& open)
      : ctx_(ctx), fd_(std::move(fd)), open_(open), client_(fd_.get()) {}

  void Serve() {
    audit_.kind = open_.transparent ? "transparent" : "connect";
    if (!open_.transparent) {
      Explicit();
    } else {
      Transparent();
    }
    ctx_.server->Report(ctx_.sandbox->id, audit_);
  }

 private:
  // ---- decisions ----------------------------------------------------------

  // The name (or literal) checked against the policy, resolved, and every
  // address checked; the one to connect to. Fills the audit.
  Result<sockaddr_storage> Decide(const std::string& raw_host, uint16_t port) {
    const std::string host = Lower(raw_host);
    audit_.destination = host;
    audit_.port = port;
    const Policy& policy = ctx_.sandbox->policy;
    sockaddr_storage literal;
    if (IsLiteral(host, &literal, port)) {
      if (!AllowsAddressLiteral(policy, literal, port))
        return Fail("policy", host + ":" + std::to_string(port) + " is not on the sandbox's allowlist");
      TRY(CheckAddress(policy, literal, port, ctx_.config->refused));
      audit_.address = AddressText(literal);
      return literal;
    }
    if (!AllowsName(policy, host, port))
      return Fail("policy", host + ":" + std::to_string(port) + " is not on the sandbox's allowlist");
    std::vector<sockaddr_storage> addrs;
    auto fixed = ctx_.config->resolve.find(host);
    if (fixed != ctx_.config->resolve.end()) {
      addrs = fixed->second;
    } else {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
      if (rc != 0) return Fail("resolve", host + ": " + gai_strerror(rc));
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        sockaddr_storage ss{};
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        addrs.push_back(ss);
      }
      freeaddrinfo(res);
    }
    if (addrs.empty()) return Fail("resolve", host + ": no address");
    // Every address must pass: a name that resolves to a public address and
    // to a private one is refused as a whole.
    for (auto& a : addrs) {
      SetPort(a, port);
      TRY(CheckAddress(policy, a, port, ctx_.config->refused));
    }
    audit_.address = AddressText(addrs.front());
    return addrs.front();
  }

  // Connects to exactly the address that was checked.
  Result<UniqueFd> Dial(const sockaddr_storage& addr) {
    UniqueFd fd(socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return Errno("socket");
    socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) < 0 && errno != EINPROGRESS)
      return Errno("connect", audit_.address);
    pollfd p{fd.get(), POLLOUT, 0};
    int r = poll(&p, 1, kConnectTimeoutMs);
    if (r == 0) return Fail("connect", audit_.address + ": timed out");
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return ErrnoValue(err, "connect", audit_.address);
    fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }

  bool Intercepts(const std::string& host, uint16_t port) const {
    if (!ctx_.config->ca) return false;
    for (const auto& rule : ctx_.sandbox->secrets)
      if (MatchesDestination(rule.hosts, host, port)) return true;
    return false;
  }

  // A placeholder of any of the sandbox's secrets anywhere in the head.
  std::optional<std::string> PlaceholderIn(const RequestHead& req) const {
    for (const auto& rule : ctx_.sandbox->secrets) {
      const std::string ph = Placeholder(rule.name);
      if (req.target.find(ph) != std::string::npos) return rule.name;
      for (const auto& h : req.headers)
        if (h.value.find(ph) != std::string::npos || h.name.find(ph) != std::string::npos) return rule.name;
    }
    return std::nullopt;
  }

  void Deny(const std::string& why, int status = 403) {
    audit_.allowed = false;
    audit_.reason = why;
    if (status != 0) Respond(client_, status, why);
  }

  static void Respond(Stream& s, int status, const std::string& why) {
    const char* text = status == 403 ? "Forbidden" : status == 400 ? "Bad Request" : status == 502 ? "Bad Gateway" : "Error";
    std::string body = "airlock egress proxy: " + why + "\n";
    (void)s.Write("HTTP/1.1 " + std::to_string(status) + " " + text +
                  "\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n\r\n" + body);
  }

  // ---- explicit mode ------------------------------------------------------

  void Explicit() {
    Reader in(client_);
    auto head = in.Head();
    if (!head || head->empty()) return Deny(head ? "no request" : head.error().Message(), head ? 0 : 400);
    auto req = ParseRequestHead(*head);
    if (!req) return Deny(req.error().Message(), 400);
    if (req->method == "CONNECT") return Connect(*req);
    audit_.kind = "http";
    PlainHttp(*req, in);
  }

  // A tunnel: TLS whose SNI must name the CONNECT host; intercepted when
  // the destination has secrets bound to it.
  void Connect(const RequestHead& req) {
    const std::string host = Lower(req.host);
    auto addr = Decide(host, req.port);
    if (!addr) return Deny(addr.error().Message());
    if (!client_.Write("HTTP/1.1 200 Connection established\r\n\r\n")) return Deny("client gone", 0);
    Tunnel(host, req.port, *addr);
  }

  // The client's ClientHello, peeked (not consumed): its SNI must be the
  // destination's name (or absent); anything but TLS is refused.
  Result<void> CheckHello(const std::string& host) {
    std::string peeked(16384, '\0');
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHelloTimeoutMs);
    for (;;) {
      ssize_t n = recv(fd_.get(), peeked.data(), peeked.size(), MSG_PEEK | MSG_DONTWAIT);
      if (n == 0) return Fail("tls", "the client closed before its ClientHello");
      if (n < 0 && errno != EAGAIN && errno != EINTR) return Errno("recv", "ClientHello");
      if (n > 0) {
        auto hello = ParseClientHelloSni(std::string_view(peeked.data(), static_cast<size_t>(n)));
        if (hello.status == ClientHelloSni::Status::kComplete) {
          if (hello.server_name && !SniMatchesHost(hello.server_name, host))
            return Fail("tls", "SNI " + *hello.server_name + " differs from the destination " + host);
          sockaddr_storage lit;
          if (hello.server_name && IsLiteral(host, &lit, 0))
            return Fail("tls", "SNI " + *hello.server_name + " on a connection to the address " + host);
          return {};
        }
        if (hello.status == ClientHelloSni::Status::kNotTls) return Fail("tls", "not TLS (plain text where TLS was expected)");
        if (hello.status == ClientHelloSni::Status::kMalformed)
          return Fail("tls", "malformed ClientHello: " + hello.error);
        if (static_cast<size_t>(n) == peeked.size()) return Fail("tls", "ClientHello larger than 16 KiB");
      }
      if (std::chrono::steady_clock::now() >= deadline) return Fail("tls", "no whole ClientHello within 10 s");
      if (n > 0) {
        // Part of it is there, and stays readable while peeked: poll can't
        // say when more comes. A ClientHello split across segments is rare.
        usleep(1000);
      } else {
        pollfd p{fd_.get(), POLLIN, 0};
        poll(&p, 1, kHelloTimeoutMs);
      }
    }
  }

  // A tunnel to an allowed destination. Port 443 and destinations with
  // secrets bound carry TLS, whose SNI is checked before a byte passes (and
  // which is intercepted where secrets are injected). Elsewhere whoever
  // speaks first decides: a client that opens with a TLS record is held to
  // its SNI the same way; a server that speaks first (SSH, SMTP) or a client
  // that speaks anything else gets a plain relay.
  void Tunnel(const std::string& host, uint16_t port, const sockaddr_storage& addr) {
    const bool tls_only = port == 443 || Intercepts(host, port);
    if (tls_only) {
      if (auto ok = CheckHello(host); !ok) return Deny(ok.error().Message(), 0);
      if (Intercepts(host, port)) return Intercept(host, port, addr);
    }
    auto up = Dial(addr);
    if (!up) return Deny(up.error().Message(), 0);
    if (!tls_only) {
      pollfd p[2] = {{fd_.get(), POLLIN, 0}, {up->get(), POLLIN, 0}};
      if (poll(p, 2, kHelloTimeoutMs) > 0 && p[0].revents && !p[1].revents) {
        unsigned char first = 0;
        if (recv(fd_.get(), &first, 1, MSG_PEEK | MSG_DONTWAIT) == 1 && first == 0x16)
          if (auto ok = CheckHello(host); !ok) return Deny(ok.error().Message(), 0);
      }
    }
    audit_.allowed = true;
    audit_.reason = "tunnel";
    Relay(fd_.get(), up->get(), {}, &audit_.bytes_out, &audit_.bytes_in);
  }

  // Plain HTTP, one request per connection. Secrets never travel in clear
  // text: a request carrying a placeholder is refused.
  void PlainHttp(RequestHead& req, Reader& in) {
    const std::string host = Lower(req.host);
    auto addr = Decide(host, req.port);
    if (!addr) return Deny(addr.error().Message());
    if (auto name = PlaceholderIn(req))
      return Deny("the placeholder of secret '" + *name + "' in a plain-HTTP request to " + host +
                  ": secrets travel only over TLS");
    auto up = Dial(*addr);
    if (!up) return Deny(up.error().Message(), 502);
    audit_.allowed = true;
    audit_.reason = "http";
    RemoveHopByHopHeaders(req.headers);
    RemoveHeader(req.headers, "Proxy-Authorization");
    SetHeader(req.headers, "Connection", "close");
    FdStream upstream(up->get());
    if (!upstream.Write(SerializeRequestHead(req, /*origin_form=*/true))) return;
    if (!ForwardBody(in, upstream, req)) return;
    // The response goes back as it comes (nothing was injected into this
    // exchange, so nothing needs redacting).
    Relay(up->get(), fd_.get(), {}, &audit_.bytes_in, &audit_.bytes_out);
  }

  // ---- interception -------------------------------------------------------

  void Intercept(const std::string& host, uint16_t port, const sockaddr_storage& addr) {
    auto server_ctx = ctx_.config->ca->ServerContextFor(host);
    if (!server_ctx) return Deny(server_ctx.error().Message(), 0);
    auto tls_client = TlsStream::Accept(server_ctx->get(), fd_.get());
    if (!tls_client) return Deny("TLS with the sandbox: " + tls_client.error().Message(), 0);
    auto up = Dial(addr);
    if (!up) return Deny(up.error().Message(), 0);
    auto tls_up = TlsStream::Connect(ctx_.config->upstream.get(), up->get(), host);
    if (!tls_up) return Deny(tls_up.error().Message(), 0);
    audit_.allowed = true;
    audit_.reason = "intercepted";
    TlsAdapter client(*tls_client), upstream(*tls_up);
    Reader from_client(client), from_upstream(upstream);
    for (;;) {
      auto head = from_client.Head();
      if (!head || head->empty()) break;
      audit_.bytes_out += head->size();
      auto req = ParseRequestHead(*head, {.allow_origin_form = true, .tls = true});
      if (!req) {
        Respond(client, 400, req.error().Message());
        return Deny(req.error().Message(), 0);
      }
      if (Lower(req->host) != host || req->port != port) {
        Respond(client, 403, "request for another host inside the tunnel");
        return Deny("request for " + req->host + " inside a tunnel to " + host, 0);
      }
      // Identity bodies only: a compressed response couldn't be redacted.
      SetHeader(req->headers, "Accept-Encoding", "identity");
      RemoveHeader(req->headers, "Proxy-Connection");
      std::vector<std::string> used;
      for (const auto& rule : ctx_.sandbox->secrets)
        if (MatchesDestination(rule.hosts, host, port)) used.push_back(rule.name);
      if (auto applied = ApplySecrets(*req, host, port, ctx_.sandbox->secrets); !applied) {
        Respond(client, 403, applied.error().Message());
        return Deny(applied.error().Message(), 0);
      }
      for (const auto& u : used)
        if (std::find(audit_.secrets.begin(), audit_.secrets.end(), u) == audit_.secrets.end()) audit_.secrets.push_back(u);
      if (!upstream.Write(SerializeRequestHead(*req, /*origin_form=*/true))) break;
      if (!ForwardBody(from_client, upstream, *req)) break;
      bool keep = false;
      Coalescing to_client(client);
      auto forwarded = ForwardResponse(from_upstream, to_client, *req, &keep);
      if (!to_client.Flush() || !forwarded || !keep) break;
    }
    tls_client->Shutdown();
    tls_up->Shutdown();
  }

  // The request's body, by its framing (validated by the parser).
  Result<void> ForwardBody(Reader& in, Stream& out, const RequestHead& req) {
    if (req.chunked) return CopyChunked(in, out, nullptr, nullptr, &audit_.bytes_out);
    uint64_t left = req.content_length.value_or(0);
    while (left > 0) {
      std::string part = TRY(in.Some(std::min<uint64_t>(left, 65536)));
      if (part.empty()) return Fail("http", "request body cut short");
      TRY(out.Write(part));
      left -= part.size();
      audit_.bytes_out += part.size();
    }
    return {};
  }

  // Chunked framing: re-emitted chunk by chunk (through `redact` when given,
  // then as one chunk per piece on `out`), trailers dropped.
  Result<void> CopyChunked(Reader& in, Stream& out, Redactor* redact, std::string* pending, uint64_t* count) {
    for (;;) {
      std::string line = TRY(in.Line());
      size_t semi = line.find(';');
      std::string hex = line.substr(0, semi);
      if (hex.empty() || hex.size() > 15 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        return Fail("http", "bad chunk size");
      uint64_t size = std::stoull(hex, nullptr, 16);
      if (size == 0) {
        for (;;) {  // trailers
          std::string t = TRY(in.Line());
          if (t.empty()) break;
        }
        if (redact) TRY(WriteChunk(out, redact->Finish()));
        TRY(out.Write(redact ? std::string_view("0\r\n\r\n") : std::string_view("0\r\n\r\n")));
        (void)pending;
        return {};
      }
      while (size > 0) {
        std::string part = TRY(in.Some(std::min<uint64_t>(size, 65536)));
        if (part.empty()) return Fail("http", "chunk cut short");
        size -= part.size();
        *count += part.size();
        TRY(WriteChunk(out, redact ? redact->Feed(part) : part));
      }
      if (!TRY(in.Line()).empty()) return Fail("http", "chunk without its CRLF");
    }
  }

  static Result<void> WriteChunk(Stream& out, const std::string& data) {
    if (data.empty()) return {};
    char size[32];
    snprintf(size, sizeof(size), "%zx\r\n", data.size());
    TRY(out.Write(std::string(size) + data + "\r\n"));
    return {};
  }

  // The upstream's response, redacted: every secret value the response
  // carries is replaced before the sandbox sees it; the body goes back
  // chunked whatever its framing was.
  Result<void> ForwardResponse(Reader& in, Stream& out, const RequestHead& req, bool* keep) {
    for (;;) {
      std::string head = TRY(in.Head());
      if (head.empty()) return Fail("http", "upstream closed without a response");
      auto resp = TRY(ParseResponseHead(head));
      Redactor redact(ctx_.sandbox->secrets);
      for (auto& h : resp.headers) h.value = Redact(ctx_.sandbox->secrets, h.value);
      if (resp.status >= 100 && resp.status < 200) {
        TRY(out.Write(SerializeResponseHead(resp)));
        if (auto* c = dynamic_cast<Coalescing*>(&out)) TRY(c->Flush());  // the client may wait for it
        continue;
      }
      const bool no_body = req.method == "HEAD" || resp.status == 204 || resp.status == 304;
      const bool te = resp.chunked;
      const std::optional<uint64_t> cl = resp.content_length;
      const bool close = resp.version == "HTTP/1.0" || HeaderHasToken(resp.headers, "Connection", "close") ||
                         HeaderHasToken(req.headers, "Connection", "close") || (!no_body && !te && !cl);
      RemoveHeader(resp.headers, "Content-Length");
      RemoveHeader(resp.headers, "Transfer-Encoding");
      if (!no_body) SetHeader(resp.headers, "Transfer-Encoding", "chunked");
      if (close) SetHeader(resp.headers, "Connection", "close");
      TRY(out.Write(SerializeResponseHead(resp)));
      if (!no_body) {
        if (te) {
          TRY(CopyChunked(in, out, &redact, nullptr, &audit_.bytes_in));
        } else {
          uint64_t left = cl.value_or(UINT64_MAX);
          while (left > 0) {
            std::string part = TRY(in.Some(std::min<uint64_t>(left, 65536)));
            if (part.empty()) {
              if (cl) return Fail("http", "response body cut short");
              break;
            }
            if (cl) left -= part.size();
            audit_.bytes_in += part.size();
            TRY(WriteChunk(out, redact.Feed(part)));
          }
          TRY(WriteChunk(out, redact.Finish()));
          TRY(out.Write("0\r\n\r\n"));
        }
      }
      *keep = !close;
      return {};
    }
  }

  // ---- transparent mode ---------------------------------------------------

  void Transparent() {
    std::string host = open_.name;
    if (host.empty()) {
      sockaddr_storage lit;
      if (IsLiteral(open_.address, &lit, 0) && lit.ss_family == AF_INET) {
        uint32_t a = ntohl(reinterpret_cast<sockaddr_in*>(&lit)->sin_addr.s_addr);
        if (a - proto::kFakeAddrBase < proto::kFakeAddrCount) {
          audit_.destination = open_.address;
          audit_.port = open_.port;
          return Deny("a made-up DNS address the relay no longer maps to a name", 0);
        }
      }
      host = open_.address;
    }
    auto addr = Decide(host, open_.port);
    if (!addr) return Deny(addr.error().Message(), 0);
    const std::string name = Lower(host);
    if (open_.port == 80) {
      audit_.kind = "transparent";
      Reader in(client_);
      auto head = in.Head();
      if (!head || head->empty()) return Deny(head ? "no request" : head.error().Message(), 0);
      auto req = ParseRequestHead(*head, {.allow_origin_form = true});
      if (!req) return Deny(req.error().Message(), 400);
      if (Lower(req->host) != name) return Deny("Host " + req->host + " differs from the destination " + name);
      return PlainHttp(*req, in);
    }
    Tunnel(name, open_.port, *addr);
  }

  const ConnContext& ctx_;
  UniqueFd fd_;
  EgressOpenInfo open_;
  FdStream client_;
  Audit audit_;
};

}  // namespace

void ServeEgress(const ConnContext& ctx, UniqueFd fd, const EgressOpenInfo& open) {
  Connection c(ctx, std::move(fd), open);
  c.Serve();
}

}  // namespace airlock::proxy

#include "harness/proxy/http.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <span>

#include "harness/proxy/policy.h"

namespace airlock::proxy {
namespace {

constexpr std::string_view kReqOp = "http request";
constexpr std::string_view kRespOp = "http response";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c)) return true;
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return kExtra.find(c) != std::string_view::npos;
}

// A byte that may appear in a field value (or reason phrase): VCHAR, obs-text, SP, HT.
bool IsFieldByte(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Quoted(std::string_view s) { return "\"" + Printable(s, 100) + "\""; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::optional<uint16_t> ParsePortNumber(std::string_view s) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), IsDigit)) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint32_t>(c - '0');
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// Splits a head into its lines (without CRLF, without the final empty line),
// refusing every line ending but CRLF.
Result<std::vector<std::string_view>> SplitLines(std::string_view head, std::string_view op) {
  if (head.size() > kMaxHeadBytes) {
    return Fail(std::string(op), "head longer than " + std::to_string(kMaxHeadBytes) + " bytes");
  }
  for (size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r')) {
      return Fail(std::string(op), "bare LF at byte " + std::to_string(i));
    }
    if (head[i] == '\r' && (i + 1 >= head.size() || head[i + 1] != '\n')) {
      return Fail(std::string(op), "CR not followed by LF at byte " + std::to_string(i));
    }
  }
  if (!head.ends_with("\r\n\r\n")) return Fail(std::string(op), "head does not end with an empty line");
  std::vector<std::string_view> lines;
  std::string_view rest = head.substr(0, head.size() - 2);  // drop the empty line's CRLF
  while (!rest.empty()) {
    size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    if (line.empty()) {
      return Fail(std::string(op), lines.empty() ? "empty first line" : "bytes after the empty line");
    }
    lines.push_back(line);
    rest.remove_prefix(end + 2);
  }
  if (lines.empty()) return Fail(std::string(op), "empty head");
  return lines;
}

Result<Headers> ParseHeaderLines(std::span<const std::string_view> lines, std::string_view op) {
  if (lines.size() > kMaxHeaders) {
    return Fail(std::string(op), "more than " + std::to_string(kMaxHeaders) + " headers");
  }
  Headers headers;
  headers.reserve(lines.size());
  for (std::string_view line : lines) {
    if (line.front() == ' ' || line.front() == '\t') {
      return Fail(std::string(op), "obs-fold (a header line starting with whitespace) refused");
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Fail(std::string(op), "header line without ':': " + Quoted(line));
    }
    std::string_view name = line.substr(0, colon);
    if (name.empty()) return Fail(std::string(op), "empty header name");
    if (name.back() == ' ' || name.back() == '\t') {
      return Fail(std::string(op), "whitespace before ':' in header " + Quoted(TrimOws(name)));
    }
    if (!IsToken(name)) return Fail(std::string(op), "invalid header name " + Quoted(name));
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), IsFieldByte)) {
      return Fail(std::string(op), "control character in the value of header " + Quoted(name));
    }
    headers.push_back({std::string(name), std::string(value)});
  }
  return headers;
}

struct Framing {
  std::optional<uint64_t> content_length;
  bool chunked = false;
};

Result<Framing> CheckFraming(const Headers& headers, std::string_view version, std::string_view op) {
  Framing f;
  size_t cl = CountHeader(headers, "Content-Length");
  size_t te = CountHeader(headers, "Transfer-Encoding");
  if (cl > 1) return Fail(std::string(op), "more than one Content-Length");
  if (te > 1) return Fail(std::string(op), "more than one Transfer-Encoding");
  if (cl && te) return Fail(std::string(op), "both Content-Length and Transfer-Encoding");
  if (cl) {
    std::string_view v = *GetHeader(headers, "Content-Length");
    if (v.empty() || v.size() > 18 || !std::all_of(v.begin(), v.end(), IsDigit)) {
      return Fail(std::string(op), "invalid Content-Length " + Quoted(v));
    }
    uint64_t n = 0;
    for (char c : v) n = n * 10 + static_cast<uint64_t>(c - '0');
    f.content_length = n;
  }
  if (te) {
    if (version == "HTTP/1.0") return Fail(std::string(op), "Transfer-Encoding in an HTTP/1.0 message");
    std::string_view v = *GetHeader(headers, "Transfer-Encoding");
    if (!EqualsIgnoreCase(v, "chunked")) {
      return Fail(std::string(op), "Transfer-Encoding other than \"chunked\": " + Quoted(v));
    }
    f.chunked = true;
  }
  return f;
}

struct Authority {
  std::string host;  // normalized
  uint16_t port = 0;
  bool has_port = false;
};

// host[:port] or [v6][:port]; the host a name or a canonical IP literal.
Result<Authority> ParseAuthority(std::string_view text, std::string_view what) {
  auto bad = [&](std::string why) {
    return Fail(std::string(kReqOp), std::string(what) + " " + Quoted(text) + ": " + why);
  };
  if (text.empty()) return bad("empty");
  if (text.find('@') != std::string_view::npos) return bad("userinfo (user@host) refused");
  Authority a;
  std::string_view host, port;
  bool has_colon = false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']'");
    host = text.substr(0, close + 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("unexpected bytes after ']'");
      has_colon = true;
      port = rest.substr(1);
    }
    std::optional<IpAddress> ip = ParseIpLiteral(host);
    if (!ip || ip->family != AF_INET6) return bad("invalid IPv6 literal");
    a.host = FormatIp(*ip);
  } else {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return bad("more than one ':' (IPv6 literals need brackets)");
      }
      has_colon = true;
      port = text.substr(colon + 1);
    }
    host = text.substr(0, colon);
    if (std::optional<IpAddress> ip = ParseIpLiteral(host)) {
      a.host = FormatIp(*ip);
    } else if (IsIpLiteralLike(host)) {
      return bad("not a canonical IP address (shorthand, octal or hex forms are refused)");
    } else {
      Result<std::string> name = NormalizeHostName(host);
      if (!name) return bad("invalid host: " + name.error().detail);
      a.host = std::move(*name);
    }
  }
  if (has_colon) {
    std::optional<uint16_t> p = ParsePortNumber(port);
    if (!p) return bad("port is not a number in 1-65535");
    a.port = *p;
    a.has_port = true;
  }
  return a;
}

// Checks the characters of the request target: visible ASCII only, no '#'.
Result<void> CheckTarget(std::string_view target) {
  if (target.empty()) return Fail(std::string(kReqOp), "empty request target");
  for (char ch : target) {
    auto c = static_cast<unsigned char>(ch);
    if (c == ' ') return Fail(std::string(kReqOp), "space in the request target");
    if (c < 0x20 || c == 0x7f) return Fail(std::string(kReqOp), "control character in the request target");
    if (c >= 0x80) return Fail(std::string(kReqOp), "non-ASCII byte in the request target");
    if (c == '#') return Fail(std::string(kReqOp), "fragment ('#') in the request target");
  }
  return {};
}

Result<void> ParseTarget(RequestHead& req, const RequestParseOptions& options) {
  std::string_view t = req.target;
  if (req.method == "CONNECT") {
    req.form = RequestHead::Form::kAuthority;
    Authority a = TRY(ParseAuthority(t, "CONNECT target"));
    if (!a.has_port) return Fail(std::string(kReqOp), "CONNECT target " + Quoted(t) + " without a port");
    req.host = std::move(a.host);
    req.port = a.port;
    return {};
  }
  if (t.front() == '/') {
    if (!options.allow_origin_form) {
      return Fail(std::string(kReqOp), "origin-form target " + Quoted(t) +
                                           " refused: a proxy request names its destination");
    }
    if (t.size() > 1 && t[1] == '/') {
      // "//host/path" is no origin-form path (RFC 3986 path-absolute), and
      // some servers read it as a network-path reference to another host.
      return Fail(std::string(kReqOp), "target " + Quoted(t) + " starts with \"//\"");
    }
    req.form = RequestHead::Form::kOrigin;
    req.path = std::string(t);
    return {};  // host and port come from Host
  }
  if (StartsWithIgnoreCase(t, "https://")) {
    return Fail(std::string(kReqOp), "https:// target refused: use CONNECT for HTTPS");
  }
  if (!StartsWithIgnoreCase(t, "http://")) {
    if (t == "*") return Fail(std::string(kReqOp), "asterisk-form target refused");
    return Fail(std::string(kReqOp), "unsupported request target " + Quoted(t) +
                                         " (expected http://host/path or CONNECT host:port)");
  }
  std::string_view rest = t.substr(7);
  size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  Authority a = TRY(ParseAuthority(authority, "target authority"));
  req.form = RequestHead::Form::kAbsolute;
  req.host = std::move(a.host);
  req.port = a.has_port ? a.port : 80;
  std::string_view path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (path.empty()) {
    req.path = "/";
  } else if (path.front() == '?') {
    req.path = "/" + std::string(path);
  } else {
    req.path = std::string(path);
  }
  return {};
}

Result<void> CheckHost(RequestHead& req, const RequestParseOptions& options) {
  size_t n = CountHeader(req.headers, "Host");
  if (n > 1) return Fail(std::string(kReqOp), "more than one Host header");
  if (n == 0) {
    if (req.form == RequestHead::Form::kOrigin) {
      return Fail(std::string(kReqOp), "origin-form request without a Host header");
    }
    return {};
  }
  std::string_view value = *GetHeader(req.headers, "Host");
  Authority h = TRY(ParseAuthority(value, "Host header"));
  switch (req.form) {
    case RequestHead::Form::kOrigin:
      req.host = std::move(h.host);
      req.port = h.has_port ? h.port : (options.tls ? 443 : 80);
      return {};
    case RequestHead::Form::kAbsolute:
      if (h.host == req.host && (h.has_port ? h.port : 80) == req.port) return {};
      break;
    case RequestHead::Form::kAuthority:
      // A Host without a port is fine for the ports whose scheme implies it.
      if (h.host == req.host &&
          (h.has_port ? h.port == req.port : (req.port == 443 || req.port == 80))) {
        return {};
      }
      break;
  }
  return Fail(std::string(kReqOp), "Host header " + Quoted(value) +
                                       " does not match the target " + Quoted(req.target));
}

}  // namespace

// ---------------------------------------------------------------- helpers

bool IsToken(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), IsTchar);
}

bool IsValidFieldValue(std::string_view value) {
  if (!std::all_of(value.begin(), value.end(), IsFieldByte)) return false;
  return TrimOws(value).size() == value.size();
}

bool HeaderNameEquals(std::string_view a, std::string_view b) { return EqualsIgnoreCase(a, b); }

std::optional<std::string_view> GetHeader(const Headers& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (HeaderNameEquals(h.name, name)) return std::string_view(h.value);
  }
  return std::nullopt;
}

size_t CountHeader(const Headers& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const Header& h) {
    return HeaderNameEquals(h.name, name);
  }));
}

void SetHeader(Headers& headers, std::string_view name, std::string_view value) {
  auto first = std::find_if(headers.begin(), headers.end(),
                            [&](const Header& h) { return HeaderNameEquals(h.name, name); });
  if (first == headers.end()) {
    headers.push_back({std::string(name), std::string(value)});
    return;
  }
  first->name = std::string(name);
  first->value = std::string(value);
  size_t index = static_cast<size_t>(first - headers.begin());
  size_t i = 0;
  std::erase_if(headers, [&](const Header& h) {
    return i++ != index && HeaderNameEquals(h.name, name);
  });
}

size_t RemoveHeader(Headers& headers, std::string_view name) {
  return std::erase_if(headers, [&](const Header& h) { return HeaderNameEquals(h.name, name); });
}

size_t RemoveHopByHopHeaders(Headers& headers) {
  std::vector<std::string> named;
  for (const Header& h : headers) {
    if (!HeaderNameEquals(h.name, "Connection")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view token = TrimOws(v.substr(0, comma));
      // Never the headers that frame the message or name its destination:
      // "Connection: Content-Length" must not make the proxy and the
      // upstream disagree on where the body ends.
      if (!token.empty() && !HeaderNameEquals(token, "Content-Length") &&
          !HeaderNameEquals(token, "Transfer-Encoding") && !HeaderNameEquals(token, "Host")) {
        named.emplace_back(token);
      }
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  static constexpr std::array<std::string_view, 9> kHopByHop = {
      "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate",
      "TE", "Trailer", "Upgrade", "Proxy-Authentication-Info"};
  return std::erase_if(headers, [&](const Header& h) {
    for (std::string_view n : kHopByHop) {
      if (HeaderNameEquals(h.name, n)) return true;
    }
    for (const std::string& n : named) {
      if (HeaderNameEquals(h.name, n)) return true;
    }
    return false;
  });
}

size_t FindHeadEnd(std::string_view buffered) {
  size_t line_start = 0;
  for (size_t i = 0; i < buffered.size(); ++i) {
    if (buffered[i] != '\n') continue;
    size_t len = i - line_start;
    if (len == 0 || (len == 1 && buffered[line_start] == '\r')) {
      // An empty line; the first line being empty ends the "head" too, so the
      // parser refuses it at once.
      return i + 1;
    }
    line_start = i + 1;
  }
  return std::string_view::npos;
}

// ---------------------------------------------------------------- requests

Result<RequestHead> ParseRequestHead(std::string_view head, const RequestParseOptions& options) {
  std::vector<std::string_view> lines = TRY(SplitLines(head, kReqOp));
  std::string_view line = lines[0];
  for (char ch : line) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return Fail(std::string(kReqOp), "control character in the request line");
  }
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == sp2) {
    return Fail(std::string(kReqOp), "malformed request line " + Quoted(line));
  }
  RequestHead req;
  req.tls = options.tls;
  req.method = std::string(line.substr(0, sp1));
  req.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  req.version = std::string(line.substr(sp2 + 1));
  if (!IsToken(req.method)) return Fail(std::string(kReqOp), "method is not a token: " + Quoted(req.method));
  if (req.version != "HTTP/1.1" && req.version != "HTTP/1.0") {
    return Fail(std::string(kReqOp), "unsupported version " + Quoted(req.version));
  }
  TRY(CheckTarget(req.target));
  req.headers = TRY(ParseHeaderLines(std::span(lines).subspan(1), kReqOp));
  Framing f = TRY(CheckFraming(req.headers, req.version, kReqOp));
  req.content_length = f.content_length;
  req.chunked = f.chunked;
  TRY(ParseTarget(req, options));
  TRY(CheckHost(req, options));
  return req;
}

std::string SerializeRequestHead(const RequestHead& req, bool origin_form) {
  std::string out;
  std::string_view target =
      origin_form && req.form != RequestHead::Form::kAuthority && !req.path.empty() ? req.path
                                                                                     : req.target;
  size_t size = req.method.size() + target.size() + req.version.size() + 6;
  for (const Header& h : req.headers) size += h.name.size() + h.value.size() + 4;
  out.reserve(size);
  out += req.method;
  out += ' ';
  out += target;
  out += ' ';
  out += req.version;
  out += "\r\n";
  for (const Header& h : req.headers) {
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

// ---------------------------------------------------------------- responses

Result<ResponseHead> ParseResponseHead(std::string_view head) {
  std::vector<std::string_view> lines = TRY(SplitLines(head, kRespOp));
  std::string_view line = lines[0];
  ResponseHead resp;
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (line.size() < 12 || line[8] != ' ') {
    return Fail(std::string(kRespOp), "malformed status line " + Quoted(line));
  }
  resp.version = std::string(line.substr(0, 8));
  if (resp.version != "HTTP/1.1" && resp.version != "HTTP/1.0") {
    return Fail(std::string(kRespOp), "unsupported version " + Quoted(resp.version));
  }
  std::string_view code = line.substr(9, 3);
  if (!std::all_of(code.begin(), code.end(), IsDigit) || code[0] == '0') {
    return Fail(std::string(kRespOp), "invalid status code " + Quoted(code));
  }
  resp.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  std::string_view rest = line.substr(12);
  if (!rest.empty()) {
    if (rest.front() != ' ') return Fail(std::string(kRespOp), "malformed status line " + Quoted(line));
    rest.remove_prefix(1);
    if (!std::all_of(rest.begin(), rest.end(), IsFieldByte)) {
      return Fail(std::string(kRespOp), "control character in the reason phrase");
    }
    resp.reason = std::string(rest);
  }
  resp.headers = TRY(ParseHeaderLines(std::span(lines).subspan(1), kRespOp));
  Framing f = TRY(CheckFraming(resp.headers, resp.version, kRespOp));
  resp.content_length = f.content_length;
  resp.chunked = f.chunked;
  return resp;
}

std::string SerializeResponseHead(const ResponseHead& resp) {
  std::string out = resp.version + " " + std::to_string(resp.status) + " " + resp.reason + "\r\n";
  for (const Header& h : resp.headers) {
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

}  // namespace airlock::proxy

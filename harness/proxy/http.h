// A strict HTTP/1.1 message-head parser for the egress proxy. Everything it
// reads comes from the sandbox (requests) or from an upstream the sandbox
// chose (responses), so it accepts one unambiguous form only: anything two
// parsers could read differently (bare LF, obs-fold, duplicate framing
// headers, a Host that disagrees with the target, userinfo in an authority)
// is refused rather than interpreted. See RFC 9112 for the grammar.
//
// Pure logic: no sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::proxy {

inline constexpr size_t kMaxHeadBytes = 64 * 1024;
inline constexpr size_t kMaxHeaders = 100;

struct Header {
  std::string name;  // as sent
  std::string value;  // without surrounding whitespace
};
using Headers = std::vector<Header>;

struct RequestHead {
  enum class Form {
    kOrigin,     // "/path?q" (only when the caller allows it)
    kAbsolute,   // "http://host[:port]/path?q"
    kAuthority,  // "host:port", CONNECT only
  };
  std::string method;
  std::string target;   // as sent
  std::string version;  // "HTTP/1.0" or "HTTP/1.1"
  Headers headers;

  // Parsed from the target (and Host for origin-form).
  Form form = Form::kOrigin;
  // Lower case, no trailing dot, IPv6 literals without brackets. A name or a
  // canonical IP literal; never anything else.
  std::string host;
  uint16_t port = 0;
  // Origin-form path and query ("/" at least); empty for CONNECT.
  std::string path;
  // From the caller (RequestParseOptions::tls): this request arrived inside
  // TLS the proxy terminated. Secrets are injected only then.
  bool tls = false;

  // Framing: at most one of these is set.
  std::optional<uint64_t> content_length;
  bool chunked = false;
};

struct RequestParseOptions {
  // Accept origin-form targets ("/path"), taking host and port from Host.
  // For requests inside intercepted TLS (and transparent plain HTTP).
  bool allow_origin_form = false;
  // The request arrived inside TLS the proxy terminated: the default port of
  // an origin-form request is 443 instead of 80, and RequestHead::tls is set.
  bool tls = false;
};

struct ResponseHead {
  std::string version;  // "HTTP/1.0" or "HTTP/1.1"
  int status = 0;       // 100-999
  std::string reason;
  Headers headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;
};

// The size of the head (through the empty line) once the buffered bytes hold
// one, else std::string_view::npos. An empty line ended by a bare LF counts
// too, so that a malformed head is handed to the parser and refused instead
// of being waited on; the parser accepts CRLF only. The caller refuses a
// buffer past kMaxHeadBytes that still has no end.
size_t FindHeadEnd(std::string_view buffered);

// Parses a request head (the bytes FindHeadEnd measured, through the empty
// line). Errors read "http request: <reason>" and never echo more than a
// short, escaped piece of the input.
Result<RequestHead> ParseRequestHead(std::string_view head, const RequestParseOptions& options = {});

// Parses a response head with the same strictness.
Result<ResponseHead> ParseResponseHead(std::string_view head);

// The head as bytes to send upstream: the request line with the origin-form
// path instead of the target when `origin_form` (else the target as
// received), then the headers in order, then the empty line.
std::string SerializeRequestHead(const RequestHead& req, bool origin_form);

// The head of a response as bytes to send back.
std::string SerializeResponseHead(const ResponseHead& resp);

// Header helpers; names compare case-insensitively (ASCII).
bool HeaderNameEquals(std::string_view a, std::string_view b);
// The value of the first header called `name`.
std::optional<std::string_view> GetHeader(const Headers& headers, std::string_view name);
// How many headers are called `name`.
size_t CountHeader(const Headers& headers, std::string_view name);
// Replaces every header called `name` by one (where the first was, or at the
// end). `value` must satisfy IsValidFieldValue: the caller checks values it
// did not produce itself.
void SetHeader(Headers& headers, std::string_view name, std::string_view value);
// Removes every header called `name`; returns how many.
size_t RemoveHeader(Headers& headers, std::string_view name);
// Removes the hop-by-hop headers a proxy must not forward (Connection and
// the headers it names, Proxy-Connection, Keep-Alive, Proxy-Authorization,
// Proxy-Authenticate, TE, Trailer, Upgrade) and returns how many.
size_t RemoveHopByHopHeaders(Headers& headers);

// True if `name` is a token (RFC 9110 tchar+).
bool IsToken(std::string_view name);
// True if `value` may be a header value: visible ASCII, obs-text, SP and HT
// inside, no CR, LF, NUL or other control character, no surrounding space.
bool IsValidFieldValue(std::string_view value);

}  // namespace airlock::proxy

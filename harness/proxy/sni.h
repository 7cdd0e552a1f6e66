// The server name a TLS client asks for (SNI, RFC 6066), read from the first
// bytes of a tunnelled stream: the proxy requires it to equal the CONNECT
// host (or the name the transparent destination was looked up as) before it
// opens the tunnel. The ClientHello may span several TLS records; every
// length is checked against the bytes that are there.
//
// Pure logic: no sockets, no OpenSSL.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::proxy {

// A ClientHello larger than this is refused as malformed (real ones are a
// few KiB, with post-quantum key shares and padding still under 16 KiB).
inline constexpr size_t kMaxClientHelloBytes = 64 * 1024;

struct ClientHelloSni {
  enum class Status {
    kNeedMore,   // a prefix of a plausible ClientHello: read more and call again
    kNotTls,     // the stream does not start with a TLS handshake record
    kMalformed,  // TLS, but not a well-formed ClientHello
    kComplete,   // a whole ClientHello was parsed
  };
  Status status = Status::kNeedMore;
  // kComplete: the host_name entry of the server_name extension, as sent
  // (only [A-Za-z0-9._-], 1-255 bytes); nullopt when the client sent none.
  std::optional<std::string> server_name;
  // kComplete: the client offers Encrypted Client Hello (extension 0xfe0d):
  // the name above is only the outer, public one, and the real destination
  // is hidden from the proxy.
  bool encrypted_client_hello = false;
  // kNotTls / kMalformed: what was wrong, for the audit log.
  std::string error;
};

// Parses as much of `bytes` (everything received so far on the stream, from
// its first byte) as needed to read the ClientHello. Call again with more
// bytes after kNeedMore. Bytes after the ClientHello are ignored.
ClientHelloSni ParseClientHelloSni(std::string_view bytes);

// True if the SNI agrees with the host the tunnel was opened for: both
// normalized names (case-insensitive, trailing dot ignored) equal. No SNI
// matches only a host that is an IP literal (RFC 6066 forbids literals in
// SNI, so clients omit it there); an SNI that is itself a literal must equal
// that literal.
bool SniMatchesHost(const std::optional<std::string>& server_name, std::string_view host);

}  // namespace airlock::proxy

// The egress channel: a SOCK_SEQPACKET socketpair per sandbox (network mode
// `proxy`), made by the runtime at launch. Its sandbox end belongs to the
// relay, a process init forks that holds the sandbox's listening sockets;
// its host end goes to the egress proxy, which so knows which sandbox every
// connection serves. No byte of any connection crosses it: for each one the
// proxy makes a fresh SOCK_STREAM socketpair and hands the relay one end, so
// both sides splice and no stream can stall or read another.
//
//   outbound: relay accepts on 127.0.0.1:<port> (explicit: an HTTP proxy
//             client; transparent: netfilter redirected it there) ->
//             kEgressOpen -> proxy: kEgressSocket (or kEgressRefused).
//   inbound:  proxy accepts on an exposed port's host listener ->
//             kPortOpen -> relay connects to 127.0.0.1:<port> inside, or
//             answers kPortFailed.
//
// Everything the relay sends is untrusted (the sandbox can replace it): the
// proxy treats an EgressOpen's destination exactly as a request from the
// sandbox to go there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace airlock::proto {

// How the relay got the connection.
enum class EgressKind : uint32_t {
  kExplicit = 1,     // on the proxy port: an HTTP proxy request follows on the stream
  kTransparent = 2,  // redirected by netfilter: the destination below, raw bytes follow
};

// The range the relay's DNS answers take their made-up addresses from
// (RFC 2544's benchmarking range, never routed on the internet).
inline constexpr uint32_t kFakeAddrBase = (198u << 24) | (18u << 16);  // 198.18.0.0
inline constexpr uint32_t kFakeAddrCount = 1u << 17;                     // /15

inline constexpr size_t kMaxHostName = 253;

struct EgressOpen {
  uint32_t id = 0;  // the relay's; echoed by the answer
  EgressKind kind = EgressKind::kExplicit;
  // kTransparent: the destination the program connected to (SO_ORIGINAL_DST),
  // as an IPv4 or IPv6 literal, and the name the relay's DNS answered with
  // that address, if it did (else empty). Both empty for kExplicit.
  std::string address;
  uint32_t port = 0;
  std::string name;
};

struct EgressAnswer {  // kEgressSocket, kEgressRefused
  uint32_t id = 0;
};

struct PortOpen {
  uint32_t id = 0;    // the proxy's
  uint32_t port = 0;  // 1-65535, inside the sandbox on 127.0.0.1
};

struct PortFailed {
  uint32_t id = 0;
  int32_t err = 0;  // errno of the relay's connect
};

std::string Encode(const EgressOpen&);
std::string Encode(const EgressAnswer&);
std::string Encode(const PortOpen&);
std::string Encode(const PortFailed&);

// Strict parsers: a name longer than kMaxHostName, an address that isn't a
// literal of its family, a port outside 0-65535 (1-65535 for PortOpen) or
// trailing bytes are errors naming the field.
Result<EgressOpen> DecodeEgressOpen(std::string_view payload);
Result<EgressAnswer> DecodeEgressAnswer(std::string_view payload);
Result<PortOpen> DecodePortOpen(std::string_view payload);
Result<PortFailed> DecodePortFailed(std::string_view payload);

}  // namespace airlock::proto

// The egress policy of a sandbox: an allowlist of destinations (default deny)
// and the rules every address the proxy is about to connect to must pass.
//
// Order of checks the proxy applies (issue 5): a destination *name* is
// matched against the allowlist before it is resolved (a lookup of
// `<data>.attacker.example` is itself exfiltration); then every resolved
// address goes through CheckAddress, and the proxy connects to exactly the
// address it checked. A destination given as an IP literal never matches a
// name entry: only IP/CIDR entries allow it.
//
// Pure logic: no sockets, no lookups.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::proxy {

inline constexpr size_t kMaxHostNameLength = 253;
inline constexpr size_t kMaxLabelLength = 63;
inline constexpr size_t kMaxAllowEntries = 4096;

// An IPv4 or IPv6 address. IPv4 uses bytes[0..3]; the rest is zero.
struct IpAddress {
  int family = AF_INET;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};

  bool operator==(const IpAddress&) const = default;
};

// One allowlist entry, parsed from its text form.
struct AllowEntry {
  enum class Kind {
    kExactHost,  // "api.example.com": that name only
    kSuffix,     // "*.example.com": any name below example.com, not example.com
    kAddress,    // "10.0.0.0/8", "::1", "[::1]:8080": addresses in that prefix
  };
  Kind kind = Kind::kExactHost;
  // kExactHost: the normalized name; kSuffix: the normalized suffix without
  // "*." (so "example.com"). Empty for kAddress.
  std::string host;
  IpAddress address;   // kAddress: the network address (host bits zero)
  int prefix_len = 0;  // kAddress: 0..32 or 0..128
  uint16_t port = 0;   // 0: any port
  std::string text;    // the entry as written, for messages
};

struct Policy {
  std::vector<AllowEntry> allow;
};

// ---------------------------------------------------------------- parsing

// Parses one allowlist entry. `field` names it in errors, which read
// `<field> ("<text>"): <reason>` (e.g. `network.allow[2] ("*.x*"): ...`).
Result<AllowEntry> ParseAllowEntry(std::string_view text, std::string_view field);

// Parses {"allow": ["api.example.com", "*.example.com:443", "10.0.0.0/8"]}.
// A missing "allow" is an empty allowlist (deny everything); any other key is
// an error naming it. `field` prefixes every message ("network.allow[1] ...").
Result<Policy> ParsePolicy(const nlohmann::json& j, std::string_view field);

// ---------------------------------------------------------------- names

// Validates a DNS name and returns it lower-cased without its trailing dot.
// Refuses empty labels, labels over 63 and names over 253 bytes, characters
// outside [A-Za-z0-9-_.], and names whose last label is a number ("1.2.3",
// "0x7f.1", "2130706433"): resolvers read those as IPv4 addresses in
// shorthand, so they are never names.
Result<std::string> NormalizeHostName(std::string_view host);

// Parses a canonical IP literal: dotted-quad IPv4 (no shorthand, no leading
// zeros) or IPv6, the latter with or without brackets. No zone ids.
std::optional<IpAddress> ParseIpLiteral(std::string_view text);

// True if `host` is or looks like an IP literal: a canonical one, or any
// form whose last label is a number (shorthand/octal/hex IPv4, which
// getaddrinfo would happily turn into an address). Such hosts never match
// name entries.
bool IsIpLiteralLike(std::string_view host);

// True if the entry (a name entry) matches the normalized name and port.
// Address entries never match names.
bool EntryMatchesName(const AllowEntry& entry, std::string_view normalized_host, uint16_t port);

// True if the entry (an address entry) covers `addr` and `port`. An IPv4
// entry also covers the IPv4-mapped IPv6 form (::ffff:a.b.c.d) of its
// addresses (a dual-stack socket reaches the same IPv4 destination with
// it), and an entry within ::ffff:0:0/96 covers the IPv4 addresses it maps.
bool EntryCoversAddress(const AllowEntry& entry, const IpAddress& addr, uint16_t port);

// Default deny: true only if a name entry matches `host` (compared
// case-insensitively, one trailing dot ignored) and `port`. False for an
// invalid name, for port 0 and for a host that is an IP literal (those go
// through AllowsAddressLiteral).
bool AllowsName(const Policy& policy, std::string_view host, uint16_t port);

// True if `entries` lets a request to (host, port) through: name entries for
// a name, address entries for an IP literal. Used for secret bindings.
bool MatchesDestination(std::span<const AllowEntry> entries, std::string_view host, uint16_t port);

// ---------------------------------------------------------------- addresses

enum class AddressClass {
  kPublic,
  kLoopback,       // 127/8, ::1
  kUnspecified,    // 0.0.0.0/8, ::
  kLinkLocal,      // 169.254/16 (cloud metadata), fe80::/10
  kPrivate,        // 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10, 64:ff9b:1::/48
  kMulticast,      // 224/4, ff00::/8
  kBroadcast,      // 255.255.255.255
  kReserved,       // 240/4, 192.0.0/24, 192.88.99/24, IPv6 outside 2000::/3, 2001::/23, ...
  kDocumentation,  // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  kFakeDns,        // 198.18/15: airlock's made-up DNS answers; never a real destination
};

struct AddressInfo {
  AddressClass cls = AddressClass::kPublic;
  // The address the class was decided on: the embedded IPv4 address for
  // IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 (64:ff9b::/96) and
  // 6to4 (2002::/16) forms; else the address itself.
  IpAddress effective;
  bool embedded = false;  // `effective` was taken out of an IPv6 address
  std::string_view note;  // e.g. "cloud metadata"; may be empty
};

// Classifies an address by the ranges above.
AddressInfo ClassifyAddress(const IpAddress& addr);

// "link-local", "private", ... for messages.
std::string_view AddressClassName(AddressClass cls);

// The address of an AF_INET/AF_INET6 sockaddr (the port is ignored), or
// nullopt for any other family.
std::optional<IpAddress> AddressFromSockaddr(const sockaddr_storage& addr);
// The port of an AF_INET/AF_INET6 sockaddr in host byte order (0 otherwise).
uint16_t PortFromSockaddr(const sockaddr_storage& addr);
// A sockaddr_in / sockaddr_in6 for the address and port.
sockaddr_storage MakeSockaddr(const IpAddress& addr, uint16_t port);

// "10.0.0.1", "::ffff:169.254.169.254", "2001:db8::1".
std::string FormatIp(const IpAddress& addr);

// Decides whether the proxy may connect to `addr`:`port`, a resolved address
// of a name the policy already allowed. A public address is allowed; any
// other class only if an address entry of the policy covers it (and its
// port, if the entry names one). 198.18/15 (airlock's fake DNS range) is
// refused always. An address in `refused` (airlockd's own listeners; the
// sockaddr's port 0 means every port, an unspecified address 0.0.0.0 or ::
// means every address on that port) is refused unless an address entry
// names exactly that address (a /32 or /128). Port 0 is refused.
// The error reads "egress policy: 169.254.169.254 is link-local (cloud metadata)".
Result<void> CheckAddress(const Policy& policy, const sockaddr_storage& addr, uint16_t port,
                          std::span<const sockaddr_storage> refused);

// For a destination given as an IP literal (no name): true only if an
// address entry covers it (198.18/15 never). The proxy still calls
// CheckAddress on it before connecting.
bool AllowsAddressLiteral(const Policy& policy, const sockaddr_storage& addr, uint16_t port);

// ---------------------------------------------------------------- messages

// `text` safe to put in a message or log: bytes outside printable ASCII as
// \xNN, cut at `max` bytes with "..." appended. For attacker-chosen strings.
std::string Printable(std::string_view text, size_t max = 200);

}  // namespace airlock::proxy

#include "harness/proxy/policy.h"

// Built without exceptions: nlohmann must never throw (this must precede the
// include). Every accessor below is guarded by a type check.
#define JSON_NOEXCEPTION 1

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace airlock::proxy {
namespace {

using nlohmann::json;

constexpr std::string_view kOp = "egress policy";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '-' || c == '_';
}
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Sub(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out(path);
  out += '.';
  out += key;
  return out;
}

// A label that resolvers parse as an IPv4 number part: decimal, or 0x hex.
// (WHATWG URL's "ends in a number"; inet_aton accepts the same forms.)
bool IsNumericLabel(std::string_view label) {
  if (label.empty()) return false;
  if (label.size() >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
    return std::all_of(label.begin() + 2, label.end(), IsHexDigit);
  }
  return std::all_of(label.begin(), label.end(), IsDigit);
}

std::string_view StripTrailingDot(std::string_view host) {
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return host;
}

bool EndsInNumber(std::string_view host) {
  host = StripTrailingDot(host);
  size_t dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  return IsNumericLabel(last);
}

// 1-65535, decimal, no sign and no leading zero.
std::optional<uint16_t> ParsePort(std::string_view s) {
  if (s.empty() || s.size() > 5 || s[0] == '0') return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), IsDigit)) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint32_t>(c - '0');
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::optional<int> ParsePrefix(std::string_view s, int max) {
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), IsDigit)) return std::nullopt;
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  if (v > max) return std::nullopt;
  return v;
}

int FullPrefix(const IpAddress& a) { return a.family == AF_INET ? 32 : 128; }

// True if the first `bits` bits of a and b are equal.
bool SamePrefix(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  int whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(whole)) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool HostBitsZero(const IpAddress& a, int prefix) {
  int total = FullPrefix(a);
  for (int bit = prefix; bit < total; ++bit) {
    if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

IpAddress V4(uint32_t host_order) {
  IpAddress a;
  a.family = AF_INET;
  a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
  a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
  a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
  a.bytes[3] = static_cast<uint8_t>(host_order);
  return a;
}

IpAddress V4FromBytes(const uint8_t* p) {
  return V4((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]);
}

uint32_t V4Value(const IpAddress& a) {
  return (uint32_t{a.bytes[0]} << 24) | (uint32_t{a.bytes[1]} << 16) |
         (uint32_t{a.bytes[2]} << 8) | a.bytes[3];
}

bool IsV4Mapped(const IpAddress& a) {
  if (a.family != AF_INET6) return false;
  for (int i = 0; i < 10; ++i) {
    if (a.bytes[i] != 0) return false;
  }
  return a.bytes[10] == 0xff && a.bytes[11] == 0xff;
}

// The IPv4 address an IPv4-mapped IPv6 address stands for, else the address.
// Only the mapped form: a dual-stack socket connecting to ::ffff:a.b.c.d
// reaches a.b.c.d itself; the other embedded forms go elsewhere.
IpAddress Unmap(const IpAddress& a) { return IsV4Mapped(a) ? V4FromBytes(&a.bytes[12]) : a; }

bool IsUnspecified(const IpAddress& a) {
  size_t n = a.family == AF_INET ? 4 : 16;
  return std::all_of(a.bytes.begin(), a.bytes.begin() + static_cast<long>(n),
                     [](uint8_t b) { return b == 0; });
}

bool InV4(uint32_t a, uint32_t net, int bits) {
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr uint32_t Ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d;
}

struct V4Range {
  uint32_t net;
  int bits;
  AddressClass cls;
  std::string_view note;
};

// Most specific first: the first match decides.
constexpr V4Range kV4Ranges[] = {
    {Ip4(169, 254, 169, 254), 32, AddressClass::kLinkLocal, "cloud metadata"},
    {Ip4(169, 254, 170, 2), 32, AddressClass::kLinkLocal, "cloud metadata"},
    {Ip4(100, 100, 100, 200), 32, AddressClass::kPrivate, "cloud metadata"},
    // Azure's WireServer: a public-looking address that only the platform answers.
    {Ip4(168, 63, 129, 16), 32, AddressClass::kReserved, "cloud platform endpoint"},
    {Ip4(255, 255, 255, 255), 32, AddressClass::kBroadcast, ""},
    {Ip4(0, 0, 0, 0), 8, AddressClass::kUnspecified, ""},
    {Ip4(10, 0, 0, 0), 8, AddressClass::kPrivate, ""},
    {Ip4(100, 64, 0, 0), 10, AddressClass::kPrivate, "shared address space (CGNAT)"},
    {Ip4(127, 0, 0, 0), 8, AddressClass::kLoopback, ""},
    {Ip4(169, 254, 0, 0), 16, AddressClass::kLinkLocal, ""},
    {Ip4(172, 16, 0, 0), 12, AddressClass::kPrivate, ""},
    {Ip4(192, 0, 0, 0), 24, AddressClass::kReserved, "IETF protocol assignments"},
    {Ip4(192, 0, 2, 0), 24, AddressClass::kDocumentation, ""},
    {Ip4(192, 88, 99, 0), 24, AddressClass::kReserved, "6to4 relay anycast"},
    {Ip4(192, 168, 0, 0), 16, AddressClass::kPrivate, ""},
    {Ip4(198, 18, 0, 0), 15, AddressClass::kFakeDns, "airlock's made-up DNS answers"},
    {Ip4(198, 51, 100, 0), 24, AddressClass::kDocumentation, ""},
    {Ip4(203, 0, 113, 0), 24, AddressClass::kDocumentation, ""},
    {Ip4(224, 0, 0, 0), 4, AddressClass::kMulticast, ""},
    {Ip4(240, 0, 0, 0), 4, AddressClass::kReserved, ""},
};

void ClassifyV4(uint32_t a, AddressInfo& info) {
  for (const V4Range& r : kV4Ranges) {
    if (InV4(a, r.net, r.bits)) {
      info.cls = r.cls;
      info.note = r.note;
      return;
    }
  }
  info.cls = AddressClass::kPublic;
}

bool StartsWith(const IpAddress& a, std::initializer_list<uint8_t> prefix, int bits) {
  std::array<uint8_t, 16> p{};
  std::copy(prefix.begin(), prefix.end(), p.begin());
  return SamePrefix(a.bytes, p, bits);
}

std::string FormatEndpoint(const IpAddress& a, uint16_t port) {
  std::string ip = FormatIp(a);
  if (a.family == AF_INET6) ip = "[" + ip + "]";
  return ip + ":" + std::to_string(port);
}

// "X is link-local (cloud metadata)" / "::ffff:10.0.0.1 is private (IPv4-mapped 10.0.0.1)".
std::string Describe(const IpAddress& addr, const AddressInfo& info) {
  std::string out = FormatIp(addr) + " is " + std::string(AddressClassName(info.cls));
  std::string notes(info.note);
  if (info.embedded && !(info.effective == addr)) {
    if (!notes.empty()) notes += "; ";
    notes += "embeds " + FormatIp(info.effective);
  }
  if (!notes.empty()) out += " (" + notes + ")";
  return out;
}

bool ExplicitlyNames(const AllowEntry& e, const IpAddress& addr, uint16_t port) {
  return e.kind == AllowEntry::Kind::kAddress && e.prefix_len == FullPrefix(e.address) &&
         EntryCoversAddress(e, addr, port);
}

bool RefusedMatches(const sockaddr_storage& r, const IpAddress& addr, uint16_t port) {
  std::optional<IpAddress> ra = AddressFromSockaddr(r);
  if (!ra) return false;
  uint16_t rport = PortFromSockaddr(r);
  if (rport != 0 && rport != port) return false;
  if (IsUnspecified(*ra)) return true;  // a wildcard listener answers on every address
  return Unmap(*ra) == Unmap(addr);
}

}  // namespace

// ---------------------------------------------------------------- names

Result<std::string> NormalizeHostName(std::string_view host) {
  constexpr std::string_view op = "host name";
  std::string_view h = StripTrailingDot(host);
  if (h.empty() || h == ".") return Fail(std::string(op), "empty");
  if (h.size() > kMaxHostNameLength) {
    return Fail(std::string(op), "longer than " + std::to_string(kMaxHostNameLength) + " bytes");
  }
  size_t label_len = 0;
  for (char c : h) {
    if (c == '.') {
      if (label_len == 0) return Fail(std::string(op), "empty label");
      label_len = 0;
      continue;
    }
    if (!IsNameChar(c)) {
      return Fail(std::string(op), "invalid character '" + Printable(std::string_view(&c, 1)) +
                                       "' (allowed: A-Z a-z 0-9 - _ .)");
    }
    if (++label_len > kMaxLabelLength) {
      return Fail(std::string(op), "label longer than " + std::to_string(kMaxLabelLength) + " bytes");
    }
  }
  if (label_len == 0) return Fail(std::string(op), "empty label");
  if (EndsInNumber(h)) {
    return Fail(std::string(op), "ends in a number: an IPv4 address in shorthand, not a name");
  }
  std::string out(h);
  for (char& c : out) c = Lower(c);
  return out;
}

std::optional<IpAddress> ParseIpLiteral(std::string_view text) {
  IpAddress a;
  std::string s;
  if (!text.empty() && text.front() == '[') {
    if (text.size() < 3 || text.back() != ']') return std::nullopt;
    s.assign(text.substr(1, text.size() - 2));
    a.family = AF_INET6;
  } else {
    s.assign(text);
    a.family = s.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  }
  if (s.empty() || s.size() > INET6_ADDRSTRLEN) return std::nullopt;
  // inet_pton is the strict parser: four decimal parts without leading zeros
  // for IPv4 (unlike inet_aton), no zone ids for IPv6.
  if (inet_pton(a.family, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
  return a;
}

bool IsIpLiteralLike(std::string_view host) {
  if (host.empty()) return false;
  if (host.front() == '[' || host.find(':') != std::string_view::npos) return true;
  if (ParseIpLiteral(host)) return true;
  return EndsInNumber(host);
}

bool EntryMatchesName(const AllowEntry& entry, std::string_view host, uint16_t port) {
  if (entry.port != 0 && entry.port != port) return false;
  switch (entry.kind) {
    case AllowEntry::Kind::kExactHost:
      return host == entry.host;
    case AllowEntry::Kind::kSuffix:
      return host.size() > entry.host.size() + 1 && host.ends_with(entry.host) &&
             host[host.size() - entry.host.size() - 1] == '.';
    case AllowEntry::Kind::kAddress:
      return false;
  }
  return false;
}

bool EntryCoversAddress(const AllowEntry& entry, const IpAddress& addr, uint16_t port) {
  if (entry.kind != AllowEntry::Kind::kAddress) return false;
  if (entry.port != 0 && entry.port != port) return false;
  IpAddress target = addr;
  if (entry.address.family != target.family) {
    if (entry.address.family == AF_INET && IsV4Mapped(target)) {
      target = Unmap(target);
    } else if (entry.address.family == AF_INET6 && target.family == AF_INET) {
      // Only an entry within ::ffff:0:0/96 speaks of IPv4 destinations;
      // "::/0" means every IPv6 address, not every address.
      if (entry.prefix_len < 96 || !IsV4Mapped(entry.address)) return false;
      IpAddress mapped;
      mapped.family = AF_INET6;
      mapped.bytes[10] = mapped.bytes[11] = 0xff;
      std::copy_n(target.bytes.begin(), 4, mapped.bytes.begin() + 12);
      target = mapped;
    } else {
      return false;
    }
  }
  return SamePrefix(entry.address.bytes, target.bytes, entry.prefix_len);
}

bool AllowsName(const Policy& policy, std::string_view host, uint16_t port) {
  if (port == 0 || IsIpLiteralLike(host)) return false;
  Result<std::string> name = NormalizeHostName(host);
  if (!name) return false;
  return std::any_of(policy.allow.begin(), policy.allow.end(),
                     [&](const AllowEntry& e) { return EntryMatchesName(e, *name, port); });
}

bool MatchesDestination(std::span<const AllowEntry> entries, std::string_view host, uint16_t port) {
  if (port == 0) return false;
  if (IsIpLiteralLike(host)) {
    std::optional<IpAddress> ip = ParseIpLiteral(host);
    if (!ip) return false;
    return std::any_of(entries.begin(), entries.end(),
                       [&](const AllowEntry& e) { return EntryCoversAddress(e, *ip, port); });
  }
  Result<std::string> name = NormalizeHostName(host);
  if (!name) return false;
  return std::any_of(entries.begin(), entries.end(),
                     [&](const AllowEntry& e) { return EntryMatchesName(e, *name, port); });
}

// ---------------------------------------------------------------- parsing

Result<AllowEntry> ParseAllowEntry(std::string_view text, std::string_view field) {
  std::string op = std::string(field) + " (\"" + Printable(text, 300) + "\")";
  auto bad = [&](std::string why) { return Fail(op, std::move(why)); };
  if (text.empty()) return bad("empty entry");
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return bad("contains whitespace, a control character or non-ASCII");
  }
  AllowEntry e;
  e.text = std::string(text);

  auto set_port = [&](std::string_view p) -> Result<void> {
    std::optional<uint16_t> port = ParsePort(p);
    if (!port) return bad("port \"" + Printable(p) + "\" is not a number in 1-65535");
    e.port = *port;
    return {};
  };
  // addr_text is an address, prefix_text (maybe empty) its prefix length.
  auto set_address = [&](std::string_view addr_text, std::string_view prefix_text,
                         bool had_slash) -> Result<void> {
    std::optional<IpAddress> ip = ParseIpLiteral(addr_text);
    if (!ip) return bad("\"" + Printable(addr_text) + "\" is not a valid IP address");
    e.kind = AllowEntry::Kind::kAddress;
    e.address = *ip;
    e.prefix_len = FullPrefix(*ip);
    if (had_slash) {
      std::optional<int> prefix = ParsePrefix(prefix_text, FullPrefix(*ip));
      if (!prefix) {
        return bad("prefix length \"" + Printable(prefix_text) + "\" is not a number in 0-" +
                   std::to_string(FullPrefix(*ip)));
      }
      e.prefix_len = *prefix;
    }
    if (!HostBitsZero(e.address, e.prefix_len)) {
      return bad("host bits set after the /" + std::to_string(e.prefix_len) + " prefix");
    }
    AddressInfo info = ClassifyAddress(e.address);
    if (info.cls == AddressClass::kFakeDns) {
      return bad("within 198.18.0.0/15, airlock's made-up DNS answers: never a real destination");
    }
    return {};
  };

  if (text.front() == '[') {
    // [v6], [v6]:port, [v6/len], [v6/len]:port, [v6]/len, [v6]/len:port
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']'");
    std::string_view inner = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    std::string_view addr = inner, prefix;
    bool slash = false;
    if (size_t s = inner.find('/'); s != std::string_view::npos) {
      addr = inner.substr(0, s);
      prefix = inner.substr(s + 1);
      slash = true;
    }
    if (!rest.empty() && rest.front() == '/' && !slash) {
      size_t colon = rest.find(':');
      prefix = rest.substr(1, colon == std::string_view::npos ? std::string_view::npos : colon - 1);
      slash = true;
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
    }
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("unexpected \"" + Printable(rest) + "\" after ']'");
      TRY(set_port(rest.substr(1)));
    }
    if (addr.find(':') == std::string_view::npos) return bad("brackets hold only IPv6 addresses");
    TRY(set_address(addr, prefix, slash));
    return e;
  }

  if (std::count(text.begin(), text.end(), ':') > 1) {
    // Bare IPv6 (with an optional prefix); a port needs brackets.
    size_t s = text.find('/');
    std::string_view addr = text.substr(0, s);
    std::string_view prefix = s == std::string_view::npos ? std::string_view() : text.substr(s + 1);
    TRY(set_address(addr, prefix, s != std::string_view::npos));
    return e;
  }

  std::string_view host = text;
  if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    TRY(set_port(text.substr(colon + 1)));
  }
  if (size_t s = host.find('/'); s != std::string_view::npos) {
    TRY(set_address(host.substr(0, s), host.substr(s + 1), true));
    return e;
  }
  if (ParseIpLiteral(host)) {
    TRY(set_address(host, {}, false));
    return e;
  }
  if (std::all_of(host.begin(), host.end(), [](char c) { return IsDigit(c) || c == '.'; })) {
    return bad("\"" + Printable(host) + "\" is not a valid IPv4 address (four decimal parts)");
  }

  std::string_view name = host;
  if (name.starts_with("*.")) {
    e.kind = AllowEntry::Kind::kSuffix;
    name.remove_prefix(2);
  } else {
    e.kind = AllowEntry::Kind::kExactHost;
  }
  if (name.find('*') != std::string_view::npos) {
    return bad("'*' is allowed only as a leading \"*.\"");
  }
  Result<std::string> normalized = NormalizeHostName(name);
  if (!normalized) return bad(normalized.error().detail);
  e.host = std::move(*normalized);
  return e;
}

Result<Policy> ParsePolicy(const nlohmann::json& j, std::string_view field) {
  if (!j.is_object()) {
    return Fail(std::string(field.empty() ? "policy" : field),
                std::string("expected an object, got ") + j.type_name());
  }
  Policy policy;
  for (const auto& item : j.items()) {
    if (item.key() != "allow") return Fail(Sub(field, item.key()), "unknown field");
  }
  auto it = j.find("allow");
  if (it == j.end() || it->is_null()) return policy;
  std::string path = Sub(field, "allow");
  if (!it->is_array()) {
    return Fail(path, std::string("expected an array of strings, got ") + it->type_name());
  }
  if (it->size() > kMaxAllowEntries) {
    return Fail(path, "more than " + std::to_string(kMaxAllowEntries) + " entries");
  }
  size_t i = 0;
  for (const json& v : *it) {
    std::string at = path + "[" + std::to_string(i++) + "]";
    if (!v.is_string()) return Fail(at, std::string("expected a string, got ") + v.type_name());
    policy.allow.push_back(TRY(ParseAllowEntry(v.get_ref<const std::string&>(), at)));
  }
  return policy;
}

// ---------------------------------------------------------------- addresses

AddressInfo ClassifyAddress(const IpAddress& addr) {
  AddressInfo info;
  info.effective = addr;
  if (addr.family == AF_INET) {
    ClassifyV4(V4Value(addr), info);
    return info;
  }
  const auto& b = addr.bytes;
  auto embed = [&](const uint8_t* v4) {
    info.effective = V4FromBytes(v4);
    info.embedded = true;
    ClassifyV4(V4Value(info.effective), info);
  };
  bool first12_zero = std::all_of(b.begin(), b.begin() + 12, [](uint8_t x) { return x == 0; });
  if (IsUnspecified(addr)) {
    info.cls = AddressClass::kUnspecified;
  } else if (first12_zero && b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] == 1) {
    info.cls = AddressClass::kLoopback;
  } else if (IsV4Mapped(addr) || first12_zero) {
    embed(&b[12]);  // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated)
  } else if (StartsWith(addr, {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, 96)) {
    embed(&b[12]);  // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765)
  } else if (StartsWith(addr, {0x00, 0x64, 0xff, 0x9b}, 96)) {
    embed(&b[12]);  // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
  } else if (StartsWith(addr, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48)) {
    info.cls = AddressClass::kPrivate;
    info.note = "local-use NAT64";
  } else if (StartsWith(addr, {0x20, 0x02}, 16)) {
    embed(&b[2]);  // 2002:AABB:CCDD::/48 (6to4)
  } else if (StartsWith(addr, {0x20, 0x01, 0x0d, 0xb8}, 32) || StartsWith(addr, {0x3f, 0xff}, 20)) {
    info.cls = AddressClass::kDocumentation;
  } else if (StartsWith(addr, {0x20, 0x01}, 23)) {
    info.cls = AddressClass::kReserved;  // Teredo (embeds IPv4 too), ORCHID, benchmarking ...
    info.note = "IETF protocol assignments";
  } else if (StartsWith(addr, {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54},
                        128)) {
    info.cls = AddressClass::kPrivate;
    info.note = "cloud metadata";
  } else if (StartsWith(addr, {0xfc}, 7)) {
    info.cls = AddressClass::kPrivate;
    info.note = "unique local";
  } else if (StartsWith(addr, {0xfe, 0x80}, 10)) {
    info.cls = AddressClass::kLinkLocal;
  } else if (StartsWith(addr, {0xfe, 0xc0}, 10)) {
    info.cls = AddressClass::kPrivate;
    info.note = "site-local";
  } else if (StartsWith(addr, {0xff}, 8)) {
    info.cls = AddressClass::kMulticast;
  } else if (!StartsWith(addr, {0x20}, 3)) {
    info.cls = AddressClass::kReserved;  // outside global unicast 2000::/3
    info.note = "not global unicast";
  } else {
    info.cls = AddressClass::kPublic;
  }
  return info;
}

std::string_view AddressClassName(AddressClass cls) {
  switch (cls) {
    case AddressClass::kPublic: return "public";
    case AddressClass::kLoopback: return "loopback";
    case AddressClass::kUnspecified: return "unspecified";
    case AddressClass::kLinkLocal: return "link-local";
    case AddressClass::kPrivate: return "private";
    case AddressClass::kMulticast: return "multicast";
    case AddressClass::kBroadcast: return "broadcast";
    case AddressClass::kReserved: return "reserved";
    case AddressClass::kDocumentation: return "a documentation range";
    case AddressClass::kFakeDns: return "airlock's fake DNS range";
  }
  return "unknown";
}

std::optional<IpAddress> AddressFromSockaddr(const sockaddr_storage& addr) {
  IpAddress a;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    a.family = AF_INET;
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
    return a;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    a.family = AF_INET6;
    std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

uint16_t PortFromSockaddr(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

sockaddr_storage MakeSockaddr(const IpAddress& addr, uint16_t port) {
  sockaddr_storage ss{};
  if (addr.family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, addr.bytes.data(), 4);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, addr.bytes.data(), 16);
  }
  return ss;
}

std::string FormatIp(const IpAddress& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!inet_ntop(addr.family, addr.bytes.data(), buf, sizeof(buf))) return "?";
  return buf;
}

Result<void> CheckAddress(const Policy& policy, const sockaddr_storage& addr, uint16_t port,
                          std::span<const sockaddr_storage> refused) {
  std::optional<IpAddress> ip = AddressFromSockaddr(addr);
  if (!ip) {
    return Fail(std::string(kOp),
                "address family " + std::to_string(addr.ss_family) + " is neither IPv4 nor IPv6");
  }
  if (port == 0) return Fail(std::string(kOp), FormatIp(*ip) + ": port 0");
  AddressInfo info = ClassifyAddress(*ip);
  if (info.cls == AddressClass::kFakeDns) return Fail(std::string(kOp), Describe(*ip, info));
  bool covered = std::any_of(policy.allow.begin(), policy.allow.end(),
                             [&](const AllowEntry& e) { return EntryCoversAddress(e, *ip, port); });
  for (const sockaddr_storage& r : refused) {
    if (!RefusedMatches(r, *ip, port)) continue;
    bool named = std::any_of(policy.allow.begin(), policy.allow.end(),
                             [&](const AllowEntry& e) { return ExplicitlyNames(e, *ip, port); });
    if (!named) {
      return Fail(std::string(kOp), FormatEndpoint(*ip, port) + " is airlockd's own listener");
    }
  }
  if (info.cls != AddressClass::kPublic && !covered) {
    return Fail(std::string(kOp), Describe(*ip, info));
  }
  return {};
}

bool AllowsAddressLiteral(const Policy& policy, const sockaddr_storage& addr, uint16_t port) {
  std::optional<IpAddress> ip = AddressFromSockaddr(addr);
  if (!ip || port == 0) return false;
  if (ClassifyAddress(*ip).cls == AddressClass::kFakeDns) return false;
  return std::any_of(policy.allow.begin(), policy.allow.end(),
                     [&](const AllowEntry& e) { return EntryCoversAddress(e, *ip, port); });
}

// ---------------------------------------------------------------- messages

std::string Printable(std::string_view text, size_t max) {
  std::string out;
  size_t n = std::min(text.size(), max);
  out.reserve(n + 8);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace airlock::proxy

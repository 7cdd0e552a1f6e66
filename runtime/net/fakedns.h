// The relay's DNS (network mode proxy): every name a sandboxed program looks
// up gets a made-up address from proto::kFakeAddrBase/kFakeAddrCount, and
// the relay maps an address a program connects to back to its name. No real
// lookup ever happens here: the name leaves the sandbox only inside an
// EgressOpen, and the egress proxy checks it against the allowlist before it
// resolves anything (a lookup of `<data>.attacker.example` would itself be
// exfiltration).
//
// Compiled into airlock-init as well as the runtime: small, no exceptions,
// no dependency beyond the standard library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace airlock::net {

// Names to fake IPv4 addresses and back, bounded. Addresses are handed out
// in turn through the whole range (so an address comes back to another name
// only after the range's other ~131000 addresses did), and at most
// `capacity` names are remembered: when full, the oldest name is forgotten
// (its address then maps to no name until it is handed out again).
// Addresses are host byte order.
class FakeDnsTable {
 public:
  static constexpr size_t kDefaultCapacity = 65536;

  // capacity: 1 .. the range's usable addresses (larger values are clamped).
  explicit FakeDnsTable(size_t capacity = kDefaultCapacity);
  FakeDnsTable(const FakeDnsTable&) = delete;
  FakeDnsTable& operator=(const FakeDnsTable&) = delete;

  // The address of `name` (lower-cased, one trailing dot dropped), handing
  // out the next one if the table doesn't know the name. The caller
  // validates the name (Answer does).
  uint32_t AddressFor(std::string_view name);

  // The name the table gave `addr`, if it still remembers it.
  std::optional<std::string> NameFor(uint32_t addr) const;

  // Whether `addr` lies in the fake range at all.
  static bool IsFake(uint32_t addr);

  size_t size() const { return names_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    std::string name;
    uint32_t addr = 0;
  };
  size_t capacity_;
  uint64_t handed_out_ = 0;  // addresses handed out so far
  // A ring of the remembered names, entry k % capacity_ for the k-th one
  // handed out; a deque never moves its elements, so the index's keys
  // (views of the entries' names) stay valid.
  std::deque<Entry> entries_;
  std::unordered_map<std::string_view, size_t> names_;  // name -> entry
};

// Lower-cases ASCII letters and drops one trailing dot.
std::string NormaliseName(std::string_view name);

// The response to the DNS query `query` (one UDP datagram, or one TCP
// message without its length prefix), or an empty string when it deserves
// none (shorter than a header, or itself a response). One question of class
// IN (or ANY): type A gets one answer with the name's fake address, TTL
// kFakeTtl; any other type NOERROR with no answers (so clients fall back to
// IPv4). A malformed query (a compression pointer or an invalid label in
// the name, a name over 253 characters, a label over 63, not exactly one
// question, truncated) gets FORMERR, another class REFUSED, an opcode other
// than QUERY NOTIMP. Additional records (EDNS) are ignored.
std::string Answer(std::string_view query, FakeDnsTable& table);

inline constexpr uint32_t kFakeTtl = 5;  // seconds

// DNS header fields, for the answer's callers and tests.
inline constexpr size_t kDnsHeaderSize = 12;
inline constexpr uint16_t kDnsTypeA = 1;
inline constexpr uint16_t kDnsTypeAAAA = 28;
inline constexpr uint16_t kDnsClassIn = 1;
inline constexpr int kRcodeNoError = 0;
inline constexpr int kRcodeFormErr = 1;
inline constexpr int kRcodeNotImp = 4;
inline constexpr int kRcodeRefused = 5;

}  // namespace airlock::net

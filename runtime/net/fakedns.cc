#include "runtime/net/fakedns.h"

#include <utility>

#include "runtime/proto/egress.h"

namespace airlock::net {
namespace {

// The range's first and last addresses (its network and broadcast
// addresses, were it a subnet) are never handed out.
constexpr uint64_t kUsable = proto::kFakeAddrCount - 2;
constexpr uint32_t kFirst = proto::kFakeAddrBase + 1;

constexpr uint16_t kClassAny = 255;
constexpr uint16_t kFlagResponse = 0x8000;
constexpr uint16_t kFlagRecursionDesired = 0x0100;
constexpr uint16_t kFlagRecursionAvailable = 0x0080;

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Host-name characters, plus '_' (service labels): a label must not hold a
// dot, a byte outside ASCII or anything else that would read differently in
// the text form the proxy matches against its allowlist.
bool LabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

void Put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}

void Put32(std::string& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v & 0xffff));
}

uint16_t Get16(std::string_view s, size_t off) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[off]) << 8) | static_cast<uint8_t>(s[off + 1]));
}

}  // namespace

FakeDnsTable::FakeDnsTable(size_t capacity)
    : capacity_(capacity == 0 ? 1 : (capacity > kUsable ? kUsable : capacity)) {}

bool FakeDnsTable::IsFake(uint32_t addr) { return addr - proto::kFakeAddrBase < proto::kFakeAddrCount; }

uint32_t FakeDnsTable::AddressFor(std::string_view name) {
  std::string key = NormaliseName(name);
  auto it = names_.find(key);
  if (it != names_.end()) return entries_[it->second].addr;
  uint64_t k = handed_out_++;
  size_t slot = static_cast<size_t>(k % capacity_);
  uint32_t addr = kFirst + static_cast<uint32_t>(k % kUsable);
  if (slot < entries_.size()) {
    // Full: entry `slot` holds the oldest name, which is forgotten.
    names_.erase(entries_[slot].name);
    entries_[slot].name = std::move(key);
    entries_[slot].addr = addr;
  } else {
    entries_.push_back(Entry{std::move(key), addr});
  }
  names_.emplace(entries_[slot].name, slot);
  return addr;
}

std::optional<std::string> FakeDnsTable::NameFor(uint32_t addr) const {
  if (handed_out_ == 0 || addr < kFirst || addr - kFirst >= kUsable) return std::nullopt;
  // The latest k-th hand-out that got this address: k = a (mod kUsable).
  uint64_t a = addr - kFirst;
  uint64_t last = handed_out_ - 1;
  uint64_t r = last % kUsable;
  uint64_t back = r >= a ? r - a : r + kUsable - a;
  if (back > last) return std::nullopt;  // never handed out
  uint64_t k = last - back;
  if (handed_out_ - k > capacity_) return std::nullopt;  // forgotten since
  const Entry& e = entries_[static_cast<size_t>(k % capacity_)];
  if (e.addr != addr) return std::nullopt;
  return e.name;
}

std::string NormaliseName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) c = Lower(c);
  return out;
}

std::string Answer(std::string_view q, FakeDnsTable& table) {
  if (q.size() < kDnsHeaderSize) return {};
  const uint16_t flags = Get16(q, 2);
  // Never answer an answer: two relays (or a program replaying our own
  // response) must not ping-pong.
  if (flags & kFlagResponse) return {};
  const uint16_t opcode = (flags >> 11) & 0xf;
  auto header = [&](int rcode, uint16_t questions, uint16_t answers) {
    std::string out;
    out.reserve(kDnsHeaderSize + 300);
    out.append(q.substr(0, 2));  // the query's id
    Put16(out, static_cast<uint16_t>(kFlagResponse | (opcode << 11) | (flags & kFlagRecursionDesired) |
                                     kFlagRecursionAvailable | rcode));
    Put16(out, questions);
    Put16(out, answers);
    Put16(out, 0);
    Put16(out, 0);
    return out;
  };
  if (opcode != 0) return header(kRcodeNotImp, 0, 0);
  if (Get16(q, 4) != 1) return header(kRcodeFormErr, 0, 0);

  // The question's name: labels only. A compression pointer (or the
  // obsolete extended label types) would make the name depend on bytes
  // elsewhere in the message; a query has no reason to use one.
  std::string name;
  size_t pos = kDnsHeaderSize;
  for (;;) {
    if (pos >= q.size()) return header(kRcodeFormErr, 0, 0);
    size_t len = static_cast<uint8_t>(q[pos++]);
    if (len == 0) break;
    if (len > 63 || len > q.size() - pos) return header(kRcodeFormErr, 0, 0);
    if (!name.empty()) name += '.';
    for (size_t i = 0; i < len; ++i) {
      char c = q[pos + i];
      if (!LabelChar(c)) return header(kRcodeFormErr, 0, 0);
      name += Lower(c);
    }
    pos += len;
    // 253 characters of text are the 255 bytes RFC 1035 allows on the wire.
    if (name.size() > proto::kMaxHostName) return header(kRcodeFormErr, 0, 0);
  }
  if (q.size() - pos < 4) return header(kRcodeFormErr, 0, 0);
  const uint16_t qtype = Get16(q, pos);
  const uint16_t qclass = Get16(q, pos + 2);
  pos += 4;
  // Echoed byte for byte: resolvers that randomise the name's case (0x20)
  // compare it.
  const std::string_view question = q.substr(kDnsHeaderSize, pos - kDnsHeaderSize);
  if (qclass != kDnsClassIn && qclass != kClassAny) return header(kRcodeRefused, 1, 0).append(question);
  if (qtype != kDnsTypeA || name.empty()) return header(kRcodeNoError, 1, 0).append(question);

  const uint32_t addr = table.AddressFor(name);
  std::string out = header(kRcodeNoError, 1, 1);
  out.append(question);
  Put16(out, 0xc000 | kDnsHeaderSize);  // the name: a pointer to the question's
  Put16(out, kDnsTypeA);
  Put16(out, kDnsClassIn);
  Put32(out, kFakeTtl);
  Put16(out, 4);
  Put32(out, addr);
  return out;
}

}  // namespace airlock::net

// The relay's DNS: answers to hand-built queries (A, AAAA, MX, malformed
// ones) and the fake-address table (reverse mapping, forgetting the oldest,
// handing addresses out in turn through the whole range).
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "runtime/net/fakedns.h"
#include "runtime/proto/egress.h"

namespace net = airlock::net;
namespace proto = airlock::proto;

namespace {

std::string U16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string Header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an = 0, uint16_t ns = 0, uint16_t ar = 0) {
  return U16(id) + U16(flags) + U16(qd) + U16(an) + U16(ns) + U16(ar);
}

// "www.Example.com" -> 3www7Example3com0
std::string Name(const std::string& dotted) {
  std::string out;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    out += static_cast<char>(dot - start);
    out += dotted.substr(start, dot - start);
    start = dot + 1;
  }
  return out + '\0';
}

constexpr uint16_t kRd = 0x0100;

std::string Query(const std::string& name, uint16_t type, uint16_t id = 0x1234, uint16_t klass = 1) {
  return Header(id, kRd, 1) + Name(name) + U16(type) + U16(klass);
}

uint16_t Get16(const std::string& s, size_t off) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[off]) << 8) | static_cast<uint8_t>(s[off + 1]));
}
uint32_t Get32(const std::string& s, size_t off) { return (uint32_t{Get16(s, off)} << 16) | Get16(s, off + 2); }

int Rcode(const std::string& r) { return Get16(r, 2) & 0xf; }

std::string Dotted(uint32_t addr) {
  in_addr a{htonl(addr)};
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof(buf));
}

}  // namespace

TEST_CASE("an A query gets one fake address with a short TTL", "[fakedns]") {
  net::FakeDnsTable table;
  std::string q = Query("www.Example.COM", net::kDnsTypeA, 0xbeef);
  std::string r = net::Answer(q, table);
  REQUIRE(r.size() == q.size() + 16);
  CHECK(Get16(r, 0) == 0xbeef);
  uint16_t flags = Get16(r, 2);
  CHECK((flags & 0x8000) != 0);   // a response
  CHECK((flags & 0x7800) == 0);   // QUERY
  CHECK((flags & kRd) != 0);      // RD copied
  CHECK((flags & 0x0080) != 0);   // RA
  CHECK(Rcode(r) == net::kRcodeNoError);
  CHECK(Get16(r, 4) == 1);
  CHECK(Get16(r, 6) == 1);
  CHECK(Get16(r, 8) == 0);
  CHECK(Get16(r, 10) == 0);
  // The question, byte for byte (the name's case too).
  CHECK(r.substr(12, q.size() - 12) == q.substr(12));
  size_t an = q.size();
  CHECK(Get16(r, an) == 0xc00c);
  CHECK(Get16(r, an + 2) == net::kDnsTypeA);
  CHECK(Get16(r, an + 4) == net::kDnsClassIn);
  CHECK(Get32(r, an + 6) == net::kFakeTtl);
  CHECK(Get16(r, an + 10) == 4);
  uint32_t addr = Get32(r, an + 12);
  CHECK(Dotted(addr).starts_with("198.1"));
  CHECK(addr - proto::kFakeAddrBase < proto::kFakeAddrCount);
  CHECK(table.NameFor(addr) == "www.example.com");

  // The same name (in any case, with a trailing dot) keeps its address;
  // another gets another.
  CHECK(table.AddressFor("WWW.example.com.") == addr);
  std::string r2 = net::Answer(Query("other.example", net::kDnsTypeA), table);
  REQUIRE(r2.size() > 4);
  uint32_t addr2 = Get32(r2, r2.size() - 4);
  CHECK(addr2 != addr);
  CHECK(table.NameFor(addr2) == "other.example");
  CHECK(table.size() == 2);
}

TEST_CASE("AAAA, MX and other types get NOERROR without answers", "[fakedns]") {
  net::FakeDnsTable table;
  for (uint16_t type : {net::kDnsTypeAAAA, uint16_t{15} /*MX*/, uint16_t{16} /*TXT*/, uint16_t{255} /*ANY*/}) {
    INFO("type " << type);
    std::string q = Query("mail.example.org", type);
    std::string r = net::Answer(q, table);
    REQUIRE(r.size() == q.size());
    CHECK(Rcode(r) == net::kRcodeNoError);
    CHECK(Get16(r, 4) == 1);
    CHECK(Get16(r, 6) == 0);
    CHECK(r.substr(12) == q.substr(12));
  }
  // No address was handed out for any of them.
  CHECK(table.size() == 0);
  // Nor for the root, even for A.
  std::string root = Header(7, kRd, 1) + std::string(1, '\0') + U16(1) + U16(1);
  std::string r = net::Answer(root, table);
  CHECK(Rcode(r) == net::kRcodeNoError);
  CHECK(Get16(r, 6) == 0);
  CHECK(table.size() == 0);
}

TEST_CASE("EDNS additional records are ignored", "[fakedns]") {
  net::FakeDnsTable table;
  // An OPT record: root name, type 41, payload size 1232, no options.
  std::string opt = std::string(1, '\0') + U16(41) + U16(1232) + U16(0) + U16(0) + U16(0);
  std::string q = Header(1, kRd, 1, 0, 0, 1) + Name("api.example.com") + U16(1) + U16(1) + opt;
  std::string r = net::Answer(q, table);
  CHECK(Rcode(r) == net::kRcodeNoError);
  CHECK(Get16(r, 6) == 1);
  CHECK(Get16(r, 10) == 0);
  CHECK(table.NameFor(Get32(r, r.size() - 4)) == "api.example.com");
}

TEST_CASE("malformed queries get FORMERR or nothing", "[fakedns]") {
  net::FakeDnsTable table;
  auto rcode_of = [&](const std::string& q) {
    std::string r = net::Answer(q, table);
    REQUIRE(r.size() == 12);  // a header only: nothing of the query echoed
    CHECK(Get16(r, 0) == Get16(q, 0));
    CHECK(Get16(r, 4) == 0);
    CHECK(Get16(r, 6) == 0);
    return Rcode(r);
  };
  SECTION("shorter than a header, or a response: no answer") {
    CHECK(net::Answer("", table).empty());
    CHECK(net::Answer(std::string(11, '\0'), table).empty());
    std::string response = Query("example.com", 1);
    response[2] = static_cast<char>(response[2] | 0x80);
    CHECK(net::Answer(response, table).empty());
  }
  SECTION("question count other than one") {
    CHECK(rcode_of(Header(1, kRd, 0)) == net::kRcodeFormErr);
    CHECK(rcode_of(Header(1, kRd, 2) + Name("a.example") + U16(1) + U16(1) + Name("b.example") + U16(1) + U16(1)) ==
          net::kRcodeFormErr);
  }
  SECTION("truncated") {
    std::string q = Query("example.com", 1);
    for (size_t len = 12; len < q.size(); ++len) {
      INFO("length " << len);
      CHECK(rcode_of(q.substr(0, len)) == net::kRcodeFormErr);
    }
  }
  SECTION("a compression pointer in the question") {
    std::string q = Header(1, kRd, 1) + "\x03www" + std::string("\xc0\x0c", 2) + U16(1) + U16(1);
    CHECK(rcode_of(q) == net::kRcodeFormErr);
    std::string only_pointer = Header(1, kRd, 1) + std::string("\xc0\x0c", 2) + U16(1) + U16(1);
    CHECK(rcode_of(only_pointer) == net::kRcodeFormErr);
    std::string extended = Header(1, kRd, 1) + std::string("\x41", 1) + std::string(1, 'a') + '\0' + U16(1) + U16(1);
    CHECK(rcode_of(extended) == net::kRcodeFormErr);
  }
  SECTION("labels: too long, bad bytes") {
    CHECK(rcode_of(Query(std::string(64, 'a') + ".example", 1)) == net::kRcodeFormErr);
    CHECK(rcode_of(Query("bad!char.example", 1)) == net::kRcodeFormErr);
    CHECK(rcode_of(Query("sp ace.example", 1)) == net::kRcodeFormErr);
    CHECK(rcode_of(Query("caf\xc3\xa9.example", 1)) == net::kRcodeFormErr);
    // A dot inside a label would read as two labels in text form.
    std::string dotted = Header(1, kRd, 1) + "\x07" "a.b.com" + '\0' + U16(1) + U16(1);
    CHECK(rcode_of(dotted) == net::kRcodeFormErr);
    CHECK(table.size() == 0);
  }
  SECTION("names: 253 characters at most") {
    std::string ok;
    while (ok.size() + 64 <= 253) ok += std::string(63, 'a') + ".";
    ok += std::string(253 - ok.size(), 'b');
    REQUIRE(ok.size() == 253);
    std::string r = net::Answer(Query(ok, 1), table);
    CHECK(Rcode(r) == net::kRcodeNoError);
    CHECK(Get16(r, 6) == 1);
    CHECK(rcode_of(Query(ok + "b", 1)) == net::kRcodeFormErr);
    CHECK(rcode_of(Query(ok + ".c", 1)) == net::kRcodeFormErr);
  }
  CHECK(table.size() <= 1);
}

TEST_CASE("other opcodes get NOTIMP, other classes REFUSED", "[fakedns]") {
  net::FakeDnsTable table;
  std::string q = Query("example.com", 1);
  q[2] = static_cast<char>(q[2] | (5 << 3));  // opcode 5: UPDATE
  std::string r = net::Answer(q, table);
  REQUIRE(r.size() == 12);
  CHECK(Rcode(r) == net::kRcodeNotImp);
  CHECK(((Get16(r, 2) >> 11) & 0xf) == 5);

  std::string chaos = Query("version.bind", 16, 9, 3);  // class CH
  r = net::Answer(chaos, table);
  CHECK(Rcode(r) == net::kRcodeRefused);
  CHECK(Get16(r, 6) == 0);
  CHECK(table.size() == 0);
}

TEST_CASE("the table forgets the oldest name when full", "[fakedns]") {
  net::FakeDnsTable table(3);
  uint32_t a = table.AddressFor("a.example");
  uint32_t b = table.AddressFor("b.example");
  uint32_t c = table.AddressFor("c.example");
  CHECK(table.size() == 3);
  uint32_t d = table.AddressFor("d.example");  // forgets a
  CHECK(table.size() == 3);
  CHECK_FALSE(table.NameFor(a).has_value());
  CHECK(table.NameFor(b) == "b.example");
  CHECK(table.NameFor(c) == "c.example");
  CHECK(table.NameFor(d) == "d.example");
  // A forgotten name comes back with a new address, not its old one.
  uint32_t a2 = table.AddressFor("a.example");
  CHECK(a2 != a);
  CHECK_FALSE(table.NameFor(b).has_value());
  CHECK(table.NameFor(a2) == "a.example");
  std::set<uint32_t> all{a, b, c, d, a2};
  CHECK(all.size() == 5);
}

TEST_CASE("addresses come back only after the whole range went round", "[fakedns]") {
  net::FakeDnsTable table(2);
  const uint32_t first = table.AddressFor("n0");
  CHECK(first == proto::kFakeAddrBase + 1);  // never the range's .0.0
  uint32_t prev = first;
  const uint32_t usable = proto::kFakeAddrCount - 2;
  for (uint32_t i = 1; i < usable; ++i) {
    uint32_t addr = table.AddressFor("n" + std::to_string(i));
    if (addr != prev + 1) FAIL("address " << i << " is " << addr << ", after " << prev);
    prev = addr;
  }
  CHECK(prev == proto::kFakeAddrBase + proto::kFakeAddrCount - 2);  // never the range's last
  CHECK(table.NameFor(prev) == "n" + std::to_string(usable - 1));
  CHECK_FALSE(table.NameFor(first).has_value());
  // Round again: the first address goes to the next new name.
  CHECK(table.AddressFor("again") == first);
  CHECK(table.NameFor(first) == "again");
  CHECK(table.NameFor(prev) == "n" + std::to_string(usable - 1));
}

TEST_CASE("addresses outside the range have no name", "[fakedns]") {
  net::FakeDnsTable table;
  CHECK_FALSE(table.NameFor(proto::kFakeAddrBase + 1).has_value());  // nothing handed out yet
  uint32_t a = table.AddressFor("x.example");
  CHECK(table.NameFor(a) == "x.example");
  CHECK_FALSE(table.NameFor(a + 1).has_value());  // not handed out yet
  CHECK_FALSE(table.NameFor(proto::kFakeAddrBase).has_value());
  CHECK_FALSE(table.NameFor(proto::kFakeAddrBase + proto::kFakeAddrCount - 1).has_value());
  CHECK_FALSE(table.NameFor(proto::kFakeAddrBase + proto::kFakeAddrCount).has_value());
  CHECK_FALSE(table.NameFor(0x7f000001).has_value());
  CHECK(net::FakeDnsTable::IsFake(proto::kFakeAddrBase));
  CHECK(net::FakeDnsTable::IsFake(proto::kFakeAddrBase + proto::kFakeAddrCount - 1));
  CHECK_FALSE(net::FakeDnsTable::IsFake(proto::kFakeAddrBase - 1));
  CHECK_FALSE(net::FakeDnsTable::IsFake(proto::kFakeAddrBase + proto::kFakeAddrCount));
  CHECK(net::NormaliseName("WWW.Example.COM.") == "www.example.com");
}

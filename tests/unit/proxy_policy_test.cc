// The egress allowlist: entry parsing, name matching (default deny) and the
// address rules every resolved destination must pass.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness/proxy/policy.h"

using namespace airlock::proxy;

namespace {

sockaddr_storage SA(const std::string& ip, uint16_t port = 0) {
  auto a = ParseIpLiteral(ip);
  REQUIRE(a.has_value());
  return MakeSockaddr(*a, port);
}

Policy P(std::vector<std::string> entries) {
  auto r = ParsePolicy(nlohmann::json{{"allow", entries}}, "network");
  if (!r) FAIL(r.error().Message());
  return *r;
}

std::string EntryError(const std::string& text) {
  auto r = ParseAllowEntry(text, "allow[0]");
  if (r) return "<valid>";
  CHECK(r.error().err == 0);
  return r.error().Message();
}

std::string CheckError(const Policy& p, const std::string& ip, uint16_t port,
                       std::vector<sockaddr_storage> refused = {}) {
  auto r = CheckAddress(p, SA(ip), port, refused);
  if (r) return "<allowed>";
  return r.error().Message();
}

}  // namespace

TEST_CASE("allow entries: the forms that parse", "[proxy][policy]") {
  using K = AllowEntry::Kind;
  struct Case {
    const char* text;
    K kind;
    const char* host;
    const char* addr;
    int prefix;
    uint16_t port;
  };
  const Case cases[] = {
      {"api.example.com", K::kExactHost, "api.example.com", "", 0, 0},
      {"API.Example.COM.", K::kExactHost, "api.example.com", "", 0, 0},
      {"api.example.com:443", K::kExactHost, "api.example.com", "", 0, 443},
      {"*.example.com", K::kSuffix, "example.com", "", 0, 0},
      {"*.example.com:8443", K::kSuffix, "example.com", "", 0, 8443},
      {"under_score.example-1.com", K::kExactHost, "under_score.example-1.com", "", 0, 0},
      {"localhost", K::kExactHost, "localhost", "", 0, 0},
      {"127.0.0.1", K::kAddress, "", "127.0.0.1", 32, 0},
      {"127.0.0.1:9000", K::kAddress, "", "127.0.0.1", 32, 9000},
      {"10.0.0.0/8", K::kAddress, "", "10.0.0.0", 8, 0},
      {"127.0.0.1/32:9000", K::kAddress, "", "127.0.0.1", 32, 9000},
      {"0.0.0.0/0", K::kAddress, "", "0.0.0.0", 0, 0},
      {"::1", K::kAddress, "", "::1", 128, 0},
      {"[::1]", K::kAddress, "", "::1", 128, 0},
      {"[::1]:8080", K::kAddress, "", "::1", 128, 8080},
      {"fd00::/8", K::kAddress, "", "fd00::", 8, 0},
      {"[fd00::/8]:443", K::kAddress, "", "fd00::", 8, 443},
      {"[fd00::]/8:443", K::kAddress, "", "fd00::", 8, 443},
      {"::ffff:10.0.0.0/104", K::kAddress, "", "::ffff:10.0.0.0", 104, 0},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto r = ParseAllowEntry(c.text, "allow[0]");
    REQUIRE(r);
    CHECK(r->kind == c.kind);
    CHECK(r->host == c.host);
    CHECK(r->port == c.port);
    CHECK(r->text == c.text);
    if (c.kind == K::kAddress) {
      CHECK(FormatIp(r->address) == c.addr);
      CHECK(r->prefix_len == c.prefix);
    }
  }
}

TEST_CASE("allow entries: refusals name the entry and the reason", "[proxy][policy]") {
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty entry"},
      {"*.x*", "'*' is allowed only as a leading"},
      {"a.*.com", "'*' is allowed only as a leading"},
      {"*", "'*' is allowed only as a leading"},
      {"**.example.com", "'*' is allowed only as a leading"},
      {"*example.com", "'*' is allowed only as a leading"},
      {"*.", "empty"},
      {"a..b", "empty label"},
      {".a.b", "empty label"},
      {"a.b..", "empty label"},
      {"exa mple.com", "whitespace"},
      {"ex\tample.com", "whitespace"},
      {"exa%2emple.com", "invalid character '%'"},
      {"evil.test/x", "not a valid IP address"},
      {"ex@mple.com", "invalid character '@'"},
      {"ex\\ample.com", "invalid character"},
      {"caf\xc3\xa9.com", "non-ASCII"},
      {"api.example.com:", "port \"\" is not a number"},
      {"api.example.com:0", "port \"0\""},
      {"api.example.com:65536", "port \"65536\""},
      {"api.example.com:0443", "port \"0443\""},
      {"api.example.com:+443", "port"},
      {"api.example.com:https", "port"},
      {"256.0.0.1", "not a valid IPv4 address"},
      {"1.2.3", "not a valid IPv4 address"},
      {"0x7f.1", "ends in a number"},
      {"2130706433", "not a valid IPv4 address"},
      {"0x7f000001", "ends in a number"},
      {"example.123", "ends in a number"},
      {"010.0.0.1", "not a valid IPv4 address"},
      {"10.0.0.1/8", "host bits set"},
      {"10.0.0.0/33", "prefix length \"33\""},
      {"10.0.0.0/", "prefix length \"\""},
      {"10.0.0.0/08", "prefix length \"08\""},
      {"fd00::1/8", "host bits set"},
      {"fd00::/129", "prefix length"},
      {"[::1", "'[' without ']'"},
      {"[::1]x", "unexpected"},
      {"[127.0.0.1]", "brackets hold only IPv6"},
      {"[::1]:0", "port"},
      {"::1%lo", "not a valid IP address"},
      {"198.18.0.1", "made-up DNS"},
      {"198.18.0.0/15", "made-up DNS"},
      {"::ffff:198.18.0.5", "made-up DNS"},
  };
  for (const auto& [text, why] : cases) {
    INFO(text);
    std::string msg = EntryError(text);
    CHECK_THAT(msg, Catch::Contains(why));
    CHECK_THAT(msg, Catch::StartsWith("allow[0] (\""));
  }
  // Label and name lengths: 63 and 253 pass, one more fails.
  std::string label63(63, 'a');
  CHECK(EntryError(label63 + ".com") == "<valid>");
  CHECK_THAT(EntryError(std::string(64, 'a') + ".com"), Catch::Contains("label longer than 63"));
  std::string name253;
  while (name253.size() < 253) name253 += name253.size() + 2 <= 253 ? "a." : "a";
  if (name253.back() == '.') name253.back() = 'a';
  REQUIRE(name253.size() == 253);
  CHECK(EntryError(name253) == "<valid>");
  CHECK(EntryError(name253 + ".") == "<valid>");  // the trailing dot does not count
  CHECK_THAT(EntryError("b" + name253), Catch::Contains("longer than 253"));
}

TEST_CASE("ParsePolicy: fields are named, unknown keys refused", "[proxy][policy]") {
  using nlohmann::json;
  auto err = [](const json& j) {
    auto r = ParsePolicy(j, "network");
    return r ? std::string("<valid>") : r.error().Message();
  };
  CHECK(err(json::object()) == "<valid>");
  CHECK(ParsePolicy(json::object(), "network")->allow.empty());
  CHECK(err(json{{"allow", nullptr}}) == "<valid>");
  CHECK_THAT(err(json{{"allow", json::array()}, {"deny", json::array()}}),
             Catch::StartsWith("network.deny: unknown field"));
  CHECK_THAT(err(json::array()), Catch::StartsWith("network: expected an object"));
  CHECK_THAT(err(json{{"allow", "a.test"}}), Catch::StartsWith("network.allow: expected an array"));
  CHECK_THAT(err(json{{"allow", {"a.test", 5}}}), Catch::StartsWith("network.allow[1]: expected a string"));
  CHECK(err(json{{"allow", {"a.test", "b.test", "*.x*"}}}) ==
        "network.allow[2] (\"*.x*\"): '*' is allowed only as a leading \"*.\"");
  // Without a prefix the entries are named from the top.
  auto r = ParsePolicy(json{{"allow", {"ok.test", "bad..test"}}}, "");
  REQUIRE(!r);
  CHECK_THAT(r.error().Message(), Catch::StartsWith("allow[1] (\"bad..test\")"));
  // Attacker-ish bytes in an entry are escaped in the message.
  auto q = ParseAllowEntry(std::string("a\x01\"b"), "allow[0]");
  REQUIRE(!q);
  CHECK_THAT(q.error().Message(), Catch::StartsWith("allow[0] (\"a\\x01\\x22b\")"));
  std::vector<std::string> many(kMaxAllowEntries + 1, "a.test");
  CHECK_THAT(err(json{{"allow", many}}), Catch::Contains("more than"));
}

TEST_CASE("AllowsName: default deny, exact, suffix, ports, case", "[proxy][policy]") {
  Policy p = P({"api.example.com", "*.wild.test", "ported.test:8443", "*.pw.test:443", "10.0.0.0/8",
                "127.0.0.1"});
  struct Case {
    const char* host;
    uint16_t port;
    bool allowed;
  };
  const Case cases[] = {
      {"api.example.com", 443, true},
      {"api.example.com", 80, true},
      {"API.EXAMPLE.COM", 443, true},
      {"api.example.com.", 443, true},
      {"api.example.com..", 443, false},
      {"example.com", 443, false},
      {"x.api.example.com", 443, false},
      {"api.example.com.evil.test", 443, false},
      {"evilapi.example.com", 443, false},
      {"a.wild.test", 443, true},
      {"a.b.wild.test", 443, true},
      {"A.Wild.Test.", 443, true},
      {"wild.test", 443, false},
      {"xwild.test", 443, false},
      {".wild.test", 443, false},
      {"a.wild.test.evil", 443, false},
      {"ported.test", 8443, true},
      {"ported.test", 443, false},
      {"x.pw.test", 443, true},
      {"x.pw.test", 80, false},
      {"api.example.com", 0, false},
      {"", 443, false},
      {"nothing.test", 443, false},
      // IP literals never match by name, even when an address entry covers them.
      {"127.0.0.1", 80, false},
      {"10.1.2.3", 80, false},
      {"[::1]", 80, false},
      {"::1", 80, false},
      // Shorthand IPv4 forms a resolver would turn into addresses.
      {"2130706433", 80, false},
      {"0x7f.1", 80, false},
      {"127.1", 80, false},
      {"a.wild.0x10", 80, false},
      // Not names at all.
      {"api.example.com%00", 443, false},
      {"api.example.com\\", 443, false},
      {"api.example.com:443", 443, false},
      {"user@api.example.com", 443, false},
      {"api.exa mple.com", 443, false},
  };
  for (const Case& c : cases) {
    INFO(c.host << ":" << c.port);
    CHECK(AllowsName(p, c.host, c.port) == c.allowed);
  }
  CHECK_FALSE(AllowsName(Policy{}, "api.example.com", 443));
  // The matcher itself needs at least one label before the suffix.
  AllowEntry wild = *ParseAllowEntry("*.wild.test", "e");
  CHECK(EntryMatchesName(wild, "a.wild.test", 1));
  CHECK_FALSE(EntryMatchesName(wild, ".wild.test", 1));
  CHECK_FALSE(EntryMatchesName(wild, "wild.test", 1));
}

TEST_CASE("ClassifyAddress: ranges and embedded IPv4", "[proxy][policy]") {
  using C = AddressClass;
  struct Case {
    const char* ip;
    C cls;
    const char* effective;
  };
  const Case cases[] = {
      {"8.8.8.8", C::kPublic, "8.8.8.8"},
      {"1.1.1.1", C::kPublic, "1.1.1.1"},
      {"127.0.0.1", C::kLoopback, "127.0.0.1"},
      {"127.255.255.254", C::kLoopback, "127.255.255.254"},
      {"0.0.0.0", C::kUnspecified, "0.0.0.0"},
      {"0.1.2.3", C::kUnspecified, "0.1.2.3"},
      {"169.254.169.254", C::kLinkLocal, "169.254.169.254"},
      {"169.254.1.1", C::kLinkLocal, "169.254.1.1"},
      {"10.1.2.3", C::kPrivate, "10.1.2.3"},
      {"172.16.0.1", C::kPrivate, "172.16.0.1"},
      {"172.31.255.255", C::kPrivate, "172.31.255.255"},
      {"172.32.0.1", C::kPublic, "172.32.0.1"},
      {"172.15.255.255", C::kPublic, "172.15.255.255"},
      {"192.168.1.1", C::kPrivate, "192.168.1.1"},
      {"100.64.0.1", C::kPrivate, "100.64.0.1"},
      {"100.127.255.255", C::kPrivate, "100.127.255.255"},
      {"100.128.0.1", C::kPublic, "100.128.0.1"},
      {"100.100.100.200", C::kPrivate, "100.100.100.200"},
      {"168.63.129.16", C::kReserved, "168.63.129.16"},
      {"224.0.0.1", C::kMulticast, "224.0.0.1"},
      {"239.255.255.250", C::kMulticast, "239.255.255.250"},
      {"240.0.0.1", C::kReserved, "240.0.0.1"},
      {"255.255.255.255", C::kBroadcast, "255.255.255.255"},
      {"192.0.0.8", C::kReserved, "192.0.0.8"},
      {"192.0.2.1", C::kDocumentation, "192.0.2.1"},
      {"198.51.100.1", C::kDocumentation, "198.51.100.1"},
      {"203.0.113.9", C::kDocumentation, "203.0.113.9"},
      {"198.18.0.1", C::kFakeDns, "198.18.0.1"},
      {"198.19.255.255", C::kFakeDns, "198.19.255.255"},
      {"198.20.0.1", C::kPublic, "198.20.0.1"},
      {"192.88.99.1", C::kReserved, "192.88.99.1"},
      {"::", C::kUnspecified, "::"},
      {"::1", C::kLoopback, "::1"},
      {"fe80::1", C::kLinkLocal, "fe80::1"},
      {"febf::1", C::kLinkLocal, "febf::1"},
      {"fec0::1", C::kPrivate, "fec0::1"},
      {"fc00::1", C::kPrivate, "fc00::1"},
      {"fd12:3456::1", C::kPrivate, "fd12:3456::1"},
      {"fd00:ec2::254", C::kPrivate, "fd00:ec2::254"},
      {"ff02::1", C::kMulticast, "ff02::1"},
      {"2001:db8::1", C::kDocumentation, "2001:db8::1"},
      {"3fff::1", C::kDocumentation, "3fff::1"},
      {"2001::1", C::kReserved, "2001::1"},            // Teredo
      {"2001:10::1", C::kReserved, "2001:10::1"},      // ORCHID
      {"100::1", C::kReserved, "100::1"},              // discard-only
      {"5f00::1", C::kReserved, "5f00::1"},            // outside 2000::/3
      {"64:ff9b:1::1", C::kPrivate, "64:ff9b:1::1"},  // local-use NAT64
      {"2606:4700::1111", C::kPublic, "2606:4700::1111"},
      {"2a00:1450::1", C::kPublic, "2a00:1450::1"},
      // Embedded IPv4: classified as the IPv4 address they carry.
      {"::ffff:127.0.0.1", C::kLoopback, "127.0.0.1"},
      {"::ffff:7f00:1", C::kLoopback, "127.0.0.1"},
      {"::ffff:169.254.169.254", C::kLinkLocal, "169.254.169.254"},
      {"::ffff:10.0.0.1", C::kPrivate, "10.0.0.1"},
      {"::ffff:8.8.8.8", C::kPublic, "8.8.8.8"},
      {"::ffff:198.18.0.1", C::kFakeDns, "198.18.0.1"},
      {"::127.0.0.1", C::kLoopback, "127.0.0.1"},
      {"::a9fe:a9fe", C::kLinkLocal, "169.254.169.254"},
      {"::10.0.0.1", C::kPrivate, "10.0.0.1"},
      {"::ffff:0:127.0.0.1", C::kLoopback, "127.0.0.1"},
      {"64:ff9b::7f00:1", C::kLoopback, "127.0.0.1"},
      {"64:ff9b::169.254.169.254", C::kLinkLocal, "169.254.169.254"},
      {"64:ff9b::8.8.8.8", C::kPublic, "8.8.8.8"},
      {"2002:7f00:1::", C::kLoopback, "127.0.0.1"},
      {"2002:a9fe:a9fe::1", C::kLinkLocal, "169.254.169.254"},
      {"2002:0a00:0001:1::1", C::kPrivate, "10.0.0.1"},
      {"2002:0808:0808::1", C::kPublic, "8.8.8.8"},
  };
  for (const Case& c : cases) {
    INFO(c.ip);
    auto ip = ParseIpLiteral(c.ip);
    REQUIRE(ip);
    AddressInfo info = ClassifyAddress(*ip);
    CHECK(AddressClassName(info.cls) == AddressClassName(c.cls));
    CHECK(FormatIp(info.effective) == c.effective);
  }
}

TEST_CASE("CheckAddress: public passes, the rest only when listed", "[proxy][policy]") {
  Policy none;
  CHECK(CheckError(none, "8.8.8.8", 443) == "<allowed>");
  CHECK(CheckError(none, "2606:4700::1111", 443) == "<allowed>");
  CHECK(CheckError(none, "169.254.169.254", 80) ==
        "egress policy: 169.254.169.254 is link-local (cloud metadata)");
  CHECK(CheckError(none, "127.0.0.1", 80) == "egress policy: 127.0.0.1 is loopback");
  CHECK(CheckError(none, "10.0.0.1", 80) == "egress policy: 10.0.0.1 is private");
  CHECK(CheckError(none, "::ffff:169.254.169.254", 80) ==
        "egress policy: ::ffff:169.254.169.254 is link-local (cloud metadata; embeds 169.254.169.254)");
  CHECK_THAT(CheckError(none, "::127.0.0.1", 80), Catch::Contains("is loopback"));
  CHECK_THAT(CheckError(none, "64:ff9b::a9fe:a9fe", 80), Catch::Contains("link-local (cloud metadata"));
  CHECK_THAT(CheckError(none, "2002:c0a8:0101::1", 80), Catch::Contains("private (embeds 192.168.1.1)"));
  CHECK_THAT(CheckError(none, "::", 80), Catch::Contains("unspecified"));
  CHECK_THAT(CheckError(none, "0.0.0.0", 80), Catch::Contains("unspecified"));
  CHECK_THAT(CheckError(none, "224.0.0.1", 80), Catch::Contains("multicast"));
  CHECK_THAT(CheckError(none, "255.255.255.255", 80), Catch::Contains("broadcast"));
  CHECK_THAT(CheckError(none, "fe80::1", 80), Catch::Contains("link-local"));
  CHECK_THAT(CheckError(none, "fd00:ec2::254", 80), Catch::Contains("cloud metadata"));
  CHECK_THAT(CheckError(none, "192.0.2.1", 80), Catch::Contains("documentation"));
  CHECK_THAT(CheckError(none, "8.8.8.8", 0), Catch::Contains("port 0"));

  Policy p = P({"127.0.0.1:9000", "10.0.0.0/8", "fd00::/8", "[::1]:8080", "0.0.0.0/0:7777"});
  CHECK(CheckError(p, "127.0.0.1", 9000) == "<allowed>");
  CHECK_THAT(CheckError(p, "127.0.0.1", 9001), Catch::Contains("loopback"));
  CHECK(CheckError(p, "::ffff:127.0.0.1", 9000) == "<allowed>");  // the same destination
  CHECK(CheckError(p, "10.200.0.1", 80) == "<allowed>");
  CHECK(CheckError(p, "::ffff:10.200.0.1", 80) == "<allowed>");
  CHECK_THAT(CheckError(p, "11.0.0.1", 80), Catch::Contains("<allowed>"));  // public anyway
  CHECK(CheckError(p, "fd00::5", 443) == "<allowed>");
  CHECK_THAT(CheckError(p, "fc00::5", 443), Catch::Contains("private"));
  CHECK(CheckError(p, "::1", 8080) == "<allowed>");
  CHECK_THAT(CheckError(p, "::1", 8081), Catch::Contains("loopback"));
  // An IPv4 entry does not cover other embeddings of the address.
  CHECK_THAT(CheckError(p, "::10.0.0.1", 80), Catch::Contains("private"));
  CHECK_THAT(CheckError(p, "2002:0a00:0001::1", 80), Catch::Contains("private"));
  // Even a catch-all entry never opens airlock's fake DNS range.
  CHECK(CheckError(p, "169.254.169.254", 7777) == "<allowed>");
  CHECK_THAT(CheckError(p, "198.18.0.7", 7777), Catch::Contains("fake DNS"));
  CHECK_THAT(CheckError(p, "::ffff:198.18.0.7", 7777), Catch::Contains("fake DNS"));
  CHECK_THAT(CheckError(none, "198.18.0.7", 443), Catch::Contains("fake DNS"));

  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  auto r = CheckAddress(none, unix_addr, 80, {});
  REQUIRE(!r);
  CHECK_THAT(r.error().Message(), Catch::Contains("neither IPv4 nor IPv6"));
}

TEST_CASE("CheckAddress: airlockd's own listeners", "[proxy][policy]") {
  std::vector<sockaddr_storage> refused = {SA("203.0.114.5", 7443), SA("10.0.0.5", 0),
                                           SA("::", 9999)};
  Policy none;
  CHECK(CheckError(none, "203.0.114.5", 7443, refused) ==
        "egress policy: 203.0.114.5:7443 is airlockd's own listener");
  CHECK(CheckError(none, "203.0.114.5", 443, refused) == "<allowed>");  // another port
  CHECK_THAT(CheckError(none, "::ffff:203.0.114.5", 7443, refused), Catch::Contains("own listener"));
  // A wildcard listener answers on every address of its port.
  CHECK(CheckError(none, "8.8.8.8", 9999, refused) ==
        "egress policy: 8.8.8.8:9999 is airlockd's own listener");
  CHECK_THAT(CheckError(none, "2606:4700::1", 9999, refused),
             Catch::Contains("[2606:4700::1]:9999 is airlockd's own listener"));
  // Port 0: every port of that address.
  Policy cidr = P({"10.0.0.0/8"});
  CHECK_THAT(CheckError(cidr, "10.0.0.5", 1234, refused), Catch::Contains("own listener"));
  CHECK(CheckError(cidr, "10.0.0.6", 1234, refused) == "<allowed>");
  // Only an entry naming exactly that address opens it.
  Policy exact = P({"10.0.0.5"});
  CHECK(CheckError(exact, "10.0.0.5", 1234, refused) == "<allowed>");
  Policy exact_port = P({"203.0.114.5:7443"});
  CHECK(CheckError(exact_port, "203.0.114.5", 7443, refused) == "<allowed>");
  Policy wrong_port = P({"203.0.114.5:7444"});
  CHECK_THAT(CheckError(wrong_port, "203.0.114.5", 7443, refused), Catch::Contains("own listener"));
}

TEST_CASE("EntryCoversAddress: families", "[proxy][policy]") {
  auto entry = [](const char* text) { return *ParseAllowEntry(text, "e"); };
  auto ip = [](const char* text) { return *ParseIpLiteral(text); };
  CHECK(EntryCoversAddress(entry("10.0.0.0/8"), ip("::ffff:10.1.1.1"), 1));
  CHECK_FALSE(EntryCoversAddress(entry("10.0.0.0/8"), ip("::10.1.1.1"), 1));
  CHECK(EntryCoversAddress(entry("::ffff:10.0.0.0/104"), ip("10.1.1.1"), 1));
  CHECK_FALSE(EntryCoversAddress(entry("::/0"), ip("10.1.1.1"), 1));
  CHECK(EntryCoversAddress(entry("::/0"), ip("2001:db8::1"), 1));
  CHECK(EntryCoversAddress(entry("0.0.0.0/0"), ip("10.1.1.1"), 1));
  CHECK_FALSE(EntryCoversAddress(entry("0.0.0.0/0"), ip("2001:db8::1"), 1));
  CHECK(EntryCoversAddress(entry("10.0.0.0/8:443"), ip("10.1.1.1"), 443));
  CHECK_FALSE(EntryCoversAddress(entry("10.0.0.0/8:443"), ip("10.1.1.1"), 80));
  CHECK_FALSE(EntryCoversAddress(entry("a.test"), ip("10.1.1.1"), 80));
  CHECK(EntryCoversAddress(entry("172.16.0.0/12"), ip("172.31.0.1"), 1));
  CHECK_FALSE(EntryCoversAddress(entry("172.16.0.0/12"), ip("172.32.0.1"), 1));
  CHECK(EntryCoversAddress(entry("fe80::/10"), ip("febf::1"), 1));
  CHECK_FALSE(EntryCoversAddress(entry("fe80::/10"), ip("fec0::1"), 1));
}

TEST_CASE("AllowsAddressLiteral: only address entries", "[proxy][policy]") {
  Policy p = P({"api.example.com", "8.8.8.0/24:53", "::1", "0.0.0.0/0:7777"});
  CHECK(AllowsAddressLiteral(p, SA("8.8.8.8"), 53));
  CHECK_FALSE(AllowsAddressLiteral(p, SA("8.8.8.8"), 443));
  CHECK_FALSE(AllowsAddressLiteral(p, SA("8.8.4.4"), 53));
  CHECK(AllowsAddressLiteral(p, SA("::1"), 22));
  CHECK_FALSE(AllowsAddressLiteral(p, SA("1.1.1.1"), 443));  // public, but not listed
  CHECK(AllowsAddressLiteral(p, SA("1.1.1.1"), 7777));
  CHECK_FALSE(AllowsAddressLiteral(p, SA("198.18.0.1"), 7777));
  CHECK_FALSE(AllowsAddressLiteral(p, SA("8.8.8.8"), 0));
  CHECK_FALSE(AllowsAddressLiteral(Policy{}, SA("8.8.8.8"), 53));
}

TEST_CASE("MatchesDestination: names by name, literals by address", "[proxy][policy]") {
  Policy p = P({"api.example.com:443", "127.0.0.1:8443"});
  CHECK(MatchesDestination(p.allow, "API.example.com", 443));
  CHECK_FALSE(MatchesDestination(p.allow, "api.example.com", 80));
  CHECK(MatchesDestination(p.allow, "127.0.0.1", 8443));
  CHECK(MatchesDestination(p.allow, "[::ffff:127.0.0.1]", 8443));
  CHECK_FALSE(MatchesDestination(p.allow, "127.1", 8443));
  CHECK_FALSE(MatchesDestination(p.allow, "2130706433", 8443));
}

TEST_CASE("names, literals and messages", "[proxy][policy]") {
  CHECK(*NormalizeHostName("WWW.Example.COM.") == "www.example.com");
  CHECK(!NormalizeHostName("."));
  CHECK(!NormalizeHostName("a.b.c.1"));
  CHECK(*NormalizeHostName("1password.com") == "1password.com");
  CHECK(*NormalizeHostName("0xdead.beef") == "0xdead.beef");
  CHECK(!NormalizeHostName("a.0xbeef"));

  CHECK(ParseIpLiteral("1.2.3.4"));
  CHECK_FALSE(ParseIpLiteral("1.2.3"));
  CHECK_FALSE(ParseIpLiteral("01.2.3.4"));
  CHECK_FALSE(ParseIpLiteral("1.2.3.4 "));
  CHECK_FALSE(ParseIpLiteral("[1.2.3.4]"));
  CHECK_FALSE(ParseIpLiteral("fe80::1%eth0"));
  CHECK_FALSE(ParseIpLiteral("[]"));
  CHECK_FALSE(ParseIpLiteral(""));
  CHECK(FormatIp(*ParseIpLiteral("[2001:DB8:0:0::1]")) == "2001:db8::1");

  CHECK(IsIpLiteralLike("127.1"));
  CHECK(IsIpLiteralLike("[::1]"));
  CHECK(IsIpLiteralLike("0x7f000001"));
  CHECK_FALSE(IsIpLiteralLike("example.com"));

  auto ip = ParseIpLiteral("192.0.2.7");
  sockaddr_storage ss = MakeSockaddr(*ip, 8080);
  CHECK(AddressFromSockaddr(ss) == ip);
  CHECK(PortFromSockaddr(ss) == 8080);
  auto ip6 = ParseIpLiteral("2001:db8::7");
  sockaddr_storage ss6 = MakeSockaddr(*ip6, 443);
  CHECK(AddressFromSockaddr(ss6) == ip6);
  CHECK(PortFromSockaddr(ss6) == 443);

  CHECK(Printable("ok") == "ok");
  CHECK(Printable(std::string("a\0b\r\n", 5)) == "a\\x00b\\x0d\\x0a");
  CHECK(Printable("abcdef", 3) == "abc...");
}

// SNI from the first bytes of a TLS stream: fragmented records, truncation
// at every byte, malformed lengths, and a real ClientHello from OpenSSL.
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>
#include <vector>

#include "harness/proxy/sni.h"

using namespace airlock::proxy;
using Status = ClientHelloSni::Status;

namespace {

std::string B(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}
std::string U16(size_t v) { return B({static_cast<int>((v >> 8) & 0xff), static_cast<int>(v & 0xff)}); }
std::string U24(size_t v) {
  return B({static_cast<int>((v >> 16) & 0xff), static_cast<int>((v >> 8) & 0xff),
            static_cast<int>(v & 0xff)});
}
std::string Ext(uint16_t type, const std::string& data) { return U16(type) + U16(data.size()) + data; }

struct NameEntry {
  int type;
  std::string name;
};
std::string SniExt(const std::vector<NameEntry>& entries) {
  std::string list;
  for (const NameEntry& e : entries) list += B({e.type}) + U16(e.name.size()) + e.name;
  return Ext(0, U16(list.size()) + list);
}

// A ClientHello body: TLS 1.2 legacy_version, random, 32-byte session id,
// two suites, null compression, then the extensions block if any.
std::string Body(const std::string& extensions, bool with_block = true) {
  std::string b = B({3, 3}) + std::string(32, 'R') + B({32}) + std::string(32, 'S') + U16(4) +
                  B({0x13, 0x01, 0x13, 0x02}) + B({1, 0});
  if (with_block) b += U16(extensions.size()) + extensions;
  return b;
}
std::string Handshake(const std::string& body, int type = 1) { return B({type}) + U24(body.size()) + body; }
std::string Record(const std::string& payload, int type = 22) {
  return B({type, 3, 1}) + U16(payload.size()) + payload;
}
// The handshake bytes cut into records of `size` bytes each.
std::string Fragmented(const std::string& hs, size_t size) {
  std::string out;
  for (size_t i = 0; i < hs.size(); i += size) out += Record(hs.substr(i, size));
  return out;
}

std::string Hello(const std::string& sni) {
  return Handshake(Body(Ext(0x000a, U16(2) + B({0, 0x1d})) + SniExt({{0, sni}}) + Ext(0x002b, B({2, 3, 4}))));
}

ClientHelloSni Parse(const std::string& bytes) { return ParseClientHelloSni(bytes); }

std::string StatusName(Status s) {
  switch (s) {
    case Status::kNeedMore: return "need-more";
    case Status::kNotTls: return "not-tls";
    case Status::kMalformed: return "malformed";
    case Status::kComplete: return "complete";
  }
  return "?";
}

// A real ClientHello from OpenSSL's client for `host`.
std::string OpenSslClientHello(const char* host) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  REQUIRE(ctx);
  SSL* ssl = SSL_new(ctx);
  REQUIRE(ssl);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (host) REQUIRE(SSL_set_tlsext_host_name(ssl, host) == 1);
  SSL_set_connect_state(ssl);
  CHECK(SSL_do_handshake(ssl) <= 0);  // wants the server's answer
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  std::string out(data, static_cast<size_t>(n));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

}  // namespace

TEST_CASE("SNI: one record, complete", "[proxy][sni]") {
  ClientHelloSni r = Parse(Record(Hello("api.example.com")));
  REQUIRE(StatusName(r.status) == "complete");
  REQUIRE(r.server_name);
  CHECK(*r.server_name == "api.example.com");
  CHECK_FALSE(r.encrypted_client_hello);
  // Application data after the ClientHello is ignored.
  r = Parse(Record(Hello("api.example.com")) + Record("xyz", 23));
  CHECK(StatusName(r.status) == "complete");
  CHECK(r.server_name == "api.example.com");
}

TEST_CASE("SNI: absent", "[proxy][sni]") {
  ClientHelloSni r = Parse(Record(Handshake(Body(Ext(0x000a, U16(2) + B({0, 0x1d}))))));
  CHECK(StatusName(r.status) == "complete");
  CHECK_FALSE(r.server_name);
  r = Parse(Record(Handshake(Body("", false))));  // no extensions block at all
  CHECK(StatusName(r.status) == "complete");
  CHECK_FALSE(r.server_name);
  // Only entries of other name types: no host name.
  r = Parse(Record(Handshake(Body(SniExt({{1, "opaque"}})))));
  CHECK(StatusName(r.status) == "complete");
  CHECK_FALSE(r.server_name);
  // host_name taken among other types.
  r = Parse(Record(Handshake(Body(SniExt({{7, "x"}, {0, "b.test"}, {9, "yy"}})))));
  CHECK(StatusName(r.status) == "complete");
  CHECK(r.server_name == "b.test");
}

TEST_CASE("SNI: split across records and truncated at every byte", "[proxy][sni]") {
  std::string hs = Hello("split.example.test");
  for (size_t size : {1u, 2u, 3u, 4u, 5u, 7u, 40u, 100u}) {
    std::string stream = Fragmented(hs, size);
    INFO("fragment size " << size);
    ClientHelloSni r = Parse(stream);
    REQUIRE(StatusName(r.status) == "complete");
    CHECK(r.server_name == "split.example.test");
    for (size_t i = 0; i < stream.size(); ++i) {
      ClientHelloSni p = Parse(stream.substr(0, i));
      if (p.status != Status::kNeedMore) {
        FAIL("prefix " << i << ": " << StatusName(p.status) << " " << p.error);
      }
    }
  }
}

TEST_CASE("SNI: a real OpenSSL ClientHello", "[proxy][sni]") {
  std::string stream = OpenSslClientHello("real.example.com");
  REQUIRE(stream.size() > 5);
  ClientHelloSni r = Parse(stream);
  REQUIRE(StatusName(r.status) == "complete");
  CHECK(r.server_name == "real.example.com");
  for (size_t i = 0; i < stream.size(); ++i) {
    REQUIRE(Parse(stream.substr(0, i)).status == Status::kNeedMore);
  }
  // Its handshake re-cut into records of 50 bytes.
  size_t len = (static_cast<uint8_t>(stream[3]) << 8) | static_cast<uint8_t>(stream[4]);
  std::string hs = stream.substr(5, len);
  r = Parse(Fragmented(hs, 50));
  CHECK(StatusName(r.status) == "complete");
  CHECK(r.server_name == "real.example.com");

  r = Parse(OpenSslClientHello(nullptr));
  CHECK(StatusName(r.status) == "complete");
  CHECK_FALSE(r.server_name);
}

TEST_CASE("SNI: not TLS", "[proxy][sni]") {
  CHECK(StatusName(Parse("").status) == "need-more");
  CHECK(StatusName(Parse(B({0x16})).status) == "need-more");
  CHECK(StatusName(Parse(B({0x16, 3})).status) == "need-more");
  CHECK(StatusName(Parse("GET / HTTP/1.1\r\n\r\n").status) == "not-tls");
  CHECK(StatusName(Parse("G").status) == "not-tls");
  CHECK(StatusName(Parse(B({0x80, 0x2e, 0x01, 0x03, 0x01})).status) == "not-tls");  // SSLv2 hello
  CHECK(StatusName(Parse(B({0x16, 0x02})).status) == "not-tls");
  CHECK(StatusName(Parse(Record("xx", 21)).status) == "not-tls");  // an alert first
  CHECK(StatusName(Parse(B({0x17, 3, 3, 0, 1, 0})).status) == "not-tls");
}

TEST_CASE("SNI: malformed", "[proxy][sni]") {
  const std::string ok_ext = SniExt({{0, "a.test"}});
  const std::string valid_body = Body(ok_ext);
  std::string body_trailing = valid_body + "X";
  std::string ext_mismatch = Body("", false) + U16(ok_ext.size() + 1) + ok_ext;
  std::string hs_long = Handshake(valid_body);
  std::string alert_inside = Record(hs_long.substr(0, 10)) + Record(B({2, 40}), 21) + Record(hs_long.substr(10));

  const std::pair<std::string, const char*> cases[] = {
      {Record(""), "empty handshake record"},
      {B({22, 3, 1, 0x40, 0x01}), "longer than 2^14"},
      {Record(Handshake(valid_body, 2)), "not a ClientHello"},
      {Record(B({1}) + U24(kMaxClientHelloBytes + 1)), "too large"},
      {alert_inside, "non-handshake record"},
      {Record(hs_long.substr(0, 10)) + B({22, 2}), "record version"},
      {Record(Handshake(body_trailing)), "extensions length does not match"},
      {Record(Handshake(ext_mismatch)), "extensions length does not match"},
      {Record(Handshake(Body(U16(0) + U16(100) + "abc"))), "extension runs past"},
      {Record(Handshake(Body(U16(0)))), "extension runs past"},
      {Record(Handshake(Body(Ext(10, "ab") + Ext(10, "cd")))), "twice"},
      {Record(Handshake(Body(ok_ext + ok_ext))), "twice"},
      {Record(Handshake(Body(Ext(0, "")))), "list length"},
      {Record(Handshake(Body(Ext(0, U16(10) + B({0}) + U16(6) + "a.test")))), "list length"},
      {Record(Handshake(Body(Ext(0, U16(0))))), "list length"},
      {Record(Handshake(Body(Ext(0, U16(9) + B({0}) + U16(60) + "a.test")))), "entry runs past"},
      {Record(Handshake(Body(SniExt({{0, "a.test"}, {0, "b.test"}})))), "more than one host_name"},
      {Record(Handshake(Body(SniExt({{0, ""}})))), "host_name of length 0"},
      {Record(Handshake(Body(SniExt({{0, std::string(256, 'a')}})))), "host_name of length 256"},
      {Record(Handshake(Body(SniExt({{0, std::string("a.test\0.evil", 12)}})))), "invalid character"},
      {Record(Handshake(Body(SniExt({{0, "a test"}})))), "invalid character"},
      {Record(Handshake(Body(SniExt({{0, "a.test/x"}})))), "invalid character"},
      {Record(Handshake(Body(SniExt({{0, "a%2etest"}})))), "invalid character"},
      {Record(Handshake(B({2, 3}) + valid_body.substr(2))), "legacy_version"},
      {Record(Handshake(valid_body.substr(0, 20))), "truncated random"},
      {Record(Handshake(B({3, 3}) + std::string(32, 'R') + B({33}) + std::string(33, 'S') + U16(2) +
                        B({0x13, 0x01, 1, 0}))),
       "legacy_session_id"},
      {Record(Handshake(B({3, 3}) + std::string(32, 'R') + B({0}) + U16(3) + B({0x13, 0x01, 0x13, 1, 0}))),
       "cipher_suites"},
      {Record(Handshake(B({3, 3}) + std::string(32, 'R') + B({0}) + U16(0) + B({1, 0}))), "cipher_suites"},
      {Record(Handshake(B({3, 3}) + std::string(32, 'R') + B({0}) + U16(2) + B({0x13, 0x01, 0}))),
       "compression"},
      {Record(Handshake(B({3, 3}) + std::string(32, 'R') + B({0}) + U16(2) + B({0x13, 0x01, 5, 0}))),
       "compression"},
  };
  for (const auto& [bytes, why] : cases) {
    INFO(why);
    ClientHelloSni r = Parse(bytes);
    CHECK(StatusName(r.status) == "malformed");
    CHECK_THAT(r.error, Catch::Contains(why));
    CHECK_FALSE(r.server_name);
  }
}

TEST_CASE("SNI: encrypted client hello is reported", "[proxy][sni]") {
  ClientHelloSni r = Parse(Record(Handshake(Body(SniExt({{0, "public.example"}}) + Ext(0xfe0d, "ech")))));
  CHECK(StatusName(r.status) == "complete");
  CHECK(r.server_name == "public.example");
  CHECK(r.encrypted_client_hello);
}

TEST_CASE("SniMatchesHost", "[proxy][sni]") {
  using O = std::optional<std::string>;
  CHECK(SniMatchesHost(O("api.example.com"), "api.example.com"));
  CHECK(SniMatchesHost(O("API.Example.com."), "api.example.com"));
  CHECK_FALSE(SniMatchesHost(O("evil.test"), "api.example.com"));
  CHECK_FALSE(SniMatchesHost(O("api.example.com.evil.test"), "api.example.com"));
  CHECK_FALSE(SniMatchesHost(std::nullopt, "api.example.com"));
  CHECK(SniMatchesHost(std::nullopt, "127.0.0.1"));
  CHECK(SniMatchesHost(std::nullopt, "::1"));
  CHECK(SniMatchesHost(O("127.0.0.1"), "127.0.0.1"));
  CHECK_FALSE(SniMatchesHost(O("127.0.0.2"), "127.0.0.1"));
  CHECK_FALSE(SniMatchesHost(O("2130706433"), "127.0.0.1"));
  CHECK_FALSE(SniMatchesHost(O("127.1"), "127.1"));
  CHECK_FALSE(SniMatchesHost(O("api.example.com"), "127.0.0.1"));
  CHECK_FALSE(SniMatchesHost(O("127.0.0.1"), "api.example.com"));
  CHECK_FALSE(SniMatchesHost(O("a..b"), "a..b"));
}

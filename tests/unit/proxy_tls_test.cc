// The egress proxy's TLS: the per-daemon CA on disk, minted leaves checked
// with OpenSSL's own verifier, and real handshakes over socketpairs (a
// thread per side).
#include "harness/proxy/tls.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace airlock;
using namespace airlock::proxy;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-tls-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Put(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

mode_t ModeOf(const std::string& path) {
  struct stat st;
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Sets the umask for a scope.
struct Umask {
  mode_t old;
  explicit Umask(mode_t m) : old(umask(m)) {}
  ~Umask() { umask(old); }
};

CertAuthority NewCa(const std::string& dir) {
  auto ca = CertAuthority::LoadOrCreate(dir);
  INFO((ca ? "" : ca.error().Message()));
  REQUIRE(ca.has_value());
  return std::move(*ca);
}

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

X509Ptr ParsePem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  REQUIRE(x != nullptr);
  return X509Ptr(x);
}

std::string CommonName(X509* x) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
  return buf;
}

bool ExtensionCritical(X509* x, int nid) {
  int i = X509_get_ext_by_NID(x, nid, -1);
  REQUIRE(i >= 0);
  return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

// Seconds from now to `t` (negative: in the past).
long SecondsFromNow(const ASN1_TIME* t) {
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, nullptr, t) == 1);
  return days * 86400L + secs;
}

// Verifies `leaf` against a store holding only `ca`, as a TLS server
// certificate for `host` (or `ip`). Returns the X509_V_* result.
int VerifyLeaf(X509* ca, X509* leaf, const std::string& host, const std::string& ip = "") {
  X509_STORE* store = X509_STORE_new();
  REQUIRE(X509_STORE_add_cert(store, ca) == 1);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  REQUIRE(X509_STORE_CTX_init(ctx, store, leaf, nullptr) == 1);
  REQUIRE(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) == 1);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  if (!host.empty()) REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1);
  if (!ip.empty()) REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str()) == 1);
  int ok = X509_verify_cert(ctx);
  int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  ERR_clear_error();
  return ok == 1 ? X509_V_OK : err;
}

X509* LeafOf(const std::shared_ptr<SSL_CTX>& ctx) {
  X509* leaf = SSL_CTX_get0_certificate(ctx.get());
  REQUIRE(leaf != nullptr);
  return leaf;
}

// What one side of a handshake saw; `error` empty when it all went well.
struct Outcome {
  std::string error;
  std::string received;
  std::string sni;
  std::string alpn;
  bool truncated = false;
};

// Runs `server` and `client` on the two ends of a socketpair, each on its
// own thread with SIGPIPE blocked (a write to a peer that gave up returns
// EPIPE instead of killing the test binary); each end is closed when its
// side returns, so a side that fails never leaves the other waiting.
std::pair<Outcome, Outcome> RunPair(const std::function<Outcome(int)>& server,
                                    const std::function<Outcome(int)>& client) {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  timeval tv{10, 0};  // a hang becomes a timeout error, not a stuck test
  for (int fd : sv) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  Outcome s, c;
  auto run = [](const std::function<Outcome(int)>& side, int fd, Outcome* out) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    *out = side(fd);
    close(fd);
  };
  std::thread ts(run, std::cref(server), sv[0], &s);
  std::thread tc(run, std::cref(client), sv[1], &c);
  ts.join();
  tc.join();
  return {s, c};
}

// Reads exactly `n` bytes (or to EOF).
std::string ReadN(TlsStream& t, size_t n, std::string* error) {
  std::string out;
  char buf[256];
  while (out.size() < n) {
    auto r = t.Read(buf, std::min(sizeof buf, n - out.size()));
    if (!r) {
      *error = r.error().Message();
      break;
    }
    if (*r == 0) break;
    out.append(buf, *r);
  }
  return out;
}

// The server side used by most tests: accept, read "ping", answer "pong",
// then read to the end to see how the client closed.
std::function<Outcome(int)> PingPongServer(std::shared_ptr<SSL_CTX> ctx) {
  return [ctx](int fd) {
    Outcome o;
    auto t = TlsStream::Accept(ctx.get(), fd);
    if (!t) return Outcome{t.error().Message()};
    o.sni = t->ServerName();
    o.alpn = t->Alpn();
    o.received = ReadN(*t, 4, &o.error);
    if (!o.error.empty()) return o;
    if (auto w = t->WriteAll("pong"); !w) return Outcome{w.error().Message()};
    char c;
    auto r = t->Read(&c, 1);
    if (!r) return Outcome{r.error().Message()};
    if (*r != 0) return Outcome{"expected EOF"};
    o.truncated = t->Truncated();
    t->Shutdown();
    return o;
  };
}

// The proxy's upstream side: TlsStream::Connect, "ping", expect "pong", then
// close_notify (or, with `abrupt`, just close the socket).
std::function<Outcome(int)> PingPongClient(std::shared_ptr<SSL_CTX> ctx, std::string host,
                                           bool abrupt = false) {
  return [ctx, host, abrupt](int fd) {
    Outcome o;
    auto t = TlsStream::Connect(ctx.get(), fd, host);
    if (!t) return Outcome{t.error().Message()};
    o.alpn = t->Alpn();
    if (auto w = t->WriteAll("ping"); !w) return Outcome{w.error().Message()};
    o.received = ReadN(*t, 4, &o.error);
    if (!abrupt) t->Shutdown();
    return o;
  };
}

// A client that doesn't verify anything, with a chosen SNI, ALPN offer and
// maximum version: the tests' stand-in for whatever runs in a sandbox.
std::function<Outcome(int)> RawClient(std::optional<std::string> sni, std::string alpn_wire,
                                      int max_version = 0) {
  return [=](int fd) {
    Outcome o;
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (max_version) SSL_CTX_set_max_proto_version(ctx, max_version);
    if (!alpn_wire.empty())
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(alpn_wire.data()),
                              static_cast<unsigned>(alpn_wire.size()));
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sni) SSL_set_tlsext_host_name(ssl, sni->c_str());
    if (SSL_connect(ssl) != 1) {
      o.error = "handshake: ";
      while (unsigned long e = ERR_get_error()) {
        const char* reason = ERR_reason_error_string(e);
        o.error += std::string(reason ? reason : "?") + "; ";
      }
    } else {
      const unsigned char* p = nullptr;
      unsigned len = 0;
      SSL_get0_alpn_selected(ssl, &p, &len);
      if (p) o.alpn.assign(reinterpret_cast<const char*>(p), len);
      SSL_write(ssl, "ping", 4);
      char buf[4];
      int n = SSL_read(ssl, buf, 4);
      if (n > 0) o.received.assign(buf, n);
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return o;
  };
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("LoadOrCreate makes a private P-256 key and a CA certificate", "[tls]") {
  TempDir t;
  std::string dir = t.path + "/ca";
  std::optional<CertAuthority> ca;
  {
    Umask u(0077);  // the certificate must still come out 0644
    ca.emplace(NewCa(dir));
  }
  std::string key_path = dir + "/ca.key", cert_path = dir + "/ca.crt";
  CHECK(ModeOf(dir) == 0700);
  CHECK(ModeOf(key_path) == 0600);
  CHECK(ModeOf(cert_path) == 0644);
  struct stat st;
  REQUIRE(stat(key_path.c_str(), &st) == 0);
  CHECK(st.st_uid == geteuid());
  std::set<std::string> names;
  for (auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename());
  CHECK(names == std::set<std::string>{"ca.crt", "ca.key"});  // no temporaries left

  std::string pem = Slurp(cert_path);
  CHECK(pem == ca->CertPem());
  X509Ptr cert = ParsePem(pem);

  int crit = -1;
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert.get(), NID_basic_constraints, &crit, nullptr));
  REQUIRE(bc != nullptr);
  CHECK(bc->ca != 0);
  REQUIRE(bc->pathlen != nullptr);
  CHECK(ASN1_INTEGER_get(bc->pathlen) == 0);
  CHECK(crit == 1);
  BASIC_CONSTRAINTS_free(bc);
  CHECK(X509_get_key_usage(cert.get()) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  CHECK(ExtensionCritical(cert.get(), NID_key_usage));

  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string cn = CommonName(cert.get());
  CHECK(cn.rfind("airlock egress CA (", 0) == 0);
  CHECK(cn.back() == ')');
  CHECK(cn.size() <= 64);
  CHECK(Contains(cn, std::string(host).substr(0, 10)));
  CHECK(X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())) == 0);
  CHECK(X509_verify(cert.get(), X509_get0_pubkey(cert.get())) == 1);  // self-signed

  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr);
  CHECK(BN_num_bits(serial) > 64);  // random 128 bits: fewer than 65 has odds of 2^-64
  CHECK(BN_num_bits(serial) <= 128);
  CHECK(!BN_is_negative(serial));
  BN_free(serial);

  long not_before = SecondsFromNow(X509_get0_notBefore(cert.get()));
  long not_after = SecondsFromNow(X509_get0_notAfter(cert.get()));
  CHECK(not_before <= -3600 + 60);
  CHECK(not_before >= -3600 - 60);
  CHECK(not_after >= 3649L * 86400);
  CHECK(not_after <= 3651L * 86400);

  std::string key_pem = Slurp(key_path);
  CHECK(key_pem == ca->KeyPem());
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  REQUIRE(key != nullptr);
  CHECK(EVP_PKEY_get_base_id(key) == EVP_PKEY_EC);
  char group[64] = {};
  REQUIRE(EVP_PKEY_get_group_name(key, group, sizeof group, nullptr) == 1);
  CHECK(std::string(group) == "prime256v1");
  CHECK(X509_check_private_key(cert.get(), key) == 1);
  EVP_PKEY_free(key);
}

TEST_CASE("LoadOrCreate twice gives the same CA; FromPem takes it over a socket", "[tls]") {
  TempDir t;
  CertAuthority first = NewCa(t.path);
  CertAuthority second = NewCa(t.path);
  CHECK(first.CertPem() == second.CertPem());
  CHECK(first.KeyPem() == second.KeyPem());

  auto copy = CertAuthority::FromPem(first.CertPem(), first.KeyPem());
  REQUIRE(copy.has_value());
  CHECK(copy->CertPem() == first.CertPem());

  TempDir other;
  CertAuthority stranger = NewCa(other.path);
  auto mixed = CertAuthority::FromPem(first.CertPem(), stranger.KeyPem());
  REQUIRE(!mixed.has_value());
  CHECK(Contains(mixed.error().Message(), "does not match"));
  auto garbage = CertAuthority::FromPem("not a certificate", first.KeyPem());
  REQUIRE(!garbage.has_value());
  CHECK(Contains(garbage.error().Message(), "ca_cert"));
  auto no_key = CertAuthority::FromPem(first.CertPem(), first.CertPem());
  REQUIRE(!no_key.has_value());
  CHECK(Contains(no_key.error().Message(), "ca_key"));
}

TEST_CASE("LoadOrCreate refuses a key others could read or replace", "[tls]") {
  TempDir t;
  std::string key_path = t.path + "/ca.key";
  std::string key_pem = NewCa(t.path).KeyPem();

  auto refused = [&](const std::string& why) {
    auto ca = CertAuthority::LoadOrCreate(t.path);
    REQUIRE(!ca.has_value());
    INFO(ca.error().Message());
    CHECK(Contains(ca.error().Message(), why));
    CHECK(Contains(ca.error().Message(), key_path));
  };
  SECTION("group-readable") {
    REQUIRE(chmod(key_path.c_str(), 0640) == 0);
    refused("is group-accessible (mode 0640)");
  }
  SECTION("other-readable") {
    REQUIRE(chmod(key_path.c_str(), 0604) == 0);
    refused("is other-accessible (mode 0604)");
  }
  SECTION("world-readable") {
    REQUIRE(chmod(key_path.c_str(), 0644) == 0);
    refused("group- and other-accessible");
  }
  SECTION("a symlink") {
    REQUIRE(rename(key_path.c_str(), (t.path + "/real.key").c_str()) == 0);
    REQUIRE(symlink("real.key", key_path.c_str()) == 0);
    refused("symlink");
  }
  SECTION("owned by someone else") {
    if (geteuid() != 0) {
      WARN("SKIPPED: chown to another uid needs root");
      return;
    }
    REQUIRE(chown(key_path.c_str(), 12345, 12345) == 0);
    refused("owned by uid 12345");
  }
  SECTION("a certificate of another CA beside the key") {
    TempDir other;
    Put(t.path + "/ca.crt", NewCa(other.path).CertPem());
    auto ca = CertAuthority::LoadOrCreate(t.path);
    REQUIRE(!ca.has_value());
    CHECK(Contains(ca.error().Message(), "does not match"));
  }
  SECTION("a missing certificate is made again from the key") {
    REQUIRE(unlink((t.path + "/ca.crt").c_str()) == 0);
    CertAuthority ca = NewCa(t.path);
    CHECK(ca.KeyPem() == key_pem);
    CHECK(ModeOf(t.path + "/ca.crt") == 0644);
  }
}

TEST_CASE("a minted leaf verifies against the CA alone", "[tls]") {
  TempDir t;
  CertAuthority ca = NewCa(t.path);
  X509Ptr ca_cert = ParsePem(ca.CertPem());

  auto ctx = ca.ServerContextFor("api.test");
  REQUIRE(ctx.has_value());
  CHECK(SSL_CTX_get_min_proto_version(ctx->get()) == TLS1_2_VERSION);
  X509* leaf = LeafOf(*ctx);
  CHECK(VerifyLeaf(ca_cert.get(), leaf, "api.test") == X509_V_OK);
  CHECK(VerifyLeaf(ca_cert.get(), leaf, "other.test") == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(CommonName(leaf) == "api.test");
  CHECK(X509_check_ca(leaf) == 0);
  CHECK((X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER) != 0);
  CHECK(X509_check_host(leaf, "api.test", 0, 0, nullptr) == 1);
  long not_after = SecondsFromNow(X509_get0_notAfter(leaf));
  CHECK(not_after >= 29L * 86400);
  CHECK(not_after <= 30L * 86400 + 60);
  CHECK(SecondsFromNow(X509_get0_notBefore(leaf)) <= -3600 + 60);

  // Another CA's leaf does not verify with this one.
  TempDir other;
  CertAuthority stranger = NewCa(other.path);
  auto foreign = stranger.ServerContextFor("api.test");
  REQUIRE(foreign.has_value());
  CHECK(VerifyLeaf(ca_cert.get(), LeafOf(*foreign), "api.test") ==
        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

  SECTION("IP literals get an IP SAN") {
    auto v4 = ca.ServerContextFor("127.0.0.1");
    REQUIRE(v4.has_value());
    CHECK(VerifyLeaf(ca_cert.get(), LeafOf(*v4), "", "127.0.0.1") == X509_V_OK);
    CHECK(VerifyLeaf(ca_cert.get(), LeafOf(*v4), "", "127.0.0.2") ==
          X509_V_ERR_IP_ADDRESS_MISMATCH);
    auto v6 = ca.ServerContextFor("[::1]");
    REQUIRE(v6.has_value());
    CHECK(VerifyLeaf(ca_cert.get(), LeafOf(*v6), "", "::1") == X509_V_OK);
    auto* san = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(LeafOf(*v6), NID_subject_alt_name, nullptr, nullptr));
    REQUIRE(san != nullptr);
    REQUIRE(sk_GENERAL_NAME_num(san) == 1);
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(san, 0);
    CHECK(gn->type == GEN_IPADD);  // an address, not a DNS name "::1"
    CHECK(ASN1_STRING_length(gn->d.iPAddress) == 16);
    GENERAL_NAMES_free(san);
  }
  SECTION("names are case-insensitive and the trailing dot is ignored") {
    auto same = ca.ServerContextFor("API.Test.");
    REQUIRE(same.has_value());
    CHECK(same->get() == ctx->get());
  }
  SECTION("hosts that are not names are refused, and named") {
    for (std::string bad : {std::string(""), std::string("a,b.test"), std::string("*.test"),
                            std::string("a..test"), std::string("[api.test]"),
                            std::string("a\0b", 3), std::string(254, 'a'),
                            std::string(64, 'a') + ".test", std::string("api.test/x")}) {
      auto r = ca.ServerContextFor(bad);
      INFO(bad);
      REQUIRE(!r.has_value());
      CHECK(r.error().op == "tls host");
    }
  }
}

TEST_CASE("a handshake with a minted leaf carries data both ways", "[tls]") {
  TempDir t;
  CertAuthority ca = NewCa(t.path);
  auto server_ctx = ca.ServerContextFor("api.test");
  REQUIRE(server_ctx.has_value());
  auto client_ctx = UpstreamContext(t.path + "/ca.crt");
  REQUIRE(client_ctx.has_value());

  SECTION("close_notify ends the stream cleanly") {
    auto [s, c] = RunPair(PingPongServer(*server_ctx), PingPongClient(*client_ctx, "api.test"));
    INFO("server: " << s.error << " client: " << c.error);
    REQUIRE(s.error.empty());
    REQUIRE(c.error.empty());
    CHECK(s.received == "ping");
    CHECK(c.received == "pong");
    CHECK(s.sni == "api.test");
    CHECK(s.alpn == "http/1.1");
    CHECK(c.alpn == "http/1.1");
    CHECK(!s.truncated);
  }
  SECTION("a TCP EOF without close_notify is EOF, marked truncated") {
    auto [s, c] = RunPair(PingPongServer(*server_ctx),
                          PingPongClient(*client_ctx, "api.test", /*abrupt=*/true));
    INFO("server: " << s.error << " client: " << c.error);
    REQUIRE(s.error.empty());
    REQUIRE(c.error.empty());
    CHECK(s.truncated);
  }
  SECTION("the upstream context also takes the CA as PEM") {
    auto from_pem = UpstreamContextFromPem(ca.CertPem());
    REQUIRE(from_pem.has_value());
    auto [s, c] = RunPair(PingPongServer(*server_ctx), PingPongClient(*from_pem, "api.test"));
    CHECK(s.error.empty());
    CHECK(c.error.empty());
    CHECK(c.received == "pong");
  }
  SECTION("a client checking another name fails and says why") {
    auto [s, c] = RunPair(PingPongServer(*server_ctx), PingPongClient(*client_ctx, "other.test"));
    CHECK(Contains(c.error, "upstream certificate for other.test: hostname mismatch"));
    CHECK(!s.error.empty());
  }
}

TEST_CASE("Connect refuses a server whose certificate it doesn't trust", "[tls]") {
  TempDir t, other;
  CertAuthority ca = NewCa(t.path);
  CertAuthority stranger = NewCa(other.path);
  auto server_ctx = stranger.ServerContextFor("api.test");
  REQUIRE(server_ctx.has_value());

  SECTION("trusting a file with another CA") {
    auto client_ctx = UpstreamContext(t.path + "/ca.crt");
    REQUIRE(client_ctx.has_value());
    auto [s, c] = RunPair(PingPongServer(*server_ctx), PingPongClient(*client_ctx, "api.test"));
    CHECK(c.error == "tls connect: upstream certificate for api.test: unable to get local "
                     "issuer certificate");
    CHECK(!s.error.empty());
  }
  SECTION("trusting the system's CAs") {
    auto client_ctx = UpstreamContext("");
    REQUIRE(client_ctx.has_value());
    auto [s, c] = RunPair(PingPongServer(*server_ctx), PingPongClient(*client_ctx, "api.test"));
    CHECK(Contains(c.error, "upstream certificate for api.test: unable to get local issuer"));
  }
  SECTION("a bad CA file is an error naming it") {
    auto missing = UpstreamContext(t.path + "/nope.pem");
    REQUIRE(!missing.has_value());
    CHECK(Contains(missing.error().Message(), t.path + "/nope.pem"));
    auto garbage = UpstreamContextFromPem("-----BEGIN CERTIFICATE-----\nAAAA\n");
    REQUIRE(!garbage.has_value());
  }
}

TEST_CASE("the server speaks only HTTP/1.1 and records the client's SNI", "[tls]") {
  TempDir t;
  CertAuthority ca = NewCa(t.path);
  auto ctx = ca.ServerContextFor("api.test");
  REQUIRE(ctx.has_value());

  SECTION("a client offering only h2 fails the handshake") {
    auto [s, c] = RunPair(PingPongServer(*ctx), RawClient("api.test", std::string("\x02h2")));
    CHECK(Contains(s.error, "no application protocol"));
    CHECK(Contains(c.error, "no application protocol"));
  }
  SECTION("a client offering h2 and http/1.1 gets http/1.1") {
    auto [s, c] = RunPair(PingPongServer(*ctx),
                          RawClient("api.test", std::string("\x02h2\x08http/1.1")));
    REQUIRE(s.error.empty());
    CHECK(c.alpn == "http/1.1");
    CHECK(s.alpn == "http/1.1");
  }
  SECTION("a client offering no ALPN still talks (HTTP/1.1 by default)") {
    auto [s, c] = RunPair(PingPongServer(*ctx), RawClient("api.test", ""));
    REQUIRE(s.error.empty());
    CHECK(s.alpn.empty());
    CHECK(c.received == "pong");
  }
  SECTION("an SNI that differs from the host is recorded as sent") {
    auto [s, c] = RunPair(PingPongServer(*ctx), RawClient("evil.test", "", TLS1_2_VERSION));
    REQUIRE(s.error.empty());
    CHECK(s.sni == "evil.test");
  }
  SECTION("no SNI at all") {
    auto [s, c] = RunPair(PingPongServer(*ctx), RawClient(std::nullopt, ""));
    REQUIRE(s.error.empty());
    CHECK(s.sni.empty());
  }
}

TEST_CASE("ServerContextFor caches per host, bounded", "[tls]") {
  TempDir t;
  CertAuthority ca = NewCa(t.path);
  auto a = ca.ServerContextFor("a.test");
  auto a2 = ca.ServerContextFor("a.test");
  auto b = ca.ServerContextFor("b.test");
  REQUIRE((a && a2 && b));
  CHECK(a->get() == a2->get());
  CHECK(a->get() != b->get());
  CHECK(ca.CachedContexts() == 2);

  ca.SetCacheCapacity(2);
  auto touch_a = ca.ServerContextFor("a.test");  // a is now the most recent
  auto c = ca.ServerContextFor("c.test");        // evicts b
  REQUIRE((touch_a && c));
  CHECK(touch_a->get() == a->get());
  CHECK(ca.CachedContexts() == 2);
  auto a3 = ca.ServerContextFor("a.test");
  auto b2 = ca.ServerContextFor("b.test");  // minted again; evicts c
  REQUIRE((a3 && b2));
  CHECK(a3->get() == a->get());
  CHECK(b2->get() != b->get());
  auto c2 = ca.ServerContextFor("c.test");
  REQUIRE(c2.has_value());
  CHECK(c2->get() != c->get());

  SECTION("threads asking for one host all get the same context") {
    ca.SetCacheCapacity(kServerContextCacheSize);
    std::vector<SSL_CTX*> got(8);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < got.size(); ++i)
      threads.emplace_back([&, i] {
        auto r = ca.ServerContextFor("many.test");
        got[i] = r ? r->get() : nullptr;
      });
    for (auto& th : threads) th.join();
    CHECK(got[0] != nullptr);
    for (SSL_CTX* p : got) CHECK(p == got[0]);
  }
}

TEST_CASE("WriteTrustBundle appends the CA to the system's bundle", "[tls]") {
  TempDir t, other;
  CertAuthority ca = NewCa(t.path);
  std::string system_pem = NewCa(other.path).CertPem();
  std::string system = t.path + "/system.crt";
  Put(system, system_pem.substr(0, system_pem.size() - 1));  // no final newline
  std::string bundle = t.path + "/bundle.crt";
  Put(bundle, "old");
  struct stat st;
  REQUIRE(stat(bundle.c_str(), &st) == 0);
  ino_t old_inode = st.st_ino;

  {
    Umask u(0077);
    auto r = WriteTrustBundle(bundle, system, ca);
    INFO((r ? "" : r.error().Message()));
    REQUIRE(r.has_value());
  }
  CHECK(ModeOf(bundle) == 0644);
  REQUIRE(stat(bundle.c_str(), &st) == 0);
  CHECK(st.st_ino != old_inode);  // replaced by rename, not rewritten in place
  std::string text = Slurp(bundle);
  CHECK(text.rfind(system_pem, 0) == 0);
  CHECK(text.size() >= ca.CertPem().size());
  CHECK(text.substr(text.size() - ca.CertPem().size()) == ca.CertPem());

  // OpenSSL reads both certificates from it.
  X509_STORE* store = X509_STORE_new();
  REQUIRE(X509_STORE_load_file(store, bundle.c_str()) == 1);
  STACK_OF(X509_OBJECT)* objs = X509_STORE_get0_objects(store);
  CHECK(sk_X509_OBJECT_num(objs) == 2);
  X509_STORE_free(store);

  SECTION("a missing system bundle leaves only ours") {
    REQUIRE(WriteTrustBundle(bundle, t.path + "/absent.crt", ca).has_value());
    CHECK(Slurp(bundle) == "# airlock egress CA\n" + ca.CertPem());
  }
  SECTION("an unwritable place is an error naming it") {
    auto r = WriteTrustBundle(t.path + "/no/such/dir/bundle.crt", system, ca);
    REQUIRE(!r.has_value());
    CHECK(Contains(r.error().Message(), t.path + "/no/such/dir"));
  }
}

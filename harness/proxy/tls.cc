#include "harness/proxy/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "runtime/core/unique_fd.h"

namespace airlock::proxy {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;

constexpr long kHour = 3600;
constexpr long kDay = 24 * kHour;
constexpr int kCaValidityDays = 3650;
constexpr int kLeafValidityDays = 30;
// A cached leaf is replaced when half its validity has passed, so a context
// kept hot in the LRU never serves an expired certificate.
constexpr time_t kRemintAfter = kLeafValidityDays * kDay / 2;
constexpr size_t kMaxKeyFile = 64 * 1024;
constexpr size_t kMaxBundle = 64 * 1024 * 1024;
constexpr size_t kMaxCommonName = 64;  // ub-common-name, RFC 5280

// Drains this thread's OpenSSL error queue into one line.
std::string SslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    const char* reason = ERR_reason_error_string(e);
    if (!reason) reason = ERR_error_string(e, buf);
    out += (out.empty() ? "" : "; ") + std::string(reason);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

std::unexpected<Error> OsslFail(std::string op, std::string detail) {
  return Fail(std::move(op), detail + ": " + SslErrors());
}

// Attacker-controlled text (a CONNECT host, an SNI) made safe for messages.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 256)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 256) out += "...";
  return out;
}

// No passphrase prompt on a terminal for an encrypted PEM: refuse instead.
int NoPassword(char*, int, int, void*) { return 0; }

struct HostName {
  std::string name;  // lower-case DNS name, or canonical address text
  bool is_ip;
};

// A DNS name or an IP literal, normalized: lower case, no trailing dot,
// IPv6 without brackets and in inet_ntop form.
Result<HostName> NormalizeHost(std::string_view host) {
  std::string_view h = host;
  bool bracketed = h.size() >= 2 && h.front() == '[' && h.back() == ']';
  if (bracketed) h = h.substr(1, h.size() - 2);
  std::string s(h);
  unsigned char addr[sizeof(in6_addr)];
  char text[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if ((family == AF_INET6 || !bracketed) && s.find('\0') == std::string::npos &&
        inet_pton(family, s.c_str(), addr) == 1 && inet_ntop(family, addr, text, sizeof text))
      return HostName{text, true};
  }
  auto bad = [&](const char* why) {
    return Fail("tls host", "\"" + Printable(host) + "\": " + why);
  };
  if (bracketed) return bad("not an IPv6 address");
  if (!s.empty() && s.back() == '.') s.pop_back();
  if (s.empty()) return bad("empty name");
  if (s.size() > 253) return bad("name longer than 253 bytes");
  size_t label = 0;
  for (char& c : s) {
    if (c == '.') {
      if (label == 0) return bad("empty label");
      label = 0;
      continue;
    }
    if (++label > 63) return bad("label longer than 63 bytes");
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
      return bad("not a DNS name or IP address");
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (label == 0) return bad("empty label");
  return HostName{std::move(s), false};
}

// A random 128-bit serial; as a positive INTEGER it takes at most 17 of the
// 20 octets RFC 5280 allows.
Result<void> SetRandomSerial(X509* x) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return OsslFail("serial", "RAND_bytes");
  BnPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x)))
    return OsslFail("serial", "BN_to_ASN1_INTEGER");
  return {};
}

Result<void> AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return OsslFail("x509 extension", OBJ_nid2sn(nid));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? Result<void>() : OsslFail("x509 extension", OBJ_nid2sn(nid));
}

Result<void> SetCommonName(X509_NAME* name, const std::string& cn) {
  auto* text = reinterpret_cast<const unsigned char*>(cn.data());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, text, int(cn.size()), -1, 0)) return {};
  return OsslFail("x509 subject", cn);
}

Result<PkeyPtr> NewP256Key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OsslFail("keygen", "EC P-256");
  return key;
}

// "airlock egress CA (<hostname>)", the hostname cut so the CN fits 64 bytes.
std::string CaCommonName() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
    std::strcpy(host, "unknown");
  std::string prefix = "airlock egress CA (";
  std::string name = Printable(host).substr(0, kMaxCommonName - prefix.size() - 1);
  return prefix + name + ")";
}

// A v3 certificate for `key` with a random serial, valid from an hour ago
// (clock skew) for `days`.
Result<X509Ptr> NewCert(EVP_PKEY* key, int days) {
  X509Ptr x(X509_new());
  if (!x || !X509_set_version(x.get(), X509_VERSION_3)) return OsslFail("x509", "X509_new");
  TRY(SetRandomSerial(x.get()));
  if (!X509_gmtime_adj(X509_getm_notBefore(x.get()), -kHour) ||
      !X509_time_adj_ex(X509_getm_notAfter(x.get()), days, 0, nullptr))
    return OsslFail("x509 validity", std::to_string(days) + " days");
  if (!X509_set_pubkey(x.get(), key)) return OsslFail("x509", "public key");
  return x;
}

Result<X509Ptr> MakeCaCert(EVP_PKEY* key) {
  X509Ptr x = TRY(NewCert(key, kCaValidityDays));
  X509_NAME* name = X509_get_subject_name(x.get());
  TRY(SetCommonName(name, CaCommonName()));
  if (!X509_set_issuer_name(x.get(), name)) return OsslFail("x509", "CA issuer");
  TRY(AddExtension(x.get(), x.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  TRY(AddExtension(x.get(), x.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  TRY(AddExtension(x.get(), x.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(x.get(), key, EVP_sha256()) <= 0) return OsslFail("x509 sign", "CA certificate");
  return x;
}

Result<X509Ptr> MintLeaf(X509* ca, EVP_PKEY* ca_key, EVP_PKEY* leaf_key,
                         const HostName& host) {
  X509Ptr x = TRY(NewCert(leaf_key, kLeafValidityDays));
  if (host.name.size() <= kMaxCommonName)
    TRY(SetCommonName(X509_get_subject_name(x.get()), host.name));
  if (!X509_set_issuer_name(x.get(), X509_get_subject_name(ca)))
    return OsslFail("x509", "leaf issuer");
  TRY(AddExtension(x.get(), ca, NID_basic_constraints, "critical,CA:FALSE"));
  TRY(AddExtension(x.get(), ca, NID_key_usage, "critical,digitalSignature"));
  TRY(AddExtension(x.get(), ca, NID_ext_key_usage, "serverAuth"));
  TRY(AddExtension(x.get(), ca, NID_authority_key_identifier, "keyid"));
  // A config string is safe here: NormalizeHost let through only
  // [a-z0-9._-] or an address in inet_ntop form, so no "," can add entries.
  std::string san = (host.is_ip ? "IP:" : "DNS:") + host.name;
  TRY(AddExtension(x.get(), ca, NID_subject_alt_name, san.c_str()));
  if (X509_sign(x.get(), ca_key, EVP_sha256()) <= 0)
    return OsslFail("x509 sign", "leaf for " + host.name);
  return x;
}

Result<BioPtr> MemBio(std::string_view pem, const char* what) {
  if (pem.size() > INT_MAX) return Fail(what, "PEM too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OsslFail(what, "BIO_new_mem_buf");
  return bio;
}

Result<X509Ptr> ParseCert(std::string_view pem, const std::string& what) {
  BioPtr bio = TRY(MemBio(pem, "ca certificate"));
  X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr));
  if (!x) return OsslFail("ca certificate", what + ": not a PEM certificate");
  return x;
}

Result<PkeyPtr> ParseKey(std::string_view pem, const std::string& what) {
  BioPtr bio = TRY(MemBio(pem, "ca key"));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (!key) return OsslFail("ca key", what + ": not an unencrypted PEM private key");
  int type = EVP_PKEY_get_base_id(key.get());
  if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA)
    return Fail("ca key", what + ": not an EC or RSA key");
  return key;
}

Result<std::string> ReadAll(int fd, const std::string& path, size_t limit) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", path);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit)
      return Fail("read", path + ": larger than " + std::to_string(limit) + " bytes");
  }
}

Result<void> WriteFd(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

// Writes `data` to a fresh temporary beside `name` in `dfd` (O_EXCL,
// O_NOFOLLOW, created with `mode`, so never more open than that even for a
// moment), fsyncs it and returns its name. The caller renames or links it.
Result<std::string> WriteTemp(int dfd, const std::string& dir, const std::string& name,
                              std::string_view data, mode_t mode) {
  static std::atomic<unsigned> sequence{0};
  std::string tmp;
  UniqueFd fd;
  for (int attempt = 0; !fd && attempt < 100; ++attempt) {
    tmp = name + ".tmp." + std::to_string(getpid()) + "." + std::to_string(sequence++);
    fd.Reset(openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd && errno != EEXIST) break;  // EEXIST: a leftover of a crashed run
  }
  if (!fd) return Errno("create", dir + "/" + tmp);
  // The umask may only have taken bits away; fchmod sets exactly `mode`.
  Result<void> r = fchmod(fd.get(), mode) == 0 ? Result<void>() : Errno("fchmod", dir + "/" + tmp);
  if (r) r = WriteFd(fd.get(), data, dir + "/" + tmp);
  if (r && fsync(fd.get()) != 0) r = Errno("fsync", dir + "/" + tmp);
  if (!r) {
    unlinkat(dfd, tmp.c_str(), 0);
    return std::unexpected(r.error());
  }
  return tmp;
}

// WriteTemp, then rename over `name`.
Result<void> WriteAtomic(int dfd, const std::string& dir, const std::string& name,
                         std::string_view data, mode_t mode) {
  std::string tmp = TRY(WriteTemp(dfd, dir, name, data, mode));
  if (renameat(dfd, tmp.c_str(), dfd, name.c_str()) != 0) {
    int err = errno;
    unlinkat(dfd, tmp.c_str(), 0);
    return ErrnoValue(err, "rename", dir + "/" + name);
  }
  fsync(dfd);
  return {};
}

// The key file must be ours and closed to everyone else: a key others can
// read lets them mint certificates every sandbox trusts.
Result<void> CheckKeyFile(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno("fstat", path);
  if (st.st_uid != geteuid())
    return Fail("ca key", path + " is owned by uid " + std::to_string(st.st_uid) +
                              ", not by uid " + std::to_string(geteuid()) + " (this process)");
  if (st.st_mode & 077) {
    const char* who = (st.st_mode & 070) && (st.st_mode & 07) ? "group- and other-accessible"
                      : (st.st_mode & 070)                    ? "group-accessible"
                                                              : "other-accessible";
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return Fail("ca key", path + " is " + who + " (mode " + mode + "); it must be 0600");
  }
  return {};
}

// PEM text from a PEM_write_bio_* call; "" if it failed.
template <typename F>
std::string ToPem(F write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  char* data = nullptr;
  long n = bio && write(bio.get()) ? BIO_get_mem_data(bio.get(), &data) : 0;
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}
std::string CertToPem(X509* x) {
  return ToPem([&](BIO* b) { return PEM_write_bio_X509(b, x); });
}
std::string KeyToPem(EVP_PKEY* k) {
  return ToPem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

// Records the SNI of this handshake's ClientHello (RFC 6066 section 3:
// u16 list length, then entries of u8 type, u16 length, name) in the
// std::string TlsStream::Accept put in the SSL's app data. Read from the
// ClientHello itself rather than SSL_get_servername, which after a TLS 1.2
// resumption reports the original session's name.
int RecordClientHelloSni(SSL* ssl, int* alert, void*) {
  auto* sni = static_cast<std::string*>(SSL_get_app_data(ssl));
  if (!sni) return SSL_CLIENT_HELLO_SUCCESS;
  sni->clear();
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len))
    return SSL_CLIENT_HELLO_SUCCESS;
  *alert = SSL_AD_DECODE_ERROR;
  if (len < 2 || static_cast<size_t>(p[0] << 8 | p[1]) != len - 2) return SSL_CLIENT_HELLO_ERROR;
  p += 2;
  len -= 2;
  bool seen = false;
  while (len > 0) {
    if (len < 3) return SSL_CLIENT_HELLO_ERROR;
    size_t n = static_cast<size_t>(p[1] << 8 | p[2]);
    if (n > len - 3) return SSL_CLIENT_HELLO_ERROR;
    if (p[0] == TLSEXT_NAMETYPE_host_name) {
      if (seen || n == 0 || n > 255) return SSL_CLIENT_HELLO_ERROR;
      *alert = SSL_AD_ILLEGAL_PARAMETER;
      if (!std::all_of(p + 3, p + 3 + n, [](unsigned char c) { return c > 0x20 && c < 0x7f; }))
        return SSL_CLIENT_HELLO_ERROR;
      sni->assign(reinterpret_cast<const char*>(p + 3), n);
      seen = true;
    }
    p += 3 + n;
    len -= 3 + n;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

// Only HTTP/1.1: the proxy parses what it terminates, and can't parse h2.
int SelectHttp11(SSL*, const unsigned char** out, unsigned char* outlen,
                 const unsigned char* in, unsigned int inlen, void*) {
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol
}

Result<std::shared_ptr<SSL_CTX>> NewContext(const SSL_METHOD* method, const char* what) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(method), SSL_CTX_free);
  if (!ctx) return OsslFail("tls context", what);
  if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION))
    return OsslFail("tls context", std::string(what) + ": minimum TLS 1.2");
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  return ctx;
}

Result<std::shared_ptr<SSL_CTX>> NewUpstreamContext() {
  auto ctx = TRY(NewContext(TLS_client_method(), "upstream"));
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn - 1) != 0)  // 0 is success
    return OsslFail("tls context", "upstream ALPN");
  return ctx;
}

// Runs one SSL call, again when a signal interrupted the wait. Stores the
// errno it left (before OpenSSL's error handling can disturb it).
template <typename F>
int SslCall(SSL* ssl, int* saved_errno, F call) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = call();
    *saved_errno = errno;
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && *saved_errno == EINTR) continue;
    return r;
  }
}

// The error of a failed SSL call, with the reason OpenSSL gives.
std::unexpected<Error> SslFailure(const char* op, const std::string& who, SSL* ssl, int r,
                                  int saved_errno) {
  std::string prefix = who.empty() ? "" : who + ": ";
  switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      // A blocking socket only says "try again" when SO_RCVTIMEO/SNDTIMEO ran out.
      ERR_clear_error();
      return ErrnoValue(ETIMEDOUT, op, who);
    case SSL_ERROR_ZERO_RETURN:
      return Fail(op, prefix + "peer closed the TLS session");
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() != 0) return Fail(op, prefix + SslErrors());
      if (saved_errno != 0) return ErrnoValue(saved_errno, op, who);
      return Fail(op, prefix + "connection closed by peer");
    default:
      return Fail(op, prefix + SslErrors());
  }
}

// A checked CA: the key matches the certificate, which is a CA and current.
struct CaParts {
  X509Ptr cert;
  PkeyPtr key;
  PkeyPtr leaf_key;  // shared by every leaf this CA mints
};

Result<CaParts> CheckCa(X509Ptr cert, PkeyPtr key, const std::string& what) {
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return Fail("ca certificate", what + ": does not match the CA key");
  }
  if (X509_check_ca(cert.get()) < 1)
    return Fail("ca certificate", what + ": not a CA certificate");
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0)
    return Fail("ca certificate", what + ": expired; remove ca.key and ca.crt to make a new CA");
  PkeyPtr leaf_key = TRY(NewP256Key());
  return CaParts{std::move(cert), std::move(key), std::move(leaf_key)};
}

// Creates dir/ca.key unless it exists. Returns false when another process
// created it first (the link found it there); the caller loads theirs.
Result<bool> CreateKeyFile(int dfd, const std::string& dir, EVP_PKEY* key) {
  std::string pem = KeyToPem(key);
  if (pem.empty()) return OsslFail("ca key", "PEM encoding");
  Result<std::string> tmp = WriteTemp(dfd, dir, "ca.key", pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!tmp) return std::unexpected(tmp.error());
  // link(2) never replaces and never follows a symlink at the target: a key
  // appears whole or not at all.
  int r = linkat(dfd, tmp->c_str(), dfd, "ca.key", 0);
  int err = errno;
  unlinkat(dfd, tmp->c_str(), 0);
  if (r != 0 && err == EEXIST) return false;
  if (r != 0) return ErrnoValue(err, "link", dir + "/ca.key");
  fsync(dfd);
  return true;
}

Result<PkeyPtr> LoadKeyFile(int fd, const std::string& path) {
  TRY(CheckKeyFile(fd, path));
  std::string pem = TRY(ReadAll(fd, path, kMaxKeyFile));
  Result<PkeyPtr> key = ParseKey(pem, path);
  OPENSSL_cleanse(pem.data(), pem.size());
  return key;
}

Result<UniqueFd> OpenNoFollow(int dfd, const std::string& dir, const char* name) {
  // O_NONBLOCK: a FIFO planted there must not hang the open.
  UniqueFd fd(openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd && errno == ELOOP)
    return Fail("open", dir + "/" + name + " is a symlink; refusing to follow it");
  if (!fd) return Errno("open", dir + "/" + name);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("fstat", dir + "/" + name);
  if (!S_ISREG(st.st_mode)) return Fail("open", dir + "/" + name + " is not a regular file");
  return fd;
}

}  // namespace

struct CertAuthority::State {
  explicit State(CaParts parts) : ca(std::move(parts)) {}

  CaParts ca;

  struct Entry {
    std::string host;
    std::shared_ptr<SSL_CTX> ctx;
    time_t minted = 0;
  };
  mutable std::mutex mu;
  size_t capacity = kServerContextCacheSize;
  std::list<Entry> lru;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index;

  void EvictLocked() {
    while (lru.size() > capacity) {
      index.erase(lru.back().host);
      lru.pop_back();
    }
  }
};

CertAuthority::CertAuthority(std::unique_ptr<State> state) : state_(std::move(state)) {}
CertAuthority::CertAuthority(CertAuthority&&) noexcept = default;
CertAuthority& CertAuthority::operator=(CertAuthority&&) noexcept = default;
CertAuthority::~CertAuthority() = default;

Result<CertAuthority> CertAuthority::LoadOrCreate(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", dir);
  UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return Errno("open", dir);
  const std::string key_path = dir + "/ca.key";
  const std::string cert_path = dir + "/ca.crt";

  PkeyPtr key;
  Result<UniqueFd> kfd = OpenNoFollow(dfd.get(), dir, "ca.key");
  if (!kfd && kfd.error().err == ENOENT) {
    key = TRY(NewP256Key());
    if (!TRY(CreateKeyFile(dfd.get(), dir, key.get()))) {
      key.reset();
      kfd = OpenNoFollow(dfd.get(), dir, "ca.key");
    } else if (unlinkat(dfd.get(), "ca.crt", 0) != 0 && errno != ENOENT) {
      return Errno("unlink", cert_path);  // an old certificate can't match a new key
    }
  }
  if (!key) {
    if (!kfd) return std::unexpected(kfd.error());
    key = TRY(LoadKeyFile(kfd->get(), key_path));
  }

  X509Ptr cert;
  Result<UniqueFd> cfd = OpenNoFollow(dfd.get(), dir, "ca.crt");
  if (cfd) {
    std::string pem = TRY(ReadAll(cfd->get(), cert_path, kMaxKeyFile));
    cert = TRY(ParseCert(pem, cert_path));
  } else if (cfd.error().err == ENOENT) {
    // A key without its certificate: a new CA, or a crash between the two
    // writes. The certificate follows from the key.
    cert = TRY(MakeCaCert(key.get()));
    std::string pem = CertToPem(cert.get());
    if (pem.empty()) return OsslFail("ca certificate", "PEM encoding");
    TRY(WriteAtomic(dfd.get(), dir, "ca.crt", pem, 0644));
  } else {
    return std::unexpected(cfd.error());
  }
  CaParts parts = TRY(CheckCa(std::move(cert), std::move(key), cert_path));
  return CertAuthority(std::make_unique<State>(std::move(parts)));
}

Result<CertAuthority> CertAuthority::FromPem(std::string_view cert_pem,
                                             std::string_view key_pem) {
  X509Ptr cert = TRY(ParseCert(cert_pem, "ca_cert"));
  PkeyPtr key = TRY(ParseKey(key_pem, "ca_key"));
  CaParts parts = TRY(CheckCa(std::move(cert), std::move(key), "ca_cert"));
  return CertAuthority(std::make_unique<State>(std::move(parts)));
}

std::string CertAuthority::CertPem() const { return CertToPem(state_->ca.cert.get()); }

std::string CertAuthority::KeyPem() const { return KeyToPem(state_->ca.key.get()); }

Result<std::shared_ptr<SSL_CTX>> CertAuthority::ServerContextFor(std::string_view host) {
  HostName name = TRY(NormalizeHost(host));
  State& s = *state_;
  auto lookup = [&](time_t now) -> std::shared_ptr<SSL_CTX> {
    auto it = s.index.find(name.name);
    if (it == s.index.end() || now - it->second->minted >= kRemintAfter) return nullptr;
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return it->second->ctx;
  };
  {
    std::lock_guard lock(s.mu);
    if (auto ctx = lookup(time(nullptr))) return ctx;
  }

  // Minted outside the lock: a signature costs far more than a lookup, and
  // other hosts shouldn't wait for it. Two threads may mint the same host
  // at once; the first to insert wins.
  auto ctx = TRY(NewContext(TLS_server_method(), "server"));
  X509Ptr leaf = TRY(MintLeaf(s.ca.cert.get(), s.ca.key.get(), s.ca.leaf_key.get(), name));
  if (SSL_CTX_use_certificate(ctx.get(), leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), s.ca.leaf_key.get()) != 1)
    return OsslFail("tls context", "leaf for " + name.name);
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectHttp11, nullptr);
  SSL_CTX_set_client_hello_cb(ctx.get(), RecordClientHelloSni, nullptr);

  time_t now = time(nullptr);
  std::lock_guard lock(s.mu);
  if (auto existing = lookup(now)) return existing;
  if (auto it = s.index.find(name.name); it != s.index.end()) {
    s.lru.erase(it->second);  // stale: re-minted above
    s.index.erase(it);
  }
  s.lru.push_front({name.name, ctx, now});
  s.index[name.name] = s.lru.begin();
  s.EvictLocked();
  return ctx;
}

void CertAuthority::SetCacheCapacity(size_t capacity) {
  std::lock_guard lock(state_->mu);
  state_->capacity = capacity < 1 ? 1 : capacity;
  state_->EvictLocked();
}

size_t CertAuthority::CachedContexts() const {
  std::lock_guard lock(state_->mu);
  return state_->lru.size();
}

Result<std::shared_ptr<SSL_CTX>> UpstreamContext(const std::string& ca_file) {
  auto ctx = TRY(NewUpstreamContext());
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1)
      return OsslFail("upstream CA", "default verify paths");
  } else if (SSL_CTX_load_verify_file(ctx.get(), ca_file.c_str()) != 1) {
    return OsslFail("upstream CA", ca_file);
  }
  return ctx;
}

Result<std::shared_ptr<SSL_CTX>> UpstreamContextFromPem(std::string_view pem) {
  if (pem.empty()) return UpstreamContext("");
  auto ctx = TRY(NewUpstreamContext());
  BioPtr bio = TRY(MemBio(pem, "upstream CA"));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  int count = 0;
  ERR_clear_error();
  while (X509Ptr x{PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr)}) {
    if (X509_STORE_add_cert(store, x.get()) != 1) return OsslFail("upstream CA", "add certificate");
    ++count;
  }
  // The loop ends at the first thing that isn't a certificate; only the end
  // of the text is fine.
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
    return OsslFail("upstream CA", "certificate " + std::to_string(count + 1));
  ERR_clear_error();
  if (count == 0) return Fail("upstream CA", "no certificate in the PEM text");
  return ctx;
}

TlsStream::TlsStream(std::unique_ptr<SSL, SslFree> ssl, std::unique_ptr<std::string> sni)
    : ssl_(std::move(ssl)), sni_(std::move(sni)) {}
TlsStream::TlsStream(TlsStream&&) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&&) noexcept = default;
TlsStream::~TlsStream() = default;

Result<TlsStream> TlsStream::Accept(SSL_CTX* ctx, int fd) {
  auto sni = std::make_unique<std::string>();
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx));
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
    return OsslFail("tls accept", "fd " + std::to_string(fd));
  SSL_set_app_data(ssl.get(), sni.get());
  int saved_errno = 0;
  int r = SslCall(ssl.get(), &saved_errno, [&] { return SSL_accept(ssl.get()); });
  if (r != 1) {
    std::string who = sni->empty() ? "" : "client of " + *sni;
    return SslFailure("tls accept", who, ssl.get(), r, saved_errno);
  }
  return TlsStream(std::move(ssl), std::move(sni));
}

Result<TlsStream> TlsStream::Connect(SSL_CTX* ctx, int fd, std::string_view host) {
  HostName name = TRY(NormalizeHost(host));
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx));
  if (!ssl || SSL_set_fd(ssl.get(), fd) != 1)
    return OsslFail("tls connect", "fd " + std::to_string(fd));
  if (name.is_ip) {
    // RFC 6066: no SNI for an address; the certificate needs an IP SAN.
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.name.c_str()) != 1)
      return OsslFail("tls connect", name.name);
  } else {
    SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set_tlsext_host_name(ssl.get(), name.name.c_str()) != 1 ||
        SSL_set1_host(ssl.get(), name.name.c_str()) != 1)
      return OsslFail("tls connect", name.name);
  }
  int saved_errno = 0;
  int r = SslCall(ssl.get(), &saved_errno, [&] { return SSL_connect(ssl.get()); });
  long verify = SSL_get_verify_result(ssl.get());
  // Also after a "successful" handshake: a context without SSL_VERIFY_PEER
  // completes it whatever the certificate.
  if (verify != X509_V_OK) {
    ERR_clear_error();
    return Fail("tls connect", "upstream certificate for " + name.name + ": " +
                                   X509_verify_cert_error_string(verify));
  }
  if (r != 1) return SslFailure("tls connect", name.name, ssl.get(), r, saved_errno);
  if (!SSL_get0_peer_certificate(ssl.get()))
    return Fail("tls connect", "upstream " + name.name + " presented no certificate");
  return TlsStream(std::move(ssl), std::make_unique<std::string>());
}

Result<size_t> TlsStream::Read(char* buf, size_t len) {
  if (len == 0) return Fail("tls read", "empty buffer");
  if (failed_) return Fail("tls read", "the stream failed earlier");
  size_t n = 0;
  int saved_errno = 0;
  int r = SslCall(ssl_.get(), &saved_errno, [&] { return SSL_read_ex(ssl_.get(), buf, len, &n); });
  if (r == 1) return n;
  int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_ZERO_RETURN) return size_t{0};  // close_notify
  unsigned long first = ERR_peek_error();
  bool unexpected_eof =
      (e == SSL_ERROR_SSL && ERR_GET_LIB(first) == ERR_LIB_SSL &&
       ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
      (e == SSL_ERROR_SYSCALL && first == 0 && saved_errno == 0);
  if (unexpected_eof) {
    ERR_clear_error();
    truncated_ = true;
    failed_ = true;  // OpenSSL treats it as fatal: no close_notify after it
    return 0;
  }
  if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) failed_ = true;
  return SslFailure("tls read", *sni_, ssl_.get(), r, saved_errno);
}

Result<void> TlsStream::WriteAll(std::string_view data) {
  if (failed_) return Fail("tls write", "the stream failed earlier");
  while (!data.empty()) {
    size_t n = 0;
    int saved_errno = 0;
    int r = SslCall(ssl_.get(), &saved_errno,
                    [&] { return SSL_write_ex(ssl_.get(), data.data(), data.size(), &n); });
    if (r != 1) {
      int e = SSL_get_error(ssl_.get(), r);
      if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) failed_ = true;
      return SslFailure("tls write", *sni_, ssl_.get(), r, saved_errno);
    }
    data.remove_prefix(n);
  }
  return {};
}

void TlsStream::Shutdown() {
  if (!ssl_ || failed_ || shut_down_) return;
  shut_down_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());  // a failure doesn't matter: the connection ends anyway
  ERR_clear_error();
}

size_t TlsStream::Pending() const {
  return static_cast<size_t>(std::max(SSL_pending(ssl_.get()), 0));
}

std::string TlsStream::Alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

Result<void> WriteTrustBundle(const std::string& path, const std::string& system_bundle,
                              const CertAuthority& ca) {
  std::string out;
  if (!system_bundle.empty()) {
    UniqueFd in(open(system_bundle.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (in) {
      out = TRY(ReadAll(in.get(), system_bundle, kMaxBundle));
      if (!out.empty() && out.back() != '\n') out += '\n';
    } else if (errno != ENOENT) {
      return Errno("open", system_bundle);
    }
  }
  out += "# airlock egress CA\n" + ca.CertPem();

  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) return Fail("trust bundle", "path \"" + path + "\" names a directory");
  UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return Errno("open", dir);
  return WriteAtomic(dfd.get(), dir, base, out, 0644);
}

}  // namespace airlock::proxy

// TLS for the egress proxy (issue 5, "Secrets"): a per-daemon certificate
// authority that the sandbox trusts, leaf certificates minted on demand for
// the destinations the proxy intercepts, the client side that verifies the
// real upstream, and a small blocking stream over an SSL*.
//
// The proxy runs a thread per connection with blocking sockets, so
// everything here is blocking. The process must ignore SIGPIPE: OpenSSL's
// socket BIO writes with write(2), and a peer that went away would otherwise
// kill the whole proxy.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/core/error.h"

namespace airlock::proxy {

// How many per-host server contexts a CertAuthority keeps (LRU).
inline constexpr size_t kServerContextCacheSize = 1000;

// A certificate authority: an EC P-256 key and a self-signed CA certificate
// (basicConstraints critical CA:TRUE pathlen:0, keyUsage keyCertSign and
// cRLSign, CN "airlock egress CA (<hostname>)", valid for 10 years). Movable;
// ServerContextFor may be called from many threads at once.
class CertAuthority {
 public:
  // Loads dir/ca.key and dir/ca.crt, creating them when absent (dir is made
  // 0700 if missing). The key is created 0600 under a temporary name with
  // O_EXCL|O_NOFOLLOW and linked into place, so it is never readable by
  // others nor seen half-written; the certificate is written 0644 by rename.
  // Refuses a key that is a symlink, not a regular file, not owned by the
  // caller's effective uid, or group/other-accessible; refuses an expired CA
  // certificate or one that doesn't match the key. A key without a
  // certificate (a crash between the two writes) gets a new certificate.
  static Result<CertAuthority> LoadOrCreate(const std::string& dir);

  // A CA handed over in PEM (the proxy process gets it from airlockd over its
  // control socket, never from disk). The key must match the certificate.
  static Result<CertAuthority> FromPem(std::string_view cert_pem,
                                       std::string_view key_pem);

  CertAuthority(CertAuthority&&) noexcept;
  CertAuthority& operator=(CertAuthority&&) noexcept;
  ~CertAuthority();

  // The CA certificate, PEM.
  std::string CertPem() const;
  // The CA private key, PEM (PKCS#8, unencrypted). Secret: for the control
  // socket only.
  std::string KeyPem() const;

  // A server context presenting a leaf for `host` (a DNS name, or an IPv4 /
  // IPv6 literal, brackets allowed): SAN DNS:<host> or IP:<addr>, CN=host
  // (when it fits in 64 bytes), EKU serverAuth, valid from now-1h for 30
  // days, signed by this CA. All leaves of one CertAuthority share one EC
  // P-256 key made when it was loaded (minting is then one signature, not a
  // key generation; the key never leaves the process). TLS 1.2 minimum; ALPN
  // selects only "http/1.1", so a client that offers ALPN without it (h2
  // only) fails the handshake instead of speaking a protocol the proxy can't
  // parse; a client offering no ALPN gets HTTP/1.1 as usual. Records the
  // client's SNI for TlsStream::ServerName. Names are compared
  // case-insensitively, without a trailing dot; wildcards and characters
  // outside [A-Za-z0-9._-] are refused. Cached per host (LRU, a mutex); an
  // entry is re-minted when half its validity has passed.
  Result<std::shared_ptr<SSL_CTX>> ServerContextFor(std::string_view host);

  // Changes the LRU's capacity (at least 1); evicts at once if needed.
  void SetCacheCapacity(size_t capacity);
  // How many server contexts are cached now.
  size_t CachedContexts() const;

 private:
  struct State;
  explicit CertAuthority(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// A client context for connections to real upstreams: TLS 1.2 minimum,
// SSL_VERIFY_PEER against `ca_file` (PEM, may hold many certificates) or,
// when it is empty, the system's default verify paths; ALPN offers
// "http/1.1" only. Host checks are set per connection by TlsStream::Connect.
Result<std::shared_ptr<SSL_CTX>> UpstreamContext(const std::string& ca_file);

// The same, trusting the certificates in `pem` (the control socket's
// "upstream_ca") instead of a file; an empty `pem` means the system's default
// verify paths.
Result<std::shared_ptr<SSL_CTX>> UpstreamContextFromPem(std::string_view pem);

// A blocking TLS stream over a connected socket. Owns its SSL*, not the fd:
// the caller closes the fd after the stream is gone. Move-only. Like an
// SSL*, it must not be used from two threads at once (no concurrent Read and
// WriteAll); a full-duplex relay polls the fd and checks Pending().
// A socket with SO_RCVTIMEO/SO_SNDTIMEO set makes an expired wait an
// ETIMEDOUT error.
class TlsStream {
 public:
  // The server side: a handshake on `fd` with `ctx` (from ServerContextFor).
  static Result<TlsStream> Accept(SSL_CTX* ctx, int fd);

  // The client side, towards a real upstream (ctx from UpstreamContext). SNI
  // is `host` unless it is an IP literal; the certificate must match `host`
  // (DNS name, or IP address SAN for a literal). A failed verification says
  // why: "upstream certificate for api.test: unable to get local issuer
  // certificate".
  static Result<TlsStream> Connect(SSL_CTX* ctx, int fd, std::string_view host);

  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  ~TlsStream();

  // Reads up to `len` (> 0) bytes. Returns 0 at end of stream: after the
  // peer's close_notify, and also at a TCP EOF without close_notify, which
  // many servers send; Truncated() tells the two apart. HTTP/1.1 bodies are
  // framed (Content-Length, chunked), so the parser notices a short body; a
  // caller relaying a close-delimited body must check Truncated().
  Result<size_t> Read(char* buf, size_t len);

  // Writes all of `data`.
  Result<void> WriteAll(std::string_view data);

  // Sends close_notify (once; not after a fatal error) without waiting for
  // the peer's.
  void Shutdown();

  // The server side: the SNI the client sent in this handshake's ClientHello
  // (also after a resumption), "" if none. Printable ASCII only: a
  // ClientHello with anything else in its SNI fails the handshake.
  const std::string& ServerName() const { return *sni_; }
  // True when the last Read's EOF came without close_notify.
  bool Truncated() const { return truncated_; }
  // Decrypted bytes buffered inside OpenSSL, readable without touching the fd.
  size_t Pending() const;
  // The ALPN protocol agreed on ("http/1.1"), "" if none.
  std::string Alpn() const;
  // The underlying SSL*, for inspection (version, cipher, peer certificate).
  SSL* native_handle() const { return ssl_.get(); }

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  TlsStream(std::unique_ptr<SSL, SslFree> ssl, std::unique_ptr<std::string> sni);

  std::unique_ptr<SSL, SslFree> ssl_;
  // On the heap so the ClientHello callback's pointer stays valid across moves.
  std::unique_ptr<std::string> sni_;
  bool truncated_ = false;
  bool failed_ = false;    // a fatal error: no close_notify may follow
  bool shut_down_ = false;
};

// Writes `path` (atomically: a temporary in the same directory, then rename;
// mode 0644): the certificates of `system_bundle` (e.g.
// /etc/ssl/certs/ca-certificates.crt; skipped if it doesn't exist) followed
// by `ca`'s. The sandbox gets it as SSL_CERT_FILE, REQUESTS_CA_BUNDLE and
// NODE_EXTRA_CA_CERTS.
Result<void> WriteTrustBundle(const std::string& path,
                              const std::string& system_bundle,
                              const CertAuthority& ca);

}  // namespace airlock::proxy

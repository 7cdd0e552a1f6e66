#include "harness/daemon/auth.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/daemon/listener.h"
#include "runtime/core/unique_fd.h"

namespace airlock::daemon {
namespace {

// Equal strings, in time independent of where they differ.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Result<std::map<std::string, uid_t>> ParseTokens(const std::string& text, const std::string& name) {
  std::map<std::string, uid_t> tokens;
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    ++line;
    size_t nl = text.find('\n', pos);
    std::string l = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (l.empty() || l[0] == '#') continue;
    size_t sp = l.find(' ');
    std::string where = name + ":" + std::to_string(line);
    if (sp == std::string::npos) return Fail("tokens file", where + ": want \"uid token\"");
    char* end = nullptr;
    unsigned long uid = strtoul(l.c_str(), &end, 10);
    if (end != l.c_str() + sp || uid > 0xfffffffeUL) return Fail("tokens file", where + ": bad uid");
    std::string token = l.substr(sp + 1);
    if (token.size() < 32) return Fail("tokens file", where + ": token shorter than 32 characters");
    tokens[token] = static_cast<uid_t>(uid);
  }
  return tokens;
}

Result<std::unique_ptr<Authenticator>> Authenticator::Make(Listener* unix_listener, const TlsConfig& tls) {
  std::unique_ptr<Authenticator> a(new Authenticator());
  a->unix_ = unix_listener;
  a->client_uids_ = tls.client_uids;
  if (!tls.tokens_file.empty()) {
    UniqueFd fd(open(tls.tokens_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return Errno("open", tls.tokens_file);
    struct stat st;
    if (fstat(fd.get(), &st) < 0) return Errno("stat", tls.tokens_file);
    if (st.st_uid != 0 || (st.st_mode & 077))
      return Fail("tokens file", tls.tokens_file + ": must be owned by root and mode 0600 (it holds credentials)");
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    a->tokens_ = TRY(ParseTokens(text, tls.tokens_file));
  }
  return a;
}

std::optional<Caller> Authenticator::Identify(grpc::ServerContext* ctx) const {
  const std::string peer = ctx->peer();
  if (peer.starts_with("fd:")) return unix_ ? unix_->Lookup(peer) : std::nullopt;
  // TCP: the server port exists only with TLS credentials, so the transport
  // is authenticated by TLS; who the caller is comes from its certificate or
  // its token.
  auto auth = ctx->auth_context();
  if (auth && auth->IsPeerAuthenticated()) {
    for (const auto& cn : auth->FindPropertyValues("x509_common_name")) {
      auto it = client_uids_.find(std::string(cn.data(), cn.size()));
      if (it != client_uids_.end()) return Caller{it->second, it->second, 0};
    }
  }
  const auto& md = ctx->client_metadata();
  auto h = md.find("authorization");
  if (h == md.end()) return std::nullopt;
  std::string value(h->second.data(), h->second.size());
  if (!value.starts_with("Bearer ")) return std::nullopt;
  std::string token = value.substr(7);
  for (const auto& [t, uid] : tokens_)
    if (SameSecret(t, token)) return Caller{uid, uid, 0};
  return std::nullopt;
}

}  // namespace airlock::daemon

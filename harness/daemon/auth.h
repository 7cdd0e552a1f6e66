// Who a call comes from. On the unix socket: the peer credentials the
// listener read at accept (listener.h). Over TCP, which airlockd serves only
// with TLS: a client certificate whose common name the config maps to a uid,
// or a bearer token (metadata "authorization: Bearer <token>") listed in the
// tokens file. Anything else is unauthenticated.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>

#include "harness/daemon/manager.h"
#include "runtime/core/error.h"

namespace grpc {
class ServerContext;
}

namespace airlock::daemon {

class Listener;

struct TlsConfig {
  std::string listen;     // host:port; empty: no TCP at all
  std::string cert, key;  // PEM files: the server's certificate chain and key
  std::string client_ca;  // PEM: require client certificates signed by it
  std::map<std::string, uid_t> client_uids;  // certificate common name -> uid
  std::string tokens_file;                   // lines "uid token"; root-owned, 0600
};

class Authenticator {
 public:
  // Loads the tokens file (refusing one others can read or write).
  static Result<std::unique_ptr<Authenticator>> Make(Listener* unix_listener, const TlsConfig& tls);

  std::optional<Caller> Identify(grpc::ServerContext* ctx) const;

 private:
  Authenticator() = default;
  Listener* unix_ = nullptr;
  std::map<std::string, uid_t> client_uids_;
  std::map<std::string, uid_t> tokens_;
};

// Parses a tokens file's text: "uid token" per line, # comments. Tokens must
// be at least 32 characters.
Result<std::map<std::string, uid_t>> ParseTokens(const std::string& text, const std::string& name);

}  // namespace airlock::daemon

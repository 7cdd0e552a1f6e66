// The egress proxy's server: what it holds for each sandbox, and the
// threads that serve it. airlock-proxy (main.cc) runs one Server on the
// control socket airlockd gave it, as an unprivileged user.
//
// Threads: the control reader (this Run()), one reader per sandbox's
// egress channel, one acceptor per exposed port, one thread per connection
// (blocking I/O; bounded per sandbox and in all). A connection's thread
// parses everything the sandbox sends (connection.cc); nothing it does can
// touch another sandbox's connections.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/proxy/policy.h"
#include "harness/proxy/secrets.h"
#include "harness/proxy/tls.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::proxy {

// What the whole proxy knows (the "config" control message).
struct ProxyConfig {
  std::shared_ptr<CertAuthority> ca;  // mints leaves for intercepted hosts
  std::shared_ptr<SSL_CTX> upstream;  // verifies real upstreams
  std::map<std::string, std::vector<sockaddr_storage>> resolve;
  std::vector<sockaddr_storage> refused;  // airlockd's own listeners
};

// One sandbox's policy (the "add" control message).
struct SandboxPolicy {
  std::string id;
  Policy policy;
  bool transparent = false;
  std::vector<SecretRule> secrets;
};

// One audited decision (sent to airlockd as an "audit" message).
struct Audit {
  std::string kind;  // connect, http, transparent, port
  std::string destination;
  uint16_t port = 0;
  std::string address;
  bool allowed = false;
  std::string reason;
  uint64_t bytes_out = 0, bytes_in = 0;
  std::vector<std::string> secrets;
};

class Server;

// What a connection's thread needs: everything is shared and immutable but
// the audit sink.
struct ConnContext {
  Server* server = nullptr;
  std::shared_ptr<const ProxyConfig> config;
  std::shared_ptr<const SandboxPolicy> sandbox;
};

// Serves one connection a sandbox opened (runs on its own thread; closes
// `fd`). `open` is the relay's description of it.
struct EgressOpenInfo {
  bool transparent = false;
  std::string address;  // transparent: the original destination
  uint16_t port = 0;
  std::string name;     // transparent: the name the relay's DNS gave it
};
void ServeEgress(const ConnContext& ctx, UniqueFd fd, const EgressOpenInfo& open);

// Relays bytes both ways between two sockets until both directions end
// (splice through a pipe each way; a half-close is passed on). `first`:
// bytes already read from `a`, written to `b` first. Counts what went each
// way.
void Relay(int a, int b, std::string_view first, uint64_t* a_to_b, uint64_t* b_to_a);

class Server {
 public:
  explicit Server(int control_fd) : control_(control_fd) {}
  // Serves until the control socket closes (airlockd is gone).
  Result<void> Run();
  void Report(const std::string& sandbox, const Audit& audit);

 private:
  struct SandboxState;
  Result<void> Configure(const nlohmann::json& body);
  Result<void> Add(const nlohmann::json& body, std::vector<UniqueFd> fds);
  void Remove(const std::string& id);
  void ReadEgress(std::shared_ptr<SandboxState> s);
  void AcceptPort(std::shared_ptr<SandboxState> s, size_t index);

  int control_;
  std::mutex send_mu_;
  std::mutex mu_;
  std::shared_ptr<const ProxyConfig> config_;
  std::map<std::string, std::shared_ptr<SandboxState>> sandboxes_;
};

// Limits on connections: per sandbox and in all.
inline constexpr int kMaxConnectionsPerSandbox = 256;
inline constexpr int kMaxConnections = 4096;

}  // namespace airlock::proxy

// airlockd's side of the egress proxy (harness/proxy): its configuration,
// the per-daemon CA, and the supervisor that runs airlock-proxy as an
// unprivileged process of its own, tells it each proxied sandbox's policy
// with that sandbox's egress channel, and restarts it (re-adding every
// sandbox) if it dies. The proxy parses everything sandboxes send; its crash
// costs only the connections it had open.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "airlock/v1/airlock.pb.h"
#include "harness/daemon/api_error.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::daemon {

// A secret of the daemon's config ("egress": {"secrets": {NAME: {...}}}).
struct SecretConfig {
  std::string name;
  std::string env;        // the variable that carries its placeholder inside
  nlohmann::json for_proxy;  // {"name","value","hosts","header","add"?}: never logged
};

struct EgressConfig {
  std::string proxy_binary;      // airlock-proxy
  std::string user = "nobody";   // what it runs as
  std::string ca_dir;            // the per-daemon CA (ca.key 0600, ca.crt)
  std::string upstream_ca_file;  // "" : the system's trust store
  std::map<std::string, std::vector<std::string>> resolve;  // static names
  std::map<std::string, SecretConfig> secrets;
  std::string expose_address;    // host address exposed ports listen on; "": none
  std::vector<std::string> refused;  // the daemon's own listeners ("addr:port")
};

// Reads the "egress" object of airlockd's JSON config (secrets' value_file
// read now, as root). Errors name the field; never a secret's value.
Result<EgressConfig> ParseEgressConfig(const nlohmann::json& j);

// The proxy side of one sandbox: what "add" carries.
struct EgressRegistration {
  std::string sandbox;
  std::vector<std::string> allow;
  std::vector<std::string> secrets;  // names
  bool transparent = false;
  std::vector<uint16_t> ports;       // exposed, with one listener each
};

class EgressProxy {
 public:
  using AuditSink = std::function<void(const std::string& sandbox, const v1::EgressAudit&)>;
  // Makes (or loads) the CA and the sandbox trust bundle, starts the proxy.
  static Result<std::unique_ptr<EgressProxy>> Start(EgressConfig config, AuditSink sink);
  ~EgressProxy();

  // Checks a Create request's egress policy (field names in errors).
  ApiResult<void> Check(const v1::CreateRequest& request) const;
  // What a proxied sandbox's commands get in their environment.
  std::vector<std::string> Environment(const EgressRegistration& reg) const;
  // The bundle sandboxes trust (system CAs + the daemon's egress CA).
  const std::string& trust_bundle() const { return bundle_path_; }
  const EgressConfig& config() const { return config_; }

  // Hands a sandbox to the proxy: its egress channel's host end (dup'd:
  // the caller keeps its own) and listeners for its exposed ports (taken).
  Result<void> Add(const EgressRegistration& reg, int egress_fd, std::vector<UniqueFd> listeners);
  void Remove(const std::string& sandbox);

  pid_t pid() const;

 private:
  EgressProxy() = default;
  struct Entry {
    EgressRegistration reg;
    UniqueFd egress;
    std::vector<UniqueFd> listeners;
  };
  Result<void> Spawn();
  Result<void> SendAdd(const Entry& e);
  void ReadLoop();

  EgressConfig config_;
  AuditSink sink_;
  std::string ca_cert_, ca_key_, upstream_pem_, bundle_path_;
  mutable std::mutex mu_;
  UniqueFd control_;
  pid_t pid_ = -1;
  bool stopping_ = false;
  std::map<std::string, Entry> entries_;
  std::thread reader_;
};

}  // namespace airlock::daemon

#include "harness/daemon/egress.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "harness/proxy/control.h"
#include "harness/proxy/policy.h"
#include "harness/proxy/secrets.h"
#include "harness/proxy/tls.h"

namespace airlock::daemon {

namespace {

constexpr char kProxyUrl[] = "http://127.0.0.1:3128";
constexpr char kBundleInside[] = "/etc/airlock/ca-bundle.pem";
constexpr size_t kMaxExposedPorts = 16;

Result<std::string> ReadSmallFile(const std::string& path, const std::string& field, bool secret = false) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return Errno("open", field + " (" + path + ")");
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return Errno("stat", field + " (" + path + ")");
  if (secret && ((st.st_mode & 077) != 0 || st.st_uid != 0))
    return Fail(field, path + " holds a secret: it must be owned by root and mode 0600");
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) return Errno("read", field + " (" + path + ")");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1u << 20)) return Fail(field, path + " is larger than 1 MiB");
  }
  return out;
}

std::vector<std::string> Strings(const nlohmann::json& j) {
  std::vector<std::string> out;
  for (const auto& e : j) out.push_back(e.get<std::string>());
  return out;
}

}  // namespace

Result<EgressConfig> ParseEgressConfig(const nlohmann::json& j) {
  EgressConfig c;
  if (!j.is_object()) return Fail("config", "egress: must be an object");
  for (const auto& [key, value] : j.items()) {
    const std::string field = "egress." + key;
    if (key == "user" || key == "upstream_ca_file" || key == "expose_address" || key == "proxy_binary") {
      if (!value.is_string()) return Fail("config", field + ": must be a string");
      std::string v = value.get<std::string>();
      if (key == "user") c.user = v;
      if (key == "upstream_ca_file") c.upstream_ca_file = v;
      if (key == "expose_address") c.expose_address = v;
      if (key == "proxy_binary") c.proxy_binary = v;
    } else if (key == "resolve") {
      if (!value.is_object()) return Fail("config", field + ": must be an object of name -> [address]");
      for (const auto& [name, addrs] : value.items()) {
        if (!addrs.is_array()) return Fail("config", field + "." + name + ": must be a list of addresses");
        for (const auto& a : addrs)
          if (!a.is_string()) return Fail("config", field + "." + name + ": must be a list of addresses");
        c.resolve[name] = Strings(addrs);
      }
    } else if (key == "secrets") {
      if (!value.is_object()) return Fail("config", field + ": must be an object of name -> secret");
      for (const auto& [name, s] : value.items()) {
        const std::string sfield = field + "." + name;
        if (!s.is_object()) return Fail("config", sfield + ": must be an object");
        nlohmann::json rule = s;
        if (!s.contains("env") || !s["env"].is_string()) return Fail("config", sfield + ".env: the variable that carries its placeholder is required");
        std::string env = s["env"].get<std::string>();
        rule.erase("env");
        if (s.contains("value_file")) {
          if (!s["value_file"].is_string()) return Fail("config", sfield + ".value_file: must be a path");
          std::string v = TRY(ReadSmallFile(s["value_file"].get<std::string>(), sfield + ".value_file", true));
          while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
          rule.erase("value_file");
          rule["value"] = v;
        }
        // Validated as the proxy will read it (names the field, never the value).
        TRY(proxy::ParseSecretRule(name, rule));
        rule["name"] = name;
        c.secrets[name] = SecretConfig{name, env, rule};
      }
    } else {
      return Fail("config", field + ": unknown key");
    }
  }
  return c;
}

Result<std::unique_ptr<EgressProxy>> EgressProxy::Start(EgressConfig config, AuditSink sink) {
  std::unique_ptr<EgressProxy> p(new EgressProxy());
  p->config_ = std::move(config);
  p->sink_ = std::move(sink);
  if (mkdir(p->config_.ca_dir.c_str(), 0700) < 0 && errno != EEXIST) return Errno("mkdir", p->config_.ca_dir);
  auto ca = TRY(proxy::CertAuthority::LoadOrCreate(p->config_.ca_dir));
  p->ca_cert_ = ca.CertPem();
  p->ca_key_ = ca.KeyPem();
  if (!p->config_.upstream_ca_file.empty())
    p->upstream_pem_ = TRY(ReadSmallFile(p->config_.upstream_ca_file, "egress.upstream_ca_file"));
  p->bundle_path_ = p->config_.ca_dir + "/sandbox-bundle.pem";
  TRY(proxy::WriteTrustBundle(p->bundle_path_, "/etc/ssl/certs/ca-certificates.crt", ca));
  {
    std::lock_guard lock(p->mu_);
    TRY(p->Spawn());
  }
  p->reader_ = std::thread([raw = p.get()] { raw->ReadLoop(); });
  return p;
}

EgressProxy::~EgressProxy() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (control_) shutdown(control_.get(), SHUT_RDWR);
    if (pid_ > 0) kill(pid_, SIGKILL);
  }
  if (reader_.joinable()) reader_.join();
}

pid_t EgressProxy::pid() const {
  std::lock_guard lock(mu_);
  return pid_;
}

// Called with mu_ held.
Result<void> EgressProxy::Spawn() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return Errno("socketpair", "egress proxy");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  std::string user_arg = "--user=" + config_.user;
  pid_t pid = fork();
  if (pid < 0) return Errno("fork", "egress proxy");
  if (pid == 0) {
    if (dup2(theirs.get(), 3) < 0) _exit(127);
    syscall(SYS_close_range, 4u, ~0u, 0u);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    char* argv[] = {const_cast<char*>("airlock-proxy"), user_arg.data(), nullptr};
    execv(config_.proxy_binary.c_str(), argv);
    _exit(127);
  }
  pid_ = pid;
  control_ = std::move(ours);
  nlohmann::json cfg = {{"op", "config"},        {"ca_cert", ca_cert_},          {"ca_key", ca_key_},
                        {"upstream_ca", upstream_pem_}, {"resolve", config_.resolve}, {"refused", config_.refused}};
  TRY(proxy::SendControl(control_.get(), cfg));
  for (const auto& [id, e] : entries_) TRY(SendAdd(e));
  return {};
}

// Called with mu_ held.
Result<void> EgressProxy::SendAdd(const Entry& e) {
  nlohmann::json secrets = nlohmann::json::array();
  for (const auto& name : e.reg.secrets) {
    auto it = config_.secrets.find(name);
    if (it != config_.secrets.end()) secrets.push_back(it->second.for_proxy);
  }
  nlohmann::json add = {{"op", "add"},          {"sandbox", e.reg.sandbox},         {"allow", e.reg.allow},
                        {"transparent", e.reg.transparent}, {"secrets", secrets}, {"ports", e.reg.ports}};
  std::vector<int> fds{e.egress.get()};
  for (const auto& l : e.listeners) fds.push_back(l.get());
  return proxy::SendControl(control_.get(), add, fds);
}

Result<void> EgressProxy::Add(const EgressRegistration& reg, int egress_fd, std::vector<UniqueFd> listeners) {
  Entry e;
  e.reg = reg;
  e.egress.Reset(fcntl(egress_fd, F_DUPFD_CLOEXEC, 3));
  if (!e.egress) return Errno("dup", "egress channel");
  e.listeners = std::move(listeners);
  std::lock_guard lock(mu_);
  auto sent = SendAdd(e);
  entries_[reg.sandbox] = std::move(e);
  // A proxy that is down gets it when it is started again.
  if (!sent) fprintf(stderr, "airlockd: egress proxy: %s\n", sent.error().Message().c_str());
  return {};
}

void EgressProxy::Remove(const std::string& sandbox) {
  std::lock_guard lock(mu_);
  if (entries_.erase(sandbox) == 0) return;
  if (control_) (void)proxy::SendControl(control_.get(), {{"op", "remove"}, {"sandbox", sandbox}});
}

void EgressProxy::ReadLoop() {
  for (;;) {
    int fd;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      fd = control_.get();
    }
    auto msg = proxy::ReceiveControl(fd);
    if (msg) {
      const std::string op = msg->body["op"].get<std::string>();
      if (op == "audit") {
        const auto& b = msg->body;
        v1::EgressAudit a;
        a.set_kind(b.value("kind", ""));
        a.set_destination(b.value("destination", ""));
        a.set_port(b.value("port", 0u));
        a.set_address(b.value("address", ""));
        a.set_allowed(b.value("allowed", false));
        a.set_reason(b.value("reason", ""));
        a.set_bytes_out(b.value("bytes_out", uint64_t{0}));
        a.set_bytes_in(b.value("bytes_in", uint64_t{0}));
        if (b.contains("secrets") && b["secrets"].is_array())
          for (const auto& s : b["secrets"])
            if (s.is_string()) a.add_secrets(s.get<std::string>());
        sink_(b.value("sandbox", ""), a);
      } else if (op == "error") {
        fprintf(stderr, "airlockd: egress proxy: %s\n", msg->body.dump().c_str());
      }
      continue;
    }
    // The proxy is gone: reap it, start another, hand it every sandbox.
    std::unique_lock lock(mu_);
    if (stopping_) return;
    int status = 0;
    if (pid_ > 0) waitpid(pid_, &status, 0);
    fprintf(stderr, "airlockd: egress proxy (pid %d) ended (%s %d); restarting it\n", pid_,
            WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    pid_ = -1;
    control_.Reset();
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    lock.lock();
    if (stopping_) return;
    if (auto spawned = Spawn(); !spawned) {
      fprintf(stderr, "airlockd: egress proxy: %s\n", spawned.error().Message().c_str());
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

ApiResult<void> EgressProxy::Check(const v1::CreateRequest& r) const {
  nlohmann::json allow = {{"allow", r.egress().allow()}};
  if (auto p = proxy::ParsePolicy(allow, "create.egress"); !p)
    return ApiFail(Code::kInvalidArgument, p.error().Message());
  std::set<std::string> seen;
  for (int i = 0; i < r.egress().secrets_size(); ++i) {
    const std::string& name = r.egress().secrets(i);
    const std::string field = "create.egress.secrets[" + std::to_string(i) + "]";
    if (!config_.secrets.count(name)) return BadField(field, "no secret \"" + name + "\" in the daemon's config");
    if (!seen.insert(name).second) return BadField(field, "\"" + name + "\" named twice");
  }
  if (r.expose_ports_size() > 0 && config_.expose_address.empty())
    return BadField("create.expose_ports", "the daemon's config sets no egress.expose_address to listen on");
  if (static_cast<size_t>(r.expose_ports_size()) > kMaxExposedPorts)
    return BadField("create.expose_ports", "at most " + std::to_string(kMaxExposedPorts) + " ports");
  std::set<uint32_t> ports;
  for (int i = 0; i < r.expose_ports_size(); ++i) {
    uint32_t p = r.expose_ports(i);
    const std::string field = "create.expose_ports[" + std::to_string(i) + "]";
    if (p == 0 || p > 65535) return BadField(field, "must be 1-65535 (got " + std::to_string(p) + ")");
    if (!ports.insert(p).second) return BadField(field, std::to_string(p) + " named twice");
  }
  return {};
}

std::vector<std::string> EgressProxy::Environment(const EgressRegistration& reg) const {
  std::vector<std::string> env;
  for (const char* k : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}) env.push_back(std::string(k) + "=" + kProxyUrl);
  for (const char* k : {"NO_PROXY", "no_proxy"}) env.push_back(std::string(k) + "=localhost,127.0.0.1,::1");
  for (const char* k : {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"})
    env.push_back(std::string(k) + "=" + kBundleInside);
  for (const auto& name : reg.secrets) {
    auto it = config_.secrets.find(name);
    if (it != config_.secrets.end()) env.push_back(it->second.env + "=airlock:" + name);
  }
  return env;
}

}  // namespace airlock::daemon

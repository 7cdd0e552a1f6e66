// The manager's side of network mode proxy: a sandbox handed to the egress
// proxy, its exposed ports, and the proxy's audit turned into events.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>

#include "harness/daemon/files.h"
#include "harness/daemon/manager.h"

namespace airlock::daemon {

namespace {

// A listener on the operator's expose address, on a port the kernel picks.
Result<std::pair<UniqueFd, std::string>> ExposeListener(const std::string& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    len = sizeof(sockaddr_in6);
  } else {
    return Fail("egress.expose_address", "not an IP address: " + address);
  }
  UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket", "exposed port");
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) return Errno("bind", address);
  if (listen(fd.get(), 128) < 0) return Errno("listen", address);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0) return Errno("getsockname", address);
  uint16_t port = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
  std::string host = ss.ss_family == AF_INET6 ? "[" + address + "]" : address;
  return std::make_pair(std::move(fd), host + ":" + std::to_string(port));
}

}  // namespace

ApiResult<void> Manager::AttachEgress(Live& live, const v1::CreateRequest& request) {
  EgressRegistration reg;
  reg.sandbox = live.id;
  reg.allow.assign(request.egress().allow().begin(), request.egress().allow().end());
  reg.secrets.assign(request.egress().secrets().begin(), request.egress().secrets().end());
  reg.transparent = request.egress().transparent();
  std::vector<UniqueFd> listeners;
  std::vector<v1::ExposedPort> exposed;
  for (uint32_t port : request.expose_ports()) {
    auto l = ExposeListener(egress_->config().expose_address);
    if (!l) return FromError(l.error(), "create.expose_ports");
    reg.ports.push_back(static_cast<uint16_t>(port));
    v1::ExposedPort e;
    e.set_port(port);
    e.set_host_address(l->second);
    exposed.push_back(e);
    listeners.push_back(std::move(l->first));
  }
  for (const auto& kv : egress_->Environment(reg)) live.env.push_back(kv);
  if (auto added = egress_->Add(reg, live.sandbox->egress_fd(), std::move(listeners)); !added)
    return FromError(added.error(), "create.network");
  live.egress = egress_.get();
  std::lock_guard lock(live.mu);
  live.info.clear_exposed_ports();
  for (auto& e : exposed) *live.info.add_exposed_ports() = e;
  return {};
}

ApiResult<void> UseRelayDns(Live& live) {
  // The relay answers every name (with a made-up address the proxy maps
  // back); the image's resolver must ask it: hosts from files, then DNS.
  proto::FileOpRequest read;
  read.op = proto::FileOp::kRead;
  read.path = "/etc/nsswitch.conf";
  std::string conf;
  if (auto got = FileOpToString(live, read, 64 * 1024, "read /etc/nsswitch.conf"); got) conf = *got;
  std::string out;
  bool replaced = false;
  size_t start = 0;
  while (start < conf.size()) {
    size_t end = conf.find('\n', start);
    if (end == std::string::npos) end = conf.size();
    std::string line = conf.substr(start, end - start);
    if (line.rfind("hosts:", 0) == 0) {
      line = "hosts: files dns";
      replaced = true;
    }
    out += line + "\n";
    start = end + 1;
  }
  if (!replaced) out += "hosts: files dns\n";
  proto::FileOpRequest w;
  w.op = proto::FileOp::kWrite;
  w.flags = proto::kWriteAtomic;
  w.path = "/etc/nsswitch.conf";
  TRY(FileOpFromString(live, w, out, "create.egress.transparent"));
  w.path = "/etc/resolv.conf";
  TRY(FileOpFromString(live, w,
                       "# airlock: transparent egress. airlock-init's relay answers here with made-up\n"
                       "# addresses; the egress proxy checks each name against the sandbox's policy.\n"
                       "nameserver 127.0.0.1\n",
                       "create.egress.transparent"));
  return {};
}

void Manager::OnEgressAudit(const std::string& sandbox, const v1::EgressAudit& a) {
  uid_t owner = 0;
  {
    std::lock_guard lock(mu_);
    auto it = live_.find(sandbox);
    if (it == live_.end()) return;  // gone meanwhile
    owner = it->second->owner;
  }
  std::string line = std::string(a.allowed() ? "allowed " : "denied ") + a.kind() + " " + a.destination() + ":" +
                     std::to_string(a.port());
  if (!a.address().empty()) line += " (" + a.address() + ")";
  if (!a.reason().empty()) line += ": " + a.reason();
  if (a.allowed()) line += "; " + std::to_string(a.bytes_out()) + " B out, " + std::to_string(a.bytes_in()) + " B in";
  for (const auto& s : a.secrets()) line += "; secret " + s + " injected";
  // The log names secrets, never their values (the proxy never sends them).
  fprintf(stderr, "airlockd: egress %s %s\n", sandbox.c_str(), line.c_str());
  std::string stored;
  a.SerializeToString(&stored);
  EmitEgress(sandbox, owner, line, stored);
}

}  // namespace airlock::daemon

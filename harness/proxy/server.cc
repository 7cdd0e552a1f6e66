#include "harness/proxy/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "harness/proxy/control.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/egress.h"

namespace airlock::proxy {

struct Server::SandboxState {
  std::shared_ptr<const SandboxPolicy> policy;
  UniqueFd egress;
  std::vector<UniqueFd> port_listeners;
  std::vector<uint16_t> ports;
  std::mutex send_mu;  // the egress channel has several writers
  std::atomic<int> connections{0};
  std::atomic<uint32_t> next_port_id{1};
  std::atomic<bool> removed{false};
};

namespace {

std::atomic<int> g_connections{0};

// "a.b.c.d:port", "[v6]:port", or an address alone (port 0).
Result<sockaddr_storage> ParseSockaddr(const std::string& text, uint16_t default_port) {
  std::string host = text;
  uint16_t port = default_port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) return Fail("address", "unbalanced [ in " + text);
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return Fail("address", "bad port in " + text);
      port = static_cast<uint16_t>(std::stoul("0" + text.substr(close + 2)));
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = static_cast<uint16_t>(std::stoul("0" + text.substr(colon + 1)));
  }
  auto ip = ParseIpLiteral(host);
  if (!ip) return Fail("address", "not an IP address: " + text);
  return MakeSockaddr(*ip, port);
}

// Why a redirected connection is refused before anything else happens, if
// it is: its name (or address literal) isn't on the allowlist, or it is one
// of the relay's made-up addresses that no longer maps to a name.
std::optional<std::string> PreCheck(const Policy& policy, const proto::EgressOpen& open) {
  const uint16_t port = static_cast<uint16_t>(open.port);
  if (!open.name.empty()) {
    auto name = NormalizeHostName(open.name);
    if (!name) return "not a host name: " + Printable(open.name);
    if (!AllowsName(policy, *name, port)) return *name + ":" + std::to_string(port) + " is not on the sandbox's allowlist";
    return std::nullopt;
  }
  auto ip = ParseIpLiteral(open.address);
  if (!ip) return "not an address: " + Printable(open.address);
  if (ClassifyAddress(*ip).cls == AddressClass::kFakeDns)
    return "a made-up DNS address the relay no longer maps to a name";
  if (!AllowsAddressLiteral(policy, MakeSockaddr(*ip, port), port))
    return open.address + ":" + std::to_string(port) + " is not on the sandbox's allowlist";
  return std::nullopt;
}

}  // namespace

void Server::Report(const std::string& sandbox, const Audit& a) {
  nlohmann::json j = {{"op", "audit"},          {"sandbox", sandbox},     {"kind", a.kind},
                      {"destination", a.destination}, {"port", a.port},  {"address", a.address},
                      {"allowed", a.allowed},   {"reason", a.reason},     {"bytes_out", a.bytes_out},
                      {"bytes_in", a.bytes_in}, {"secrets", a.secrets}};
  std::lock_guard lock(send_mu_);
  (void)SendControl(control_, j);
}

Result<void> Server::Configure(const nlohmann::json& body) {
  auto config = std::make_shared<ProxyConfig>();
  if (body.contains("ca_cert") && body["ca_cert"].is_string() && !body["ca_cert"].get<std::string>().empty()) {
    if (!body.contains("ca_key") || !body["ca_key"].is_string()) return Fail("config", "ca_key missing");
    config->ca = std::make_shared<CertAuthority>(
        TRY(CertAuthority::FromPem(body["ca_cert"].get<std::string>(), body["ca_key"].get<std::string>())));
  }
  // The operator's bundle arrives as text: the proxy can't open root's files.
  std::string upstream_pem = body.value("upstream_ca", std::string());
  config->upstream = upstream_pem.empty() ? TRY(UpstreamContext("")) : TRY(UpstreamContextFromPem(upstream_pem));
  if (body.contains("resolve") && body["resolve"].is_object()) {
    for (const auto& [name, addrs] : body["resolve"].items()) {
      if (!addrs.is_array()) return Fail("config", "resolve." + name + ": not a list");
      for (const auto& a : addrs) {
        if (!a.is_string()) return Fail("config", "resolve." + name + ": not a string");
        config->resolve[name].push_back(TRY(ParseSockaddr(a.get<std::string>(), 0)));
      }
    }
  }
  if (body.contains("refused") && body["refused"].is_array())
    for (const auto& a : body["refused"])
      if (a.is_string()) config->refused.push_back(TRY(ParseSockaddr(a.get<std::string>(), 0)));
  std::lock_guard lock(mu_);
  config_ = std::move(config);
  return {};
}

Result<void> Server::Add(const nlohmann::json& body, std::vector<UniqueFd> fds) {
  auto policy = std::make_shared<SandboxPolicy>();
  if (!body.contains("sandbox") || !body["sandbox"].is_string()) return Fail("add", "sandbox missing");
  policy->id = body["sandbox"].get<std::string>();
  nlohmann::json allow = {{"allow", body.value("allow", nlohmann::json::array())}};
  policy->policy = TRY(ParsePolicy(allow, "allow"));
  policy->transparent = body.value("transparent", false);
  if (body.contains("secrets") && body["secrets"].is_array())
    for (const auto& s : body["secrets"]) {
      if (!s.is_object() || !s.contains("name") || !s["name"].is_string()) return Fail("add", "secret without a name");
      policy->secrets.push_back(TRY(ParseSecretRule(s["name"].get<std::string>(), s)));
    }
  std::vector<uint16_t> ports;
  if (body.contains("ports") && body["ports"].is_array())
    for (const auto& p : body["ports"])
      if (p.is_number_unsigned() && p.get<uint32_t>() >= 1 && p.get<uint32_t>() <= 65535) ports.push_back(p.get<uint16_t>());
  if (fds.size() != 1 + ports.size()) return Fail("add", "expected the egress channel and one listener per port");

  auto s = std::make_shared<SandboxState>();
  s->policy = policy;
  s->egress = std::move(fds[0]);
  for (size_t i = 0; i < ports.size(); ++i) s->port_listeners.push_back(std::move(fds[1 + i]));
  s->ports = ports;
  {
    std::lock_guard lock(mu_);
    auto old = sandboxes_.find(policy->id);
    if (old != sandboxes_.end()) {
      old->second->removed = true;
      for (auto& l : old->second->port_listeners) shutdown(l.get(), SHUT_RDWR);
    }
    sandboxes_[policy->id] = s;
  }
  std::thread([this, s] { ReadEgress(s); }).detach();
  for (size_t i = 0; i < s->port_listeners.size(); ++i) std::thread([this, s, i] { AcceptPort(s, i); }).detach();
  return {};
}

void Server::Remove(const std::string& id) {
  std::shared_ptr<SandboxState> s;
  {
    std::lock_guard lock(mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return;
    s = it->second;
    sandboxes_.erase(it);
  }
  s->removed = true;
  // Wakes its threads; the sandbox is ending, its relay may see the EOF.
  shutdown(s->egress.get(), SHUT_RDWR);
  for (auto& l : s->port_listeners) shutdown(l.get(), SHUT_RDWR);
}

void Server::ReadEgress(std::shared_ptr<SandboxState> s) {
  for (;;) {
    auto msg = proto::ReceiveMessage(s->egress.get());
    if (!msg) {
      // EOF or garbage from the relay: this sandbox's egress is over (the
      // relay is the sandbox's; nothing else is affected).
      if (!s->removed && !(msg.error().err == 0 && msg.error().op == "channel closed"))
        fprintf(stderr, "airlock-proxy: sandbox %s: egress channel: %s\n", s->policy->id.c_str(),
                msg.error().Message().c_str());
      return;
    }
    if (msg->type == proto::Type::kPortFailed) continue;  // the relay closed that socket: its acceptor sees EOF
    if (msg->type != proto::Type::kEgressOpen) continue;
    auto open = proto::DecodeEgressOpen(msg->payload);
    if (!open) {
      Report(s->policy->id, {.kind = "transparent", .reason = "malformed request from the relay: " + open.error().Message()});
      continue;
    }
    auto refuse = [&](const std::string& why) {
      std::lock_guard lock(s->send_mu);
      proto::SendMessage(s->egress.get(), proto::Type::kEgressRefused, proto::Encode(proto::EgressAnswer{open->id}));
      Audit a;
      a.kind = open->kind == proto::EgressKind::kTransparent ? "transparent" : "connect";
      auto normalized = NormalizeHostName(open->name);
      a.destination = open->name.empty() ? open->address : normalized ? *normalized : Printable(open->name);
      a.port = static_cast<uint16_t>(open->port);
      a.reason = why;
      Report(s->policy->id, a);
    };
    if (s->connections.load() >= kMaxConnectionsPerSandbox || g_connections.load() >= kMaxConnections) {
      refuse("too many connections");
      continue;
    }
    // A redirected connection names its destination up front: one the
    // policy refuses by name is reset right here (no thread, no lookup).
    if (open->kind == proto::EgressKind::kTransparent) {
      if (auto why = PreCheck(s->policy->policy, *open)) {
        refuse(*why);
        continue;
      }
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
      refuse("socketpair failed");
      continue;
    }
    UniqueFd ours(sv[0]), theirs(sv[1]);
    {
      std::lock_guard lock(s->send_mu);
      int fd = theirs.get();
      if (proto::SendMessage(s->egress.get(), proto::Type::kEgressSocket, proto::Encode(proto::EgressAnswer{open->id}),
                             std::span<const int>(&fd, 1)) < 0)
        return;
    }
    theirs.Reset();
    ConnContext ctx;
    ctx.server = this;
    {
      std::lock_guard lock(mu_);
      ctx.config = config_;
    }
    ctx.sandbox = s->policy;
    EgressOpenInfo info{open->kind == proto::EgressKind::kTransparent, open->address,
                        static_cast<uint16_t>(open->port), open->name};
    ++s->connections;
    ++g_connections;
    std::thread([ctx, s, fd = ours.Release(), info]() mutable {
      ServeEgress(ctx, UniqueFd(fd), info);
      --s->connections;
      --g_connections;
    }).detach();
  }
}

void Server::AcceptPort(std::shared_ptr<SandboxState> s, size_t index) {
  const int listener = s->port_listeners[index].get();
  const uint16_t port = s->ports[index];
  for (;;) {
    int client = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (s->removed) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno == EMFILE || errno == ENFILE) usleep(100000);
        continue;
      }
      return;
    }
    UniqueFd c(client);
    if (s->connections.load() >= kMaxConnectionsPerSandbox || g_connections.load() >= kMaxConnections) continue;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) continue;
    UniqueFd ours(sv[0]), theirs(sv[1]);
    proto::PortOpen open{s->next_port_id++, port};
    {
      std::lock_guard lock(s->send_mu);
      int fd = theirs.get();
      if (proto::SendMessage(s->egress.get(), proto::Type::kPortOpen, proto::Encode(open), std::span<const int>(&fd, 1)) <
          0)
        return;
    }
    theirs.Reset();
    ++s->connections;
    ++g_connections;
    std::thread([this, s, port, c = c.Release(), o = ours.Release()] {
      UniqueFd client_fd(c), ours_fd(o);
      Audit a;
      a.kind = "port";
      a.destination = "127.0.0.1";
      a.port = port;
      a.allowed = true;
      a.reason = "exposed port";
      Relay(client_fd.get(), ours_fd.get(), {}, &a.bytes_in, &a.bytes_out);
      Report(s->policy->id, a);
      --s->connections;
      --g_connections;
    }).detach();
  }
}

Result<void> Server::Run() {
  TRY(SendControl(control_, {{"op", "ready"}}));
  for (;;) {
    auto msg = ReceiveControl(control_);
    if (!msg) {
      if (msg.error().err == 0 && msg.error().op == "channel closed") return {};
      return std::unexpected(msg.error());
    }
    const std::string op = msg->body["op"].get<std::string>();
    Result<void> done;
    if (op == "config") {
      done = Configure(msg->body);
    } else if (op == "add") {
      done = Add(msg->body, std::move(msg->fds));
    } else if (op == "remove") {
      Remove(msg->body.value("sandbox", std::string()));
    } else {
      done = Fail("proxy control", "unknown op " + op);
    }
    if (!done) {
      // The daemon's own messages: an error here is a bug worth its log.
      fprintf(stderr, "airlock-proxy: %s: %s\n", op.c_str(), done.error().Message().c_str());
      std::lock_guard lock(send_mu_);
      (void)SendControl(control_, {{"op", "error"}, {"for", op}, {"sandbox", msg->body.value("sandbox", "")},
                                   {"message", done.error().Message()}});
    }
  }
}

void Relay(int a, int b, std::string_view first, uint64_t* a_to_b, uint64_t* b_to_a) {
  size_t off = 0;
  while (off < first.size()) {
    ssize_t n = send(b, first.data() + off, first.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
  *a_to_b += first.size();
  struct Dir {
    int from, to;
    int pipe[2] = {-1, -1};
    size_t in_pipe = 0;
    bool eof = false, done = false;
    uint64_t* count;
  } dirs[2] = {{a, b, {-1, -1}, 0, false, false, a_to_b}, {b, a, {-1, -1}, 0, false, false, b_to_a}};
  for (auto& d : dirs)
    if (pipe2(d.pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
      for (auto& e : dirs)
        for (int fd : e.pipe)
          if (fd >= 0) close(fd);
      return;
    }
  fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
  fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
  constexpr size_t kChunk = 1 << 16;
  while (!dirs[0].done || !dirs[1].done) {
    pollfd p[4];
    int n = 0;
    int idx[4];
    for (int i = 0; i < 2; ++i) {
      Dir& d = dirs[i];
      if (d.done) continue;
      if (!d.eof && d.in_pipe == 0) {
        p[n] = {d.from, POLLIN, 0};
        idx[n++] = i;
      }
      if (d.in_pipe > 0) {
        p[n] = {d.to, POLLOUT, 0};
        idx[n++] = i;
      }
    }
    if (n == 0) break;
    if (poll(p, static_cast<nfds_t>(n), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    bool failed = false;
    for (int k = 0; k < n && !failed; ++k) {
      if (!p[k].revents) continue;
      Dir& d = dirs[idx[k]];
      if (p[k].events == POLLIN) {
        ssize_t got = splice(d.from, nullptr, d.pipe[1], nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (got > 0) {
          d.in_pipe += static_cast<size_t>(got);
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          d.eof = true;
        }
      }
      if (d.in_pipe > 0) {
        ssize_t put = splice(d.pipe[0], nullptr, d.to, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (put > 0) {
          d.in_pipe -= static_cast<size_t>(put);
          *d.count += static_cast<uint64_t>(put);
        } else if (put < 0 && errno != EAGAIN && errno != EINTR) {
          failed = true;  // the reader is gone: nothing more can pass either way
        }
      }
      if (d.eof && d.in_pipe == 0 && !d.done) {
        d.done = true;
        shutdown(d.to, SHUT_WR);
      }
    }
    if (failed) break;
  }
  for (auto& d : dirs) {
    close(d.pipe[0]);
    close(d.pipe[1]);
  }
}

}  // namespace airlock::proxy

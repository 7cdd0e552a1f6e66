// A driver for airlock-init's relay (runtime/init/relay.h): it forks a
// process running RelayMain on an egress channel (a SOCK_SEQPACKET
// socketpair) and sockets of its own, plays the egress proxy's side of the
// channel and checks what programs see: bytes both ways, half-close,
// refusal as a reset, a 1 MiB transfer each way, no stall behind a
// connection nobody reads, many connections at once, exposed ports, the
// connection limit, DNS over UDP and TCP, the relay's end when the channel
// ends. Three times: as is, under a seccomp filter that refuses splice (the
// relay copies through buffers) and with RLIMIT_NOFILE 256 (fewer
// connections; pipes for some, buffers for the others).
//
// As root it runs in a network namespace of its own with the runtime's
// transparent rules (runtime/net/transparent.h) installed, so redirected
// connections and the DNS name mapping are checked too; otherwise it says
// that part is skipped. With --init=PATH it also runs that airlock-init
// (outside any sandbox) with --egress-fd and checks that the spawner and
// commands hold none of the relay's descriptors and that a killed relay is
// replaced, at a bounded rate.
//
// Exit status: 0 all checks passed, 1 a check failed.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/unique_fd.h"
#include "runtime/init/relay.h"
#include "runtime/net/fakedns.h"
#include "runtime/net/loopback.h"
#include "runtime/net/transparent.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/egress.h"

namespace proto = airlock::proto;
using airlock::UniqueFd;
using proto::Type;

namespace {

int failures = 0;
#define EXPECT(cond)                                                               \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      ++failures;                                                                  \
      fprintf(stderr, "FAILED %s:%d: %s (errno %s)\n", __FILE__, __LINE__, #cond, \
              strerror(errno));                                                    \
    }                                                                              \
  } while (0)

void Say(const char* what) { fprintf(stderr, "-- %s\n", what); }

void SetTimeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

sockaddr_in Loopback(uint16_t port, uint32_t addr = INADDR_LOOPBACK) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(addr);
  return a;
}

uint16_t PortOf(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

UniqueFd Bound(int type, uint16_t port) {
  UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a = Loopback(port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) return {};
  if (type == SOCK_STREAM && listen(fd.get(), 4096) < 0) return {};
  return fd;
}

UniqueFd Connect(uint16_t port, uint32_t addr = INADDR_LOOPBACK) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SetTimeout(fd.get(), 5000);
  sockaddr_in a = Loopback(port, addr);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) return {};
  return fd;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(n);
  }
  return true;
}

// Reads until EOF (or `max` bytes); nullopt on an error or timeout.
std::optional<std::string> ReadAll(int fd, size_t max = SIZE_MAX) {
  std::string out;
  char buf[65536];
  while (out.size() < max) {
    ssize_t n = recv(fd, buf, std::min(sizeof(buf), max - out.size()), 0);
    if (n == 0) return out;
    if (n < 0) return std::nullopt;
    out.append(buf, n);
  }
  return out;
}

std::string Pattern(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    seed = seed * 1103515245 + 12345;
    s[i] = static_cast<char>(seed >> 16);
  }
  return s;
}

// ---- the proxy's side of the egress channel ---------------------------------

std::optional<proto::Message> Next(int proxy, int timeout_ms = 5000) {
  pollfd p{proxy, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
  auto msg = proto::ReceiveMessage(proxy);
  if (!msg) {
    fprintf(stderr, "   channel: %s\n", msg.error().Message().c_str());
    return std::nullopt;
  }
  return std::move(*msg);
}

std::optional<proto::EgressOpen> ExpectOpen(int proxy, int timeout_ms = 5000) {
  auto msg = Next(proxy, timeout_ms);
  if (!msg || msg->type != Type::kEgressOpen) return std::nullopt;
  auto open = proto::DecodeEgressOpen(msg->payload);
  if (!open) return std::nullopt;
  return *open;
}

// Answers EgressOpen `id` with a fresh socketpair; returns the proxy's end.
UniqueFd Accept(int proxy, uint32_t id) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return {};
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SetTimeout(ours.get(), 5000);
  int fd = theirs.get();
  if (proto::SendMessage(proxy, Type::kEgressSocket, proto::Encode(proto::EgressAnswer{id}), {&fd, 1}) < 0) return {};
  return ours;
}

bool Refuse(int proxy, uint32_t id) {
  return proto::SendMessage(proxy, Type::kEgressRefused, proto::Encode(proto::EgressAnswer{id})) == 0;
}

struct Variant {
  const char* name;
  bool no_splice;
  int nofile;  // 0: as inherited
};

struct Relay {
  pid_t pid = -1;
  UniqueFd proxy;  // the proxy's end of the egress channel
  uint16_t port = 0, dns_port = 0;
  Variant variant;
};

// What a sandbox's `strict` seccomp profile does to splice.
void RefuseSplice() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_splice, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{sizeof(filter) / sizeof(filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) _exit(126);
}

Relay StartRelay(const Variant& v) {
  Relay r;
  UniqueFd listener = Bound(SOCK_STREAM, 0);
  r.port = PortOf(listener.get());
  UniqueFd udp, tcp;
  for (int tries = 0; tries < 20 && !tcp; ++tries) {  // one port number for both
    udp = Bound(SOCK_DGRAM, 0);
    tcp = Bound(SOCK_STREAM, PortOf(udp.get()));
  }
  r.dns_port = PortOf(udp.get());
  int sv[2];
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
  r.proxy.Reset(sv[0]);
  r.variant = v;
  r.pid = fork();
  if (r.pid == 0) {
    close(sv[0]);
    if (v.nofile) {
      rlimit l{static_cast<rlim_t>(v.nofile), static_cast<rlim_t>(v.nofile)};
      setrlimit(RLIMIT_NOFILE, &l);
    }
    if (v.no_splice) RefuseSplice();
    airlock::init::RelayMain(sv[1], listener.get(), udp.get(), tcp.get());
  }
  close(sv[1]);
  return r;
}

int WaitExit(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    usleep(10'000);
  }
  return -1;
}

// ---- DNS ------------------------------------------------------------------------

std::string U16(uint16_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

std::string DnsQuery(uint16_t id, const std::string& name, uint16_t type) {
  std::string q = U16(id) + U16(0x0100) + U16(1) + U16(0) + U16(0) + U16(0);
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q += static_cast<char>(dot - start);
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  return q + '\0' + U16(type) + U16(1);
}

uint32_t Get32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[off + i]);
  return v;
}

// The A record's address of a response, 0 if it has none.
uint32_t AddressIn(const std::string& r) {
  if (r.size() < 12 || (static_cast<uint8_t>(r[7]) | (static_cast<uint8_t>(r[6]) << 8)) != 1) return 0;
  return Get32(r, r.size() - 4);
}

std::string UdpAsk(uint16_t port, const std::string& query, uint32_t server = INADDR_LOOPBACK) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  SetTimeout(fd.get(), 3000);
  sockaddr_in a = Loopback(port, server);
  sendto(fd.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  char buf[1024];
  ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, n) : std::string();
}

// ---- the checks -------------------------------------------------------------------

void ExplicitConnection(Relay& r) {
  Say("explicit connection: bytes before the answer, both ways, half-close");
  UniqueFd client = Connect(r.port);
  EXPECT(client);
  EXPECT(WriteAll(client.get(), "GET http://example.com/ HTTP/1.1\r\n\r\n"));
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open && open->kind == proto::EgressKind::kExplicit && open->address.empty() && open->port == 0);
  if (!open) return;
  UniqueFd stream = Accept(r.proxy.get(), open->id);
  char buf[64];
  ssize_t n = recv(stream.get(), buf, sizeof(buf), MSG_WAITALL);
  EXPECT(n == 36 && std::string(buf, n).starts_with("GET http://example.com/"));
  EXPECT(WriteAll(stream.get(), "HTTP/1.1 200 OK\r\n"));
  n = recv(client.get(), buf, 17, MSG_WAITALL);
  EXPECT(n == 17);
  // The client is done sending: the proxy reads EOF, and still answers.
  shutdown(client.get(), SHUT_WR);
  EXPECT(ReadAll(stream.get()) == std::string());
  EXPECT(WriteAll(stream.get(), "body"));
  shutdown(stream.get(), SHUT_WR);
  EXPECT(ReadAll(client.get()) == "body");
}

void Refused(Relay& r) {
  Say("refused: the client sees a reset");
  UniqueFd client = Connect(r.port);
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open.has_value());
  if (!open) return;
  EXPECT(Refuse(r.proxy.get(), open->id));
  char c;
  errno = 0;
  EXPECT(recv(client.get(), &c, 1, 0) < 0 && errno == ECONNRESET);
}

void BigTransfer(Relay& r) {
  Say("1 MiB each way at once, byte for byte");
  constexpr size_t kSize = 1 << 20;
  const std::string up = Pattern(kSize, 1), down = Pattern(kSize, 2);
  UniqueFd client = Connect(r.port);
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open.has_value());
  if (!open) return;
  UniqueFd stream = Accept(r.proxy.get(), open->id);
  std::optional<std::string> got_up, got_down;
  std::thread proxy_side([&] {
    std::thread writer([&] {
      WriteAll(stream.get(), down);
      shutdown(stream.get(), SHUT_WR);
    });
    got_up = ReadAll(stream.get());
    writer.join();
  });
  std::thread writer([&] {
    WriteAll(client.get(), up);
    shutdown(client.get(), SHUT_WR);
  });
  got_down = ReadAll(client.get());
  writer.join();
  proxy_side.join();
  EXPECT(got_up == up);
  EXPECT(got_down == down);

  // Throughput, for information only (a 256 MiB one-way transfer).
  client = Connect(r.port);
  open = ExpectOpen(r.proxy.get());
  if (!open) return;
  stream = Accept(r.proxy.get(), open->id);
  const std::string chunk = Pattern(1 << 20, 3);
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  std::thread sink([&] {
    char buf[1 << 16];
    while (recv(stream.get(), buf, sizeof(buf), 0) > 0) {
    }
  });
  for (int i = 0; i < 256; ++i) WriteAll(client.get(), chunk);
  shutdown(client.get(), SHUT_WR);
  sink.join();
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  fprintf(stderr, "   256 MiB client -> proxy in %.3f s: %.1f Gbit/s\n", s, 256.0 * 8 / 1024 / s);
}

void NoStall(Relay& r) {
  Say("a connection nobody reads stalls no other");
  UniqueFd hog = Connect(r.port);
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open.has_value());
  if (!open) return;
  UniqueFd hog_stream = Accept(r.proxy.get(), open->id);  // never read
  fcntl(hog.get(), F_SETFL, O_NONBLOCK);
  const std::string chunk(65536, 'x');
  size_t sent = 0;
  for (int i = 0; i < 4096; ++i) {
    ssize_t n = send(hog.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) sent += n;
    else usleep(1000);
  }
  fprintf(stderr, "   %zu KiB queued on the unread connection\n", sent / 1024);
  UniqueFd client = Connect(r.port);
  auto open2 = ExpectOpen(r.proxy.get());
  EXPECT(open2.has_value());
  if (!open2) return;
  UniqueFd stream = Accept(r.proxy.get(), open2->id);
  EXPECT(WriteAll(client.get(), "ping"));
  char buf[4];
  EXPECT(recv(stream.get(), buf, 4, MSG_WAITALL) == 4);
  EXPECT(WriteAll(stream.get(), "pong"));
  EXPECT(recv(client.get(), buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "pong", 4) == 0);
}

void ManyAtOnce(Relay& r) {
  constexpr int kConns = 60;
  constexpr size_t kSize = 256 * 1024;
  Say("60 connections at once, 256 KiB each way on each");
  std::vector<UniqueFd> clients, streams;
  for (int i = 0; i < kConns; ++i) clients.push_back(Connect(r.port));
  for (int i = 0; i < kConns; ++i) {
    auto open = ExpectOpen(r.proxy.get());
    EXPECT(open.has_value());
    if (!open) return;
    streams.push_back(Accept(r.proxy.get(), open->id));
  }
  auto tag = [](uint32_t i) { return std::string(reinterpret_cast<const char*>(&i), 4); };
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kConns; ++i) {
    threads.emplace_back([&, i] {  // a program in the sandbox
      int fd = clients[i].get();
      std::thread writer([&] {
        WriteAll(fd, tag(i) + Pattern(kSize, i));
        shutdown(fd, SHUT_WR);
      });
      if (ReadAll(fd) == Pattern(kSize, i + 1000)) ++ok;
      writer.join();
    });
    threads.emplace_back([&, i] {  // the proxy's side of one of them
      int fd = streams[i].get();
      uint32_t which;
      if (recv(fd, &which, 4, MSG_WAITALL) != 4) return;
      std::thread writer([&] {
        WriteAll(fd, Pattern(kSize, which + 1000));
        shutdown(fd, SHUT_WR);
      });
      if (ReadAll(fd) == Pattern(kSize, which)) ++ok;
      writer.join();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT(ok == 2 * kConns);
}

void Ports(Relay& r) {
  Say("exposed ports: PortOpen to a listener inside, and to a closed port");
  UniqueFd server = Bound(SOCK_STREAM, 0);
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SetTimeout(ours.get(), 5000);
  int fd = theirs.get();
  EXPECT(proto::SendMessage(r.proxy.get(), Type::kPortOpen, proto::Encode(proto::PortOpen{77, PortOf(server.get())}),
                            {&fd, 1}) == 0);
  theirs.Reset();
  SetTimeout(server.get(), 5000);
  UniqueFd conn(accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT(conn);
  SetTimeout(conn.get(), 5000);
  EXPECT(WriteAll(ours.get(), "request"));
  char buf[16];
  EXPECT(recv(conn.get(), buf, 7, MSG_WAITALL) == 7 && memcmp(buf, "request", 7) == 0);
  EXPECT(WriteAll(conn.get(), "response"));
  conn.Reset();
  EXPECT(ReadAll(ours.get()) == "response");

  UniqueFd gone = Bound(SOCK_STREAM, 0);
  uint16_t closed_port = PortOf(gone.get());
  gone.Reset();
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  ours.Reset(sv[0]);
  theirs.Reset(sv[1]);
  SetTimeout(ours.get(), 5000);
  fd = theirs.get();
  EXPECT(proto::SendMessage(r.proxy.get(), Type::kPortOpen, proto::Encode(proto::PortOpen{78, closed_port}), {&fd, 1}) ==
         0);
  theirs.Reset();
  auto msg = Next(r.proxy.get());
  EXPECT(msg && msg->type == Type::kPortFailed);
  if (msg && msg->type == Type::kPortFailed) {
    auto failed = proto::DecodePortFailed(msg->payload);
    EXPECT(failed && failed->id == 78 && failed->err == ECONNREFUSED);
  }
  EXPECT(ReadAll(ours.get()) == std::string());  // the relay closed its end
}

void UnknownAnswer(Relay& r) {
  Say("an answer for no connection: its socket is closed");
  UniqueFd stream = Accept(r.proxy.get(), 0xdeadbeef);
  EXPECT(ReadAll(stream.get()) == std::string());
}

void Dns(Relay& r) {
  Say("DNS over UDP and TCP");
  std::string a = UdpAsk(r.dns_port, DnsQuery(1, "Api.Example.com", airlock::net::kDnsTypeA));
  uint32_t addr = AddressIn(a);
  EXPECT(airlock::net::FakeDnsTable::IsFake(addr));
  std::string aaaa = UdpAsk(r.dns_port, DnsQuery(2, "api.example.com", airlock::net::kDnsTypeAAAA));
  EXPECT(aaaa.size() > 12 && (aaaa[3] & 0xf) == 0 && aaaa[7] == 0);
  EXPECT(UdpAsk(r.dns_port, std::string(5, 'x')).empty());  // not even a header: no answer

  UniqueFd tcp = Connect(r.dns_port);
  EXPECT(tcp);
  std::string q1 = DnsQuery(3, "api.example.com", 1), q2 = DnsQuery(4, "other.example.com", 1);
  EXPECT(WriteAll(tcp.get(), U16(q1.size()) + q1 + U16(q2.size()) + q2));
  shutdown(tcp.get(), SHUT_WR);
  auto both = ReadAll(tcp.get());
  EXPECT(both.has_value());
  if (both && both->size() > 4) {
    size_t len1 = (static_cast<uint8_t>((*both)[0]) << 8) | static_cast<uint8_t>((*both)[1]);
    std::string r1 = both->substr(2, len1), rest = both->substr(2 + len1);
    EXPECT(AddressIn(r1) == addr);  // the same name, the same address
    EXPECT(rest.size() > 2 && AddressIn(rest.substr(2)) != addr && AddressIn(rest.substr(2)) != 0);
  }
  // A length no query has: the connection is closed, nothing answered.
  tcp = Connect(r.dns_port);
  EXPECT(WriteAll(tcp.get(), U16(0xffff) + std::string(100, 'q')));
  EXPECT(ReadAll(tcp.get()) == std::string());
}

void Limit(Relay& r) {
  Say("the connection limit: the relay refuses what is over it");
  std::vector<UniqueFd> clients;
  const int kTotal = airlock::init::kRelayMaxConnections + 16;
  int reset = 0, unconnected = 0, other = 0;
  for (int i = 0; i < kTotal; ++i) {
    clients.push_back(Connect(r.port));
    // On loopback the relay's reset may come before connect() returns.
    if (!clients.back() && errno == ECONNRESET) ++reset;
    else if (!clients.back()) ++unconnected;
  }
  std::vector<uint32_t> ids;
  usleep(200'000);  // the connections of earlier checks are gone
  while (auto open = ExpectOpen(r.proxy.get(), ids.size() < static_cast<size_t>(airlock::init::kRelayMaxConnections) ? 5000 : 500)) {
    ids.push_back(open->id);
    if (ids.size() > static_cast<size_t>(kTotal)) break;
  }
  fprintf(stderr, "   %zu of %d connections opened\n", ids.size(), kTotal);
  if (!r.variant.nofile) EXPECT(ids.size() == static_cast<size_t>(airlock::init::kRelayMaxConnections));
  else EXPECT(ids.size() > 16 && ids.size() < static_cast<size_t>(r.variant.nofile) / 2);
  for (auto& c : clients) {
    pollfd p{c.get(), POLLIN, 0};
    char ch;
    if (!c || poll(&p, 1, 0) != 1) continue;
    else if (recv(c.get(), &ch, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET) ++reset;
    else ++other;
  }
  EXPECT(unconnected == 0 && other == 0);
  EXPECT(reset == kTotal - static_cast<int>(ids.size()));
  for (uint32_t id : ids) Refuse(r.proxy.get(), id);
  clients.clear();
  usleep(100'000);
  // Every slot is free again.
  UniqueFd client = Connect(r.port);
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open.has_value());
  if (open) Refuse(r.proxy.get(), open->id);
}

void Transparent(Relay& r) {
  Say("transparent: redirected connections and DNS names (netfilter, own network namespace)");
  int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  auto installed = airlock::net::InstallTransparentRedirect(ns, {r.port, r.dns_port});
  close(ns);
  if (!installed) {
    ++failures;
    fprintf(stderr, "FAILED: install the transparent rules: %s\n", installed.error().Message().c_str());
    return;
  }
  // A literal address: its original destination, no name.
  UniqueFd client = Connect(443, (203u << 24) | (113u << 8) | 7);  // 203.0.113.7
  EXPECT(client);
  auto open = ExpectOpen(r.proxy.get());
  EXPECT(open && open->kind == proto::EgressKind::kTransparent && open->address == "203.0.113.7" &&
         open->port == 443 && open->name.empty());
  if (open) {
    UniqueFd stream = Accept(r.proxy.get(), open->id);
    EXPECT(WriteAll(client.get(), "hi"));
    char buf[2];
    EXPECT(recv(stream.get(), buf, 2, MSG_WAITALL) == 2);
  }
  // A name, looked up at some DNS server (redirected to the relay), then
  // connected to.
  std::string answer = UdpAsk(53, DnsQuery(9, "Files.Example.NET", 1), (192u << 24) | (2u << 8) | 53);
  uint32_t addr = AddressIn(answer);
  EXPECT(airlock::net::FakeDnsTable::IsFake(addr));
  client = Connect(8080, addr);
  open = ExpectOpen(r.proxy.get());
  EXPECT(open && open->kind == proto::EgressKind::kTransparent && open->port == 8080 &&
         open->name == "files.example.net");
  if (open) Refuse(r.proxy.get(), open->id);
  // A fake address the relay never gave out: sent, without a name.
  client = Connect(80, addr + 1000);
  open = ExpectOpen(r.proxy.get());
  EXPECT(open && open->kind == proto::EgressKind::kTransparent && open->name.empty());
  if (open) Refuse(r.proxy.get(), open->id);
  // The proxy port itself, with conntrack in place: still explicit.
  client = Connect(r.port);
  open = ExpectOpen(r.proxy.get());
  EXPECT(open && open->kind == proto::EgressKind::kExplicit);
  if (open) Refuse(r.proxy.get(), open->id);
}

void ChannelEnd(Relay& r) {
  Say("the egress channel ends: the relay exits 0");
  r.proxy.Reset();
  int status = WaitExit(r.pid, 3000);
  EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- airlock-init with --egress-fd --------------------------------------------------

std::vector<pid_t> Children(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  pid_t p;
  while (in >> p) out.push_back(p);
  return out;
}

std::string Comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string s;
  std::getline(in, s);
  return s;
}

// The inode ("socket:[123]") of each of a process's descriptors.
std::set<std::string> Files(pid_t pid) {
  std::set<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char target[256];
    ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof(target));
    if (n > 0) out.insert(std::string(target, n));
  }
  closedir(d);
  return out;
}

std::string Link(int fd) {
  char target[256];
  ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), target, sizeof(target));
  return n > 0 ? std::string(target, n) : "";
}

pid_t FindRelay(pid_t init, int timeout_ms = 2000) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    for (pid_t c : Children(init))
      if (Comm(c) == "airlock-relay") return c;
    usleep(10'000);
  }
  return -1;
}

void Init(const char* path) {
  Say("airlock-init --egress-fd: descriptors, restart of a killed relay");
  int ch[2], eg[2];
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch);
  socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, eg);
  UniqueFd channel(ch[0]), proxy(eg[0]);
  UniqueFd listener = Bound(SOCK_STREAM, 0);
  uint16_t port = PortOf(listener.get());
  const std::set<std::string> relay_files = {Link(eg[1]), Link(listener.get())};
  const std::string init_channel = Link(ch[1]);
  pid_t init = fork();
  if (init == 0) {
    // fd 3 the channel, 4 the egress channel, 5 the listener; inherited.
    int fds[3] = {fcntl(ch[1], F_DUPFD, 10), fcntl(eg[1], F_DUPFD, 10), fcntl(listener.get(), F_DUPFD, 10)};
    for (int i = 0; i < 3; ++i) dup2(fds[i], 3 + i);
    syscall(SYS_close_range, 6, ~0U, 0);
    execl(path, path, "--egress-fd=4", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(ch[1]);
  close(eg[1]);
  listener.Reset();
  auto hello = Next(channel.get());
  EXPECT(hello && hello->type == Type::kHello);
  pid_t relay = FindRelay(init);
  EXPECT(relay > 0);
  pid_t spawner = -1;
  for (pid_t c : Children(init))
    if (c != relay) spawner = c;
  EXPECT(spawner > 0);
  std::set<std::string> sf = Files(spawner), rf = Files(relay);
  for (const auto& f : relay_files) {
    EXPECT(!sf.count(f));  // the spawner holds none of the relay's
    EXPECT(rf.count(f));
  }
  for (const auto& f : relay_files) EXPECT(Files(init).count(f));  // to fork another relay
  EXPECT(!rf.count(init_channel) && rf.size() <= 3 + 2 + 1);  // stdio, its two, its epoll

  // A command: none of the relay's descriptors, and no socket at all.
  int out[2];
  pipe2(out, O_CLOEXEC);
  proto::ExecRequest req;
  req.id = 1;
  req.argv = {"/bin/sh", "-c", "ls -l /proc/self/fd/"};
  req.env = {"PATH=/usr/bin:/bin"};
  int fds[3] = {open("/dev/null", O_RDONLY | O_CLOEXEC), out[1], out[1]};
  EXPECT(proto::SendMessage(channel.get(), Type::kExec, proto::Encode(req), fds) == 0);
  close(fds[0]);
  close(out[1]);
  std::string listing;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;) listing.append(buf, n);
  close(out[0]);
  EXPECT(!listing.empty() && listing.find("socket:") == std::string::npos);
  if (listing.find("socket:") != std::string::npos) fprintf(stderr, "%s", listing.c_str());
  bool exited = false;
  while (auto msg = Next(channel.get(), 3000)) {
    if (msg->type == Type::kExited) exited = true;
    if (exited) break;
  }
  EXPECT(exited);

  // Killed: a new relay, which serves the same listener.
  kill(relay, SIGKILL);
  usleep(20'000);
  pid_t again = FindRelay(init);
  EXPECT(again > 0 && again != relay);
  {
    UniqueFd client = Connect(port);
    auto open = ExpectOpen(proxy.get());
    EXPECT(open.has_value());
    if (open) Refuse(proxy.get(), open->id);
  }
  // Killed in a loop for a second: replaced a few times a second at most.
  std::set<pid_t> seen;
  timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    for (pid_t c : Children(init))
      if (c != spawner && Comm(c) == "airlock-relay" && kill(c, SIGKILL) == 0) seen.insert(c);
    usleep(2000);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1'000'000 < 1000);
  fprintf(stderr, "   %zu relays forked in 1 s of killing\n", seen.size());
  EXPECT(seen.size() >= 2 && seen.size() <= 6);

  // The egress channel ends: the relay exits 0 and isn't replaced; the
  // listener is closed.
  relay = FindRelay(init, 1000);
  EXPECT(relay > 0);
  proxy.Reset();
  usleep(400'000);
  EXPECT(FindRelay(init, 300) == -1);
  EXPECT(!Connect(port));
  channel.Reset();  // init ends with its channel
  int status = WaitExit(init, 3000);
  EXPECT(status != -1);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const char* init = nullptr;
  for (int i = 1; i < argc; ++i)
    if (strncmp(argv[i], "--init=", 7) == 0) init = argv[i] + 7;
  bool netns = geteuid() == 0 && unshare(CLONE_NEWNET) == 0 && airlock::net::BringUpLoopback() == 0;
  if (!netns) fprintf(stderr, "-- not root (or no network namespace): in the current one, transparent mode SKIPPED\n");

  for (const Variant& v : {Variant{"splice", false, 0}, Variant{"no splice (seccomp)", true, 0},
                           Variant{"RLIMIT_NOFILE 256", false, 256}}) {
    fprintf(stderr, "== relay: %s\n", v.name);
    Relay r = StartRelay(v);
    ExplicitConnection(r);
    Refused(r);
    BigTransfer(r);
    NoStall(r);
    ManyAtOnce(r);
    Ports(r);
    UnknownAnswer(r);
    Dns(r);
    Limit(r);
    if (netns && !v.no_splice && !v.nofile) Transparent(r);
    ChannelEnd(r);
  }
  if (init) Init(init);
  else fprintf(stderr, "-- no --init=PATH: airlock-init's part SKIPPED\n");

  fprintf(stderr, failures ? "%d check(s) FAILED\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}

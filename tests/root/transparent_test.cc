// Transparent egress (runtime/net/transparent.h) on a real kernel: a fresh
// network namespace with only lo, the redirect installed from outside, then
// a thread inside it plays both the sandboxed program and airlock's relay
// (listeners on 127.0.0.1) and reports what it saw. A packet socket on lo
// records every packet the namespace transmits: nothing may go to an
// address that isn't loopback. Every address used here (TEST-NET ranges,
// 2001:db8::/32) stays inside the test's own namespace, which has no
// interface but lo. Needs root.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "helpers.h"
#include "runtime/net/netns.h"
#include "runtime/net/transparent.h"

using airlock::ErrnoName;
using airlock::UniqueFd;
using airlock::net::TransparentPorts;

namespace {

constexpr uint16_t kTcpPort = 15001;
constexpr uint16_t kDnsPort = 15053;
constexpr uint16_t kOtherPort = 15080;  // a sandbox's own loopback service
constexpr int kWaitMs = 2000;           // for what must arrive
constexpr int kQuietMs = 200;           // for what must not

// ---- namespaces ------------------------------------------------------------

UniqueFd NewNetns() {
  airlock::Result<UniqueFd> ns = airlock::Fail("netns", "not made");
  std::thread([&] { ns = airlock::net::CreateLoopbackNetns(); }).join();
  INFO((ns ? std::string() : ns.error().Message()));
  REQUIRE(ns);
  return std::move(*ns);
}

void Install(int netns, TransparentPorts ports) {
  auto r = airlock::net::InstallTransparentRedirect(netns, ports);
  INFO((r ? std::string() : r.error().Message()));
  REQUIRE(r);
}

// Runs `fn` on a thread inside `netns` and returns what it returned. `fn`
// only observes; the assertions run here, on Catch2's thread.
template <typename F>
auto InNetns(int netns, F fn) {
  std::optional<decltype(fn())> out;
  int setns_err = 0;
  std::thread([&] {
    if (setns(netns, CLONE_NEWNET) < 0) {
      setns_err = errno;
      return;
    }
    out.emplace(fn());
  }).join();
  INFO("setns: " << ErrnoName(setns_err));
  REQUIRE(setns_err == 0);
  return std::move(*out);
}

ino_t NetnsInode(const char* path) {
  struct stat st{};
  REQUIRE(stat(path, &st) == 0);
  return st.st_ino;
}

// ---- sockets (used inside the namespace: no assertions) --------------------

sockaddr_storage V4(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  inet_pton(AF_INET, ip, &sin->sin_addr);
  return ss;
}

sockaddr_storage V6(const char* ip, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &sin6->sin6_addr);
  return ss;
}

socklen_t Len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

// "203.0.113.7:443", "[::1]:80".
std::string Str(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(sin6->sin6_port));
  }
  return "family " + std::to_string(ss.ss_family);
}

UniqueFd Socket(int family, int type, int protocol = 0) {
  UniqueFd fd(socket(family, type | SOCK_CLOEXEC, protocol));
  // connect() obeys the send timeout: nothing here may hang the test.
  timeval tv{kWaitMs / 1000, 0};
  if (fd) {
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  return fd;
}

// A TCP listener or UDP socket on `addr`; invalid if that failed.
UniqueFd Bound(int type, const sockaddr_storage& addr) {
  UniqueFd fd = Socket(addr.ss_family, type);
  int on = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), Len(addr)) < 0) return UniqueFd();
  if (type == SOCK_STREAM && listen(fd.get(), 8) < 0) return UniqueFd();
  return fd;
}

bool Readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

// 0 or the errno of connect().
int Connect(int fd, const sockaddr_storage& to) {
  return connect(fd, reinterpret_cast<const sockaddr*>(&to), Len(to)) == 0 ? 0 : errno;
}

// 0 or the errno of sendto().
int SendTo(int fd, const std::string& data, const sockaddr_storage& to) {
  ssize_t n = sendto(fd, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&to), Len(to));
  return n == static_cast<ssize_t>(data.size()) ? 0 : errno;
}

// The accepted connection if one is waiting within `ms`, else invalid.
UniqueFd AcceptWithin(int listener, int ms) {
  if (!Readable(listener, ms)) return UniqueFd();
  return UniqueFd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

// What the relay reads: the destination before the redirect.
std::string OriginalDst(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(sockaddr_in);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) < 0) return "error " + ErrnoName(errno);
  return Str(ss);
}

std::string Peer(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "error " + ErrnoName(errno);
  return Str(ss);
}

std::string ReadSome(int fd) {
  char buf[256];
  ssize_t n = Readable(fd, kWaitMs) ? read(fd, buf, sizeof(buf)) : -1;
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Every packet the namespace transmits passes lo's transmit path, where a
// packet socket sees it after netfilter's output hooks. What netfilter
// drops never shows up; what is redirected shows up with its new address.
class LoCapture {
 public:
  struct Summary {
    int open_err = 0;
    std::vector<std::string> packets;  // "udp 127.0.0.1:15053", "tcp [::1]:443", ...
    std::vector<std::string> escaped;  // packets to an address that isn't loopback
    bool Saw(const std::string& what) const {
      for (const auto& p : packets)
        if (p == what) return true;
      return false;
    }
  };

  LoCapture() {
    fd_.Reset(socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = 1;  // lo
    if (!fd_ || bind(fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) < 0) open_err_ = errno;
  }

  Summary Drain() {
    Summary s;
    s.open_err = open_err_;
    if (open_err_ != 0) return s;
    unsigned char buf[2048];
    for (;;) {
      sockaddr_ll from{};
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) break;
      std::string what;
      bool loopback = false;
      uint16_t proto = ntohs(from.sll_protocol);
      if (proto == ETH_P_IP && n >= static_cast<ssize_t>(sizeof(iphdr))) {
        const auto* ip = reinterpret_cast<const iphdr*>(buf);
        loopback = (ntohl(ip->daddr) >> 24) == 127;
        uint16_t dport = 0;
        size_t l4 = ip->ihl * 4u;
        if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && static_cast<size_t>(n) >= l4 + 4)
          dport = static_cast<uint16_t>(buf[l4 + 2] << 8 | buf[l4 + 3]);
        sockaddr_storage dst = V4("0.0.0.0", dport);
        reinterpret_cast<sockaddr_in*>(&dst)->sin_addr.s_addr = ip->daddr;
        what = Proto(ip->protocol) + " " + Str(dst);
      } else if (proto == ETH_P_IPV6 && n >= static_cast<ssize_t>(sizeof(ip6_hdr))) {
        const auto* ip6 = reinterpret_cast<const ip6_hdr*>(buf);
        loopback = IN6_IS_ADDR_LOOPBACK(&ip6->ip6_dst);
        uint8_t next = ip6->ip6_nxt;
        uint16_t dport = 0;
        if ((next == IPPROTO_TCP || next == IPPROTO_UDP) && static_cast<size_t>(n) >= sizeof(ip6_hdr) + 4)
          dport = static_cast<uint16_t>(buf[sizeof(ip6_hdr) + 2] << 8 | buf[sizeof(ip6_hdr) + 3]);
        sockaddr_storage dst = V6("::", dport);
        reinterpret_cast<sockaddr_in6*>(&dst)->sin6_addr = ip6->ip6_dst;
        what = Proto(next) + " " + Str(dst);
      } else {
        char hex[8];
        snprintf(hex, sizeof(hex), "%04x", proto);
        what = std::string("ethertype 0x") + hex;
      }
      s.packets.push_back(what);
      if (!loopback) s.escaped.push_back(what);
    }
    return s;
  }

 private:
  static std::string Proto(int p) {
    switch (p) {
      case IPPROTO_TCP: return "tcp";
      case IPPROTO_UDP: return "udp";
      case IPPROTO_ICMP: return "icmp";
      case IPPROTO_ICMPV6: return "icmpv6";
      default: return "proto " + std::to_string(p);
    }
  }
  UniqueFd fd_;
  int open_err_ = 0;
};

// ---- nftables, as the kernel holds it --------------------------------------

int CountRule(const nlmsghdr* nlh, void* data) {
  auto* counts = static_cast<std::map<std::string, int>*>(data);
  nftnl_rule* r = nftnl_rule_alloc();
  if (r != nullptr && nftnl_rule_nlmsg_parse(nlh, r) >= 0) {
    uint32_t family = nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY);
    std::string key = std::string(family == NFPROTO_INET ? "inet" : "family " + std::to_string(family)) + " " +
                      nftnl_rule_get_str(r, NFTNL_RULE_TABLE) + " " + nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
    ++(*counts)[key];
  }
  nftnl_rule_free(r);
  return MNL_CB_OK;
}

// Rules per "family table chain" in the calling thread's namespace; a key
// "error" if the dump failed.
std::map<std::string, int> RuleCounts() {
  std::map<std::string, int> counts;
  mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
  if (nl == nullptr || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    counts["error"] = errno;
    if (nl != nullptr) mnl_socket_close(nl);
    return counts;
  }
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  uint32_t seq = 1;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETRULE, NFPROTO_UNSPEC, NLM_F_DUMP, seq);
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) counts["error"] = errno;
  int ret = MNL_CB_OK;
  while (!counts.contains("error") && ret > MNL_CB_STOP) {
    ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
    if (n < 0) {
      counts["error"] = errno;
      break;
    }
    ret = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, mnl_socket_get_portid(nl), CountRule, &counts);
    if (ret < 0) counts["error"] = errno;
  }
  mnl_socket_close(nl);
  return counts;
}

// Creates table inet airlock owned by a netlink socket (NFT_TABLE_F_OWNER:
// nobody else may change it, and it goes when the socket closes). Returns
// that socket, or an invalid fd with errno set.
UniqueFd OwnedAirlockTable() {
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (!fd) return fd;
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0) return UniqueFd();
  nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, "airlock");
  nftnl_table_set_u32(t, NFTNL_TABLE_FLAGS, NFT_TABLE_F_OWNER);
  std::vector<char> buf(4096);
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf.data(), buf.size());
  nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(b)), 1);
  mnl_nlmsg_batch_next(b);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(b)), NFT_MSG_NEWTABLE,
                                        NFPROTO_INET, NLM_F_CREATE | NLM_F_ACK, 2);
  nftnl_table_nlmsg_build_payload(nlh, t);
  mnl_nlmsg_batch_next(b);
  nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(b)), 3);
  mnl_nlmsg_batch_next(b);
  nftnl_table_free(t);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent = sendto(fd.get(), mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b), 0,
                        reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  mnl_nlmsg_batch_stop(b);
  if (sent < 0) return UniqueFd();
  char reply[1024];
  ssize_t n = recv(fd.get(), reply, sizeof(reply), 0);
  const auto* r = reinterpret_cast<const nlmsghdr*>(reply);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr) + sizeof(nlmsgerr)) || r->nlmsg_type != NLMSG_ERROR) {
    errno = EPROTO;
    return UniqueFd();
  }
  int err = -static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(r))->error;
  if (err != 0) {
    errno = err;
    return UniqueFd();
  }
  return fd;
}

}  // namespace

TEST_CASE("transparent: TCP to any IPv4 address lands on the relay with its original destination",
          "[transparent]") {
  UniqueFd ns = NewNetns();
  Install(ns.get(), {kTcpPort, kDnsPort});

  struct Seen {
    int connect_err = -1, mapped_err = -1;
    bool accepted = false, mapped_accepted = false;
    std::string original_dst, mapped_original_dst, client_peer, relay_peer, relay_read, client_read;
    LoCapture::Summary capture;
  };
  Seen seen = InNetns(ns.get(), [] {
    Seen s;
    LoCapture capture;
    UniqueFd relay = Bound(SOCK_STREAM, V4("127.0.0.1", kTcpPort));
    if (!relay) return s;

    UniqueFd client = Socket(AF_INET, SOCK_STREAM);
    s.connect_err = Connect(client.get(), V4("203.0.113.7", 443));
    UniqueFd conn = AcceptWithin(relay.get(), kWaitMs);
    s.accepted = conn.valid();
    if (conn) {
      s.original_dst = OriginalDst(conn.get());
      s.relay_peer = Peer(conn.get());
      s.client_peer = Peer(client.get());
      (void)!write(client.get(), "hello", 5);
      s.relay_read = ReadSome(conn.get());
      (void)!write(conn.get(), "world", 5);
      s.client_read = ReadSome(client.get());
    }

    // An IPv6 socket reaching an IPv4 address through a v4-mapped one sends
    // IPv4: redirected the same way.
    UniqueFd mapped = Socket(AF_INET6, SOCK_STREAM);
    s.mapped_err = Connect(mapped.get(), V6("::ffff:192.0.2.9", 8443));
    UniqueFd mapped_conn = AcceptWithin(relay.get(), kWaitMs);
    s.mapped_accepted = mapped_conn.valid();
    if (mapped_conn) s.mapped_original_dst = OriginalDst(mapped_conn.get());
    s.capture = capture.Drain();
    return s;
  });

  INFO("connect: " << ErrnoName(seen.connect_err));
  REQUIRE(seen.connect_err == 0);
  REQUIRE(seen.accepted);
  CHECK(seen.original_dst == "203.0.113.7:443");
  // The program believes it talks to the address it dialled.
  CHECK(seen.client_peer == "203.0.113.7:443");
  CHECK(seen.relay_peer.rfind("127.0.0.1:", 0) == 0);
  CHECK(seen.relay_read == "hello");
  CHECK(seen.client_read == "world");

  INFO("v4-mapped connect: " << ErrnoName(seen.mapped_err));
  CHECK(seen.mapped_err == 0);
  CHECK(seen.mapped_accepted);
  CHECK(seen.mapped_original_dst == "192.0.2.9:8443");

  INFO("capture: " << ErrnoName(seen.capture.open_err));
  REQUIRE(seen.capture.open_err == 0);
  CHECK(seen.capture.Saw("tcp 127.0.0.1:" + std::to_string(kTcpPort)));
  CHECK(seen.capture.escaped.empty());
}

TEST_CASE("transparent: DNS over UDP and TCP to any address lands on the DNS port", "[transparent]") {
  UniqueFd ns = NewNetns();
  Install(ns.get(), {kTcpPort, kDnsPort});

  struct Seen {
    int udp_send_err = -1, tcp_connect_err = -1;
    bool udp_arrived = false, tcp_accepted = false, tcp_on_relay_port = false;
    std::string query, udp_from, reply, reply_from, tcp_original_dst;
    LoCapture::Summary capture;
  };
  Seen seen = InNetns(ns.get(), [] {
    Seen s;
    LoCapture capture;
    UniqueFd dns_udp = Bound(SOCK_DGRAM, V4("127.0.0.1", kDnsPort));
    UniqueFd dns_tcp = Bound(SOCK_STREAM, V4("127.0.0.1", kDnsPort));
    UniqueFd relay = Bound(SOCK_STREAM, V4("127.0.0.1", kTcpPort));
    if (!dns_udp || !dns_tcp || !relay) return s;

    UniqueFd client = Socket(AF_INET, SOCK_DGRAM);
    s.udp_send_err = SendTo(client.get(), "query-1", V4("198.51.100.1", 53));
    s.udp_arrived = Readable(dns_udp.get(), kWaitMs);
    if (s.udp_arrived) {
      char buf[64];
      sockaddr_storage from{};
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(dns_udp.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0) s.query.assign(buf, static_cast<size_t>(n));
      s.udp_from = Str(from);
      // The resolver answers the address the query came from; conntrack
      // gives the answer the source the program asked.
      sendto(dns_udp.get(), "answer-1", 8, 0, reinterpret_cast<sockaddr*>(&from), len);
      sockaddr_storage reply_from{};
      socklen_t rlen = sizeof(reply_from);
      n = Readable(client.get(), kWaitMs)
              ? recvfrom(client.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&reply_from), &rlen)
              : -1;
      if (n > 0) s.reply.assign(buf, static_cast<size_t>(n));
      s.reply_from = Str(reply_from);
    }

    UniqueFd tcp_client = Socket(AF_INET, SOCK_STREAM);
    s.tcp_connect_err = Connect(tcp_client.get(), V4("198.51.100.1", 53));
    UniqueFd conn = AcceptWithin(dns_tcp.get(), kWaitMs);
    s.tcp_accepted = conn.valid();
    if (conn) s.tcp_original_dst = OriginalDst(conn.get());
    s.tcp_on_relay_port = Readable(relay.get(), kQuietMs);
    s.capture = capture.Drain();
    return s;
  });

  INFO("udp sendto: " << ErrnoName(seen.udp_send_err));
  REQUIRE(seen.udp_send_err == 0);
  REQUIRE(seen.udp_arrived);
  CHECK(seen.query == "query-1");
  CHECK(seen.udp_from.rfind("127.0.0.1:", 0) == 0);
  CHECK(seen.reply == "answer-1");
  CHECK(seen.reply_from == "198.51.100.1:53");

  INFO("tcp connect: " << ErrnoName(seen.tcp_connect_err));
  CHECK(seen.tcp_connect_err == 0);
  CHECK(seen.tcp_accepted);
  CHECK(seen.tcp_original_dst == "198.51.100.1:53");
  CHECK_FALSE(seen.tcp_on_relay_port);

  REQUIRE(seen.capture.open_err == 0);
  CHECK(seen.capture.Saw("udp 127.0.0.1:" + std::to_string(kDnsPort)));
  CHECK(seen.capture.escaped.empty());
}

TEST_CASE("transparent: everything else fails closed, loopback is untouched", "[transparent]") {
  UniqueFd ns = NewNetns();
  Install(ns.get(), {kTcpPort, kDnsPort});

  struct Seen {
    int udp_err = -1, udp6_err = -1, tcp6_err = -1, icmp_err = -1, icmp6_err = -1;
    bool udp_arrived = false, icmp_answered = false, relay_got_any = false;
    int lo_tcp_err = -1, lo_tcp6_err = -1, lo_udp_err = -1;
    bool lo_tcp_accepted = false, lo_tcp6_accepted = false, lo_udp_arrived = false;
    std::string lo_peer;
    LoCapture::Summary capture;
  };
  Seen seen = InNetns(ns.get(), [] {
    Seen s;
    LoCapture capture;
    UniqueFd relay = Bound(SOCK_STREAM, V4("127.0.0.1", kTcpPort));
    UniqueFd dns_udp = Bound(SOCK_DGRAM, V4("127.0.0.1", kDnsPort));
    // Would catch a datagram for port 9999 delivered on any local address.
    UniqueFd any_9999 = Bound(SOCK_DGRAM, V4("0.0.0.0", 9999));
    UniqueFd own_tcp = Bound(SOCK_STREAM, V4("127.0.0.1", kOtherPort));
    UniqueFd own_tcp6 = Bound(SOCK_STREAM, V6("::1", kOtherPort));
    UniqueFd own_udp = Bound(SOCK_DGRAM, V4("127.0.0.1", kOtherPort));
    if (!relay || !dns_udp || !any_9999 || !own_tcp || !own_tcp6 || !own_udp) return s;

    // The sandbox's own loopback traffic, first: it also shows the capture sees.
    UniqueFd c = Socket(AF_INET, SOCK_STREAM);
    s.lo_tcp_err = Connect(c.get(), V4("127.0.0.1", kOtherPort));
    UniqueFd conn = AcceptWithin(own_tcp.get(), kWaitMs);
    s.lo_tcp_accepted = conn.valid();
    s.lo_peer = Peer(c.get());
    UniqueFd c6 = Socket(AF_INET6, SOCK_STREAM);
    s.lo_tcp6_err = Connect(c6.get(), V6("::1", kOtherPort));
    s.lo_tcp6_accepted = AcceptWithin(own_tcp6.get(), kWaitMs).valid();
    UniqueFd u = Socket(AF_INET, SOCK_DGRAM);
    s.lo_udp_err = SendTo(u.get(), "own", V4("127.0.0.1", kOtherPort));
    s.lo_udp_arrived = Readable(own_udp.get(), kWaitMs);

    // UDP but DNS: dropped in the output hook, which sendto() reports.
    s.udp_err = SendTo(u.get(), "leak", V4("198.51.100.1", 9999));
    UniqueFd u6 = Socket(AF_INET6, SOCK_DGRAM);
    // DNS over IPv6 is not redirected: dropped like any IPv6.
    s.udp6_err = SendTo(u6.get(), "leak", V6("2001:db8::1", 53));
    // IPv6 TCP is refused with a reset rather than left to time out.
    UniqueFd t6 = Socket(AF_INET6, SOCK_STREAM);
    s.tcp6_err = Connect(t6.get(), V6("2001:db8::1", 443));
    // Raw ICMP (the sandbox itself holds no CAP_NET_RAW; root here does).
    UniqueFd icmp = Socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    const unsigned char echo[8] = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};  // type 8, checksum over the rest
    s.icmp_err = SendTo(icmp.get(), std::string(reinterpret_cast<const char*>(echo), sizeof(echo)),
                        V4("203.0.113.7", 0));
    UniqueFd icmp6 = Socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
    const unsigned char echo6[8] = {128, 0, 0, 0, 0, 0, 0, 0};  // the kernel fills the checksum
    s.icmp6_err = SendTo(icmp6.get(), std::string(reinterpret_cast<const char*>(echo6), sizeof(echo6)),
                         V6("2001:db8::1", 0));

    s.udp_arrived = Readable(any_9999.get(), kQuietMs) || Readable(dns_udp.get(), 0);
    s.icmp_answered = Readable(icmp.get(), 0);
    s.relay_got_any = Readable(relay.get(), 0);
    s.capture = capture.Drain();
    return s;
  });

  INFO("loopback connect: " << ErrnoName(seen.lo_tcp_err) << ", ::1 connect: " << ErrnoName(seen.lo_tcp6_err)
                            << ", loopback sendto: " << ErrnoName(seen.lo_udp_err));
  REQUIRE(seen.lo_tcp_err == 0);
  CHECK(seen.lo_tcp_accepted);
  CHECK(seen.lo_peer == "127.0.0.1:" + std::to_string(kOtherPort));
  CHECK(seen.lo_tcp6_err == 0);
  CHECK(seen.lo_tcp6_accepted);
  CHECK(seen.lo_udp_err == 0);
  CHECK(seen.lo_udp_arrived);
  CHECK_FALSE(seen.relay_got_any);

  CHECK(ErrnoName(seen.udp_err) == "EPERM");
  CHECK(ErrnoName(seen.udp6_err) == "EPERM");
  CHECK(ErrnoName(seen.tcp6_err) == "ECONNREFUSED");
  CHECK(ErrnoName(seen.icmp_err) == "EPERM");
  CHECK(ErrnoName(seen.icmp6_err) == "EPERM");
  CHECK_FALSE(seen.udp_arrived);
  CHECK_FALSE(seen.icmp_answered);

  REQUIRE(seen.capture.open_err == 0);
  CHECK(seen.capture.Saw("tcp 127.0.0.1:" + std::to_string(kOtherPort)));
  CHECK(seen.capture.Saw("udp 127.0.0.1:" + std::to_string(kOtherPort)));
  for (const auto& p : seen.capture.packets) {
    INFO(p);
    CHECK(p.find(":9999") == std::string::npos);
  }
  CHECK(seen.capture.escaped.empty());
}

TEST_CASE("transparent: installing again replaces the rules atomically", "[transparent]") {
  UniqueFd ns = NewNetns();
  Install(ns.get(), {kTcpPort, kDnsPort});
  constexpr uint16_t kNewTcpPort = 16001;
  Install(ns.get(), {kNewTcpPort, 16053});

  struct Seen {
    int connect_err = -1;
    bool on_new = false, on_old = false;
    std::string original_dst;
    std::map<std::string, int> rules;
  };
  Seen seen = InNetns(ns.get(), [] {
    Seen s;
    UniqueFd old_relay = Bound(SOCK_STREAM, V4("127.0.0.1", kTcpPort));
    UniqueFd new_relay = Bound(SOCK_STREAM, V4("127.0.0.1", kNewTcpPort));
    if (!old_relay || !new_relay) return s;
    UniqueFd client = Socket(AF_INET, SOCK_STREAM);
    s.connect_err = Connect(client.get(), V4("203.0.113.7", 443));
    UniqueFd conn = AcceptWithin(new_relay.get(), kWaitMs);
    s.on_new = conn.valid();
    if (conn) s.original_dst = OriginalDst(conn.get());
    s.on_old = Readable(old_relay.get(), kQuietMs);
    s.rules = RuleCounts();
    return s;
  });

  INFO("connect: " << ErrnoName(seen.connect_err));
  CHECK(seen.connect_err == 0);
  CHECK(seen.on_new);
  CHECK_FALSE(seen.on_old);
  CHECK(seen.original_dst == "203.0.113.7:443");
  // One table, as after a single install: nothing doubled.
  std::map<std::string, int> expected{{"inet airlock egress", 3}, {"inet airlock redirect", 3}};
  CHECK(seen.rules == expected);
}

TEST_CASE("transparent: a refused install names the step and leaves the namespace as it was",
          "[transparent]") {
  UniqueFd ns = NewNetns();
  // A table of the same name owned by another netlink socket: the kernel
  // refuses to let anyone else touch it.
  struct Owner {
    UniqueFd socket;
    int err = 0;
  };
  Owner owner = InNetns(ns.get(), [] {
    Owner o;
    o.socket = OwnedAirlockTable();
    if (!o.socket) o.err = errno;
    return o;
  });
  INFO("owned table: " << ErrnoName(owner.err));
  REQUIRE(owner.socket);

  auto r = airlock::net::InstallTransparentRedirect(ns.get(), {kTcpPort, kDnsPort});
  REQUIRE_FALSE(r);
  CHECK(r.error().err == EPERM);
  CHECK(r.error().op == "nftables: add table 'airlock' (if absent)");
  CHECK(r.error().Message().rfind("nftables: add table 'airlock' (if absent): EPERM", 0) == 0);

  struct Seen {
    int connect_err = -1;
    std::map<std::string, int> rules;
  };
  Seen seen = InNetns(ns.get(), [] {
    Seen s;
    UniqueFd client = Socket(AF_INET, SOCK_STREAM);
    s.connect_err = Connect(client.get(), V4("203.0.113.7", 443));
    s.rules = RuleCounts();
    return s;
  });
  // No chain or rule of ours, and no route either: the rules come first.
  CHECK(seen.rules.empty());
  CHECK(ErrnoName(seen.connect_err) == "ENETUNREACH");
}

TEST_CASE("transparent: bad input is refused and the caller's namespace never changes", "[transparent]") {
  ino_t before = NetnsInode("/proc/thread-self/ns/net");

  auto zero = airlock::net::InstallTransparentRedirect(0, {0, kDnsPort});
  REQUIRE_FALSE(zero);
  CHECK(zero.error().Message().find("tcp_port") != std::string::npos);

  UniqueFd not_netns(open("/dev/null", O_RDONLY | O_CLOEXEC));
  REQUIRE(not_netns);
  auto bad = airlock::net::InstallTransparentRedirect(not_netns.get(), {kTcpPort, kDnsPort});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().op == "setns");
  CHECK(bad.error().err == EINVAL);

  UniqueFd ns = NewNetns();
  Install(ns.get(), {kTcpPort, kDnsPort});
  CHECK(NetnsInode("/proc/thread-self/ns/net") == before);
  // The namespace's fd stays the caller's, open and naming the namespace.
  struct stat st{};
  REQUIRE(fstat(ns.get(), &st) == 0);
  ino_t inside = InNetns(ns.get(), [] {
    struct stat self{};
    return stat("/proc/thread-self/ns/net", &self) == 0 ? self.st_ino : ino_t{0};
  });
  CHECK(st.st_ino == inside);
}

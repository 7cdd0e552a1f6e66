#include "runtime/init/relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/unique_fd.h"
#include "runtime/net/fakedns.h"
#include "runtime/proto/channel.h"
#include "runtime/proto/egress.h"

namespace airlock::init {
namespace {

using proto::Type;

constexpr int kMaxConns = kRelayMaxConnections;
constexpr int kSlotBits = 10;
static_assert((1 << kSlotBits) == kMaxConns);
constexpr int kMaxDnsConns = 32;
// Descriptors kept free beyond the connections' own: init's stdio, the
// relay's six, the fds of a message in flight, a refused accept, DNS over
// TCP. The rest of RLIMIT_NOFILE goes to connections (two sockets each)
// and their pipes (two each).
constexpr int kReservedFds = 16 + kMaxDnsConns;
constexpr size_t kPipeSize = 64 * 1024;  // a pipe's default capacity
constexpr size_t kCopySize = 16 * 1024;  // per direction, without splice
// Bytes one direction may move per turn before the others get theirs.
constexpr size_t kBudget = 256 * 1024;
constexpr int kBatch = 64;  // accepts, datagrams or messages per wakeup
constexpr int64_t kConnectTimeoutMs = 30'000;
constexpr int64_t kDnsIdleMs = 10'000;
constexpr int kDnsQueriesPerConn = 16;
constexpr size_t kDnsMaxQuery = 1024;
constexpr size_t kDnsMaxAnswer = 512;  // fakedns answers stay far below
constexpr int64_t kListenerPauseMs = 100;
constexpr size_t kMaxQueued = 4 * kMaxConns;  // messages waiting for room on the channel
// <linux/netfilter_ipv4.h>, whose headers clash with glibc's netinet/in.h.
constexpr int kSoOriginalDst = 80;
constexpr unsigned kSpliceFlags = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;

enum Tag : uint32_t { kTagEgress, kTagListen, kTagDnsUdp, kTagDnsListen, kTagConn, kTagDns };

// epoll's 64 bits: {generation, slot, tag}. A slot's generation changes
// whenever it is reused, so events still queued for its last occupant are
// recognised and dropped.
uint64_t MakeTag(Tag tag, uint32_t slot = 0, uint32_t gen = 0) {
  return (uint64_t{gen} << 32) | (uint64_t{slot} << 8) | tag;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

// A connection closed with SO_LINGER 0 sends a reset: a refused client
// sees ECONNRESET, not a clean end of an empty response.
void ResetClose(UniqueFd& fd) {
  if (!fd) return;
  linger l{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  fd.Reset();
}

// One direction of a connection: through a pipe (splice), or where that
// can't be had, through a buffer of its own.
struct Flow {
  UniqueFd pipe_r, pipe_w;
  std::unique_ptr<char[]> buf;
  size_t off = 0, len = 0;  // pending: bytes in the pipe (len), or buf[off, len)
  bool eof = false;         // its source reached EOF
  bool shut = false;        // ... and everything was passed on: its sink shut for writing

  size_t pending() const { return len - off; }
};

enum class Step { kIdle, kMore, kError };

struct Conn {
  enum class State : uint8_t { kFree, kAwaitSocket, kConnecting, kSplicing };
  State state = State::kFree;
  uint32_t gen = 0;
  uint32_t id = 0;   // kAwaitSocket: our EgressOpen's; kConnecting: the proxy's PortOpen's
  UniqueFd inner;    // in the sandbox: the accepted client, or our connection to its port
  UniqueFd outer;    // the proxy's socketpair end
  Flow up, down;     // inner -> outer, outer -> inner
  int64_t deadline = 0;
  bool watched = false;  // inner is in the epoll set
};

struct DnsConn {
  UniqueFd fd;
  uint32_t gen = 0;
  int64_t deadline = 0;
  int answered = 0;
  bool eof = false;
  size_t in_len = 0, out_off = 0, out_len = 0;
  char in[2 + kDnsMaxQuery];
  char out[2 + kDnsMaxAnswer];
};

class Relay {
 public:
  Relay(int egress, int listen, int dns_udp, int dns_tcp)
      : egress_(egress), listen_(listen), dns_udp_(dns_udp), dns_tcp_(dns_tcp) {}

  [[noreturn]] void Run() {
    Setup();
    epoll_event events[128];
    for (;;) {
      int n = epoll_wait(epoll_.get(), events, 128, ready_.empty() ? Timeout() : 0);
      if (n < 0 && errno != EINTR) _exit(125);
      for (int i = 0; i < n; ++i) Dispatch(events[i].data.u64, events[i].events);
      RunReady();
      Expire();
    }
  }

 private:
  void Setup() {
    // Whatever init's limits: the hard one is ours to take.
    rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
      getrlimit(RLIMIT_NOFILE, &nofile);
      nofile_ = nofile.rlim_cur > (1u << 20) ? (1 << 20) : static_cast<int>(nofile.rlim_cur);
    }
    epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) _exit(125);
    for (int fd : {egress_, listen_, dns_udp_, dns_tcp_})
      if (fd >= 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) _exit(125);
    socklen_t len = sizeof(listen_addr_);
    if (getsockname(listen_, reinterpret_cast<sockaddr*>(&listen_addr_), &len) < 0) _exit(125);
    if (!Watch(EPOLL_CTL_ADD, egress_, EPOLLIN, MakeTag(kTagEgress))) _exit(125);
    if (!Watch(EPOLL_CTL_ADD, listen_, EPOLLIN, MakeTag(kTagListen))) _exit(125);
    if (dns_udp_ >= 0 && !Watch(EPOLL_CTL_ADD, dns_udp_, EPOLLIN, MakeTag(kTagDnsUdp))) _exit(125);
    if (dns_tcp_ >= 0 && !Watch(EPOLL_CTL_ADD, dns_tcp_, EPOLLIN, MakeTag(kTagDnsListen))) _exit(125);
    // A profile that refuses splice (seccomp answers before the kernel
    // looks at the descriptors, so bad ones tell the two apart).
    use_splice_ = !(splice(-1, nullptr, -1, nullptr, 1, 0) < 0 && (errno == EPERM || errno == ENOSYS));
    conns_.resize(kMaxConns);
    dns_.resize(kMaxDnsConns);
    for (int i = kMaxConns - 1; i >= 0; --i) free_.push_back(i);
    ready_.reserve(kMaxConns);
    // Ids and generations start somewhere new in each relay: answers the
    // proxy still had for a relay that died match nothing here.
    next_gen_ = static_cast<uint32_t>(static_cast<uint64_t>(NowMs()) * 2654435761u) ^
                (static_cast<uint32_t>(getpid()) << 16);
  }

  bool Watch(int op, int fd, uint32_t events, uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    return epoll_ctl(epoll_.get(), op, fd, &ev) == 0;
  }

  void Dispatch(uint64_t tag, uint32_t events) {
    uint32_t gen = static_cast<uint32_t>(tag >> 32);
    uint32_t slot = static_cast<uint32_t>(tag >> 8) & 0xffffff;
    switch (static_cast<Tag>(tag & 0xff)) {
      case kTagEgress:
        if (events & EPOLLOUT) FlushQueue();
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadChannel();
        return;
      case kTagListen:
        return AcceptProxy();
      case kTagDnsListen:
        return AcceptDns();
      case kTagDnsUdp:
        return ServeUdp();
      case kTagConn: {
        if (slot >= conns_.size() || conns_[slot].gen != gen) return;
        if (conns_[slot].state == Conn::State::kConnecting) return CheckConnect(slot);
        if (conns_[slot].state == Conn::State::kSplicing) Pump(slot);
        return;
      }
      case kTagDns:
        if (slot < dns_.size() && dns_[slot].fd && dns_[slot].gen == gen) PumpDns(slot);
        return;
    }
  }

  // ---- the egress channel ----------------------------------------------

  [[noreturn]] static void ChannelGone() { _exit(0); }

  // Sends one message to the proxy, or queues it while the channel is
  // full. False if it had to be dropped.
  bool Send(Type type, std::string payload) {
    if (queue_.empty()) {
      int r = proto::SendMessage(egress_, type, payload);
      if (r == 0) return true;
      if (r != -EAGAIN && r != -ENOBUFS && r != -ENOMEM) {
        if (r == -EMSGSIZE) return false;
        ChannelGone();
      }
    }
    if (queue_.size() >= kMaxQueued) return false;
    queue_.emplace_back(type, std::move(payload));
    if (queue_.size() == 1) Watch(EPOLL_CTL_MOD, egress_, EPOLLIN | EPOLLOUT, MakeTag(kTagEgress));
    return true;
  }

  void FlushQueue() {
    while (!queue_.empty()) {
      int r = proto::SendMessage(egress_, queue_.front().first, queue_.front().second);
      if (r == -EAGAIN || r == -ENOBUFS || r == -ENOMEM) return;
      if (r < 0 && r != -EMSGSIZE) ChannelGone();
      queue_.pop_front();
    }
    Watch(EPOLL_CTL_MOD, egress_, EPOLLIN, MakeTag(kTagEgress));
  }

  void ReadChannel() {
    for (int i = 0; i < kBatch; ++i) {
      auto msg = proto::ReceiveMessage(egress_, /*dont_wait=*/true);
      if (!msg) {
        const Error& e = msg.error();
        if (e.err == EAGAIN || e.err == EWOULDBLOCK) return;
        if (e.err == EINTR) continue;
        // EOF, or the socket failed: the proxy's end is gone for good.
        if (e.err != 0 || e.op == "channel closed") ChannelGone();
        continue;  // a malformed datagram, consumed and skipped
      }
      switch (msg->type) {
        case Type::kEgressSocket:
          EgressSocket(*msg);
          break;
        case Type::kEgressRefused:
          if (auto a = proto::DecodeEgressAnswer(msg->payload)) {
            int slot = AwaitingSlot(a->id);
            if (slot >= 0) Close(slot, /*reset=*/true);
          }
          break;
        case Type::kPortOpen:
          PortOpen(*msg);
          break;
        default:
          break;  // its descriptors close with it
      }
    }
  }

  uint32_t IdOf(uint32_t slot, uint32_t gen) const { return (gen << kSlotBits) | slot; }

  int AwaitingSlot(uint32_t id) const {
    uint32_t slot = id & (kMaxConns - 1);
    const Conn& c = conns_[slot];
    if (c.state != Conn::State::kAwaitSocket || c.id != id) return -1;
    return static_cast<int>(slot);
  }

  void EgressSocket(proto::Message& msg) {
    auto a = proto::DecodeEgressAnswer(msg.payload);
    if (!a) return;
    int slot = AwaitingSlot(a->id);
    if (slot < 0) return;  // a connection that is gone: the socket closes
    if (msg.fds.size() != 1) return Close(slot, /*reset=*/true);
    UniqueFd sock = std::move(msg.fds[0]);
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(sock.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM ||
        fcntl(sock.get(), F_SETFL, O_NONBLOCK) < 0)
      return Close(slot, /*reset=*/true);
    conns_[slot].outer = std::move(sock);
    StartSplice(slot);
  }

  void PortFailed(uint32_t id, int err) {
    Send(Type::kPortFailed, proto::Encode(proto::PortFailed{id, err}));
  }

  void PortOpen(proto::Message& msg) {
    auto p = proto::DecodePortOpen(msg.payload);
    if (!p) {
      if (msg.payload.size() >= sizeof(uint32_t)) {
        uint32_t id;
        memcpy(&id, msg.payload.data(), sizeof(id));
        PortFailed(id, EINVAL);
      }
      return;
    }
    if (msg.fds.size() != 1) return PortFailed(p->id, EINVAL);
    int slot = TakeSlot();
    if (slot < 0) return PortFailed(p->id, EMFILE);
    Conn& c = conns_[slot];
    c.id = p->id;
    c.state = Conn::State::kConnecting;
    c.deadline = NowMs() + kConnectTimeoutMs;
    ++timed_;
    c.outer = std::move(msg.fds[0]);
    c.inner.Reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c.inner || fcntl(c.outer.get(), F_SETFL, O_NONBLOCK) < 0) {
      PortFailed(p->id, errno);
      return Close(slot, false);
    }
    // Like the accepted sockets (their listeners have it): each splice is
    // a write of what arrived, and Nagle would hold a small one back.
    int one = 1;
    setsockopt(c.inner.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(p->port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.inner.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0) return StartSplice(slot);
    if (errno != EINPROGRESS) {
      PortFailed(p->id, errno);
      return Close(slot, false);
    }
    if (!Watch(EPOLL_CTL_ADD, c.inner.get(), EPOLLOUT | EPOLLET, MakeTag(kTagConn, slot, c.gen))) {
      PortFailed(p->id, errno);
      return Close(slot, false);
    }
    c.watched = true;
  }

  void CheckConnect(int slot) {
    Conn& c = conns_[slot];
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c.inner.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0) {
      sockaddr_in peer;
      socklen_t plen = sizeof(peer);
      if (getpeername(c.inner.get(), reinterpret_cast<sockaddr*>(&peer), &plen) < 0) {
        if (errno == ENOTCONN) return;  // still connecting
        err = errno;
      }
    }
    if (err != 0) {
      PortFailed(c.id, err);
      return Close(slot, false);
    }
    StartSplice(slot);
  }

  // ---- connections -------------------------------------------------------

  bool FdsFor(int more) const { return 2 * live_ + 2 * pipe_pairs_ + more + kReservedFds <= nofile_; }

  // A free connection slot with a new generation, or -1 at the limit.
  int TakeSlot() {
    if (free_.empty() || !FdsFor(2)) return -1;
    int slot = free_.back();
    free_.pop_back();
    ++live_;
    conns_[slot].gen = next_gen_++;
    return slot;
  }

  void AcceptProxy() {
    for (int i = 0; i < kBatch; ++i) {
      UniqueFd client(accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!client) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) PauseListener(listen_pause_, listen_, kTagListen);
        return;
      }
      int slot = TakeSlot();
      if (slot < 0) {
        ResetClose(client);  // over the limit: refused at once
        continue;
      }
      OpenEgress(slot, std::move(client));
    }
  }

  // Accept failed for want of descriptors or memory: the connection waits
  // in the backlog, and the level-triggered listener would wake the relay
  // at once, again and again. It sleeps a little instead.
  void PauseListener(int64_t& until, int fd, Tag tag) {
    if (Watch(EPOLL_CTL_MOD, fd, 0, MakeTag(tag))) until = NowMs() + kListenerPauseMs;
  }

  void OpenEgress(int slot, UniqueFd client) {
    Conn& c = conns_[slot];
    proto::EgressOpen m;
    m.id = c.id = IdOf(slot, c.gen);
    sockaddr_in orig{};
    socklen_t len = sizeof(orig);
    // No conntrack entry (explicit mode), or one that shows the client
    // connected to the proxy port itself: an explicit proxy client.
    if (getsockopt(client.get(), SOL_IP, kSoOriginalDst, &orig, &len) == 0 && orig.sin_family == AF_INET &&
        !(orig.sin_addr.s_addr == listen_addr_.sin_addr.s_addr && orig.sin_port == listen_addr_.sin_port)) {
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &orig.sin_addr, text, sizeof(text));
      m.kind = proto::EgressKind::kTransparent;
      m.address = text;
      m.port = ntohs(orig.sin_port);
      uint32_t addr = ntohl(orig.sin_addr.s_addr);
      // A fake address the table no longer knows still goes out (no
      // name): the proxy refuses a bare fake address, and says so.
      if (net::FakeDnsTable::IsFake(addr)) m.name = table_.NameFor(addr).value_or("");
    }
    c.inner = std::move(client);
    c.state = Conn::State::kAwaitSocket;
    // Bytes the client sends meanwhile wait in its socket.
    if (!Send(Type::kEgressOpen, proto::Encode(m))) Close(slot, /*reset=*/true);
  }

  bool SetUpFlow(Flow& f) {
    if (use_splice_ && FdsFor(4)) {
      int p[2];
      if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
        f.pipe_r.Reset(p[0]);
        f.pipe_w.Reset(p[1]);
        ++pipe_pairs_;
        return true;
      }
    }
    f.buf.reset(new (std::nothrow) char[kCopySize]);
    return f.buf != nullptr;
  }

  void StartSplice(int slot) {
    Conn& c = conns_[slot];
    if (c.state == Conn::State::kConnecting) --timed_;
    c.state = Conn::State::kSplicing;
    c.deadline = 0;
    if (!SetUpFlow(c.up) || !SetUpFlow(c.down)) return Close(slot, /*reset=*/true);
    uint64_t tag = MakeTag(kTagConn, slot, c.gen);
    constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLET;
    if (!Watch(c.watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.inner.get(), kEvents, tag) ||
        !Watch(EPOLL_CTL_ADD, c.outer.get(), kEvents, tag))
      return Close(slot, /*reset=*/true);
    c.watched = true;
    Pump(slot);
  }

  // Moves what it can from `from` to `to` (both non-blocking, so is the
  // pipe), until neither side can move more or the turn's budget is spent.
  // Edge-triggered: every event on either socket pumps both directions, so
  // a side left waiting always has an edge coming.
  static Step Move(int from, int to, Flow& f) {
    size_t moved = 0;
    for (;;) {
      bool progress = false;
      if (f.pending() > 0) {
        ssize_t n = f.buf ? send(to, f.buf.get() + f.off, f.pending(), MSG_NOSIGNAL | MSG_DONTWAIT)
                          : splice(f.pipe_r.get(), nullptr, to, nullptr, f.len, kSpliceFlags);
        if (n > 0) {
          if (f.buf) f.off += n;
          else f.len -= n;
          if (f.off == f.len) f.off = f.len = 0;
          moved += n;
          progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return Step::kError;
        }
      }
      size_t room = (f.buf ? kCopySize : kPipeSize) - f.len;
      if (!f.eof && room > 0) {
        // A pipe may be full with less than kPipeSize in it (a partly
        // filled page per slot): EAGAIN then, and the write above makes
        // room before the next try.
        ssize_t n = f.buf ? recv(from, f.buf.get() + f.len, room, MSG_DONTWAIT)
                          : splice(from, nullptr, f.pipe_w.get(), nullptr, room, kSpliceFlags);
        if (n > 0) {
          f.len += n;
          progress = true;
        } else if (n == 0) {
          f.eof = true;
          progress = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return Step::kError;
        }
      }
      if (f.eof && f.pending() == 0 && !f.shut) {
        // Half-close: the other side reads EOF and may still answer.
        shutdown(to, SHUT_WR);
        f.shut = true;
      }
      if (!progress) return Step::kIdle;
      if (moved >= kBudget) return Step::kMore;
    }
  }

  void Pump(int slot) {
    Conn& c = conns_[slot];
    Step up = Move(c.inner.get(), c.outer.get(), c.up);
    if (up == Step::kError) return Close(slot, /*reset=*/true);
    Step down = Move(c.outer.get(), c.inner.get(), c.down);
    if (down == Step::kError) return Close(slot, /*reset=*/true);
    if (c.up.shut && c.down.shut) return Close(slot, /*reset=*/false);
    if (up == Step::kMore || down == Step::kMore) ready_.emplace_back(slot, c.gen);
  }

  // Connections that spent their budget with more to move: their turn
  // again after everyone else's events.
  void RunReady() {
    if (ready_.empty()) return;
    running_.swap(ready_);
    for (auto [slot, gen] : running_)
      if (conns_[slot].gen == gen && conns_[slot].state == Conn::State::kSplicing) Pump(slot);
    running_.clear();
  }

  void Close(int slot, bool reset) {
    Conn& c = conns_[slot];
    if (c.state == Conn::State::kConnecting) --timed_;
    if (reset) ResetClose(c.inner);
    // Closing a descriptor drops it from the epoll set (nothing else holds
    // its file).
    c.inner.Reset();
    c.outer.Reset();
    for (Flow* f : {&c.up, &c.down}) {
      if (f->pipe_r) --pipe_pairs_;
      *f = Flow{};
    }
    c.state = Conn::State::kFree;
    c.watched = false;
    c.deadline = 0;
    ++c.gen;  // anything queued for it is stale now
    free_.push_back(slot);
    --live_;
  }

  // ---- DNS -----------------------------------------------------------------

  void ServeUdp() {
    char buf[kDnsMaxQuery];
    for (int i = 0; i < kBatch; ++i) {
      sockaddr_storage from;
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(dns_udp_, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (static_cast<size_t>(n) > sizeof(buf)) continue;  // no query is that long
      std::string answer = net::Answer(std::string_view(buf, n), table_);
      if (!answer.empty())
        sendto(dns_udp_, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

  void AcceptDns() {
    for (int i = 0; i < kBatch; ++i) {
      UniqueFd fd(accept4(dns_tcp_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) PauseListener(dns_pause_, dns_tcp_, kTagDnsListen);
        return;
      }
      int slot = -1;
      for (int j = 0; j < kMaxDnsConns; ++j)
        if (!dns_[j].fd) {
          slot = j;
          break;
        }
      if (slot < 0) continue;  // over the limit: closed at once
      DnsConn& d = dns_[slot];
      d.gen = next_gen_++;
      if (!Watch(EPOLL_CTL_ADD, fd.get(), EPOLLIN | EPOLLOUT | EPOLLET, MakeTag(kTagDns, slot, d.gen))) continue;
      d.fd = std::move(fd);
      d.deadline = NowMs() + kDnsIdleMs;
      d.answered = 0;
      d.eof = false;
      d.in_len = d.out_off = d.out_len = 0;
      ++timed_;
      PumpDns(slot);
    }
  }

  void CloseDns(int slot) {
    dns_[slot].fd.Reset();
    --timed_;
  }

  // DNS over TCP (RFC 1035 4.2.2): messages with a 2-byte length, answered
  // one at a time, a few per connection.
  void PumpDns(int slot) {
    DnsConn& d = dns_[slot];
    for (;;) {
      if (d.out_off < d.out_len) {
        ssize_t n = send(d.fd.get(), d.out + d.out_off, d.out_len - d.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          d.out_off += n;
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return CloseDns(slot);
      }
      if (d.answered >= kDnsQueriesPerConn) return CloseDns(slot);
      if (d.in_len >= 2) {
        size_t need = (static_cast<uint8_t>(d.in[0]) << 8) | static_cast<uint8_t>(d.in[1]);
        if (need == 0 || need > kDnsMaxQuery) return CloseDns(slot);
        if (d.in_len >= 2 + need) {
          std::string answer = net::Answer(std::string_view(d.in + 2, need), table_);
          memmove(d.in, d.in + 2 + need, d.in_len - 2 - need);
          d.in_len -= 2 + need;
          ++d.answered;
          d.deadline = NowMs() + kDnsIdleMs;
          if (answer.empty() || answer.size() > kDnsMaxAnswer) continue;
          d.out[0] = static_cast<char>(answer.size() >> 8);
          d.out[1] = static_cast<char>(answer.size() & 0xff);
          memcpy(d.out + 2, answer.data(), answer.size());
          d.out_off = 0;
          d.out_len = 2 + answer.size();
          continue;
        }
      }
      if (d.eof) return CloseDns(slot);
      // in[] holds any whole query, so there is room while one is partial.
      ssize_t n = recv(d.fd.get(), d.in + d.in_len, sizeof(d.in) - d.in_len, MSG_DONTWAIT);
      if (n > 0) {
        d.in_len += n;
      } else if (n == 0) {
        d.eof = true;
      } else {
        if (errno == EAGAIN || errno == EINTR) return;
        return CloseDns(slot);
      }
    }
  }

  // ---- timers ----------------------------------------------------------------

  int Timeout() const {
    int64_t next = INT64_MAX;
    if (listen_pause_) next = listen_pause_;
    if (dns_pause_ && dns_pause_ < next) next = dns_pause_;
    if (timed_ > 0) {
      for (const Conn& c : conns_)
        if (c.state == Conn::State::kConnecting && c.deadline < next) next = c.deadline;
      for (const DnsConn& d : dns_)
        if (d.fd && d.deadline < next) next = d.deadline;
    }
    if (next == INT64_MAX) return -1;
    int64_t wait = next - NowMs();
    return wait < 0 ? 0 : static_cast<int>(wait + 1);
  }

  void Expire() {
    if (timed_ == 0 && !listen_pause_ && !dns_pause_) return;
    int64_t now = NowMs();
    if (listen_pause_ && listen_pause_ <= now && Watch(EPOLL_CTL_MOD, listen_, EPOLLIN, MakeTag(kTagListen)))
      listen_pause_ = 0;
    if (dns_pause_ && dns_pause_ <= now && Watch(EPOLL_CTL_MOD, dns_tcp_, EPOLLIN, MakeTag(kTagDnsListen)))
      dns_pause_ = 0;
    if (timed_ == 0) return;
    for (int slot = 0; slot < kMaxConns; ++slot) {
      Conn& c = conns_[slot];
      if (c.state == Conn::State::kConnecting && c.deadline <= now) {
        PortFailed(c.id, ETIMEDOUT);
        Close(slot, false);
      }
    }
    for (int slot = 0; slot < kMaxDnsConns; ++slot)
      if (dns_[slot].fd && dns_[slot].deadline <= now) CloseDns(slot);
  }

  const int egress_, listen_, dns_udp_, dns_tcp_;
  UniqueFd epoll_;
  sockaddr_in listen_addr_{};
  int nofile_ = 1024;
  bool use_splice_ = true;
  uint32_t next_gen_ = 0;
  int live_ = 0;         // connection slots in use
  int pipe_pairs_ = 0;   // pipes those hold
  int timed_ = 0;        // connections with a deadline (connecting, DNS over TCP)
  int64_t listen_pause_ = 0, dns_pause_ = 0;  // paused listeners wake then
  std::vector<Conn> conns_;
  std::vector<int> free_;
  std::vector<std::pair<int, uint32_t>> ready_, running_;  // {slot, generation}
  std::vector<DnsConn> dns_;
  std::deque<std::pair<Type, std::string>> queue_;
  net::FakeDnsTable table_;
};

}  // namespace

void RelayMain(int egress_fd, int listen_fd, int dns_udp_fd, int dns_tcp_fd) {
  prctl(PR_SET_NAME, "airlock-relay", 0, 0, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // splice into a socket whose peer is gone raises SIGPIPE (it has no
  // MSG_NOSIGNAL): an error on that connection, not the relay's end.
  signal(SIGPIPE, SIG_IGN);
  // Its state is large (a slot per connection): on the heap, not init's stack.
  auto relay = std::make_unique<Relay>(egress_fd, listen_fd, dns_udp_fd, dns_tcp_fd);
  relay->Run();
}

}  // namespace airlock::init

#include "runtime/proto/channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace airlock::proto {
namespace {

struct Header {
  uint16_t version;
  uint16_t type;
  uint32_t length;
};
static_assert(sizeof(Header) == 8);

class Writer {
 public:
  void U32(uint32_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
  void I32(int32_t v) { out_.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Strs(const std::vector<std::string>& v) {
    U32(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) Str(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  Reader(std::string_view in, const char* what) : in_(in), what_(what) {}
  Result<uint32_t> U32(const char* field) {
    if (in_.size() < 4) return Short(field);
    uint32_t v;
    memcpy(&v, in_.data(), 4);
    in_.remove_prefix(4);
    return v;
  }
  Result<int32_t> I32(const char* field) {
    uint32_t v = TRY(U32(field));
    return static_cast<int32_t>(v);
  }
  Result<std::string> Str(const char* field) {
    uint32_t n = TRY(U32(field));
    if (n > in_.size()) return Short(field);
    std::string s(in_.substr(0, n));
    in_.remove_prefix(n);
    if (s.find('\0') != std::string::npos) return Fail(what_, std::string(field) + ": contains NUL");
    return s;
  }
  Result<std::vector<std::string>> Strs(const char* field, uint32_t max_count) {
    uint32_t n = TRY(U32(field));
    if (n > max_count) return Fail(what_, std::string(field) + ": too many entries (" + std::to_string(n) + ")");
    std::vector<std::string> v;
    v.reserve(n);
    for (uint32_t i = 0; i < n; ++i) v.push_back(TRY(Str(field)));
    return v;
  }
  Result<void> End() {
    if (!in_.empty()) return Fail(what_, std::to_string(in_.size()) + " trailing bytes");
    return {};
  }

 private:
  std::unexpected<Error> Short(const char* field) {
    return Fail(what_, std::string(field) + ": message too short");
  }
  std::string_view in_;
  const char* what_;
};

}  // namespace

std::string Encode(const SetupFailed& m) {
  Writer w;
  w.U32(m.step);
  w.I32(m.err);
  w.I32(m.item);
  return w.Take();
}
std::string Encode(const ExecRequest& m) {
  Writer w;
  w.U32(m.id);
  w.Strs(m.argv);
  w.Strs(m.env);
  w.Str(m.cwd);
  w.U32(m.uid);
  w.U32(m.gid);
  w.U32(static_cast<uint32_t>(m.groups.size()));
  for (uint32_t g : m.groups) w.U32(g);
  return w.Take();
}
std::string Encode(const ExecFailed& m) {
  Writer w;
  w.U32(m.id);
  w.I32(m.err);
  w.U32(static_cast<uint32_t>(m.stage));
  return w.Take();
}
std::string Encode(const Started& m) {
  Writer w;
  w.U32(m.id);
  w.U32(m.pid);
  return w.Take();
}
std::string Encode(const Exited& m) {
  Writer w;
  w.U32(m.id);
  w.I32(m.code);
  w.I32(m.signal);
  return w.Take();
}
std::string EncodeHello() {
  Writer w;
  w.U32(kVersion);
  return w.Take();
}

Result<SetupFailed> DecodeSetupFailed(std::string_view payload) {
  Reader r(payload, "setup-failed message");
  SetupFailed m;
  m.step = TRY(r.U32("step"));
  m.err = TRY(r.I32("errno"));
  m.item = TRY(r.I32("item"));
  TRY(r.End());
  if (m.err < 0 || m.err > 4095) return Fail("setup-failed message", "errno out of range: " + std::to_string(m.err));
  return m;
}

Result<ExecRequest> DecodeExecRequest(std::string_view payload) {
  Reader r(payload, "exec request");
  ExecRequest m;
  m.id = TRY(r.U32("id"));
  m.argv = TRY(r.Strs("argv", 65536));
  m.env = TRY(r.Strs("env", 65536));
  m.cwd = TRY(r.Str("cwd"));
  m.uid = TRY(r.U32("uid"));
  m.gid = TRY(r.U32("gid"));
  uint32_t n = TRY(r.U32("groups"));
  if (n > 64) return Fail("exec request", "groups: too many entries");
  for (uint32_t i = 0; i < n; ++i) m.groups.push_back(TRY(r.U32("groups")));
  TRY(r.End());
  if (m.argv.empty()) return Fail("exec request", "argv: empty");
  return m;
}

Result<ExecFailed> DecodeExecFailed(std::string_view payload) {
  Reader r(payload, "exec-failed message");
  ExecFailed m;
  m.id = TRY(r.U32("id"));
  m.err = TRY(r.I32("errno"));
  uint32_t stage = TRY(r.U32("stage"));
  TRY(r.End());
  if (m.err <= 0 || m.err > 4095) return Fail("exec-failed message", "errno out of range: " + std::to_string(m.err));
  if (stage > static_cast<uint32_t>(ExecStage::kExec))
    return Fail("exec-failed message", "unknown stage " + std::to_string(stage));
  m.stage = static_cast<ExecStage>(stage);
  return m;
}

Result<Started> DecodeStarted(std::string_view payload) {
  Reader r(payload, "started message");
  Started m;
  m.id = TRY(r.U32("id"));
  m.pid = TRY(r.U32("pid"));
  TRY(r.End());
  if (m.pid < 2 || m.pid > 4194304) return Fail("started message", "pid out of range: " + std::to_string(m.pid));
  return m;
}

Result<Exited> DecodeExited(std::string_view payload) {
  Reader r(payload, "exited message");
  Exited m;
  m.id = TRY(r.U32("id"));
  m.code = TRY(r.I32("code"));
  m.signal = TRY(r.I32("signal"));
  TRY(r.End());
  if (m.signal < 0 || m.signal > 64) return Fail("exited message", "signal out of range: " + std::to_string(m.signal));
  if (m.code < 0 || m.code > 255) return Fail("exited message", "exit code out of range: " + std::to_string(m.code));
  if (m.signal != 0 && m.code != 0) return Fail("exited message", "both an exit code and a signal");
  return m;
}

Result<void> DecodeHello(std::string_view payload) {
  Reader r(payload, "hello message");
  uint32_t version = TRY(r.U32("version"));
  TRY(r.End());
  if (version != kVersion)
    return Fail("hello message", "airlock-init speaks protocol version " + std::to_string(version) +
                                     ", the runtime " + std::to_string(kVersion));
  return {};
}

int SendMessage(int sock, Type type, std::string_view payload, std::span<const int> fds) noexcept {
  if (payload.size() + sizeof(Header) > kMaxMessage || fds.size() > kMaxFds) return -EMSGSIZE;
  Header h{kVersion, static_cast<uint16_t>(type), static_cast<uint32_t>(payload.size())};
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<char*>(payload.data()), payload.size()}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

int SendSetupFailed(int sock, uint32_t step, int32_t err, int32_t item) noexcept {
  char payload[12];
  memcpy(payload, &step, 4);
  memcpy(payload + 4, &err, 4);
  memcpy(payload + 8, &item, 4);
  return SendMessage(sock, Type::kSetupFailed, std::string_view(payload, sizeof(payload)));
}

int ReceiveFds(int sock, int* fds, int max) noexcept {
  char buf[64];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (n == 0) return -EPIPE;  // the peer is gone
  int count = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int in = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < in; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (count < max) fds[count++] = fd;
      else close(fd);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return -EMSGSIZE;
  return count;
}

Result<Message> ReceiveMessage(int sock, bool dont_wait) {
  std::string buf(kMaxMessage, '\0');
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Errno("recvmsg", "sandbox channel");
  Message out;
  // Take ownership of every fd first, so a refused message leaks none.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
      }
    }
  }
  if (n == 0) return ErrnoValue(0, "channel closed", "the sandbox closed its end");
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
    return Fail("sandbox channel", "message truncated (over " + std::to_string(kMaxMessage) + " bytes or too many fds)");
  if (static_cast<size_t>(n) < sizeof(Header)) return Fail("sandbox channel", "message shorter than its header");
  Header h;
  memcpy(&h, buf.data(), sizeof(h));
  if (h.version != kVersion)
    return Fail("sandbox channel", "protocol version " + std::to_string(h.version) + ", expected " + std::to_string(kVersion));
  if (h.length != static_cast<size_t>(n) - sizeof(Header))
    return Fail("sandbox channel", "length field " + std::to_string(h.length) + " doesn't match the datagram");
  if (h.type < 1 || h.type > static_cast<uint16_t>(Type::kChannel))
    return Fail("sandbox channel", "unknown message type " + std::to_string(h.type));
  if (out.fds.size() > kMaxFds) return Fail("sandbox channel", "too many fds");
  out.type = static_cast<Type>(h.type);
  out.payload.assign(buf.data() + sizeof(Header), h.length);
  return out;
}

}  // namespace airlock::proto

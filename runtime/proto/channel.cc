#include "runtime/proto/channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "runtime/proto/wire.h"

namespace airlock::proto {
namespace {

struct Header {
  uint16_t version;
  uint16_t type;
  uint32_t length;
};
static_assert(sizeof(Header) == 8);

using wire::Reader;
using wire::Writer;

// Longest path a request may name: PATH_MAX less its NUL.
constexpr size_t kMaxPath = 4095;
constexpr uint32_t kMaxGroups = 64;
// kChown's owner ids: a sandbox's user namespace maps 65536 of them.
constexpr uint32_t kMaxOwnerId = 65535;

std::string Format(const char* fmt, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}
std::string ToHex(uint32_t v) { return Format("%x", v); }
std::string ToOctal(uint32_t v) { return Format("%o", v); }

Result<std::vector<uint32_t>> ReadGroups(Reader& r) {
  uint32_t n = TRY(r.U32("groups"));
  if (n > kMaxGroups) return r.Bad("groups", "too many entries");
  std::vector<uint32_t> groups;
  for (uint32_t i = 0; i < n; ++i) groups.push_back(TRY(r.U32("groups")));
  return groups;
}

void WriteGroups(Writer& w, const std::vector<uint32_t>& groups) {
  w.U32(static_cast<uint32_t>(groups.size()));
  for (uint32_t g : groups) w.U32(g);
}

// The flags each file operation accepts besides kNoSymlinks, which all do.
uint32_t OwnFlags(FileOp op) {
  switch (op) {
    case FileOp::kRead:
    case FileOp::kList:
      return 0;
    case FileOp::kWrite:
      return kWriteCreate | kWriteExclusive | kWriteTruncate | kWriteAppend | kWriteAtomic | kParents | kModeSet;
    case FileOp::kStat:
      return kFollow;
    case FileOp::kMkdir:
      return kParents | kModeSet;
    case FileOp::kRemove:
      return kRecursive;
    case FileOp::kRename:
      return kNoReplace;
    case FileOp::kSymlink:
      return kParents;
    case FileOp::kChown:
    case FileOp::kSearch:
      return 0;
  }
  return 0;
}

uint32_t AllowedFlags(FileOp op) { return OwnFlags(op) | kNoSymlinks; }

// What a decoded FileOpRequest must also satisfy: fields that mean nothing
// for its op are zero or empty, so a request reads one way only.
Result<void> CheckFileOp(const FileOpRequest& m) {
  const char* what = "file operation request";
  if (m.flags & ~AllowedFlags(m.op))
    return Fail(what, "flags: 0x" + ToHex(m.flags) + " not allowed for op " + std::to_string(static_cast<uint32_t>(m.op)));
  if ((m.flags & kWriteExclusive) && !(m.flags & (kWriteCreate | kWriteAtomic)))
    return Fail(what, "flags: exclusive without create");
  if ((m.flags & kWriteAtomic) && (m.flags & kWriteAppend)) return Fail(what, "flags: atomic with append");
  if (m.mode > 07777) return Fail(what, "mode: 0" + ToOctal(m.mode) + " has more than permission bits");
  if (m.mode != 0 && !(m.flags & kModeSet)) return Fail(what, "mode: set without the mode-set flag");
  if (m.path.empty()) return Fail(what, "path: empty");
  // kSymlink's target is path2: stored as given, but never empty (the
  // kernel refuses that with ENOENT).
  const bool has_path2 = m.op == FileOp::kRename || m.op == FileOp::kSymlink;
  if (has_path2 == m.path2.empty())
    return Fail(what, has_path2 ? "path2: empty" : "path2: only for rename and symlink");
  if (m.op != FileOp::kChown && (m.owner_uid != 0 || m.owner_gid != 0))
    return Fail(what, "owner_uid, owner_gid: only for chown");
  if (m.owner_uid > kMaxOwnerId) return Fail(what, "owner_uid: out of range (" + std::to_string(m.owner_uid) + ")");
  if (m.owner_gid > kMaxOwnerId) return Fail(what, "owner_gid: out of range (" + std::to_string(m.owner_gid) + ")");
  if (m.cwd.empty() || m.cwd[0] != '/') return Fail(what, "cwd: not absolute");
  if (m.op != FileOp::kRead && (m.offset != 0 || m.length != 0)) return Fail(what, "offset, length: only for read");
  if (m.offset > static_cast<uint64_t>(INT64_MAX)) return Fail(what, "offset: out of range");
  if (m.length > static_cast<uint64_t>(INT64_MAX)) return Fail(what, "length: out of range");
  return {};
}

}  // namespace

ExecRequest MakeExecRequest(uint32_t id, const ProcessSpec& process) {
  ExecRequest req;
  req.id = id;
  req.argv = process.argv;
  req.env = process.env;
  req.cwd = process.cwd;
  req.uid = process.uid;
  req.gid = process.gid;
  req.groups.assign(process.groups.begin(), process.groups.end());
  return req;
}

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
  WriteGroups(w, m.groups);
  w.U32(m.tty ? 1 : 0);
  w.U32(m.rows);
  w.U32(m.cols);
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
std::string Encode(const Signal& m) {
  Writer w;
  w.U32(m.id);
  w.I32(m.signo);
  return w.Take();
}
std::string Encode(const FileOpRequest& m) {
  Writer w;
  w.U32(m.id);
  w.U32(static_cast<uint32_t>(m.op));
  w.U32(m.uid);
  w.U32(m.gid);
  WriteGroups(w, m.groups);
  w.Str(m.path);
  w.Str(m.path2);
  w.Str(m.cwd);
  w.U64(m.offset);
  w.U64(m.length);
  w.U32(m.flags);
  w.U32(m.mode);
  w.U32(m.owner_uid);
  w.U32(m.owner_gid);
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
  m.groups = TRY(ReadGroups(r));
  uint32_t tty = TRY(r.U32("tty"));
  uint32_t rows = TRY(r.U32("rows"));
  uint32_t cols = TRY(r.U32("cols"));
  TRY(r.End());
  if (m.argv.empty()) return Fail("exec request", "argv: empty");
  if (tty > 1) return Fail("exec request", "tty: neither 0 nor 1 (" + std::to_string(tty) + ")");
  if (rows > UINT16_MAX || cols > UINT16_MAX)
    return Fail("exec request", "rows, cols: out of range (" + std::to_string(rows) + "x" + std::to_string(cols) + ")");
  if ((rows == 0) != (cols == 0)) return Fail("exec request", "rows, cols: one of them is 0");
  if (!tty && rows != 0) return Fail("exec request", "rows, cols: set without a tty");
  m.tty = tty == 1;
  m.rows = static_cast<uint16_t>(rows);
  m.cols = static_cast<uint16_t>(cols);
  return m;
}

Result<Signal> DecodeSignal(std::string_view payload) {
  Reader r(payload, "signal request");
  Signal m;
  m.id = TRY(r.U32("id"));
  m.signo = TRY(r.I32("signo"));
  TRY(r.End());
  if (m.signo < 1 || m.signo > 64) return Fail("signal request", "signo: out of range (" + std::to_string(m.signo) + ")");
  return m;
}

Result<FileOpRequest> DecodeFileOpRequest(std::string_view payload) {
  Reader r(payload, "file operation request");
  FileOpRequest m;
  m.id = TRY(r.U32("id"));
  uint32_t op = TRY(r.U32("op"));
  if (op < static_cast<uint32_t>(FileOp::kRead) || op > static_cast<uint32_t>(FileOp::kSearch))
    return r.Bad("op", "unknown (" + std::to_string(op) + ")");
  m.op = static_cast<FileOp>(op);
  m.uid = TRY(r.U32("uid"));
  m.gid = TRY(r.U32("gid"));
  m.groups = TRY(ReadGroups(r));
  m.path = TRY(r.Str("path", kMaxPath));
  m.path2 = TRY(r.Str("path2", kMaxPath));
  m.cwd = TRY(r.Str("cwd", kMaxPath));
  m.offset = TRY(r.U64("offset"));
  m.length = TRY(r.U64("length"));
  m.flags = TRY(r.U32("flags"));
  m.mode = TRY(r.U32("mode"));
  m.owner_uid = TRY(r.U32("owner_uid"));
  m.owner_gid = TRY(r.U32("owner_gid"));
  TRY(r.End());
  if (m.flags & ~kFileOpFlagsMask) return Fail("file operation request", "flags: unknown bits 0x" + ToHex(m.flags & ~kFileOpFlagsMask));
  TRY(CheckFileOp(m));
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
  // One receive buffer per thread, allocated once and never zeroed: a fresh
  // 128 KiB (mmap'd, zero-filled) per message cost more than the message.
  thread_local std::unique_ptr<char[]> storage(new char[kMaxMessage]);
  std::string_view buf(storage.get(), kMaxMessage);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{storage.get(), kMaxMessage};
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
  const bool known = (h.type >= 1 && h.type <= static_cast<uint16_t>(Type::kPlan)) ||
                     (h.type >= static_cast<uint16_t>(Type::kClone) && h.type <= static_cast<uint16_t>(Type::kZygoteReady)) ||
                     (h.type >= static_cast<uint16_t>(Type::kEgressOpen) && h.type <= static_cast<uint16_t>(Type::kPortFailed)) ||
                     h.type == static_cast<uint16_t>(Type::kProxyControl);
  if (!known)
    return Fail("sandbox channel", "unknown message type " + std::to_string(h.type));
  if (out.fds.size() > kMaxFds) return Fail("sandbox channel", "too many fds");
  out.type = static_cast<Type>(h.type);
  out.payload.assign(buf.data() + sizeof(Header), h.length);
  return out;
}

}  // namespace airlock::proto

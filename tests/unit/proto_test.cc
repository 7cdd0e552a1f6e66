// The runtime <-> sandbox channel: payload encoding round trips, strict
// decoding of what a sandbox sends, and framing over a real SOCK_SEQPACKET
// socketpair with descriptors attached.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <dirent.h>
#include <string>
#include <vector>

#include "runtime/proto/channel.h"

namespace proto = airlock::proto;
using airlock::UniqueFd;

namespace {

std::string U32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string I32(int32_t v) { return U32(static_cast<uint32_t>(v)); }
std::string Str(const std::string& s) { return U32(static_cast<uint32_t>(s.size())) + s; }

// A raw datagram: header {version, type, length} and the payload.
std::string Frame(uint16_t version, uint16_t type, uint32_t length, const std::string& payload) {
  std::string out(8, '\0');
  memcpy(out.data(), &version, 2);
  memcpy(out.data() + 2, &type, 2);
  memcpy(out.data() + 4, &length, 4);
  return out + payload;
}

struct SocketPair {
  UniqueFd a, b;
  SocketPair() {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    a.Reset(sv[0]);
    b.Reset(sv[1]);
    // Room for the largest datagram the channel allows, and one byte more.
    int size = 4 * 1024 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
};

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    r.Reset(p[0]);
    w.Reset(p[1]);
  }
};

void SendRaw(int sock, const std::string& datagram) {
  REQUIRE(send(sock, datagram.data(), datagram.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(datagram.size()));
}

// Every decoder refuses every proper prefix of a valid payload and the
// payload with one trailing byte.
template <typename Decode>
void ExpectStrictLength(const std::string& payload, Decode decode) {
  for (size_t n = 0; n < payload.size(); ++n) {
    INFO("prefix of " << n << " of " << payload.size() << " bytes");
    auto r = decode(std::string_view(payload.data(), n));
    CHECK_FALSE(r.has_value());
    if (!r) CHECK(r.error().detail.find("too short") != std::string::npos);
  }
  auto r = decode(payload + 'x');
  CHECK_FALSE(r.has_value());
  if (!r) CHECK(r.error().detail.find("trailing") != std::string::npos);
  CHECK(decode(payload).has_value());
}

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

}  // namespace

TEST_CASE("proto: SetupFailed round trip", "[proto]") {
  for (proto::SetupFailed m : {proto::SetupFailed{8, 22, -1}, proto::SetupFailed{7, 13, 41},
                               proto::SetupFailed{0, 0, 0}, proto::SetupFailed{16, 4095, 63}}) {
    auto r = proto::DecodeSetupFailed(proto::Encode(m));
    REQUIRE(r.has_value());
    CHECK(r->step == m.step);
    CHECK(r->err == m.err);
    CHECK(r->item == m.item);
  }
  CHECK(proto::Encode(proto::SetupFailed{1, 2, 3}) == U32(1) + I32(2) + I32(3));
}

TEST_CASE("proto: ExecRequest round trip", "[proto]") {
  proto::ExecRequest m;
  m.id = 77;
  m.argv = {"sh", "-c", "echo 'a b' && printf '\\n'", ""};
  m.env = {"PATH=/usr/bin:/bin", "EMPTY=", "UTF8=é✓"};
  m.cwd = "/workspace/sub dir";
  m.uid = 1000;
  m.gid = 100;
  m.groups = {4, 24, 27};
  auto r = proto::DecodeExecRequest(proto::Encode(m));
  REQUIRE(r.has_value());
  CHECK(r->id == 77);
  CHECK(r->argv == m.argv);
  CHECK(r->env == m.env);
  CHECK(r->cwd == m.cwd);
  CHECK(r->uid == 1000);
  CHECK(r->gid == 100);
  CHECK(r->groups == m.groups);

  proto::ExecRequest minimal;
  minimal.argv = {"true"};
  auto r2 = proto::DecodeExecRequest(proto::Encode(minimal));
  REQUIRE(r2.has_value());
  CHECK(r2->argv == minimal.argv);
  CHECK(r2->env.empty());
  CHECK(r2->cwd == "/");
  CHECK(r2->groups.empty());

  proto::ExecRequest big;
  big.argv.assign(1000, std::string(20, 'a'));
  big.groups.assign(64, 7);
  auto r3 = proto::DecodeExecRequest(proto::Encode(big));
  REQUIRE(r3.has_value());
  CHECK(r3->argv.size() == 1000);
  CHECK(r3->groups.size() == 64);
}

TEST_CASE("proto: ExecFailed, Started, Exited, Hello round trips", "[proto]") {
  for (auto stage : {proto::ExecStage::kFork, proto::ExecStage::kIdentity, proto::ExecStage::kChdir,
                     proto::ExecStage::kStdio, proto::ExecStage::kExec}) {
    proto::ExecFailed m{9, ENOENT, stage};
    auto r = proto::DecodeExecFailed(proto::Encode(m));
    REQUIRE(r.has_value());
    CHECK(r->id == 9);
    CHECK(r->err == ENOENT);
    CHECK(r->stage == stage);
  }
  for (uint32_t pid : {2u, 1234u, 4194304u}) {
    auto r = proto::DecodeStarted(proto::Encode(proto::Started{5, pid}));
    REQUIRE(r.has_value());
    CHECK(r->id == 5);
    CHECK(r->pid == pid);
  }
  for (auto [code, sig] : std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {255, 0}, {0, 9}, {0, 64}, {0, 1}}) {
    auto r = proto::DecodeExited(proto::Encode(proto::Exited{3, code, sig}));
    INFO(code << " " << sig);
    REQUIRE(r.has_value());
    CHECK(r->id == 3);
    CHECK(r->code == code);
    CHECK(r->signal == sig);
  }
  CHECK(proto::DecodeHello(proto::EncodeHello()).has_value());
  CHECK(proto::EncodeHello() == U32(proto::kVersion));
}

TEST_CASE("proto: decoders refuse short payloads and trailing bytes", "[proto]") {
  proto::ExecRequest req;
  req.id = 1;
  req.argv = {"ls", "-l"};
  req.env = {"A=1"};
  req.cwd = "/tmp";
  req.groups = {1, 2};
  ExpectStrictLength(proto::Encode(req), proto::DecodeExecRequest);
  ExpectStrictLength(proto::Encode(proto::SetupFailed{3, 2, 1}), proto::DecodeSetupFailed);
  ExpectStrictLength(proto::Encode(proto::ExecFailed{1, 2, proto::ExecStage::kChdir}), proto::DecodeExecFailed);
  ExpectStrictLength(proto::Encode(proto::Started{1, 2}), proto::DecodeStarted);
  ExpectStrictLength(proto::Encode(proto::Exited{1, 0, 9}), proto::DecodeExited);
  ExpectStrictLength(proto::EncodeHello(), proto::DecodeHello);
}

TEST_CASE("proto: out-of-range values are refused", "[proto]") {
  SECTION("errno") {
    CHECK_FALSE(proto::DecodeSetupFailed(proto::Encode(proto::SetupFailed{1, -1, 0})));
    CHECK_FALSE(proto::DecodeSetupFailed(proto::Encode(proto::SetupFailed{1, 4096, 0})));
    CHECK_FALSE(proto::DecodeSetupFailed(proto::Encode(proto::SetupFailed{1, INT32_MIN, 0})));
    CHECK_FALSE(proto::DecodeExecFailed(proto::Encode(proto::ExecFailed{1, 0, proto::ExecStage::kExec})));
    CHECK_FALSE(proto::DecodeExecFailed(proto::Encode(proto::ExecFailed{1, -2, proto::ExecStage::kExec})));
    CHECK_FALSE(proto::DecodeExecFailed(proto::Encode(proto::ExecFailed{1, 4096, proto::ExecStage::kExec})));
    auto r = proto::DecodeSetupFailed(proto::Encode(proto::SetupFailed{1, 5000, 0}));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("errno") != std::string::npos);
    CHECK(r.error().err == 0);
  }
  SECTION("exec stage") {
    CHECK_FALSE(proto::DecodeExecFailed(U32(1) + I32(2) + U32(5)));
    CHECK_FALSE(proto::DecodeExecFailed(U32(1) + I32(2) + U32(0xffffffff)));
  }
  SECTION("pid") {
    for (uint32_t pid : {0u, 1u, 4194305u, 0xffffffffu}) {
      INFO(pid);
      CHECK_FALSE(proto::DecodeStarted(proto::Encode(proto::Started{1, pid})));
    }
  }
  SECTION("exit code and signal") {
    for (auto [code, sig] : std::vector<std::pair<int, int>>{
             {256, 0}, {-1, 0}, {0, -1}, {0, 65}, {1, 9}, {INT32_MAX, 0}, {0, INT32_MIN}}) {
      INFO(code << " " << sig);
      CHECK_FALSE(proto::DecodeExited(proto::Encode(proto::Exited{1, code, sig})));
    }
  }
  SECTION("hello version") {
    auto r = proto::DecodeHello(U32(proto::kVersion + 1));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("version") != std::string::npos);
    CHECK_FALSE(proto::DecodeHello(U32(0)));
  }
}

TEST_CASE("proto: exec requests are bounded and NUL-free", "[proto]") {
  // cwd, uid, gid, groups, tty, rows, cols
  const std::string tail = Str("/") + U32(0) + U32(0) + U32(0) + U32(0) + U32(0) + U32(0);
  SECTION("a good hand-built request") {
    CHECK(proto::DecodeExecRequest(U32(1) + U32(1) + Str("ls") + U32(0) + tail).has_value());
  }
  SECTION("NUL in argv, env or cwd") {
    CHECK_FALSE(proto::DecodeExecRequest(U32(1) + U32(1) + Str(std::string("l\0s", 3)) + U32(0) + tail));
    CHECK_FALSE(proto::DecodeExecRequest(U32(1) + U32(1) + Str("ls") + U32(1) + Str(std::string("A=\0", 3)) + tail));
    auto r = proto::DecodeExecRequest(U32(1) + U32(1) + Str("ls") + U32(0) + Str(std::string("/a\0b", 4)) +
                                      U32(0) + U32(0) + U32(0) + U32(0) + U32(0) + U32(0));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("cwd") != std::string::npos);
    CHECK(r.error().detail.find("NUL") != std::string::npos);
  }
  SECTION("too many argv or env entries") {
    // Refused from the count alone, before any allocation of that size.
    auto r = proto::DecodeExecRequest(U32(1) + U32(65537));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("argv") != std::string::npos);
    CHECK(r.error().detail.find("too many") != std::string::npos);
    CHECK_FALSE(proto::DecodeExecRequest(U32(1) + U32(0xffffffff)));
    r = proto::DecodeExecRequest(U32(1) + U32(1) + Str("ls") + U32(65537));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("env") != std::string::npos);
  }
  SECTION("too many groups") {
    auto r = proto::DecodeExecRequest(U32(1) + U32(1) + Str("ls") + U32(0) + Str("/") + U32(0) + U32(0) + U32(65));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("groups") != std::string::npos);
  }
  SECTION("a string length past the end") {
    CHECK_FALSE(proto::DecodeExecRequest(U32(1) + U32(1) + U32(0xffffffff) + "ls"));
    CHECK_FALSE(proto::DecodeExecRequest(U32(1) + U32(1) + U32(3) + "ls"));
  }
  SECTION("an empty argv") {
    auto r = proto::DecodeExecRequest(U32(1) + U32(0) + U32(0) + tail);
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("argv") != std::string::npos);
  }
}

TEST_CASE("proto: messages with fds over a socketpair", "[proto]") {
  SocketPair sp;
  Pipe p;
  proto::ExecRequest req;
  req.id = 4;
  req.argv = {"cat"};
  std::string payload = proto::Encode(req);
  int fds[] = {p.w.get(), p.w.get(), p.r.get()};
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kExec, payload, fds) == 0);
  auto m = proto::ReceiveMessage(sp.b.get());
  INFO((m ? std::string() : m.error().Message()));
  REQUIRE(m.has_value());
  CHECK(m->type == proto::Type::kExec);
  CHECK(m->payload == payload);
  REQUIRE(m->fds.size() == 3);
  for (const auto& fd : m->fds) {
    CHECK(fd.valid());
    CHECK(fd.get() != p.w.get());
    CHECK((fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);  // received close-on-exec
  }
  auto decoded = proto::DecodeExecRequest(m->payload);
  REQUIRE(decoded.has_value());
  CHECK(decoded->argv == req.argv);

  // The received write end is the pipe's: what goes in comes out of our read end.
  p.w.Reset();
  REQUIRE(write(m->fds[0].get(), "hello", 5) == 5);
  // fds[2] is the read end itself.
  char buf[8] = {};
  REQUIRE(read(m->fds[2].get(), buf, sizeof(buf)) == 5);
  CHECK(std::string(buf, 5) == "hello");
  // Once every write end is closed, the reader sees EOF.
  m->fds[0].Reset();
  m->fds[1].Reset();
  CHECK(read(p.r.get(), buf, sizeof(buf)) == 0);
}

TEST_CASE("proto: every message type and an empty payload", "[proto]") {
  SocketPair sp;
  std::vector<uint16_t> types;
  for (uint16_t t = 1; t <= static_cast<uint16_t>(proto::Type::kPlan); ++t) types.push_back(t);
  for (uint16_t t = 40; t <= static_cast<uint16_t>(proto::Type::kZygoteReady); ++t) types.push_back(t);
  for (uint16_t t : types) {
    REQUIRE(proto::SendMessage(sp.a.get(), static_cast<proto::Type>(t), std::string(t, 'x')) == 0);
    auto m = proto::ReceiveMessage(sp.b.get());
    REQUIRE(m.has_value());
    CHECK(static_cast<uint16_t>(m->type) == t);
    CHECK(m->payload == std::string(t, 'x'));
    CHECK(m->fds.empty());
  }
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kGo, "") == 0);
  auto go = proto::ReceiveMessage(sp.b.get());
  REQUIRE(go.has_value());
  CHECK(go->type == proto::Type::kGo);
  CHECK(go->payload.empty());
}

TEST_CASE("proto: SendSetupFailed without allocation decodes as SetupFailed", "[proto]") {
  SocketPair sp;
  REQUIRE(proto::SendSetupFailed(sp.a.get(), 8, EINVAL, 12) == 0);
  auto m = proto::ReceiveMessage(sp.b.get());
  REQUIRE(m.has_value());
  CHECK(m->type == proto::Type::kSetupFailed);
  auto f = proto::DecodeSetupFailed(m->payload);
  REQUIRE(f.has_value());
  CHECK(f->step == 8);
  CHECK(f->err == EINVAL);
  CHECK(f->item == 12);
}

TEST_CASE("proto: the largest datagram passes, one byte more is refused", "[proto]") {
  SocketPair sp;
  const size_t max_payload = proto::kMaxMessage - 8;
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kExec, std::string(max_payload, 'a')) == 0);
  auto m = proto::ReceiveMessage(sp.b.get());
  INFO((m ? std::string() : m.error().Message()));
  REQUIRE(m.has_value());
  CHECK(m->payload.size() == max_payload);

  CHECK(proto::SendMessage(sp.a.get(), proto::Type::kExec, std::string(max_payload + 1, 'a')) == -EMSGSIZE);

  // A sandbox can still send a bigger datagram by hand: it is refused as truncated.
  SendRaw(sp.a.get(), Frame(proto::kVersion, 3, max_payload + 1, std::string(max_payload + 1, 'a')));
  auto big = proto::ReceiveMessage(sp.b.get());
  REQUIRE_FALSE(big.has_value());
  CHECK(big.error().detail.find("truncated") != std::string::npos);
  // The channel stays usable: the rest of that datagram is gone.
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kHello, proto::EncodeHello()) == 0);
  auto next = proto::ReceiveMessage(sp.b.get());
  REQUIRE(next.has_value());
  CHECK(next->type == proto::Type::kHello);
}

TEST_CASE("proto: too many fds are refused and none leak", "[proto]") {
  SocketPair sp;
  Pipe p;
  std::vector<int> many(proto::kMaxFds + 1, p.w.get());
  CHECK(proto::SendMessage(sp.a.get(), proto::Type::kExec, "x", many) == -EMSGSIZE);

  // Hand-built: kMaxFds + 1 copies of the pipe's write end.
  std::string datagram = Frame(proto::kVersion, 3, 1, "x");
  iovec iov{datagram.data(), datagram.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * many.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * many.size());
  memcpy(CMSG_DATA(c), many.data(), sizeof(int) * many.size());
  REQUIRE(sendmsg(sp.a.get(), &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(datagram.size()));

  const int before = CountOpenFds();
  auto m = proto::ReceiveMessage(sp.b.get());
  REQUIRE_FALSE(m.has_value());
  CHECK(CountOpenFds() == before);
  // With our own copy closed, no write end is left anywhere: EOF.
  p.w.Reset();
  char b;
  CHECK(read(p.r.get(), &b, 1) == 0);
}

TEST_CASE("proto: malformed headers are refused", "[proto]") {
  SocketPair sp;
  auto refused = [&](const std::string& datagram, const std::string& why) {
    SendRaw(sp.a.get(), datagram);
    auto m = proto::ReceiveMessage(sp.b.get());
    INFO(why);
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().err == 0);
    return m.error().detail;
  };
  std::string payload = proto::Encode(proto::Started{1, 2});
  CHECK(refused(Frame(proto::kVersion + 1, 4, 8, payload), "wrong version").find("version") != std::string::npos);
  CHECK(refused(Frame(0, 4, 8, payload), "version 0").find("version") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 4, 9, payload), "length too big").find("length") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 4, 7, payload), "length too small").find("length") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 4, 0xffffffff, payload), "length huge").find("length") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 0, 8, payload), "type 0").find("type") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 13, 8, payload), "type 13").find("type") != std::string::npos);
  CHECK(refused(Frame(proto::kVersion, 43, 8, payload), "type 43").find("type") != std::string::npos);
  CHECK(refused(Frame(1, 4, 8, payload), "version 1 (before signals and file operations)").find("version") !=
        std::string::npos);
  CHECK(refused(std::string("\x01\x00\x04\x00", 4), "shorter than a header").find("header") != std::string::npos);

  // Fds that came with a refused message are closed.
  Pipe p;
  int fd = p.w.get();
  std::string datagram = Frame(proto::kVersion + 1, 3, 0, "");
  iovec iov{datagram.data(), datagram.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  REQUIRE(sendmsg(sp.a.get(), &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(datagram.size()));
  REQUIRE_FALSE(proto::ReceiveMessage(sp.b.get()).has_value());
  p.w.Reset();
  char b;
  CHECK(read(p.r.get(), &b, 1) == 0);
}

TEST_CASE("proto: EOF is an error with errno 0", "[proto]") {
  SocketPair sp;
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kHello, proto::EncodeHello()) == 0);
  sp.a.Reset();
  // A message sent before the close is still delivered.
  auto first = proto::ReceiveMessage(sp.b.get());
  REQUIRE(first.has_value());
  CHECK(first->type == proto::Type::kHello);
  auto m = proto::ReceiveMessage(sp.b.get());
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().err == 0);
  CHECK(m.error().op == "channel closed");
}

TEST_CASE("proto: a socket error carries its errno", "[proto]") {
  UniqueFd not_a_socket(open("/dev/null", O_RDONLY | O_CLOEXEC));
  REQUIRE(not_a_socket.valid());
  auto m = proto::ReceiveMessage(not_a_socket.get());
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().err == ENOTSOCK);
  SocketPair sp;
  sp.b.Reset();
  CHECK(proto::SendMessage(sp.a.get(), proto::Type::kHello, proto::EncodeHello()) == -EPIPE);
}

// ---- protocol version 2: tty, signals, file operations, stat records ----

TEST_CASE("proto: ExecRequest with a tty round trip", "[proto]") {
  proto::ExecRequest m;
  m.id = 12;
  m.argv = {"bash", "-i"};
  m.tty = true;
  m.rows = 24;
  m.cols = 80;
  auto r = proto::DecodeExecRequest(proto::Encode(m));
  REQUIRE(r.has_value());
  CHECK(r->tty);
  CHECK(r->rows == 24);
  CHECK(r->cols == 80);
  m.rows = m.cols = 65535;
  r = proto::DecodeExecRequest(proto::Encode(m));
  REQUIRE(r.has_value());
  CHECK(r->rows == 65535);
  CHECK(r->cols == 65535);
  m.rows = m.cols = 0;  // the kernel's default size
  r = proto::DecodeExecRequest(proto::Encode(m));
  REQUIRE(r.has_value());
  CHECK(r->tty);
  CHECK(r->rows == 0);
  proto::ExecRequest plain;
  plain.argv = {"true"};
  r = proto::DecodeExecRequest(proto::Encode(plain));
  REQUIRE(r.has_value());
  CHECK_FALSE(r->tty);
  // Three u32 after the groups.
  CHECK(proto::Encode(plain) == U32(0) + U32(1) + Str("true") + U32(0) + Str("/") + U32(0) + U32(0) + U32(0) +
                                    U32(0) + U32(0) + U32(0));
  m.rows = 50;
  m.cols = 132;
  ExpectStrictLength(proto::Encode(m), proto::DecodeExecRequest);
}

TEST_CASE("proto: ExecRequest tty fields are checked", "[proto]") {
  const std::string head = U32(1) + U32(1) + Str("sh") + U32(0) + Str("/") + U32(0) + U32(0) + U32(0);
  auto refused = [&](uint32_t tty, uint32_t rows, uint32_t cols, const char* field) {
    auto r = proto::DecodeExecRequest(head + U32(tty) + U32(rows) + U32(cols));
    INFO(tty << " " << rows << "x" << cols);
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find(field) != std::string::npos);
  };
  CHECK(proto::DecodeExecRequest(head + U32(1) + U32(24) + U32(80)).has_value());
  refused(2, 0, 0, "tty");
  refused(0xffffffff, 0, 0, "tty");
  refused(1, 65536, 80, "rows");
  refused(1, 24, 0x10000, "cols");
  refused(1, 24, 0, "rows, cols");
  refused(1, 0, 80, "rows, cols");
  refused(0, 24, 80, "without a tty");
  // A version 1 request (no tty fields) is short now.
  auto v1 = proto::DecodeExecRequest(head);
  REQUIRE_FALSE(v1);
  CHECK(v1.error().detail.find("tty") != std::string::npos);
}

TEST_CASE("proto: Signal round trip and range", "[proto]") {
  for (int signo : {1, 9, 15, 28, 64}) {
    auto r = proto::DecodeSignal(proto::Encode(proto::Signal{42, signo}));
    REQUIRE(r.has_value());
    CHECK(r->id == 42);
    CHECK(r->signo == signo);
  }
  CHECK(proto::Encode(proto::Signal{7, 9}) == U32(7) + I32(9));
  for (int signo : {0, -1, 65, INT32_MAX, INT32_MIN}) {
    INFO(signo);
    auto r = proto::DecodeSignal(proto::Encode(proto::Signal{1, signo}));
    REQUIRE_FALSE(r);
    CHECK(r.error().detail.find("signo") != std::string::npos);
  }
  ExpectStrictLength(proto::Encode(proto::Signal{3, 2}), proto::DecodeSignal);
}

TEST_CASE("proto: signal and file operation messages over a socketpair", "[proto]") {
  SocketPair sp;
  Pipe p;
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kSignal, proto::Encode(proto::Signal{5, SIGTERM})) == 0);
  auto sig = proto::ReceiveMessage(sp.b.get());
  REQUIRE(sig.has_value());
  CHECK(sig->type == proto::Type::kSignal);
  auto decoded = proto::DecodeSignal(sig->payload);
  REQUIRE(decoded.has_value());
  CHECK(decoded->signo == SIGTERM);

  proto::FileOpRequest req;
  req.op = proto::FileOp::kRead;
  req.path = "/etc/hostname";
  int fd = p.w.get();
  REQUIRE(proto::SendMessage(sp.a.get(), proto::Type::kFileOp, proto::Encode(req), std::span<const int>(&fd, 1)) == 0);
  auto op = proto::ReceiveMessage(sp.b.get());
  REQUIRE(op.has_value());
  CHECK(op->type == proto::Type::kFileOp);
  REQUIRE(op->fds.size() == 1);
  auto r = proto::DecodeFileOpRequest(op->payload);
  REQUIRE(r.has_value());
  CHECK(r->path == req.path);
}

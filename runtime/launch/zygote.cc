#include "runtime/launch/zygote.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <cstdio>

#include "runtime/fs/sources.h"
#include "runtime/launch/internal.h"
#include "runtime/proto/channel.h"

namespace airlock {
namespace {
constexpr int kReadyTimeoutMs = 5000;
}  // namespace

Result<std::unique_ptr<Zygote>> Zygote::Start(const std::string& init_binary) {
  UniqueFd path_fd = TRY(fs::OpenHostPath(init_binary));
  // As for every launch: exec'd from a read-only, nosuid copy of its mount.
  UniqueFd exec_fd = TRY(fs::CloneMount(path_fd.get(), init_binary, launch_internal::kRoNoSuidNoDev, -1));
  UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return Errno("open", "/dev/null");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return Errno("socketpair", "zygote");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const pid_t parent = getpid();
  char arg0[] = "airlock-init", arg1[] = "--zygote";
  char* argv[] = {arg0, arg1, nullptr};
  char* envp[] = {nullptr};
  pid_t pid = fork();
  if (pid < 0) return Errno("fork", "zygote");
  if (pid == 0) {
    // Async-signal-safe only: the caller may have threads.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent) _exit(125);
    // stdin and stdout /dev/null, stderr the runtime's; fd 3 the socket;
    // every number is lifted first so that none overwrites another.
    int s = fcntl(theirs.get(), F_DUPFD, 10), n = fcntl(null.get(), F_DUPFD, 10);
    int e = fcntl(exec_fd.get(), F_DUPFD_CLOEXEC, 10);
    if (s < 0 || n < 0 || e < 0) _exit(125);
    if (dup2(n, 0) < 0 || dup2(n, 1) < 0 || dup2(s, proto::kZygoteFd) < 0) _exit(125);
    // Everything else goes with the exec (the exec fd too).
    if (syscall(SYS_close_range, proto::kZygoteFd + 1, ~0u, CLOSE_RANGE_CLOEXEC) < 0) _exit(125);
    syscall(SYS_execveat, e, "", argv, envp, AT_EMPTY_PATH);
    _exit(127);
  }
  std::unique_ptr<Zygote> z(new Zygote());
  z->sock_ = std::move(ours);
  z->pid_ = pid;  // reaped by the destructor, also if what follows fails
  theirs.Reset();
  pollfd p{z->sock_.get(), POLLIN, 0};
  if (poll(&p, 1, kReadyTimeoutMs) != 1) return Fail("zygote", init_binary + " --zygote did not say it is ready");
  auto hello = proto::ReceiveMessage(z->sock_.get());
  if (!hello) return Fail("zygote", init_binary + " --zygote: " + hello.error().Message());
  if (hello->type != proto::Type::kZygoteReady || !proto::DecodeHello(hello->payload))
    return Fail("zygote", init_binary + " --zygote does not speak this runtime's protocol");
  return z;
}

void Zygote::Lost(const Error& why) {
  sock_.Reset();
  if (alive_.exchange(false)) fprintf(stderr, "airlock: zygote lost (%s): sandboxes are cloned in-process from now on\n", why.Message().c_str());
}

Zygote::~Zygote() {
  sock_.Reset();
  if (pid_ > 0) {
    // It holds nothing worth a graceful end (its children are the
    // runtime's), and one that doesn't speak the protocol might not leave
    // on EOF.
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

Result<Zygote::Cloned> Zygote::Clone(const proto::CloneRequest& req, std::span<const int> fds) {
  if (fds.size() != req.fd_count()) return Fail("zygote", "clone request with the wrong number of descriptors");
  std::lock_guard lock(mu_);
  if (!sock_) return Fail("zygote", "not running");
  if (int r = proto::SendMessage(sock_.get(), proto::Type::kClone, proto::EncodeCloneRequest(req), fds); r < 0) {
    Error e{-r, "zygote", "send clone request"};
    Lost(e);
    return std::unexpected(e);
  }
  auto msg = proto::ReceiveMessage(sock_.get());
  if (!msg || msg->type != proto::Type::kCloned) {
    Error e = msg ? Error{EPROTO, "zygote", "unexpected answer to a clone request"} : msg.error();
    Lost(e);
    return std::unexpected(e);
  }
  auto reply = proto::DecodeCloneReply(msg->payload);
  if (!reply) {
    Lost(reply.error());
    return std::unexpected(reply.error());
  }
  if (reply->err) return ErrnoValue(reply->err, "clone3", "new user, pid, mount, uts, ipc namespaces (zygote)");
  if (msg->fds.size() != 1) {
    // Our child (CLONE_PARENT), unreaped, so the pid is still its own.
    kill(reply->pid, SIGKILL);
    while (waitpid(reply->pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    Error e{EPROTO, "zygote", "clone answer without the child's pidfd"};
    Lost(e);
    return std::unexpected(e);
  }
  Cloned out;
  out.pid = reply->pid;
  out.pidfd = std::move(msg->fds[0]);
  return out;
}

}  // namespace airlock

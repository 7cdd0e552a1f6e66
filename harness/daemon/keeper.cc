#include "harness/daemon/keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>

namespace airlock::daemon {
namespace {

constexpr size_t kMaxMessage = 256;

// One datagram with up to three fds (the first n that aren't -1). Returns 0
// or -errno.
int Send(int sock, const std::string& msg, int fd1 = -1, int fd2 = -1, int fd3 = -1) {
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  int fds[3] = {fd1, fd2, fd3};
  int n = fd1 < 0 ? 0 : fd2 < 0 ? 1 : fd3 < 0 ? 2 : 3;
  if (n > 0) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) return -errno;
  return 0;
}

// One datagram; its fds (all kept; the callers check the count). Returns the
// length, 0 at EOF, or -errno.
ssize_t Receive(int sock, std::string* msg, std::vector<UniqueFd>* fds) {
  char buf[kMaxMessage];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds->emplace_back(fd);
    }
  }
  if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return -EMSGSIZE;
  msg->assign(buf, static_cast<size_t>(n));
  return n;
}

struct Entry {
  UniqueFd channel, pidfd, egress;  // egress: network mode proxy only
};

// The keeper process: single-threaded, owns nothing but what it is given.
[[noreturn]] void KeeperMain(int listen_fd, const std::string& path) {
  prctl(PR_SET_NAME, "airlock-keeper", 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  std::map<std::string, Entry> held;
  std::vector<UniqueFd> clients;
  bool served = false;  // the daemon that started us connects right away
  for (;;) {
    if (served && clients.empty() && held.empty()) {
      // Nobody to serve and nothing to keep. Unlinked first, so a daemon
      // starting now makes a new keeper instead of reaching this one.
      unlink(path.c_str());
      pollfd p{listen_fd, POLLIN, 0};
      if (poll(&p, 1, 0) <= 0) _exit(0);
    }
    std::vector<pollfd> fds;
    fds.push_back({listen_fd, POLLIN, 0});
    for (auto& c : clients) fds.push_back({c.get(), POLLIN, 0});
    std::vector<std::string> ids;
    for (auto& [id, e] : held) {
      fds.push_back({e.pidfd.get(), POLLIN, 0});
      ids.push_back(id);
    }
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    // inits that exited: their sandboxes are over.
    for (size_t i = 0; i < ids.size(); ++i)
      if (fds[1 + clients.size() + i].revents) held.erase(ids[i]);
    for (size_t i = clients.size(); i-- > 0;) {
      if (!fds[1 + i].revents) continue;
      std::string msg;
      std::vector<UniqueFd> got;
      ssize_t n = Receive(clients[i].get(), &msg, &got);
      if (n <= 0) {
        clients.erase(clients.begin() + static_cast<long>(i));
        continue;
      }
      const char op = msg[0];
      const std::string id = msg.substr(1);
      // P and D get no answer: a create's path shouldn't wait on the
      // keeper being scheduled. The socket keeps them in order with L.
      if (op == 'P' && (got.size() == 2 || got.size() == 3) && !id.empty()) {
        held[id] = Entry{std::move(got[0]), std::move(got[1]), got.size() == 3 ? std::move(got[2]) : UniqueFd()};
      } else if (op == 'D') {
        held.erase(id);
      } else if (op == 'L') {
        for (auto& [hid, e] : held)
          Send(clients[i].get(), "I" + hid, e.channel.get(), e.pidfd.get(), e.egress.get());
        Send(clients[i].get(), "E");
      } else {
        Send(clients[i].get(), "?");
      }
    }
    if (fds[0].revents) {
      int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == 0) {
          clients.emplace_back(c);
          served = true;
        } else {
          close(c);
        }
      }
    }
  }
}

Result<UniqueFd> Dial(const sockaddr_un& addr) {
  UniqueFd s(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return Errno("socket", "keeper");
  if (connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) return Errno("connect", addr.sun_path);
  return s;
}

}  // namespace

Result<std::unique_ptr<KeeperClient>> KeeperClient::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Fail("keeper", path + ": path too long");
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::unique_ptr<KeeperClient> k(new KeeperClient());
  if (auto s = Dial(addr)) {
    k->sock_ = std::move(*s);
    return k;
  }
  // None answers: start one, bound before it forks so we can connect at once.
  unlink(path.c_str());
  UniqueFd listen_fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!listen_fd) return Errno("socket", "keeper");
  mode_t old = umask(0077);
  int bound = bind(listen_fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (bound < 0) return Errno("bind", path);
  if (listen(listen_fd.get(), 8) < 0) return Errno("listen", path);
  pid_t child = fork();
  if (child < 0) return Errno("fork", "keeper");
  if (child == 0) {
    // Detached from the daemon: its own session, reparented away, holding
    // nothing of the daemon's but the listening socket (as fd 3).
    setsid();
    if (fork() != 0) _exit(0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    if (dup2(listen_fd.get(), 3) < 0) _exit(1);
    syscall(SYS_close_range, 4, ~0U, 0);
    if (chdir("/") < 0) _exit(1);
    KeeperMain(3, path);
  }
  int status;
  waitpid(child, &status, 0);
  listen_fd.Reset();
  k->sock_ = TRY(Dial(addr));
  return k;
}

Result<void> KeeperClient::Put(const std::string& id, int channel, int pidfd, int egress) {
  std::lock_guard lock(mu_);
  if (int r = Send(sock_.get(), "P" + id, channel, pidfd, egress); r < 0) return ErrnoValue(-r, "keeper", "hold " + id);
  return {};
}

Result<void> KeeperClient::Drop(const std::string& id) {
  std::lock_guard lock(mu_);
  if (int r = Send(sock_.get(), "D" + id); r < 0) return ErrnoValue(-r, "keeper", "drop " + id);
  return {};
}

Result<std::vector<KeeperClient::Held>> KeeperClient::List() {
  std::lock_guard lock(mu_);
  if (int r = Send(sock_.get(), "L"); r < 0) return ErrnoValue(-r, "keeper", "list");
  std::vector<Held> out;
  for (;;) {
    std::string msg;
    std::vector<UniqueFd> fds;
    if (Receive(sock_.get(), &msg, &fds) <= 0) return Fail("keeper", "list: connection lost");
    if (msg == "E") return out;
    if (msg.size() < 2 || msg[0] != 'I' || fds.size() < 2 || fds.size() > 3)
      return Fail("keeper", "list: malformed answer");
    out.push_back({msg.substr(1), std::move(fds[0]), std::move(fds[1]), fds.size() == 3 ? std::move(fds[2]) : UniqueFd()});
  }
}

}  // namespace airlock::daemon

#include "harness/daemon/listener.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "runtime/core/paths.h"

namespace airlock::daemon {

Result<std::unique_ptr<Listener>> Listener::Bind(const std::string& path, mode_t mode, gid_t gid) {
  std::unique_ptr<Listener> l(new Listener());
  l->path_ = path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Fail("socket", path + ": path too long");
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  TRY(MakeDirs(ParentDir(path)));
  // Callers the mode lets in must be able to reach the socket: search
  // permission (only) on its directory.
  struct stat dir_st;
  if ((mode & 0066) && stat(ParentDir(path).c_str(), &dir_st) == 0 &&
      chmod(ParentDir(path).c_str(), (dir_st.st_mode & 07777) | 0011) < 0)
    return Errno("chmod", ParentDir(path));
  l->sock_ = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l->sock_) return Errno("socket", path);
  // A socket file left by a daemon that died: nobody answers on it.
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Fail("socket", path + " exists and is not a socket");
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
      return ErrnoValue(EADDRINUSE, "socket", path + ": another airlockd serves it");
    unlink(path.c_str());
  }
  // Bound under a umask that lets nobody in before the mode is set.
  mode_t old = umask(0177);
  int bound = bind(l->sock_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (bound < 0) return Errno("bind", path);
  if (gid != static_cast<gid_t>(-1) && chown(path.c_str(), 0, gid) < 0) return Errno("chown", path);
  if (chmod(path.c_str(), mode) < 0) return Errno("chmod", path);
  if (listen(l->sock_.get(), 512) < 0) return Errno("listen", path);
  l->stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  // Room for many connection numbers: see the header.
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  // A window of 64K numbers: a connection's number comes back only after
  // 64K others, and the peer table stays small.
  const int limit = static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
  l->low_fd_ = std::min(limit / 2, 8192);
  l->high_fd_ = std::min(limit - 1, l->low_fd_ + 65536);
  l->next_fd_ = l->low_fd_;
  return l;
}

int Listener::Renumber(int fd) {
  // The next free number above the last one used, wrapping at the top.
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, next_fd_);
  if (moved < 0 || moved >= high_fd_) {
    if (moved >= 0) close(moved);
    next_fd_ = low_fd_;
    moved = fcntl(fd, F_DUPFD_CLOEXEC, next_fd_);
    // A new round: forget the callers of connections gRPC has closed.
    std::lock_guard lock(mu_);
    std::erase_if(peers_, [](const auto& p) { return fcntl(p.first, F_GETFD) < 0; });
  }
  if (moved < 0) return fd;  // out of numbers: keep the original
  close(fd);
  next_fd_ = moved + 1 >= high_fd_ ? low_fd_ : moved + 1;
  return moved;
}

void Listener::Serve(grpc::Server* server) {
  for (;;) {
    pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    int fd = accept4(sock_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);  // gRPC expects non-blocking
    if (fd < 0) continue;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
      close(fd);
      continue;
    }
    fd = Renumber(fd);
    {
      std::lock_guard lock(mu_);
      peers_[fd] = Caller{cred.uid, cred.gid, cred.pid};
    }
    grpc::AddInsecureChannelFromFd(server, fd);
  }
}

void Listener::Stop() {
  uint64_t one = 1;
  (void)!write(stop_.get(), &one, sizeof(one));
  unlink(path_.c_str());
}

std::optional<Caller> Listener::Lookup(const std::string& peer) {
  if (!peer.starts_with("fd:")) return std::nullopt;
  int fd = atoi(peer.c_str() + 3);
  std::lock_guard lock(mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

}  // namespace airlock::daemon

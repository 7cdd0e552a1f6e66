// The API socket. airlockd accepts unix connections itself so it can read
// each peer's credentials (SO_PEERCRED) before gRPC sees the connection,
// then hands the connection to the gRPC server (AddInsecureChannelFromFd),
// whose calls name it as peer "fd:<n>". To keep that name from meaning a
// later connection, every accepted socket is moved to a fresh descriptor
// number, cycling through a large range (RLIMIT_NOFILE is raised for it).
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "harness/daemon/manager.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace grpc {
class Server;
}

namespace airlock::daemon {

class Listener {
 public:
  // Binds `path` (replacing a stale socket file) with `mode` and `gid`
  // (-1: keep root's group).
  static Result<std::unique_ptr<Listener>> Bind(const std::string& path, mode_t mode, gid_t gid);

  // Accepts until Stop(), handing each connection to `server`.
  void Serve(grpc::Server* server);
  void Stop();

  // The caller behind a gRPC peer string ("fd:12").
  std::optional<Caller> Lookup(const std::string& peer);

 private:
  Listener() = default;
  int Renumber(int fd);

  std::string path_;
  UniqueFd sock_;
  UniqueFd stop_;  // eventfd
  std::mutex mu_;
  std::map<int, Caller> peers_;
  int next_fd_ = 0, low_fd_ = 0, high_fd_ = 0;
};

}  // namespace airlock::daemon

// The keeper: a small process that holds the daemon's ends of its sandboxes'
// init channels (and their inits' pidfds), so that sandboxes outlive a
// restart or a kill -9 of airlockd. init ends its sandbox when its channel
// closes; while the keeper holds a copy, it doesn't. A restarted daemon asks
// the keeper for everything it holds and adopts those sandboxes
// (Sandbox::Adopt) — init is reached again over the same socket, never
// through a host path. The keeper drops a sandbox when its init exits.
//
// One keeper per state root, listening on <state_root>/keeper.sock (a
// SOCK_SEQPACKET socket only root may use). It runs no threads and parses
// nothing but one-letter requests from root: P<id> + {channel, pidfd[, egress
// channel]} holds,
// D<id> drops (neither is answered), L lists (I<id> + fds per sandbox, then E). It exits when no
// daemon is connected and it holds nothing.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::daemon {

class KeeperClient {
 public:
  // Connects to the keeper at `path`, starting one (a double fork) if none
  // answers. Call before the process starts any thread.
  static Result<std::unique_ptr<KeeperClient>> Connect(const std::string& path);

  // `egress`: the egress channel's host end of a sandbox in network mode
  // proxy, else -1.
  Result<void> Put(const std::string& id, int channel, int pidfd, int egress = -1);
  Result<void> Drop(const std::string& id);

  struct Held {
    std::string id;
    UniqueFd channel, pidfd, egress;
  };
  Result<std::vector<Held>> List();

 private:
  KeeperClient() = default;
  std::mutex mu_;
  UniqueFd sock_;
};

}  // namespace airlock::daemon

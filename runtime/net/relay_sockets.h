// The sockets airlock-init's relay serves a sandbox's egress with (network
// mode proxy): made by the runtime, as host root, in the sandbox's network
// namespace before the sandbox exists, so that nothing inside needs a
// privilege to listen (port 53 included) and nothing inside can take the
// ports first.
#pragma once

#include <cstdint>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::net {

struct RelaySockets {
  UniqueFd proxy_listener;  // TCP, listening on 127.0.0.1:<proxy_port>
  UniqueFd dns_udp;         // transparent only: UDP bound to 127.0.0.1:53
  UniqueFd dns_tcp;         // transparent only: TCP listening on 127.0.0.1:53
};

// Makes them in the calling thread's network namespace; close-on-exec.
Result<RelaySockets> MakeRelaySockets(uint16_t proxy_port, bool transparent);

}  // namespace airlock::net

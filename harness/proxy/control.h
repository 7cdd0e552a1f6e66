// What airlockd and the egress proxy say to each other: one JSON object per
// proto::Type::kProxyControl message on a SOCK_SEQPACKET socketpair (fd 3 of
// airlock-proxy), descriptors alongside.
//
// airlockd -> proxy
//   {"op":"config", "ca_cert":PEM, "ca_key":PEM, "upstream_ca":PEM or "",
//    "resolve":{"name":["addr",...]}, "refused":["addr:port", ...]}
//       once, first. `resolve`: static answers for names (air-gapped sites,
//       tests), consulted before the system resolver. `refused`: airlockd's
//       own listeners.
//   {"op":"add", "sandbox":ID, "allow":[entry...], "transparent":bool,
//    "secrets":[{"name","value","hosts":[entry...],"header","add"?}],
//    "ports":[port...]}
//       fds: the sandbox's egress channel, then one listening socket per
//       exposed port, in order. A sandbox added again replaces the old.
//   {"op":"remove", "sandbox":ID}
// proxy -> airlockd
//   {"op":"ready"}
//   {"op":"audit", "sandbox":ID, "kind":"connect"|"http"|"transparent"|"port",
//    "destination":NAME or address, "port":N, "address":"a.b.c.d" or "",
//    "allowed":bool, "reason":TEXT, "bytes_out":N, "bytes_in":N,
//    "secrets":[NAME...]}   (names of the secrets injected; never values)
#pragma once

#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

namespace airlock::proxy {

// Sends `j` (and `fds`) as one kProxyControl message.
Result<void> SendControl(int sock, const nlohmann::json& j, std::span<const int> fds = {});

struct ControlMessage {
  nlohmann::json body;  // an object with a string "op"
  std::vector<UniqueFd> fds;
};
// Receives one; EOF is an error with errno 0 ("channel closed").
Result<ControlMessage> ReceiveControl(int sock);

}  // namespace airlock::proxy

// The relay: the process airlock-init forks in network mode proxy to serve
// the sandbox's egress (runtime/proto/egress.h). It holds the sandbox end of
// the egress channel and the listening sockets the runtime made in the
// sandbox's network namespace, and nothing else of init's.
//
//   - Each connection accepted on the proxy port becomes a kEgressOpen:
//     explicit (an HTTP proxy client) or, when netfilter redirected it
//     there, transparent with its original IPv4 destination and the name
//     the relay's DNS gave that address. The proxy answers with a fresh
//     socketpair end (kEgressSocket), which the relay splices to the
//     connection both ways, or refuses it (the client gets a reset).
//   - kPortOpen: the relay connects to 127.0.0.1:<port> inside and splices
//     the proxy's socketpair end to it, or answers kPortFailed.
//   - DNS over UDP and TCP on 127.0.0.1:53 (transparent mode) is answered
//     with made-up addresses (runtime/net/fakedns.h); nothing is resolved.
//
// One epoll loop, every descriptor non-blocking, a byte budget per turn so
// that no connection holds up the others. Bounded: at most
// kRelayMaxConnections connections (within RLIMIT_NOFILE), fixed buffers
// per connection (pipes, or 16 KiB per direction where splice is refused
// or descriptors are short), a bounded DNS table and send queue; a hostile
// program in the sandbox can only hurt its own sandbox's egress.
#pragma once

namespace airlock::init {

inline constexpr int kRelayMaxConnections = 1024;

// Runs the relay on its descriptors (dns_udp_fd and dns_tcp_fd are -1
// unless transparent). Names itself "airlock-relay", ignores SIGPIPE and
// unblocks every signal. Exits 0 when the egress channel reaches EOF or
// fails (the proxy is gone, or the sandbox is ending: a new relay would
// find the same), 125 if it could not run at all.
[[noreturn]] void RelayMain(int egress_fd, int listen_fd, int dns_udp_fd, int dns_tcp_fd);

}  // namespace airlock::init

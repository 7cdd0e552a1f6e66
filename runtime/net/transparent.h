// Transparent egress for network mode `proxy`: inside a sandbox's network
// namespace, every outbound TCP connection is redirected to the relay's
// listener on 127.0.0.1 and DNS to its resolver, and everything else that
// would leave the namespace fails closed: other TCP (IPv6, say) is reset at
// once, the rest is dropped and sendto() says EPERM.
//
// The namespace is owned by the host's user namespace (net::CreateLoopbackNetns):
// the sandbox's root has no CAP_NET_ADMIN over it and cannot change what is
// installed here. Routes go over rtnetlink (libmnl) and the rules over
// nfnetlink (libnftnl), never by running `ip` or `nft`.
//
// What ends up in the namespace, in `nft list ruleset` terms:
//
//   table inet airlock {
//     chain redirect {
//       type nat hook output priority -100; policy accept;
//       ip daddr != 127.0.0.0/8 udp dport 53 redirect to :<dns_port>
//       ip daddr != 127.0.0.0/8 tcp dport 53 redirect to :<dns_port>
//       ip daddr != 127.0.0.0/8 meta l4proto tcp redirect to :<tcp_port>
//     }
//     chain egress {
//       type filter hook output priority filter; policy drop;
//       oif "lo" ip daddr 127.0.0.0/8 accept
//       oif "lo" ip6 daddr ::1 accept
//       meta l4proto tcp reject with tcp reset
//     }
//   }
//
// plus `default dev lo src 127.0.0.1` (IPv4) and `default dev lo` (IPv6):
// without a route, connect() to a non-local address fails with ENETUNREACH
// before netfilter ever sees the packet. The IPv4 route needs the preferred
// source: 127.0.0.1 is host-scoped, so a link-scoped route via lo would
// otherwise pick 0.0.0.0, and a redirected SYN from 0.0.0.0 is a martian.
#pragma once

#include <cstdint>

#include "runtime/core/error.h"

namespace airlock::net {

struct TransparentPorts {
  uint16_t tcp_port;  // the relay's TCP listener on 127.0.0.1 (reads SO_ORIGINAL_DST)
  uint16_t dns_port;  // the relay's DNS socket(s) on 127.0.0.1, UDP and TCP
};

// Installs the default routes via lo and the `inet airlock` table above in
// network namespace `netns_fd`. Runs on a short-lived helper thread that
// setns()es into the namespace; the calling thread never changes namespace
// (it may be inside the sandbox's namespace already, or not). The helper
// answers as soon as the kernel has; it then closes its own sockets, which
// takes the kernel an RCU grace period (~10 ms), detached from the caller.
// `netns_fd` is not used after the call returns.
// The rules go in one nfnetlink batch, installed whole or not at all, and
// before the routes: if they fail, no route is added either.
// Calling it again replaces the table atomically (new ports take effect, no
// moment without rules) and re-adds the routes, so it is idempotent.
// Errors name the step: "nftables: add rule 'redirect tcp': EPERM (...)".
Result<void> InstallTransparentRedirect(int netns_fd, const TransparentPorts& ports);

}  // namespace airlock::net

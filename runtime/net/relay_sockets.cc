#include "runtime/net/relay_sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <string>

namespace airlock::net {
namespace {

Result<UniqueFd> Bound(int type, uint16_t port) {
  const char* what = type == SOCK_STREAM ? "tcp 127.0.0.1:" : "udp 127.0.0.1:";
  UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket", what + std::to_string(port));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0)
    return Errno("bind", what + std::to_string(port));
  if (type == SOCK_STREAM) {
    // Accepted connections inherit it: the relay passes on whatever the
    // proxy wrote as it comes (a TLS flight, then its session tickets), and
    // Nagle plus the client's delayed ACK would hold the second write ~40 ms.
    int one = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
      return Errno("setsockopt TCP_NODELAY", what + std::to_string(port));
    if (listen(fd.get(), 128) < 0) return Errno("listen", what + std::to_string(port));
  }
  return fd;
}

}  // namespace

Result<RelaySockets> MakeRelaySockets(uint16_t proxy_port, bool transparent) {
  RelaySockets s;
  s.proxy_listener = TRY(Bound(SOCK_STREAM, proxy_port));
  if (transparent) {
    s.dns_udp = TRY(Bound(SOCK_DGRAM, 53));
    s.dns_tcp = TRY(Bound(SOCK_STREAM, 53));
  }
  return s;
}

}  // namespace airlock::net

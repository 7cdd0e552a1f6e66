#include "runtime/net/loopback.h"

#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace airlock::net {

int BringUpLoopback() noexcept {
  // A new netns always has "lo" as ifindex 1, down. One RTM_NEWLINK with an
  // ack, on a raw rtnetlink socket: no allocation, no library (a sandbox
  // child calls this between clone and exec, and airlock-init links it).
  constexpr int kLoopbackIndex = 1;
  int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (nl < 0) return -errno;
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
  } req{};
  req.nh.nlmsg_len = sizeof(req);
  req.nh.nlmsg_type = RTM_NEWLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = kLoopbackIndex;
  req.ifi.ifi_change = IFF_UP;
  req.ifi.ifi_flags = IFF_UP;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int result = 0;
  if (sendto(nl, &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    result = -errno;
  } else {
    // The ack: an NLMSG_ERROR whose error is 0 on success.
    alignas(nlmsghdr) char buf[512];
    ssize_t n;
    do n = recv(nl, buf, sizeof(buf), 0);
    while (n < 0 && errno == EINTR);
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
    if (n < 0) {
      result = -errno;
    } else if (!NLMSG_OK(h, static_cast<size_t>(n)) || h->nlmsg_type != NLMSG_ERROR ||
               h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
      result = -EPROTO;
    } else {
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      result = e->error;  // 0 or -errno
    }
  }
  close(nl);
  return result;
}

}  // namespace airlock::net

#include "runtime/net/loopback.h"

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <sys/socket.h>
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace airlock::net {

int BringUpLoopback() noexcept {
  // A new netns always has "lo" as ifindex 1, down.
  constexpr int kLoopbackIndex = 1;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (nl == nullptr) return -errno;
  int result = 0;
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    result = -errno;
  } else {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = static_cast<unsigned>(time(nullptr));
    auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = kLoopbackIndex;
    ifm->ifi_change = IFF_UP;
    ifm->ifi_flags = IFF_UP;
    unsigned portid = mnl_socket_get_portid(nl);
    unsigned seq = nlh->nlmsg_seq;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
      result = -errno;
    } else {
      ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
      if (n < 0) {
        result = -errno;
      } else if (mnl_cb_run(buf, static_cast<size_t>(n), seq, portid, nullptr, nullptr) < 0) {
        result = -errno;
      }
    }
  }
  mnl_socket_close(nl);
  return result;
}

}  // namespace airlock::net

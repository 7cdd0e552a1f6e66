// net: the network a sandbox sees. "iface NAME" for every interface in
// /proc/net/dev, "lo_up 1|0", "tcp_loopback ok|errno E" (a listener on
// 127.0.0.1 and a connection to it), and connections towards TEST-NET
// addresses (RFC 5737 192.0.2.1, RFC 3849 2001:db8::1), which no network
// routes: "connect_testnet errno ENETUNREACH". The connects are
// non-blocking, so nothing waits on a reply even where a route exists.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void report(const char* name, int rc) {
  if (rc < 0) printf("%s errno %s\n", name, strerrorname_np(errno));
  else printf("%s ok\n", name);
}

static int tcp_loopback(void) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(l, (struct sockaddr*)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (struct sockaddr*)&a, &len) < 0)
    return -1;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (struct sockaddr*)&a, sizeof(a)) < 0) return -1;
  int s = accept(l, NULL, NULL);
  if (s < 0) return -1;
  char buf[8] = {0};
  if (write(c, "ping", 4) != 4 || read(s, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4) != 0) {
    errno = EIO;
    return -1;
  }
  close(s);
  close(c);
  close(l);
  return 0;
}

static int connect_nonblocking(int family, const struct sockaddr* addr, socklen_t len, int type) {
  int s = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  int r = connect(s, addr, len);
  int saved = errno;
  close(s);
  errno = saved;
  return r;
}

int main(void) {
  FILE* f = fopen("/proc/net/dev", "r");
  if (f == NULL) {
    printf("proc_net_dev errno %s\n", strerrorname_np(errno));
  } else {
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
      char* colon = strchr(line, ':');
      if (colon == NULL) continue;
      *colon = '\0';
      char* name = line;
      while (*name == ' ') ++name;
      printf("iface %s\n", name);
    }
    fclose(f);
  }

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strcpy(ifr.ifr_name, "lo");
  if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) printf("lo_up %d\n", (ifr.ifr_flags & IFF_UP) ? 1 : 0);
  else printf("lo_up errno %s\n", strerrorname_np(errno));
  if (s >= 0) close(s);

  report("tcp_loopback", tcp_loopback());

  struct sockaddr_in t4;
  memset(&t4, 0, sizeof(t4));
  t4.sin_family = AF_INET;
  t4.sin_port = htons(80);
  inet_pton(AF_INET, "192.0.2.1", &t4.sin_addr);
  report("connect_testnet", connect_nonblocking(AF_INET, (struct sockaddr*)&t4, sizeof(t4), SOCK_STREAM));
  report("udp_connect_testnet", connect_nonblocking(AF_INET, (struct sockaddr*)&t4, sizeof(t4), SOCK_DGRAM));

  struct sockaddr_in6 t6;
  memset(&t6, 0, sizeof(t6));
  t6.sin6_family = AF_INET6;
  t6.sin6_port = htons(80);
  inet_pton(AF_INET6, "2001:db8::1", &t6.sin6_addr);
  report("connect6_testnet", connect_nonblocking(AF_INET6, (struct sockaddr*)&t6, sizeof(t6), SOCK_STREAM));
  return 0;
}

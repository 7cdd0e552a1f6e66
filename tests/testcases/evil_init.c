/* A hostile stand-in for airlock-init, for the daemon's tests (the daemon's
 * "init_binary" setting). It greets the runtime properly, then behaves as
 * its sandbox's hostname says:
 *   good          runs each command (one at a time) and reports it honestly
 *   evil-garbage  answers a request with random bytes
 *   evil-oversize answers with a datagram over the protocol's 128 KiB
 *   evil-badfd    reports a command started, with a pipe as its "pty"
 *   evil-lies     reports every command exited 0 without running it, and
 *                 sends reports for ids nobody asked about
 *   evil-flood    sends hello messages as fast as it can, forever
 *   old-init      speaks protocol version 1 (an init of an older airlock)
 * Wire format as runtime/proto/channel.h: {u16 version, u16 type, u32 len}
 * + payload, little-endian; fds with SCM_RIGHTS. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kVersion = 2, kHello = 2, kExec = 3, kStarted = 4, kExited = 6, kChannel = 3 };

static int old_version = 0;

static int Send(int type, const void* payload, uint32_t len, int fd) {
  char buf[16 + 256];
  uint16_t h[2] = {(uint16_t)(old_version ? 1 : kVersion), (uint16_t)type};
  memcpy(buf, h, 4);
  memcpy(buf + 4, &len, 4);
  memcpy(buf + 8, payload, len);
  struct iovec iov = {buf, 8 + len};
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return sendmsg(kChannel, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void Hello(void) {
  uint32_t v = old_version ? 1 : kVersion;
  Send(kHello, &v, 4, -1);
}

static void Started(uint32_t id, uint32_t pid, int fd) {
  uint32_t p[2] = {id, pid};
  Send(kStarted, p, 8, fd);
}

static void Exited(uint32_t id, int32_t code, int32_t sig) {
  int32_t p[3] = {(int32_t)id, code, sig};
  Send(kExited, p, 12, -1);
}

/* Reads a u32-length-prefixed string list from an ExecRequest. */
static char** Strings(const char** in, const char* end) {
  uint32_t n;
  if (*in + 4 > end) exit(3);
  memcpy(&n, *in, 4);
  *in += 4;
  if (n > 1024) exit(3);
  char** out = calloc(n + 1, sizeof(char*));
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t len;
    if (*in + 4 > end) exit(3);
    memcpy(&len, *in, 4);
    *in += 4;
    if (*in + len > end) exit(3);
    out[i] = strndup(*in, len);
    *in += len;
  }
  return out;
}

/* Runs one ExecRequest with the fds that came with it; reports honestly. */
static void RunGood(const char* p, const char* end, int* fds, int nfds) {
  uint32_t id;
  memcpy(&id, p, 4);
  p += 4;
  char** argv = Strings(&p, end);
  char** env = Strings(&p, end);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 3 && i < nfds; ++i) dup2(fds[i], i);
    execvpe(argv[0], argv, env);
    _exit(127);
  }
  for (int i = 0; i < nfds; ++i) close(fds[i]);
  Started(id, (uint32_t)pid, -1);
  int status;
  waitpid(pid, &status, 0);
  Exited(id, WIFEXITED(status) ? WEXITSTATUS(status) : 0, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int main(void) {
  char host[64] = "";
  gethostname(host, sizeof(host) - 1);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, 0);  /* as airlock-init does in a long-lived sandbox */
  old_version = strcmp(host, "old-init") == 0;
  Hello();
  if (strcmp(host, "evil-flood") == 0)
    for (;;) Hello();
  static char buf[200 * 1024];
  for (;;) {
    struct iovec iov = {buf, sizeof(buf)};
    char control[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(kChannel, &m, 0);
    if (n <= 0) return 0;
    int fds[8], nfds = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < 8; ++i)
        memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    uint16_t type;
    memcpy(&type, buf + 2, 2);
    uint32_t id = 0;
    if (n >= 12) memcpy(&id, buf + 8, 4);
    if (type == kHello) {
      Hello();
      continue;
    }
    if (type != kExec) {
      /* File operations (the workspace's mkdir at create): every mode
       * claims success without doing anything, so create succeeds and
       * the misbehaviour starts with the first command. */
      for (int i = 0; i < nfds; ++i) close(fds[i]);
      Started(id, 2, -1);
      Exited(id, 0, 0);
      continue;
    }
    if (strcmp(host, "good") == 0) {
      RunGood(buf + 8, buf + n, fds, nfds);
      continue;
    } else if (strcmp(host, "evil-garbage") == 0) {
      char junk[64];
      for (int i = 0; i < 64; ++i) junk[i] = (char)(i * 37 + 11);
      write(kChannel, junk, sizeof(junk));
    } else if (strcmp(host, "evil-oversize") == 0) {
      memset(buf, 'x', sizeof(buf));
      write(kChannel, buf, sizeof(buf));
    } else if (strcmp(host, "evil-badfd") == 0) {
      int p[2];
      pipe(p);
      Started(id, 2, p[0]);
    } else if (strcmp(host, "evil-lies") == 0) {
      Exited(id + 1000, 0, 0);
      Started(id, 2, -1);
      Exited(id, 0, 0);
    }
    for (int i = 0; i < nfds; ++i) close(fds[i]);
  }
}

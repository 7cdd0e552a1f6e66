// airlock-proxy: the egress proxy, started by airlockd with its control
// socket as fd 3. It drops to an unprivileged user before it reads a byte,
// makes itself undumpable (no ptrace, no /proc/<pid>/mem or environ for
// anyone of that uid), and serves until airlockd closes the socket.
//
//   airlock-proxy --user=NAME
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "harness/proxy/server.h"

namespace {

int DropTo(const char* user) {
  passwd* pw = getpwnam(user);
  if (pw == nullptr) {
    fprintf(stderr, "airlock-proxy: no user %s\n", user);
    return -1;
  }
  if (setgroups(0, nullptr) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
      setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
    perror("airlock-proxy: dropping privileges");
    return -1;
  }
  if (pw->pw_uid == 0 || setuid(0) == 0) {
    fprintf(stderr, "airlock-proxy: still root after dropping privileges\n");
    return -1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string user = "nobody";
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--user=", 7) == 0) {
      user = argv[i] + 7;
    } else {
      fprintf(stderr, "usage: airlock-proxy [--user=NAME] (started by airlockd, control socket on fd 3)\n");
      return 2;
    }
  }
  prctl(PR_SET_NAME, "airlock-proxy", 0, 0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  if (geteuid() == 0 && DropTo(user.c_str()) < 0) return 1;
  // After the uid change, which resets it: nobody may attach or read us.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  airlock::proxy::Server server(3);
  auto ran = server.Run();
  if (!ran) {
    fprintf(stderr, "airlock-proxy: %s\n", ran.error().Message().c_str());
    return 1;
  }
  return 0;
}

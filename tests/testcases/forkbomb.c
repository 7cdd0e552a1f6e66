// forkbomb: forks until the kernel refuses, keeping every child asleep,
// then reports "forked N" and "fork_errno ENAME" and exits 42 with the
// children still alive (they go when the sandbox does). Stops at 100000
// forks if nothing refuses ("fork_errno none").
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  long forked = 0;
  int err = 0;
  while (forked < 100000) {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
    if (pid < 0) {
      err = errno;
      break;
    }
    ++forked;
  }
  printf("forked %ld\n", forked);
  printf("fork_errno %s\n", err != 0 ? strerrorname_np(err) : "none");
  return 42;
}

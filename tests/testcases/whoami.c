// whoami: what a sandboxed process sees of its identity and its neighbours.
// One fact per line: "pid 3", "uid 1000", "hostname sandbox",
// "uid_map 0 268435456 65536", "init_cmdline airlock-init ...",
// "proc_pid N" for every process it can see, "fd N" for every open
// descriptor (without the one used to list them).
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_file_lines(const char* key, const char* path) {
  FILE* f = fopen(path, "r");
  if (f == NULL) {
    printf("%s error %s\n", key, strerrorname_np(errno));
    return;
  }
  char line[512];
  while (fgets(line, sizeof(line), f) != NULL) {
    // Collapse the kernel's column padding to single spaces.
    char out[512];
    size_t o = 0;
    int in_space = 1;
    for (char* p = line; *p != '\0' && *p != '\n' && o + 1 < sizeof(out); ++p) {
      if (isspace((unsigned char)*p)) {
        if (!in_space) out[o++] = ' ';
        in_space = 1;
      } else {
        out[o++] = *p;
        in_space = 0;
      }
    }
    while (o > 0 && out[o - 1] == ' ') --o;
    out[o] = '\0';
    printf("%s %s\n", key, out);
  }
  fclose(f);
}

int main(void) {
  printf("pid %d\n", (int)getpid());
  printf("ppid %d\n", (int)getppid());
  printf("uid %d\n", (int)getuid());
  printf("euid %d\n", (int)geteuid());
  printf("gid %d\n", (int)getgid());
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) == 0) printf("hostname %s\n", host);
  print_file_lines("uid_map", "/proc/self/uid_map");
  print_file_lines("gid_map", "/proc/self/gid_map");

  char cmdline[4096];
  FILE* f = fopen("/proc/1/cmdline", "r");
  if (f != NULL) {
    size_t n = fread(cmdline, 1, sizeof(cmdline) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; ++i)
      if (cmdline[i] == '\0') cmdline[i] = ' ';
    while (n > 0 && cmdline[n - 1] == ' ') --n;
    cmdline[n] = '\0';
    printf("init_cmdline %s\n", cmdline);
  } else {
    printf("init_cmdline error %s\n", strerrorname_np(errno));
  }

  DIR* proc = opendir("/proc");
  if (proc != NULL) {
    struct dirent* e;
    while ((e = readdir(proc)) != NULL) {
      char* end;
      long pid = strtol(e->d_name, &end, 10);
      if (*end == '\0' && pid > 0) printf("proc_pid %ld\n", pid);
    }
    closedir(proc);
  }

  DIR* fds = opendir("/proc/self/fd");
  if (fds != NULL) {
    int self = dirfd(fds);
    struct dirent* e;
    while ((e = readdir(fds)) != NULL) {
      if (e->d_name[0] == '.') continue;
      int fd = atoi(e->d_name);
      if (fd != self) printf("fd %d\n", fd);
    }
    closedir(fds);
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) != NULL) printf("cwd %s\n", cwd);
  return 0;
}

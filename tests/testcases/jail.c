// jail: the confinement a sandboxed process runs under, as the kernel
// reports it to that process. "CapBnd 00000000a80425fb" (hex, from
// /proc/self/status, likewise CapEff, CapPrm, CapInh, CapAmb, NoNewPrivs,
// Seccomp), "rlimit_core 0 0", "rlimit_nofile 1024 1024",
// "max_user_namespaces 0", "dumpable 1".
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static void rlimit_line(const char* name, int resource) {
  struct rlimit r;
  if (getrlimit(resource, &r) != 0) {
    printf("%s error %s\n", name, strerrorname_np(errno));
    return;
  }
  char soft[32], hard[32];
  if (r.rlim_cur == RLIM_INFINITY) snprintf(soft, sizeof(soft), "unlimited");
  else snprintf(soft, sizeof(soft), "%llu", (unsigned long long)r.rlim_cur);
  if (r.rlim_max == RLIM_INFINITY) snprintf(hard, sizeof(hard), "unlimited");
  else snprintf(hard, sizeof(hard), "%llu", (unsigned long long)r.rlim_max);
  printf("%s %s %s\n", name, soft, hard);
}

int main(void) {
  static const char* const kKeys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                      "NoNewPrivs", "Seccomp", "Seccomp_filters"};
  FILE* f = fopen("/proc/self/status", "r");
  if (f == NULL) {
    printf("status error %s\n", strerrorname_np(errno));
  } else {
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
      char* colon = strchr(line, ':');
      if (colon == NULL) continue;
      *colon = '\0';
      for (size_t i = 0; i < sizeof(kKeys) / sizeof(kKeys[0]); ++i) {
        if (strcmp(line, kKeys[i]) != 0) continue;
        char* v = colon + 1;
        while (*v == ' ' || *v == '\t') ++v;
        v[strcspn(v, "\n")] = '\0';
        printf("%s %s\n", line, v);
      }
    }
    fclose(f);
  }
  rlimit_line("rlimit_core", RLIMIT_CORE);
  rlimit_line("rlimit_nofile", RLIMIT_NOFILE);
  rlimit_line("rlimit_fsize", RLIMIT_FSIZE);
  FILE* m = fopen("/proc/sys/user/max_user_namespaces", "r");
  long n = -1;
  if (m != NULL) {
    if (fscanf(m, "%ld", &n) != 1) n = -1;
    fclose(m);
    printf("max_user_namespaces %ld\n", n);
  } else {
    printf("max_user_namespaces error %s\n", strerrorname_np(errno));
  }
  printf("dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
  return 0;
}

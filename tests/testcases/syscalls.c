// syscalls: system calls a sandbox must not be able to make, tried from
// inside. With no arguments every check runs; otherwise only the named ones.
// Each prints "NAME ok" (the kernel did it), "NAME errno ENAME" or, for the
// checks run in a child process, "NAME killed SIGNAME".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

// statmount(2) arrived in Linux 6.8, after libseccomp 2.5.4: a profile
// compiled with that libseccomp can't name it.
#define NR_STATMOUNT 457
#define X32_SYSCALL_BIT 0x40000000
#define I386_KEYCTL 288
#define X32_KEYCTL 250
#define KEYCTL_GET_KEYRING_ID 0
#define KEY_SPEC_SESSION_KEYRING -3
#define KEY_SPEC_PROCESS_KEYRING -2

static void report(const char* name, long rc) {
  if (rc < 0) printf("%s errno %s\n", name, strerrorname_np(errno));
  else printf("%s ok\n", name);
  fflush(stdout);
}

// Runs fn in a child: a filter may kill the caller outright (an ABI the
// profile does not list), which must not end this program. The child
// returns 0 for success or an errno.
static void in_child(const char* name, int (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    printf("%s fork-failed %s\n", name, strerrorname_np(errno));
    return;
  }
  if (pid == 0) _exit(fn());
  int status;
  if (waitpid(pid, &status, 0) < 0) {
    printf("%s wait-failed %s\n", name, strerrorname_np(errno));
  } else if (WIFSIGNALED(status)) {
    printf("%s killed SIG%s\n", name, sigabbrev_np(WTERMSIG(status)));
  } else if (WEXITSTATUS(status) == 0) {
    printf("%s ok\n", name);
  } else {
    printf("%s errno %s\n", name, strerrorname_np(WEXITSTATUS(status)));
  }
  fflush(stdout);
}

static int abi32_keyctl(void) {
  long r;
  // The i386 entry point, from a 64-bit process.
  __asm__ volatile("int $0x80"
                   : "=a"(r)
                   : "a"(I386_KEYCTL), "b"(KEYCTL_GET_KEYRING_ID), "c"(KEY_SPEC_SESSION_KEYRING), "d"(1)
                   : "memory");
  return r < 0 ? (int)-r : 0;
}

static int x32_keyctl(void) {
  long r = syscall(X32_SYSCALL_BIT | X32_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1);
  return r < 0 ? errno : 0;
}

static int clone_flags(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid < 0) return -1;
  waitpid((pid_t)pid, NULL, 0);
  return 0;
}

static long tiocsti(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0) {
    printf("tiocsti setup-error posix_openpt %s\n", strerrorname_np(errno));
    return -2;
  }
  if (grantpt(master) < 0 || unlockpt(master) < 0) {
    printf("tiocsti setup-error unlockpt %s\n", strerrorname_np(errno));
    close(master);
    return -2;
  }
  const char* name = ptsname(master);
  int slave = name != NULL ? open(name, O_RDWR | O_NOCTTY) : -1;
  if (slave < 0) {
    printf("tiocsti setup-error open-slave %s\n", strerrorname_np(errno));
    close(master);
    return -2;
  }
  char c = 'x';
  long r = ioctl(slave, TIOCSTI, &c);
  int saved = errno;
  close(slave);
  close(master);
  errno = saved;
  return r;
}

static int wanted(int argc, char** argv, const char* name) {
  if (argc < 2) return 1;
  for (int i = 1; i < argc; ++i)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

int main(int argc, char** argv) {
  if (wanted(argc, argv, "keyctl"))
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
  if (wanted(argc, argv, "add_key"))
    report("add_key", syscall(SYS_add_key, "user", "airlock-test", "x", 1, KEY_SPEC_PROCESS_KEYRING));
  if (wanted(argc, argv, "bpf")) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
  }
  if (wanted(argc, argv, "perf_event_open")) {
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof(pe));
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof(pe);
    pe.config = PERF_COUNT_SW_TASK_CLOCK;
    pe.disabled = 1;
    pe.exclude_kernel = 1;
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  }
  if (wanted(argc, argv, "mount")) report("mount", mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
  if (wanted(argc, argv, "umount2")) report("umount2", umount2("/proc/keys", MNT_DETACH));
  if (wanted(argc, argv, "fsopen")) report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
  if (wanted(argc, argv, "open_tree")) report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */));
  if (wanted(argc, argv, "unshare_user")) report("unshare_user", unshare(CLONE_NEWUSER));
  if (wanted(argc, argv, "unshare_ns")) report("unshare_ns", unshare(CLONE_NEWNS));
  if (wanted(argc, argv, "clone_newuser")) report("clone_newuser", clone_flags(CLONE_NEWUSER));
  if (wanted(argc, argv, "clone_newnet")) report("clone_newnet", clone_flags(CLONE_NEWNET));
  if (wanted(argc, argv, "clone3")) report("clone3", syscall(SYS_clone3, NULL, 0));
  if (wanted(argc, argv, "statmount")) report("statmount", syscall(NR_STATMOUNT, NULL, NULL, 0, 0));
  if (wanted(argc, argv, "io_uring_setup")) report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
  if (wanted(argc, argv, "tiocsti")) {
    long r = tiocsti();
    if (r != -2) report("tiocsti", r);
  }
  if (wanted(argc, argv, "ptrace_attach_init")) report("ptrace_attach_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
  if (wanted(argc, argv, "kexec_load")) report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
  if (wanted(argc, argv, "init_module")) report("init_module", syscall(SYS_init_module, NULL, 0, ""));
  if (wanted(argc, argv, "abi32_keyctl")) in_child("abi32_keyctl", abi32_keyctl);
  if (wanted(argc, argv, "x32_keyctl")) in_child("x32_keyctl", x32_keyctl);
  // Last: on success this process is traced by its parent from here on.
  if (wanted(argc, argv, "ptrace_traceme")) report("ptrace_traceme", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
  return 0;
}

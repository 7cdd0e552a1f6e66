// fsops: filesystem operations tried from inside the sandbox. Each argument
// is OP:PATH[:ARG]; each prints one line, "OP PATH ok" or
// "OP PATH errno ENAME", plus what it read:
//   write:PATH          create/truncate and write "airlock\n"
//   append:PATH:TEXT    append TEXT and a newline (no create)
//   read:PATH           "read PATH bytes N" (all of it)
//   cat:PATH            "line PATH <text>" per line
//   list:PATH           "entry PATH NAME" per entry, then "list PATH ok"
//   exists:PATH         "exists PATH yes|no"
//   openw:PATH          open O_WRONLY without creating
//   openr:PATH          open O_RDONLY
//   readlink:PATH       "readlink PATH TARGET"
//   create:PATH:MODE    open(O_CREAT|O_EXCL, MODE octal), then fchmod(MODE)
//   chmod:PATH:MODE     chmod to MODE (octal)
//   mknod:PATH          a character device 1:3 (like /dev/null)
//   umount:PATH         umount2(PATH, MNT_DETACH)
//   mkdir:PATH
//   statfs:PATH         "statfs PATH tmpfs|overlay|proc|0xMAGIC"
//   stat:PATH           "stat PATH mode=OCT uid=U gid=G"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void result(const char* op, const char* path, int rc) {
  if (rc < 0) printf("%s %s errno %s\n", op, path, strerrorname_np(errno));
  else printf("%s %s ok\n", op, path);
}

static int write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static const char* fs_name(long magic) {
  switch ((unsigned long)magic) {
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlay";
    case 0x9fa0: return "proc";
    case 0xef53: return "ext4";
    case 0x9123683e: return "btrfs";
    case 0x1cd1: return "devpts";
    case 0x62656572: return "sysfs";
  }
  return NULL;
}

static void op_one(char* spec) {
  char* op = spec;
  char* path = strchr(spec, ':');
  if (path == NULL) {
    printf("bad-spec %s\n", spec);
    return;
  }
  *path++ = '\0';
  // The argument follows the path's end (paths here have no ':'; the
  // argument may, like a passwd line).
  char* arg = NULL;
  if (strcmp(op, "append") == 0 || strcmp(op, "create") == 0 || strcmp(op, "chmod") == 0) {
    arg = strchr(path, ':');
    if (arg == NULL) {
      printf("bad-spec %s\n", path);
      return;
    }
    *arg++ = '\0';
  }
  int rc = 0;
  if (strcmp(op, "write") == 0) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    rc = fd;
    if (fd >= 0) {
      rc = write_all(fd, "airlock\n", 8);
      if (rc == 0) rc = close(fd);
      else close(fd);
    }
    result(op, path, rc);
  } else if (strcmp(op, "append") == 0) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    rc = fd;
    if (fd >= 0) {
      rc = write_all(fd, arg, strlen(arg));
      if (rc == 0) rc = write_all(fd, "\n", 1);
      if (rc == 0) rc = close(fd);
      else close(fd);
    }
    result(op, path, rc);
  } else if (strcmp(op, "read") == 0) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result(op, path, fd);
      return;
    }
    char buf[65536];
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) total += n;
    if (n < 0) result(op, path, -1);
    else printf("read %s bytes %ld\n", path, total);
    close(fd);
  } else if (strcmp(op, "cat") == 0) {
    FILE* f = fopen(path, "r");
    if (f == NULL) {
      result(op, path, -1);
      return;
    }
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
      line[strcspn(line, "\n")] = '\0';
      printf("line %s %s\n", path, line);
    }
    fclose(f);
    result(op, path, 0);
  } else if (strcmp(op, "list") == 0) {
    DIR* d = opendir(path);
    if (d == NULL) {
      result(op, path, -1);
      return;
    }
    struct dirent* e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      printf("entry %s %s\n", path, e->d_name);
    }
    rc = errno != 0 ? -1 : 0;
    closedir(d);
    result(op, path, rc);
  } else if (strcmp(op, "exists") == 0) {
    struct stat st;
    printf("exists %s %s\n", path, lstat(path, &st) == 0 ? "yes" : "no");
  } else if (strcmp(op, "readlink") == 0) {
    char target[4096];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
      result(op, path, -1);
      return;
    }
    target[n] = '\0';
    printf("readlink %s %s\n", path, target);
  } else if (strcmp(op, "openr") == 0) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    result(op, path, fd);
  } else if (strcmp(op, "openw") == 0) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    result(op, path, fd);
  } else if (strcmp(op, "create") == 0) {
    mode_t mode = (mode_t)strtol(arg, NULL, 8);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    rc = fd;
    // The umask clears nothing of the set-id bits, but make sure the mode
    // asked for is the mode tried.
    if (fd >= 0) {
      rc = fchmod(fd, mode);
      close(fd);
    }
    result(op, path, rc);
  } else if (strcmp(op, "chmod") == 0) {
    result(op, path, chmod(path, (mode_t)strtol(arg, NULL, 8)));
  } else if (strcmp(op, "mknod") == 0) {
    result(op, path, mknod(path, S_IFCHR | 0666, makedev(1, 3)));
  } else if (strcmp(op, "umount") == 0) {
    result(op, path, umount2(path, MNT_DETACH));
  } else if (strcmp(op, "mkdir") == 0) {
    result(op, path, mkdir(path, 0755));
  } else if (strcmp(op, "statfs") == 0) {
    struct statfs s;
    if (statfs(path, &s) < 0) {
      result(op, path, -1);
      return;
    }
    const char* name = fs_name((long)s.f_type);
    if (name != NULL) printf("statfs %s %s\n", path, name);
    else printf("statfs %s 0x%lx\n", path, (unsigned long)s.f_type);
  } else if (strcmp(op, "stat") == 0) {
    struct stat st;
    if (lstat(path, &st) < 0) {
      result(op, path, -1);
      return;
    }
    printf("stat %s mode=%o uid=%u gid=%u\n", path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
           (unsigned)st.st_gid);
  } else {
    printf("bad-op %s\n", op);
  }
}

int main(int argc, char** argv) {
  umask(0);
  for (int i = 1; i < argc; ++i) {
    op_one(argv[i]);
    fflush(stdout);
  }
  return 0;
}

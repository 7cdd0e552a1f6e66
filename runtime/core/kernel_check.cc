#include "runtime/core/kernel_check.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

namespace airlock {
namespace {

std::string ReadSmallFile(const char* path) {
  char buf[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

bool ParseKernelRelease(const char* release, int* major, int* minor) {
  return sscanf(release, "%d.%d", major, minor) == 2;
}

namespace {

Result<KernelFeatures> CheckKernelNow() {
  utsname u;
  if (uname(&u) < 0) return Errno("uname");
  int major = 0, minor = 0;
  if (!ParseKernelRelease(u.release, &major, &minor))
    return Fail("kernel check", std::string("can't parse the kernel release \"") + u.release + "\"");
  if (major < 6 || (major == 6 && minor < 1))
    return Fail("kernel check", std::string("Linux ") + u.release +
                                    " is too old: airlock needs 6.1 or newer (idmapped mounts for "
                                    "overlayfs layers, the new mount API)");
  if (access("/proc/self/ns/user", F_OK) != 0)
    return Fail("kernel check", "user namespaces are not available (CONFIG_USER_NS)");
  std::string max_userns = ReadSmallFile("/proc/sys/user/max_user_namespaces");
  if (!max_userns.empty() && strtol(max_userns.c_str(), nullptr, 10) == 0)
    return Fail("kernel check", "user namespaces are disabled (user.max_user_namespaces = 0)");
  // Probes with invalid arguments: ENOSYS means the call is missing.
  if (syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0) < 0 && errno == ENOSYS)
    return Fail("kernel check", "mount_setattr (idmapped mounts) is missing");
  if (syscall(SYS_openat2, -1, "", nullptr, 0) < 0 && errno == ENOSYS)
    return Fail("kernel check", "openat2 is missing");
  if (syscall(SYS_pidfd_open, 0, 0) < 0 && errno == ENOSYS)
    return Fail("kernel check", "pidfd_open is missing");
  // overlay may be a module that isn't loaded yet; the first mount loads it.
  std::string fs = ReadSmallFile("/proc/filesystems");
  if (fs.find("\toverlay\n") == std::string::npos && access("/sys/module/overlay", F_OK) != 0) {
    std::string modules = std::string("/lib/modules/") + u.release;
    if (access(modules.c_str(), F_OK) != 0)
      return Fail("kernel check", "overlayfs is not available (not built in, no modules for this kernel)");
  }
  KernelFeatures f;
  f.time_namespace = access("/proc/self/ns/time", F_OK) == 0;
  return f;
}

}  // namespace

Result<KernelFeatures> CheckKernel() {
  // The kernel doesn't change under a running process: a daemon pays for the
  // probes once (up to ~0.5 ms each launch). A failure is checked again (a
  // sysctl may be fixed meanwhile).
  static std::mutex mu;
  static std::optional<KernelFeatures> passed;
  {
    std::lock_guard lock(mu);
    if (passed) return *passed;
  }
  auto now = CheckKernelNow();
  if (now) {
    std::lock_guard lock(mu);
    passed = *now;
  }
  return now;
}

}  // namespace airlock

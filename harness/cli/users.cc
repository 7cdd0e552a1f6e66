#include "harness/cli/users.h"

#include "runtime/core/unique_fd.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

namespace airlock::cli {

Result<ImageUser> LookupPasswd(const std::string& passwd, const std::string& user) {
  bool numeric = !user.empty() && user.find_first_not_of("0123456789") == std::string::npos;
  size_t pos = 0;
  while (pos < passwd.size()) {
    size_t nl = passwd.find('\n', pos);
    std::string line = passwd.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? passwd.size() : nl + 1;
    std::vector<std::string> f;
    size_t start = 0;
    for (;;) {
      size_t c = line.find(':', start);
      f.push_back(line.substr(start, c == std::string::npos ? std::string::npos : c - start));
      if (c == std::string::npos) break;
      start = c + 1;
    }
    if (f.size() < 7) continue;
    if ((numeric && f[2] == user) || (!numeric && f[0] == user)) {
      auto id = [&](const std::string& field, const char* what) -> Result<unsigned long> {
        if (field.empty() || field.size() > 5 || field.find_first_not_of("0123456789") != std::string::npos ||
            strtoul(field.c_str(), nullptr, 10) > 65535)
          return Fail("image /etc/passwd", "user \"" + f[0] + "\": " + what + " \"" + field +
                                               "\" is not an id 0-65535");
        return strtoul(field.c_str(), nullptr, 10);
      };
      ImageUser u;
      u.uid = static_cast<uid_t>(TRY(id(f[2], "uid")));
      u.gid = static_cast<gid_t>(TRY(id(f[3], "gid")));
      u.home = f[5].empty() ? "/" : f[5];
      return u;
    }
  }
  if (numeric) {
    unsigned long id = strtoul(user.c_str(), nullptr, 10);
    if (id > 65535) return Fail("invalid option", "--user: " + user + " is outside the sandbox's ids (0-65535)");
    return ImageUser{static_cast<uid_t>(id), static_cast<gid_t>(id), "/"};
  }
  return Fail("invalid option", "--user: no user \"" + user + "\" in the image's /etc/passwd");
}

Result<ImageUser> ResolveUser(const std::vector<std::string>& layers, const std::string& user) {
  for (const auto& layer : layers) {
    // An image's etc/passwd, resolved inside the layer without following any
    // symlink (a layer's etc could point at the host's), non-blocking (a
    // FIFO must not hang us) and only if it is a regular file.
    UniqueFd dir(open(layer.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return Errno("open", layer);
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(syscall(SYS_openat2, dir.get(), "etc/passwd", &how, sizeof(how)));
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return Errno("open", layer + "/etc/passwd");
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return Fail("image /etc/passwd", layer + "/etc/passwd is not a regular file");
    }
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 && text.size() < (1u << 20)) text.append(buf, static_cast<size_t>(n));
    close(fd);
    return LookupPasswd(text, user);
  }
  return LookupPasswd("", user);
}

}  // namespace airlock::cli

#include "harness/cli/users.h"

#include <fcntl.h>
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
      ImageUser u;
      u.uid = static_cast<uid_t>(strtoul(f[2].c_str(), nullptr, 10));
      u.gid = static_cast<gid_t>(strtoul(f[3].c_str(), nullptr, 10));
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
    std::string path = layer + "/etc/passwd";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
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

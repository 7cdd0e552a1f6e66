// Users of an image: --user NAME|UID resolved against the image's /etc/passwd.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::cli {

struct ImageUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home = "/";
};

// Looks `user` (a name or a number) up in etc/passwd of the uppermost layer
// that has one. A number not in passwd is used as is, with gid = uid.
Result<ImageUser> ResolveUser(const std::vector<std::string>& layers, const std::string& user);

// Parses passwd text; exposed for tests.
Result<ImageUser> LookupPasswd(const std::string& passwd, const std::string& user);

}  // namespace airlock::cli

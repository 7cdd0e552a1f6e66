#include "runtime/core/error.h"

#include <cstring>

namespace airlock {

std::string ErrnoName(int err) {
  if (const char* name = strerrorname_np(err)) return name;
  return "errno " + std::to_string(err);
}

std::string Error::Message() const {
  std::string out = op;
  out += ": ";
  if (err != 0) {
    out += ErrnoName(err);
    if (!detail.empty()) out += " (" + detail + ")";
  } else {
    out += detail;
  }
  return out;
}

}  // namespace airlock

// Lower-case hex: of bytes, and of fresh random bytes (ids, names).
#pragma once

#include <sys/random.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace airlock {

inline std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// `n` (at most 64) random bytes from getrandom, hex-encoded. The kernel's
// pool never runs dry after boot: a failure here is a broken system, and
// aborts rather than hand out a predictable name.
inline std::string RandomHex(size_t n) {
  char buf[64];
  if (n > sizeof(buf) || getrandom(buf, n, 0) != static_cast<ssize_t>(n)) abort();
  return HexEncode(std::string_view(buf, n));
}

}  // namespace airlock

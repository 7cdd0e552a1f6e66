// An uncompressed tar made in memory with airlock's own writer, for tests
// that build images and archives: (name, typeflag, data, mode) per member.
#pragma once

#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "images/oci/tar_writer.h"
#include "tests/root/helpers.h"

namespace airlock_test {

inline std::string Tar(const std::vector<std::tuple<std::string, char, std::string, uint32_t>>& members) {
  std::string out;
  airlock::images::TarWriter w([&](std::string_view c) {
    out.append(c);
    return true;
  });
  for (const auto& [name, type, data, mode] : members) {
    REQUIRE(w.Begin({.name = name, .typeflag = type, .mode = mode, .size = data.size(), .mtime = 1700000000}));
    if (!data.empty()) REQUIRE(w.Data(data));
  }
  REQUIRE(w.Finish());
  return out;
}

}  // namespace airlock_test

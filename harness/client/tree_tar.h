// Writes a host directory as a tar stream: `airlock cp DIR ID:/path` sends
// it to the sandbox this way (Upload), through images::TarWriter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "images/oci/tar_writer.h"
#include "runtime/core/error.h"

namespace airlock::client {

struct TreeReport {
  uint64_t files = 0, dirs = 0, symlinks = 0, bytes = 0;
  std::vector<std::string> skipped;  // sockets, devices, fifos
};

// Writes the host directory `src` as a tar stream: the directory itself as
// "PREFIX/" (if `prefix` is non-empty), then everything beneath it, named
// "PREFIX/rel/path" (or "rel/path"), in sorted order, then the end of the
// archive. Regular files, directories and symlinks (as links, never
// followed) are sent with their permission bits; owners are sent as 0:0
// (the sandbox decides); other types are skipped. A file that shrinks while
// it is read is padded with zeros and reported in `skipped`.
Result<TreeReport> WriteTreeTar(const std::string& src, const std::string& prefix, images::TarWriter& out);

}  // namespace airlock::client

// Extracts a tar stream that came OUT of a sandbox (`airlock cp ID:/dir .`)
// into a host directory. Whatever the sandbox sends is hostile, so:
// - nothing is ever written outside the destination: every directory on a
//   member's way is opened one component at a time with openat2
//   (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to the destination's
//   descriptor, and files are created with O_CREAT|O_EXCL|O_NOFOLLOW, so
//   neither a link the archive made nor one already in the destination is
//   ever followed;
// - refused (an error that stops the extraction): absolute names, ".."
//   components, a member whose way passes through a symlink or a file, a
//   non-directory over an existing directory, over-long names, a truncated
//   stream, more bytes or entries than the limits allow;
// - skipped (listed in the report): device nodes, fifos and unknown types,
//   hardlinks whose target is not a regular file this archive extracted;
// - neutralised: setuid, setgid and sticky bits are cleared; owners are
//   never applied (files belong to whoever runs the client); symlinks are
//   created as symlinks, their targets kept as data and never resolved.
// Directory modes are applied at the end, deepest first, so a read-only
// directory in the archive doesn't stop its own contents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "images/oci/tar_reader.h"

namespace airlock::client {

struct ExtractLimits {
  uint64_t max_bytes = 0;    // file data in total; 0: no limit
  uint64_t max_entries = 0;  // members; 0: no limit
};

struct ExtractReport {
  uint64_t files = 0, dirs = 0, symlinks = 0, hardlinks = 0;
  uint64_t bytes = 0;                 // file data written
  std::vector<std::string> skipped;   // "dev/null: a character device (skipped)"
};

// Writes file data that came out of a sandbox, leaving holes for runs of
// zeros: a sparse file inside (cheap there) must not become terabytes of
// zeros on the host. Finish() sets the final size.
class SparseWriter {
 public:
  SparseWriter(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}
  Result<void> Write(const char* data, size_t n);
  Result<void> Finish();
  uint64_t size() const { return size_; }

 private:
  int fd_;
  std::string what_;
  uint64_t size_ = 0;
};

// Extracts every member of `tar` beneath the directory `dest_dirfd`
// (opened O_RDONLY | O_DIRECTORY; borrowed). Errors read
// "extract: member "../x": ".." component refused (path traversal)".
// On an error, what was already extracted stays (inside the destination).
Result<ExtractReport> SafeExtract(images::TarReader& tar, int dest_dirfd, const ExtractLimits& limits = {});

}  // namespace airlock::client

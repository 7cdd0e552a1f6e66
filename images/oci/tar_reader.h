// A streaming tar reader for image layers and image archives: ustar, pax
// extended headers (path, linkpath, size, uid, gid, mtime) and GNU long
// names. Every header is checksummed, every size bounded (a pax or GNU
// long-name record over kMaxMetaRecord is refused, a name over PATH_MAX too)
// and a stream that ends early is an error, never a short archive.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "images/oci/byte_source.h"

namespace airlock::images {

struct TarEntry {
  enum class Type { kFile, kHardlink, kSymlink, kChar, kBlock, kDir, kFifo, kOther };
  std::string name;      // as stored (not normalized)
  std::string linkname;  // hardlink or symlink target
  Type type = Type::kFile;
  char typeflag = '0';   // the raw flag, for error messages
  uint32_t mode = 0;     // permission bits incl. setuid/setgid/sticky
  uint64_t uid = 0, gid = 0;
  uint64_t size = 0;     // data bytes that follow (files only)
  int64_t mtime = 0;
  uint64_t offset = 0;   // offset of the data in the (uncompressed) stream
};

class TarReader {
 public:
  static constexpr uint64_t kMaxMetaRecord = 1 << 20;  // pax / GNU long name

  explicit TarReader(ByteSource& src) : src_(src) {}
  // The next entry, or nullopt at the end-of-archive marker. Any data of the
  // previous entry not read is skipped.
  Result<std::optional<TarEntry>> Next();
  // Reads up to `n` bytes of the current entry's data; 0 at its end.
  Result<size_t> ReadData(void* buf, size_t n);

 private:
  Result<void> ReadExact(void* buf, size_t n, const char* what);
  Result<void> Skip(uint64_t n);
  Result<std::string> ReadMeta(uint64_t size, const std::string& what);

  ByteSource& src_;
  uint64_t pos_ = 0;        // bytes consumed from src_
  uint64_t data_left_ = 0;  // of the current entry
  uint64_t pad_ = 0;        // padding after the current entry's data
  std::string last_name_;   // for "truncated after member X"
};

}  // namespace airlock::images

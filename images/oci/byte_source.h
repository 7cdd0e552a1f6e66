// Byte streams the importer reads layers through: a window of a file (a
// blob, or a member of an archive read in place), a tee that hashes what
// passes, and a gzip decoder. Digests are computed on the same pass that
// extracts, so every byte is read once.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/sha256.h"

namespace airlock::images {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `n` bytes; returns 0 only at the end of the stream.
  virtual Result<size_t> Read(void* buf, size_t n) = 0;
};

// Reads [offset, offset + length) of `fd` with pread (the descriptor is
// borrowed and must outlive the source). A file shorter than the window is
// reported as truncated, naming `what`.
class FdSource : public ByteSource {
 public:
  FdSource(int fd, off_t offset, uint64_t length, std::string what)
      : fd_(fd), pos_(offset), left_(length), what_(std::move(what)) {}
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  int fd_;
  off_t pos_;
  uint64_t left_;
  std::string what_;
};

// Passes bytes through from `inner` and feeds them to a SHA-256; counts them.
class HashingSource : public ByteSource {
 public:
  explicit HashingSource(ByteSource& inner) : inner_(inner) {}
  Result<size_t> Read(void* buf, size_t n) override;
  // "sha256:<hex>" of everything read so far; call once, at the end.
  std::string Digest() { return "sha256:" + sha_.HexFinal(); }
  uint64_t count() const { return count_; }

 private:
  ByteSource& inner_;
  Sha256 sha_{Sha256::kBulk};  // layers are gigabytes
  uint64_t count_ = 0;
};

// Decompresses a gzip stream (one or more members) read from `inner`.
// zlib is loaded with dlopen on first use, so `airlock run` never maps it
// (decision 8); a host without libz.so.1 gets a clear error at import.
class GzipSource : public ByteSource {
 public:
  static Result<std::unique_ptr<GzipSource>> Make(ByteSource& inner, std::string what);
  ~GzipSource() override;
  Result<size_t> Read(void* buf, size_t n) override;

 private:
  GzipSource(ByteSource& inner, std::string what);
  struct State;
  ByteSource& inner_;
  std::string what_;
  std::unique_ptr<State> st_;
};

// Reads and discards the rest of `src` (so a hashing tee sees all of it).
Result<void> Drain(ByteSource& src);

// True if the first bytes are the gzip magic (1f 8b).
bool LooksGzip(const uint8_t* head, size_t n);

}  // namespace airlock::images

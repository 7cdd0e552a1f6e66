// A small, self-contained SHA-256 (FIPS 180-4). Used to name cached artifacts
// by content (compiled seccomp filters); not a general crypto library.
// For gigabytes (image layers) a Sha256(kBulk) hashes with OpenSSL's
// libcrypto, loaded on first use (~10x faster with the CPU's SHA
// instructions); without it, with this code. `airlock run` never loads it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  enum Bulk { kBulk };
  explicit Sha256(Bulk);
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&&) = delete;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  // Appends bytes to the message.
  void Update(std::string_view bytes);
  void Update(const void* data, size_t len);
  // Pads the message and returns its digest. The object must not be updated
  // again afterwards (construct a new one).
  Digest Final();
  // Final() as 64 lowercase hex characters.
  std::string HexFinal();

 private:
  void Block(const uint8_t* p);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;  // message length in bytes
  void* evp_ = nullptr;  // libcrypto's EVP_MD_CTX, when kBulk found it
};

// Lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

// Lowercase hex of arbitrary bytes.
std::string HexEncode(const uint8_t* data, size_t len);

}  // namespace airlock

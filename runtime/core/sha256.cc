#include "runtime/core/sha256.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>

namespace airlock {
namespace {

constexpr std::array<uint32_t, 64> kK = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

}  // namespace

Sha256::Sha256()
    : h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19} {}

namespace {

// libcrypto's EVP digest entry points, resolved once (dlopen: linking it
// would cost every `airlock run` its relocations).
struct Evp {
  void* (*ctx_new)() = nullptr;
  void (*ctx_free)(void*) = nullptr;
  const void* (*sha256)() = nullptr;
  int (*init)(void*, const void*, void*) = nullptr;
  int (*update)(void*, const void*, size_t) = nullptr;
  int (*final)(void*, unsigned char*, unsigned int*) = nullptr;
};

const Evp* LoadEvp() {
  static const Evp* evp = []() -> const Evp* {
    void* h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return nullptr;
    static Evp e;
    e.ctx_new = reinterpret_cast<decltype(e.ctx_new)>(dlsym(h, "EVP_MD_CTX_new"));
    e.ctx_free = reinterpret_cast<decltype(e.ctx_free)>(dlsym(h, "EVP_MD_CTX_free"));
    e.sha256 = reinterpret_cast<decltype(e.sha256)>(dlsym(h, "EVP_sha256"));
    e.init = reinterpret_cast<decltype(e.init)>(dlsym(h, "EVP_DigestInit_ex"));
    e.update = reinterpret_cast<decltype(e.update)>(dlsym(h, "EVP_DigestUpdate"));
    e.final = reinterpret_cast<decltype(e.final)>(dlsym(h, "EVP_DigestFinal_ex"));
    if (!e.ctx_new || !e.ctx_free || !e.sha256 || !e.init || !e.update || !e.final) return nullptr;
    return &e;
  }();
  return evp;
}

}  // namespace

Sha256::Sha256(Bulk) : Sha256() {
  const Evp* e = LoadEvp();
  if (e == nullptr) return;
  void* ctx = e->ctx_new();
  if (ctx != nullptr && e->init(ctx, e->sha256(), nullptr) != 1) {
    e->ctx_free(ctx);
    ctx = nullptr;
  }
  evp_ = ctx;
}

Sha256::~Sha256() {
  if (evp_ != nullptr) LoadEvp()->ctx_free(evp_);
}

Sha256::Sha256(Sha256&& o) noexcept
    : h_(o.h_), buf_(o.buf_), buf_len_(o.buf_len_), total_(o.total_), evp_(o.evp_) {
  o.evp_ = nullptr;
}

void Sha256::Block(const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i) {
    w[i] = uint32_t{p[4 * i]} << 24 | uint32_t{p[4 * i + 1]} << 16 | uint32_t{p[4 * i + 2]} << 8 |
           uint32_t{p[4 * i + 3]};
  }
  for (int i = 16; i < 64; ++i) {
    uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3];
  uint32_t e = h_[4], f = h_[5], g = h_[6], h = h_[7];
  for (int i = 0; i < 64; ++i) {
    uint32_t s1 = Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = h + s1 + ch + kK[i] + w[i];
    uint32_t s0 = Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22);
    uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = s0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  h_[5] += f;
  h_[6] += g;
  h_[7] += h;
}

void Sha256::Update(const void* data, size_t len) {
  if (evp_ != nullptr) {
    LoadEvp()->update(evp_, data, len);
    return;
  }
  auto* p = static_cast<const uint8_t*>(data);
  total_ += len;
  if (buf_len_ > 0) {
    size_t take = std::min(len, buf_.size() - buf_len_);
    std::memcpy(buf_.data() + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    len -= take;
    if (buf_len_ < buf_.size()) return;
    Block(buf_.data());
    buf_len_ = 0;
  }
  for (; len >= 64; p += 64, len -= 64) Block(p);
  std::memcpy(buf_.data(), p, len);
  buf_len_ = len;
}

void Sha256::Update(std::string_view bytes) { Update(bytes.data(), bytes.size()); }

Sha256::Digest Sha256::Final() {
  if (evp_ != nullptr) {
    Digest d{};
    unsigned int n = 0;
    LoadEvp()->final(evp_, d.data(), &n);
    return d;
  }
  const uint64_t bits = total_ * 8;
  static constexpr uint8_t kPad[64] = {0x80};
  // One 0x80 byte, zeros up to 56 mod 64, then the 64-bit big-endian length.
  size_t pad = (buf_len_ < 56) ? 56 - buf_len_ : 120 - buf_len_;
  Update(kPad, pad);
  uint8_t len_be[8];
  for (int i = 0; i < 8; ++i) len_be[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  Update(len_be, sizeof(len_be));
  Digest out;
  for (int i = 0; i < 8; ++i) {
    out[4 * i] = static_cast<uint8_t>(h_[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(h_[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(h_[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(h_[i]);
  }
  return out;
}

std::string Sha256::HexFinal() {
  Digest d = Final();
  return HexEncode(d.data(), d.size());
}

std::string HexEncode(const uint8_t* data, size_t len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(len * 2, '\0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 0xf];
  }
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexFinal();
}

}  // namespace airlock

// Internal to runtime/proto: the little-endian building blocks of every
// payload (channel.cc) and of the file-operation streams (fileops.cc).
// Reader bounds every read against what is left, so a hostile length can
// neither read past the payload nor make it allocate more than it holds.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/error.h"

namespace airlock::proto::wire {

class Writer {
 public:
  void U32(uint32_t v) { Raw(&v, sizeof(v)); }
  void I32(int32_t v) { Raw(&v, sizeof(v)); }
  void U64(uint64_t v) { Raw(&v, sizeof(v)); }
  void I64(int64_t v) { Raw(&v, sizeof(v)); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Strs(const std::vector<std::string>& v) {
    U32(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) Str(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class Reader {
 public:
  // `what` names the message in errors ("exec request: argv: ...").
  Reader(std::string_view in, const char* what) : in_(in), what_(what) {}

  Result<uint32_t> U32(const char* field) {
    uint32_t v;
    TRY(Raw(&v, sizeof(v), field));
    return v;
  }
  Result<int32_t> I32(const char* field) {
    uint32_t v = TRY(U32(field));
    return static_cast<int32_t>(v);
  }
  Result<uint64_t> U64(const char* field) {
    uint64_t v;
    TRY(Raw(&v, sizeof(v), field));
    return v;
  }
  Result<int64_t> I64(const char* field) {
    uint64_t v = TRY(U64(field));
    return static_cast<int64_t>(v);
  }
  // A length-prefixed string of at most `max` bytes, without NUL.
  Result<std::string> Str(const char* field, size_t max = SIZE_MAX) {
    uint32_t n = TRY(U32(field));
    if (n > in_.size()) return Short(field);
    if (n > max) return Bad(field, "longer than " + std::to_string(max) + " bytes");
    std::string s(in_.substr(0, n));
    in_.remove_prefix(n);
    if (s.find('\0') != std::string::npos) return Bad(field, "contains NUL");
    return s;
  }
  Result<std::vector<std::string>> Strs(const char* field, uint32_t max_count) {
    uint32_t n = TRY(U32(field));
    if (n > max_count) return Bad(field, "too many entries (" + std::to_string(n) + ")");
    std::vector<std::string> v;
    v.reserve(n);
    for (uint32_t i = 0; i < n; ++i) v.push_back(TRY(Str(field)));
    return v;
  }
  Result<void> End() {
    if (!in_.empty()) return Fail(what_, std::to_string(in_.size()) + " trailing bytes");
    return {};
  }
  // An error naming the message and `field`.
  std::unexpected<Error> Bad(const char* field, const std::string& why) const {
    return Fail(what_, std::string(field) + ": " + why);
  }

 private:
  Result<void> Raw(void* out, size_t n, const char* field) {
    if (in_.size() < n) return Short(field);
    memcpy(out, in_.data(), n);
    in_.remove_prefix(n);
    return {};
  }
  std::unexpected<Error> Short(const char* field) const { return Bad(field, "message too short"); }

  std::string_view in_;
  const char* what_;
};

}  // namespace airlock::proto::wire

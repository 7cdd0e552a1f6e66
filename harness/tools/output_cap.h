// A command's output under a cap, the way a model's shell tool wants it: the
// head and the tail kept, a marker saying how much was left out between
// them (the end of a build log is where its error is). Or, without
// keep_tail, the head only, as a plain cap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::tools {

class OutputCap {
 public:
  // `cap`: the most bytes Take() returns, the marker included when it fits.
  OutputCap(size_t cap, bool keep_tail) : cap_(cap), keep_tail_(keep_tail) {}

  // Feeds the next piece of the stream; memory stays bounded by ~2 × cap.
  void Append(std::string_view data);
  bool truncated() const { return total_ > cap_; }
  uint64_t total() const { return total_; }
  // Bytes of the stream Take() leaves out (0 when nothing was cut).
  uint64_t omitted() const;
  // What is kept: the whole stream if it fit, else the head (and, with
  // keep_tail, "\n[... N bytes omitted ...]\n" and the tail).
  std::string Take();

 private:
  size_t HeadCap() const;
  size_t TailCap() const;

  size_t cap_;
  bool keep_tail_;
  uint64_t total_ = 0;
  std::string head_;
  std::string tail_;  // the latest bytes past the head; trimmed lazily
};

}  // namespace airlock::tools

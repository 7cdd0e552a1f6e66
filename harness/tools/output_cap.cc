#include "harness/tools/output_cap.h"

#include <algorithm>

namespace airlock::tools {

namespace {

// The marker for `n` omitted bytes; its size is reserved out of the cap.
std::string Marker(uint64_t n) { return "\n[... " + std::to_string(n) + " bytes omitted ...]\n"; }

// Room the marker takes at most (26 bytes and up to 20 digits).
constexpr size_t kMarkerRoom = 48;

}  // namespace

size_t OutputCap::HeadCap() const {
  if (!keep_tail_ || cap_ <= kMarkerRoom) return cap_;
  return (cap_ - kMarkerRoom) / 2;
}

size_t OutputCap::TailCap() const {
  if (!keep_tail_ || cap_ <= kMarkerRoom) return 0;
  return cap_ - kMarkerRoom - HeadCap();
}

void OutputCap::Append(std::string_view data) {
  total_ += data.size();
  const size_t head_room = HeadCap() - std::min(HeadCap(), head_.size());
  const size_t to_head = std::min(head_room, data.size());
  head_.append(data.substr(0, to_head));
  data.remove_prefix(to_head);
  if (data.empty()) return;
  // Past the head: everything, until the end is known, could be the tail.
  // Without keep_tail it is kept only while the whole stream might fit.
  const size_t keep = keep_tail_ ? TailCap() : cap_ - head_.size();
  tail_.append(data);
  if (tail_.size() > 2 * keep + 4096) tail_.erase(0, tail_.size() - keep);
}

uint64_t OutputCap::omitted() const {
  if (!truncated()) return 0;
  // From the counts alone: valid after Take() too.
  const uint64_t head = std::min<uint64_t>(HeadCap(), total_);
  const uint64_t tail = keep_tail_ ? std::min<uint64_t>(TailCap(), total_ - head) : 0;
  return total_ - head - tail;
}

std::string OutputCap::Take() {
  if (!truncated()) {
    std::string all = std::move(head_);
    all += tail_;
    return all;
  }
  std::string out = std::move(head_);
  if (keep_tail_ && TailCap() > 0) {
    const size_t keep = std::min(TailCap(), tail_.size());
    out += Marker(omitted());
    out.append(tail_, tail_.size() - keep, keep);
  }
  return out;
}

}  // namespace airlock::tools

#include "harness/tools/text.h"

#include <algorithm>

namespace airlock::tools {

LineRange SliceLines(std::string_view text, uint64_t start, uint64_t count) {
  LineRange r;
  if (start == 0) start = 1;
  r.total = static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n')) +
            (!text.empty() && text.back() != '\n' ? 1 : 0);
  if (start > r.total) return r;
  // The offset of line `start`.
  size_t begin = 0;
  for (uint64_t line = 1; line < start; ++line) begin = text.find('\n', begin) + 1;
  size_t end = begin;
  uint64_t last = start - 1;
  while (end < text.size() && (count == 0 || last - start + 1 < count)) {
    size_t nl = text.find('\n', end);
    end = nl == std::string_view::npos ? text.size() : nl + 1;
    ++last;
  }
  r.text = text.substr(begin, end - begin);
  r.first = start;
  r.last = last;
  r.more = last < r.total;
  return r;
}

std::string ImageType(std::string_view h) {
  auto starts = [&](std::string_view magic, size_t at = 0) { return h.size() >= at + magic.size() && h.substr(at, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return "image/png";
  if (starts("\xff\xd8\xff")) return "image/jpeg";
  if (starts("GIF87a") || starts("GIF89a")) return "image/gif";
  if (starts("RIFF") && starts("WEBP", 8)) return "image/webp";
  if (starts("BM") && h.size() >= 26) return "image/bmp";
  // SVG: XML text whose root element is <svg (after an optional prolog).
  std::string_view t = h.substr(0, std::min<size_t>(h.size(), 1024));
  size_t at = t.find_first_not_of(" \t\r\n\xef\xbb\xbf");
  if (at != std::string_view::npos && (t.substr(at).starts_with("<svg") ||
                                       (t.substr(at).starts_with("<?xml") && t.find("<svg") != std::string_view::npos)))
    return "image/svg+xml";
  return "";
}

namespace {

// The length of the well-formed UTF-8 sequence at s[i], or 0 (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF).
size_t SequenceAt(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  return n;
}

}  // namespace

std::string ValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = SequenceAt(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace airlock::tools

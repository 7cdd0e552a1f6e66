// Small pure helpers for the file tools: a line range of a text, an
// image's type from its first bytes, and text made fit for a proto string.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::tools {

struct LineRange {
  std::string_view text;   // the lines, newlines included
  uint64_t first = 0;      // 1-based; 0 when empty
  uint64_t last = 0;
  uint64_t total = 0;      // lines in the whole text (a last line without newline counts)
  bool more = false;       // lines follow `last`
};

// Lines start..start+count-1 (1-based; count 0: to the end) of `text`.
LineRange SliceLines(std::string_view text, uint64_t start, uint64_t count);

// The MIME type of an image by its magic bytes, or "" if it isn't one of
// PNG, JPEG, GIF, WebP, BMP, SVG.
std::string ImageType(std::string_view head);

// `s` as valid UTF-8 (what a proto3 string must be): each byte that isn't
// part of a well-formed sequence becomes U+FFFD.
std::string ValidUtf8(std::string_view s);

}  // namespace airlock::tools

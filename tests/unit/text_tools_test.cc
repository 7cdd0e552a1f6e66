// The file tools' pure helpers (harness/tools/text.h).
#include "harness/tools/text.h"

#include <catch2/catch.hpp>
#include <string>

using namespace airlock::tools;

TEST_CASE("lines: ranges of a text, 1-based, newlines kept", "[text_tools]") {
  const std::string t = "a\nb\nc\nd";
  auto all = SliceLines(t, 0, 0);
  CHECK(all.text == t);
  CHECK(all.first == 1);
  CHECK(all.last == 4);
  CHECK(all.total == 4);
  CHECK_FALSE(all.more);
  auto mid = SliceLines(t, 2, 2);
  CHECK(mid.text == "b\nc\n");
  CHECK(mid.first == 2);
  CHECK(mid.last == 3);
  CHECK(mid.more);
  auto tail = SliceLines(t, 4, 10);
  CHECK(tail.text == "d");
  CHECK_FALSE(tail.more);
  auto past = SliceLines(t, 9, 1);
  CHECK(past.text.empty());
  CHECK(past.first == 0);
  CHECK(past.total == 4);
  CHECK(SliceLines("", 1, 0).total == 0);
  CHECK(SliceLines("x\n", 1, 0).total == 1);
}

TEST_CASE("images: the type from the magic bytes", "[text_tools]") {
  CHECK(ImageType(std::string("\x89PNG\r\n\x1a\n\0\0", 10)) == "image/png");
  CHECK(ImageType("\xff\xd8\xff\xe0 JFIF") == "image/jpeg");
  CHECK(ImageType("GIF89a....") == "image/gif");
  CHECK(ImageType(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)) == "image/webp");
  CHECK(ImageType("<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>") == "image/svg+xml");
  CHECK(ImageType("  <svg/>") == "image/svg+xml");
  CHECK(ImageType("hello world").empty());
  CHECK(ImageType("").empty());
}

// The shell tool's output cap (harness/tools/output_cap.h).
#include "harness/tools/output_cap.h"

#include <catch2/catch.hpp>
#include <string>

using airlock::tools::OutputCap;

namespace {

std::string Feed(OutputCap& c, const std::string& data, size_t piece) {
  for (size_t i = 0; i < data.size(); i += piece) c.Append(std::string_view(data).substr(i, piece));
  return c.Take();
}

std::string Lines(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += std::to_string(i) + "\n";
  return s;
}

}  // namespace

TEST_CASE("output cap: under the cap everything comes back", "[output_cap]") {
  for (bool tail : {false, true}) {
    OutputCap c(1000, tail);
    CHECK(Feed(c, Lines(100), 7) == Lines(100));
    CHECK_FALSE(c.truncated());
    CHECK(c.omitted() == 0);
  }
}

TEST_CASE("output cap: the head only, without keep_tail", "[output_cap]") {
  OutputCap c(100, false);
  const std::string all = Lines(10000);
  std::string got = Feed(c, all, 333);
  CHECK(got == all.substr(0, 100));
  CHECK(c.truncated());
  CHECK(c.omitted() == all.size() - 100);
}

TEST_CASE("output cap: head, marker and tail with keep_tail, within the cap", "[output_cap]") {
  const std::string all = Lines(100000);
  for (size_t piece : {1ul, 4096ul, 1ul << 20}) {
    OutputCap c(1000, true);
    std::string got = Feed(c, all, piece);
    INFO("piece " << piece);
    CHECK(got.size() <= 1000);
    CHECK(got.starts_with("1\n2\n3\n"));
    CHECK(got.ends_with("99999\n100000\n"));
    const std::string marker = "[... " + std::to_string(c.omitted()) + " bytes omitted ...]";
    CHECK(got.find(marker) != std::string::npos);
    // What is kept plus what is omitted is the whole stream.
    CHECK(got.size() - (marker.size() + 2) + c.omitted() == all.size());
    CHECK(c.total() == all.size());
  }
}

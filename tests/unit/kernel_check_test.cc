#include <catch2/catch.hpp>

#include "runtime/core/error.h"
#include "runtime/core/kernel_check.h"

using namespace airlock;

TEST_CASE("kernel releases parse into major and minor", "[kernel]") {
  int major = 0, minor = 0;
  REQUIRE(ParseKernelRelease("6.18.44-fc-v669", &major, &minor));
  CHECK(major == 6);
  CHECK(minor == 18);
  REQUIRE(ParseKernelRelease("6.1.0-27-amd64", &major, &minor));
  CHECK(minor == 1);
  CHECK_FALSE(ParseKernelRelease("garbage", &major, &minor));
}

TEST_CASE("the running kernel passes the check or names what's missing", "[kernel]") {
  auto k = CheckKernel();
  if (!k) {
    // A refusal must say what is missing, in one line.
    CHECK(k.error().op == "kernel check");
    CHECK_FALSE(k.error().detail.empty());
  } else {
    SUCCEED("kernel ok");
  }
}

TEST_CASE("errors read op: ERRNO (detail)", "[kernel]") {
  CHECK(Error{ENOENT, "open", "/x"}.Message() == "open: ENOENT (/x)");
  CHECK(Error{0, "invalid spec", "id: bad"}.Message() == "invalid spec: id: bad");
}

// SHA-256: the built-in code and the bulk (libcrypto) path agree with the
// FIPS 180-4 test vectors and with each other across odd chunkings.
#include <catch2/catch.hpp>
#include <string>

#include "runtime/core/sha256.h"

using airlock::Sha256;

TEST_CASE("sha256: test vectors, both paths") {
  const std::string abc_hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  const std::string empty_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  for (bool bulk : {false, true}) {
    INFO("bulk " << bulk);
    Sha256 a = bulk ? Sha256(Sha256::kBulk) : Sha256();
    a.Update("abc");
    CHECK(a.HexFinal() == abc_hex);
    Sha256 e = bulk ? Sha256(Sha256::kBulk) : Sha256();
    CHECK(e.HexFinal() == empty_hex);
  }
  CHECK(airlock::Sha256Hex("abc") == abc_hex);
}

TEST_CASE("sha256: bulk equals built-in over uneven pieces") {
  std::string data;
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>(i * 7 + (i >> 5)));
  Sha256 own;
  Sha256 bulk(Sha256::kBulk);
  for (size_t off = 0, step = 1; off < data.size(); off += step, step = step * 3 % 8191 + 1) {
    std::string_view piece = std::string_view(data).substr(off, step);
    own.Update(piece);
    bulk.Update(piece);
  }
  Sha256 moved(std::move(bulk));  // the libcrypto context moves with it
  CHECK(moved.HexFinal() == own.HexFinal());
}

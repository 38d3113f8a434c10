// SHA-256 against the FIPS 180-2 Appendix B test vectors (B.1 "abc", B.2 the 448-bit message,
// B.3 one million 'a'), plus the well-known digest of the empty string.
#include <gtest/gtest.h>

#include <string>

#include "golden/sha256.hpp"

using fp8lab::golden::Sha256;
using fp8lab::golden::sha256_hex;

TEST(Sha256, Fips180_2_B1_abc) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, Fips180_2_B2_TwoBlocks) {
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, Fips180_2_B3_MillionA) {
  const std::string m(1000000, 'a');
  EXPECT_EQ(sha256_hex(m), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, EmptyMessage) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, IncrementalUpdatesMatchOneShot) {
  // Pieces that straddle the 64-byte block and the 56-byte padding boundary.
  const std::string m(1000000, 'a');
  for (std::size_t piece : {1u, 55u, 56u, 63u, 64u, 65u, 1000u}) {
    Sha256 s;
    for (std::size_t at = 0; at < m.size(); at += piece) s.update(m.data() + at, std::min(piece, m.size() - at));
    const auto d = s.finish();
    EXPECT_EQ(d[0], 0xcd) << piece;
    EXPECT_EQ(d[31], 0xd0) << piece;
  }
}

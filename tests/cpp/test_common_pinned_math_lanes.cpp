// sigmoid_f32_array (the vectorised sigmoid, common/pinned_math_lanes.cpp) against the pinned
// scalar sigmoid_f32, bit for bit, under every instruction-set variant this CPU runs: the edge
// cases, a strided sweep over all 2^32 float32 patterns, dense random inputs where routing logits
// lie, and inputs whose rounding the double evaluation cannot decide (they take the multiprecision
// fallback, which the array must reach too). Every float32 input: the exhaustive_sigmoid target.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "common/isa.hpp"
#include "common/pinned_math.hpp"

namespace fp8lab {
namespace {

std::vector<float> sample() {
  std::vector<float> x = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), -104.0f, 40.0f, std::nextafter(-104.0f, 0.0f),
                          std::nextafter(-104.0f, -200.0f), std::nextafter(40.0f, 0.0f), std::nextafter(40.0f, 100.0f),
                          0x1p-149f, -0x1p-149f, 0x1p-126f, 17.0f, 16.635532f, -87.33655f, -103.97208f, 1e-8f, -1e-8f};
  for (std::uint64_t b = 0; b < (std::uint64_t{1} << 32); b += 4099) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(b)));
  std::mt19937 g(3);
  std::normal_distribution<float> n(0.0f, 4.0f);
  for (int i = 0; i < 1 << 19; ++i) x.push_back(n(g));
  return x;
}

// Inputs whose sigmoid_f32 takes the multiprecision fallback: scanned upward from 1.0.
std::vector<float> undecided(int count) {
  std::vector<float> found;
  for (std::uint32_t b = 0x3F800000u; static_cast<int>(found.size()) < count && b < 0x41000000u; ++b) {
    const std::uint64_t before = pinned_math_fallback_count();
    (void)sigmoid_f32(std::bit_cast<float>(b));
    if (pinned_math_fallback_count() != before) found.push_back(std::bit_cast<float>(b));
  }
  return found;
}

TEST(SigmoidLanes, EveryVariantGivesThePinnedScalarBits) {
  std::vector<float> x = sample();
  const std::vector<float> hard = undecided(3);
  ASSERT_EQ(hard.size(), 3u) << "no input needing the fallback found";
  x.insert(x.end(), hard.begin(), hard.end());
  std::vector<std::uint32_t> want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = std::bit_cast<std::uint32_t>(sigmoid_f32(x[i]));
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    std::vector<float> got(x.size());
    const std::uint64_t before = pinned_math_fallback_count();
    sigmoid_f32_array(x.data(), x.size(), got.data());
    EXPECT_GE(pinned_math_fallback_count() - before, 3u) << isa_name(isa) << ": the undecided inputs must reach the fallback";
    for (std::size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), want[i]) << isa_name(isa) << " x = " << std::hexfloat << x[i];
  }
}

TEST(SigmoidLanes, EveryFloatOfFourBinades) {
  // Every float32 of four whole binades (2^23 inputs each) on every variant: [1, 2) and [-8, -4)
  // where routing logits lie, [16, 32) where the result approaches 1 (few bits left below it),
  // and [-128, -64), where it reaches the subnormals and the double evaluation's range check.
  for (const std::uint32_t first : {0x3F800000u, 0xC0800000u, 0x41800000u, 0xC2800000u}) {
    std::vector<float> x(std::size_t{1} << 23);
    for (std::uint32_t i = 0; i < x.size(); ++i) x[i] = std::bit_cast<float>(first + i);
    std::vector<std::uint32_t> want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = std::bit_cast<std::uint32_t>(sigmoid_f32(x[i]));
    std::vector<float> got(x.size());
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      sigmoid_f32_array(x.data(), x.size(), got.data());
      for (std::size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), want[i]) << isa_name(isa) << " x = " << std::hexfloat << x[i];
    }
  }
}

TEST(SigmoidLanes, RaggedLengthsAndEmpty) {
  const std::vector<float> x = {0.5f, -3.0f, 100.0f, std::numeric_limits<float>::quiet_NaN(), -0.0f, 7.25f, -110.0f};
  for (std::size_t n = 0; n <= x.size(); ++n) {
    std::vector<float> got(n + 1, 42.0f);
    sigmoid_f32_array(x.data(), n, got.data());
    for (std::size_t i = 0; i < n; ++i)
      EXPECT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(sigmoid_f32(x[i]))) << n << " " << i;
    EXPECT_EQ(got[n], 42.0f);  // nothing written past n
  }
}

}  // namespace
}  // namespace fp8lab

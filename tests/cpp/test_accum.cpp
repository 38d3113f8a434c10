// The tensor-core model, instruction by instruction: REFERENCE.md's seven single-instruction
// probes, hand-worked cases for each feature (written as hex floats with the working beside them),
// the preset table checked against the formats table, and random cases against the independent
// big-integer formulation in test_accum_oracle.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "test_accum_oracle.hpp"

namespace fp8lab {
namespace {

using testing::bits;
using testing::from_bits;

// One instruction of `preset` with the listed leading lanes (the rest 0).
std::uint32_t run(const char* preset, std::vector<float> a, std::vector<float> b, float c) {
  const TensorCoreModel& m = tensor_core_by_name(preset);
  a.resize(static_cast<std::size_t>(tensor_core_k(m)), 0.0f);
  b.resize(static_cast<std::size_t>(tensor_core_k(m)), 0.0f);
  return bits(fused_dot_add(a.data(), b.data(), c, m));
}

const float kInf = std::numeric_limits<float>::infinity();

// REFERENCE.md "Tensor cores": probes whose predicted outputs separate the model's features
// (E4M3 inputs, FP32 D, unlisted lanes 0). The working, with 13 fractional bits below the largest
// alignment exponent E and the result truncated to 14 significant bits:
TEST(HopperFp8Probes, SubnormalProductBelowThirteenBitsIsDropped) {
  // 2^-7 is an E4M3 subnormal: exponent clamped to -6, so 2^-7*2^-7 = 2^-14 sits 14 bits below
  // E = 0 and is truncated away.
  EXPECT_EQ(run("hopper_fp8", {1, 0x1p-7f}, {1, 0x1p-7f}, 0), 0x3F800000u);
}
TEST(HopperFp8Probes, ThirteenthFractionalBitIsKept) {
  // 2^-6*2^-7 = 2^-13: exactly the last kept bit -> 1 + 2^-13 = 0x3F800400.
  EXPECT_EQ(run("hopper_fp8", {1, 0x1p-6f}, {1, 0x1p-7f}, 0), 0x3F800400u);
}
TEST(HopperFp8Probes, NegativeTermsTruncateTowardZero) {
  // -2^-14 truncates to 0 (magnitude truncation); a sign-filling shift would give -2^-13 and
  // 1 - 2^-13 = 0x3F7FF800.
  EXPECT_EQ(run("hopper_fp8", {1, -0x1p-7f}, {1, 0x1p-7f}, 0), 0x3F800000u);
}
TEST(HopperFp8Probes, ResultKeepsFourteenSignificantBits) {
  // 1 + 1 + 2^-13 = 2 + 2^-13 needs 15 significant bits; truncated to 14 -> 2.0.
  EXPECT_EQ(run("hopper_fp8", {1, 1, 0x1p-6f}, {1, 1, 0x1p-7f}, 0), 0x40000000u);
}
TEST(HopperFp8Probes, AccumulatorInputIsTruncatedToo) {
  // C = 1 + 2^-20 (0x3F800008) aligned at its own exponent keeps 13 fractional bits -> 1.0.
  EXPECT_EQ(run("hopper_fp8", {}, {}, from_bits(0x3F800008u)), 0x3F800000u);
}
TEST(HopperFp8Probes, SmallProductUnderLargeAccumulatorVanishes) {
  // C = 2^14 sets E = 14; the product 1 = 2^-14 relative is below 2^-13 -> 16384 unchanged.
  EXPECT_EQ(run("hopper_fp8", {1}, {1}, 16384.0f), bits(16384.0f));
}
TEST(HopperFp8Probes, CancellationLeavesTheSmallTermExact) {
  // 1 - 1 + 2^-13: the survivor is normalised exactly -> 2^-13 = 0x39000000.
  EXPECT_EQ(run("hopper_fp8", {1, -1, 0x1p-6f}, {1, 1, 0x1p-7f}, 0), 0x39000000u);
}

TEST(HopperFp8, InputSubnormalClampRaisesTheAlignmentExponent) {
  // 2^-9 * 2^-9 = 2^-18 but its alignment exponent is -6 + -6 = -12, so C = 2^-30 lies 18 bits
  // below E and is dropped: exactly 2^-18 (0x36800000). Without the clamp (E = -18) C would be
  // kept: 2^-18 (1 + 2^-12).
  EXPECT_EQ(run("hopper_fp8", {0x1p-9f}, {0x1p-9f}, 0x1p-30f), 0x36800000u);
}
TEST(HopperFp8, SignificandProductIsNotRenormalised) {
  // 1.875 * 1.875 = 3.515625 has alignment exponent 0 + 0 = 0 (significand product in [2, 4)),
  // so 2^-13 is kept and survives the cancellation: exactly 2^-13 = 0x39000000. Renormalising the
  // product to 1.7578125 * 2^1 would set E = 1 and drop 2^-13 (result 0).
  EXPECT_EQ(run("hopper_fp8", {1.875f, -1.875f, 0x1p-6f}, {1.875f, 1.875f, 0x1p-7f}, 0), 0x39000000u);
}
TEST(HopperFp8E5m2, ClampAtMinusFourteen) {
  // E5M2 2^-16 (subnormal) squared: alignment exponent -28, value 2^-32; C = 2^-42 is 14 bits
  // below E = -28 -> dropped, result 2^-32 = 0x2F800000.
  EXPECT_EQ(run("hopper_fp8_e5m2", {0x1p-16f}, {0x1p-16f}, 0x1p-42f), 0x2F800000u);
}

TEST(AdaFp8, TwoHalvesChainThroughTheAccumulator) {
  // Lanes 0 and 1: 2^-7*2^-7 twice (first half, sum 2^-13 exact since it is that half's E);
  // lane 16: 1*1 (second half) with C = 2^-13 -> 1 + 2^-13 = 0x3F800400. One fused block of 32
  // (Hopper) aligns the two 2^-14 products to E = 0 and drops them -> 1.0.
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = a[1] = b[0] = b[1] = 0x1p-7f;
  a[16] = b[16] = 1.0f;
  EXPECT_EQ(run("ada_fp8", a, b, 0), 0x3F800400u);
  EXPECT_EQ(run("hopper_fp8", a, b, 0), 0x3F800000u);
}

TEST(AdaFp8Fp16Accumulator, EachHalfRoundsToNearestFp16) {
  // First half: 1 + 2^-6 * 2^-5 = 1 + 2^-11, a tie between the FP16 neighbours 1 and 1 + 2^-10
  // -> even -> 1.0. Second half: C = 1.0 plus 1.5*2^-6 * 2^-4 = 1.5 * 2^-10, again a tie, between
  // 1 + 2^-10 and 1 + 2^-9 -> even -> 1 + 2^-9. (One FP32 block would keep 1 + 2.5 * 2^-10.)
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = b[0] = 1.0f;
  a[1] = 0x1p-6f;
  b[1] = 0x1p-5f;
  EXPECT_EQ(run("ada_fp8_f16", a, b, 0), bits(1.0f));
  a[16] = 0x1.8p-6f;  // 1.5 * 2^-6 * 2^-4 = 1.5 * 2^-10
  b[16] = 0x1p-4f;
  EXPECT_EQ(run("ada_fp8_f16", a, b, 0), bits(1.0f + 0x1p-9f));
  // Beyond FP16's range: 448 * 448 * 2 >= 2^16 -> +Inf.
  EXPECT_EQ(run("ada_fp8_f16", {448, 448}, {448, 448}, 0), 0x7F800000u);
  // FP16 subnormal results sit on the 2^-24 grid: 2^-18 = 64 * 2^-24 is kept exactly, and so is
  // an FP16-subnormal C = 2^-24 on its own.
  EXPECT_EQ(run("ada_fp8_f16", {}, {}, 0x1p-24f), bits(0x1p-24f));
  EXPECT_EQ(run("ada_fp8_f16", {0x1p-9f}, {0x1p-9f}, 0), bits(0x1p-18f));
}

TEST(Hopper16Bit, TwentyFiveAlignmentBitsAndTruncatedOutput) {
  // bf16: 1 + 2^-23 is kept (0x3F800001); 1 + 2^-25 is aligned exactly (F = 25) but the output
  // keeps 24 significant bits -> 1.0.
  EXPECT_EQ(run("hopper_bf16", {1, 0x1p-23f}, {1, 1}, 0), 0x3F800001u);
  EXPECT_EQ(run("hopper_bf16", {1, 0x1p-25f}, {1, 1}, 0), 0x3F800000u);
  // 1 - 2^-26: the negative term truncates to 0 -> 1.0; a sign-filling shift would give 1 - 2^-25,
  // truncated to 0x3F7FFFFF.
  EXPECT_EQ(run("hopper_bf16", {1, -0x1p-26f}, {1, 1}, 0), 0x3F800000u);
  // 1 - 2^-24 is on the 25-bit grid and survives: 0x3F7FFFFF.
  EXPECT_EQ(run("hopper_bf16", {1, -0x1p-24f}, {1, 1}, 0), 0x3F7FFFFFu);
  // C keeps all its bits with F >= 23.
  EXPECT_EQ(run("hopper_bf16", {}, {}, from_bits(0x3F800001u)), 0x3F800001u);
}
TEST(Ampere16Bit, TwentyFourAlignmentBits) {
  // A100/Ada: F = 24, so 1 + 2^-24 + 2^-24 keeps both halves of an ulp -> 1 + 2^-23. Four
  // terms of 2^-25 also make 2^-23, but F = 24 drops each of them (-> 1.0) where Hopper's F = 25
  // keeps them (-> 0x3F800001).
  EXPECT_EQ(run("ampere_bf16", {1, 0x1p-24f, 0x1p-24f}, {1, 1, 1}, 0), 0x3F800001u);
  EXPECT_EQ(run("ampere_bf16", {1, 0x1p-25f, 0x1p-25f, 0x1p-25f, 0x1p-25f}, {1, 1, 1, 1, 1}, 0), 0x3F800000u);
  EXPECT_EQ(run("hopper_bf16", {1, 0x1p-25f, 0x1p-25f, 0x1p-25f, 0x1p-25f}, {1, 1, 1, 1, 1}, 0), 0x3F800001u);
}

TEST(SubnormalOutput, TruncatedOntoTheFp32Grid) {
  // bf16 2^-100 * 2^-40 = 2^-140 = 2^9 * 2^-149 -> 0x00000200.
  EXPECT_EQ(run("hopper_bf16", {0x1p-100f}, {0x1p-40f}, 0), 0x00000200u);
  // 1.5*2^-75 * 2^-74 = 1.5 * 2^-149 -> truncated to 2^-149 = 0x00000001; 1.5 * 2^-150 -> 0.
  EXPECT_EQ(run("hopper_bf16", {0x1.8p-75f}, {0x1p-74f}, 0), 0x00000001u);
  EXPECT_EQ(run("hopper_bf16", {0x1.8p-75f}, {0x1p-75f}, 0), 0x00000000u);
  // A negative sum truncated to zero is +0, as MMA-Sim returns it ("-0.0 to +0.0"); the MATLAB
  // model would give -0 (signed zeros are open on hardware, REFERENCE.md): -2^-160 -> +0.
  EXPECT_EQ(run("hopper_bf16", {-0x1p-100f}, {0x1p-60f}, 0), 0x00000000u);
  // An FP32-subnormal C is kept (its exponent is -126): 0x00000003 + 0 = 0x00000003.
  EXPECT_EQ(run("hopper_bf16", {}, {}, from_bits(0x00000003u)), 0x00000003u);
}

TEST(NonFinite, NanAndInfinityPropagation) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto is_nan = [](std::uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; };
  EXPECT_TRUE(is_nan(run("hopper_fp8", {1}, {1}, nan)));
  EXPECT_EQ(run("hopper_fp8", {1}, {1}, kInf), 0x7F800000u);
  EXPECT_EQ(run("hopper_fp8", {1}, {1}, -kInf), 0xFF800000u);
  EXPECT_TRUE(is_nan(run("hopper_bf16", {kInf}, {0}, 0)));          // Inf * 0
  EXPECT_EQ(run("hopper_bf16", {kInf}, {-1}, 0), 0xFF800000u);       // -Inf
  EXPECT_TRUE(is_nan(run("hopper_bf16", {kInf, kInf}, {1, -1}, 0)));  // Inf - Inf
  EXPECT_TRUE(is_nan(run("hopper_bf16", {kInf}, {1}, -kInf)));        // Inf + (-Inf) from C
  EXPECT_TRUE(is_nan(run("blackwell_mma_fp8", {1}, {1}, nan)));
  EXPECT_TRUE(is_nan(run("ada_fp8", {nan}, {1}, 0)));
}

TEST(Overflow, BeyondFp32RangeIsInfinite) {
  // bf16 max 0x7F7F0000 = (2 - 2^-7) * 2^127, times 2 >= 2^128 -> +Inf (Generic_BFMA_TC.m).
  EXPECT_EQ(run("hopper_bf16", {from_bits(0x7F7F0000u)}, {2}, 0), 0x7F800000u);
  // FLT_MAX as C with zero products stays FLT_MAX.
  EXPECT_EQ(run("hopper_bf16", {}, {}, std::numeric_limits<float>::max()), 0x7F7FFFFFu);
}

TEST(Zeros, ExactCancellationAndAllZeroGivePositiveZero) {
  EXPECT_EQ(run("hopper_fp8", {1, -1}, {1, 1}, 0), 0u);
  EXPECT_EQ(run("hopper_fp8", {}, {}, -0.0f), 0u);
  EXPECT_EQ(run("hopper_bf16", {-2}, {1}, 2.0f), 0u);
}

TEST(BlackwellMma, ProductsTruncatedThenAccumulatorAddedToNearest) {
  // Products 16*16 + 2^-9*2^-9 = 256 + 2^-18, truncated to FP32 (ulp 2^-15 at 256) -> 256; then
  // + C = 2^-16 is a tie and rounds to even -> 256. A correctly rounded a.b + c would see
  // 256 + 2^-16 + 2^-18 > half an ulp and give 256 + 2^-15.
  EXPECT_EQ(run("blackwell_mma_fp8", {16, 0x1p-9f}, {16, 0x1p-9f}, 0x1p-16f), bits(256.0f));
  EXPECT_EQ(run("blackwell_mma_fp8", {-16, 0x1p-9f}, {16, -0x1p-9f}, -0x1p-16f), bits(-256.0f));
  // Without the tiny product the tie still goes to even, and above it rounds up.
  EXPECT_EQ(run("blackwell_mma_fp8", {16}, {16}, 0x1.8p-16f), bits(256.0f + 0x1p-15f));
}

// AMD CDNA3 FP8 (MMA-Sim gtr_fdpa): the even and odd products are separate fused sums, and the
// smaller one joins the larger rounded DOWN (floor), not truncated toward zero.
TEST(PairedTwoLevel, OddHalfJoinsRoundedDown) {
  const TensorCoreModel& m = tensor_core_by_name("cdna3_mfma_f32_16x16x32_fp8");
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = 128.0f;
  b[0] = 128.0f;  // even half: 2^14
  a[1] = 0x1p-7f;
  b[1] = -0x1p-10f;  // odd half: -2^-17, below 2^(14 - 24): floor gives -2^-10
  EXPECT_EQ(bits(fused_dot_add(a.data(), b.data(), 0.0f, m)), bits(16384.0f - 0x1p-10f));
  // The same product in the even half is truncated toward zero with 2^14 in the first level.
  std::swap(a[1], a[2]);
  std::swap(b[1], b[2]);
  EXPECT_EQ(bits(fused_dot_add(a.data(), b.data(), 0.0f, m)), bits(16384.0f));
  // NaN (FNUZ 0x80) propagates; C = +Inf is the result.
  a[3] = std::numeric_limits<float>::quiet_NaN();
  b[3] = 1.0f;
  EXPECT_TRUE(std::isnan(fused_dot_add(a.data(), b.data(), 0.0f, m)));
  a[3] = 0.0f;
  EXPECT_EQ(bits(fused_dot_add(a.data(), b.data(), kInf, m)), 0x7F800000u);
}

// kind::mxf4nvf4 (MMA-Sim gst_fdpa): group sums scaled by UE4M3 scales; a zero scale silences its
// group, a NaN scale makes the result NaN.
TEST(ScaledGroups, Nvfp4GroupsAndTheirScales) {
  const TensorCoreModel& m = tensor_core_by_name("blackwell_nvfp4");
  std::vector<float> a(64, 0.0f), b(64, 0.0f);
  for (int g = 0; g < 4; ++g) {
    a[16 * g] = 6.0f;
    b[16 * g] = 1.5f;  // each group sums to 9
  }
  const float sa[4] = {1.0f, 0.5f, 0.0f, 448.0f}, sb[4] = {2.0f, 0x1p-9f, 3.0f, 1.0f};
  // 9 * (2 + 2^-10 + 0 + 448) = 4050 + 9 * 2^-10, exact in FP32.
  EXPECT_EQ(bits(fused_dot_add_scaled(a.data(), b.data(), sa, sb, 0.0f, m)), bits(4050.0f + 9 * 0x1p-10f));
  const float nan_scale[4] = {1.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f, 1.0f};
  EXPECT_TRUE(std::isnan(fused_dot_add_scaled(a.data(), b.data(), nan_scale, sb, 0.0f, m)));
  // With every group zero, a zero C and e_zero = -139 give +0.
  std::vector<float> z(64, 0.0f);
  EXPECT_EQ(bits(fused_dot_add_scaled(z.data(), z.data(), sa, sb, -0.0f, m)), 0u);
}

// kind::mxf8f6f4 (MMA-Sim st_fdpa): a zero product or zero C aligns at 2^-133, so when every scaled
// product lies below that, the truncation point is 2^-158, not 25 bits below the largest product.
TEST(BlockScaled, ZeroTermsAlignAtMinus133) {
  const TensorCoreModel& m = tensor_core_by_name("blackwell_mxfp8");
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = 256.0f;
  b[0] = 256.0f;  // 2^16 * 2^-150 = 2^-134
  a[1] = 0x1p-9f;
  b[1] = -1.0f;  // -2^-9 * 2^-150 = -2^-159: below 2^-158, truncated away
  const float s = 0x1p-75f;
  EXPECT_EQ(bits(fused_dot_add_scaled(a.data(), b.data(), &s, &s, 0.0f, m)), 0x00008000u);  // 2^-134
  // Aligned at the largest product (-134) instead, -2^-159 would survive and the truncated FP32
  // result would be 2^-134 - 2^-149 (0x00007FFF); with a non-zero C the zeros play no part.
  const int e = -75;
  EXPECT_EQ(bits(fused_dot_add_block_scaled(a.data(), b.data(), &e, &e, 0.0f, m)), 0x00008000u);
  const float one = 1.0f;
  a[1] = 0.0f;
  EXPECT_EQ(bits(fused_dot_add_scaled(a.data(), b.data(), &one, &one, 0.0f, m)), bits(65536.0f));
}

TEST(BlockScaled, ScaleExponentsEnterTheProducts) {
  const TensorCoreModel& mx = tensor_core_by_name("blackwell_mxfp8");
  const TensorCoreModel& plain = tensor_core_by_name("blackwell_fp8");
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[0] = 1.5f;
  b[0] = 3.0f;
  a[5] = -0.125f;
  b[5] = 0x1p-9f;
  const int zero = 0, sa = 3, sb = -5;
  EXPECT_EQ(bits(fused_dot_add_block_scaled(a.data(), b.data(), &zero, &zero, 0.0f, mx)),
            bits(fused_dot_add(a.data(), b.data(), 0.0f, plain)));
  // With C = 0 a common scale 2^(3-5) scales the exact result; here 4.5 - 2^-12 fits in 24 bits.
  EXPECT_EQ(bits(fused_dot_add_block_scaled(a.data(), b.data(), &sa, &sb, 0.0f, mx)), bits((4.5f - 0x1p-12f) / 4));
  EXPECT_THROW(fused_dot_add_block_scaled(a.data(), b.data(), &sa, &sb, 0.0f, plain), std::invalid_argument);
}

TEST(Presets, NamesAliasesAndErrors) {
  EXPECT_EQ(&tensor_core_by_name("hopper_fp8"), &tensor_core_by_name("hopper_wgmma_m64nNk32_f32_e4m3"));
  EXPECT_EQ(tensor_core_k(tensor_core_by_name("hopper_fp8")), 32);
  EXPECT_EQ(tensor_core_k(tensor_core_by_name("hopper_bf16")), 16);
  for (const char* alias : {"hopper_fp8", "hopper_fp8_e5m2", "hopper_bf16", "hopper_fp16", "ada_fp8", "ampere_bf16",
                            "ampere_fp16", "blackwell_fp8"})
    EXPECT_NO_THROW(tensor_core_by_name(alias)) << alias;
  try {
    tensor_core_by_name("volta_fp8");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("instruction"), std::string::npos) << what;
    EXPECT_NE(what.find("volta_fp8"), std::string::npos) << what;
    EXPECT_NE(what.find("hopper_fp8"), std::string::npos) << what;
  }
}

TEST(Presets, RowsAgreeWithTheFormatsTableAndTheArithmeticLimits) {
  for (const std::string& name : tensor_core_names()) {
    const TensorCoreModel& m = tensor_core_by_name(name);
    SCOPED_TRACE(name);
    const Format& f = format_by_name(m.input_format);
    EXPECT_EQ(m.input_min_exponent, f.min_normal_exponent());
    EXPECT_EQ(b_input_min_exponent(m), format_by_name(b_input_format(m)).min_normal_exponent());
    EXPECT_EQ(m.input_mantissa_bits, f.mantissa_bits);
    EXPECT_GT(m.k, 0);
    EXPECT_LE(m.k, 64);
    EXPECT_EQ(m.k % m.block, 0);
    EXPECT_LE(m.alignment_frac_bits, 46);  // keeps every shift in fused_dot_add non-negative
    EXPECT_GE(m.output_precision, 1);
    EXPECT_LE(m.output_precision, 24);
    if (m.scale_block != 0) {
      EXPECT_EQ(m.k % m.scale_block, 0);
    }
    EXPECT_NE(std::string(m.source), "");
  }
}

// Random instructions, every truncating preset, against the big-integer formulation.
float random_value(std::mt19937_64& rng, const Format& f) {
  // FP8 and fp16: uniformly random finite bit patterns (subnormals included). bf16/tf32: random
  // significand with exponents in [-30, 30] so that terms overlap, and 1 in 16 from the whole
  // range (subnormals, overflowing products).
  std::uniform_int_distribution<std::uint32_t> pattern(0, (1u << f.total_bits()) - 1);
  if (f.exponent_bits > 5 && rng() % 16 != 0) {
    const std::uint32_t mant = static_cast<std::uint32_t>(rng()) & ((1u << f.mantissa_bits) - 1);
    const double sig = 1.0 + std::ldexp(static_cast<double>(mant), -f.mantissa_bits);
    const double v = std::ldexp(sig, static_cast<int>(rng() % 61) - 30);
    return static_cast<float>(rng() % 2 ? -v : v);
  }
  for (;;) {
    const double v = decode(pattern(rng), f);
    if (std::isfinite(v)) return static_cast<float>(v);
  }
}

TEST(Oracle, TruncatingPresetsMatchTheBigIntegerFormulation) {
  std::mt19937_64 rng(20261129);
  for (const std::string& name : tensor_core_names()) {
    const TensorCoreModel& m = tensor_core_by_name(name);
    if (m.exact_sum || m.scale_block != 0 || name != m.name || m.accumulator != AccumulatorFormat::Fp32 ||
        m.form != DotForm::Fused)
      continue;
    const Format& f = format_by_name(m.input_format);
    SCOPED_TRACE(name);
    std::vector<float> a(static_cast<std::size_t>(m.k)), b(a.size());
    std::uniform_int_distribution<int> zero_lanes(0, 3), cexp(-40, 40);
    for (int t = 0; t < 400; ++t) {
      for (auto& x : a) x = random_value(rng, f);
      for (auto& x : b) x = random_value(rng, f);
      // Some zero lanes; C of various sizes including 0.
      for (int z = zero_lanes(rng); z > 0; --z) a[rng() % a.size()] = 0.0f;
      const float c = (t % 4 == 0) ? 0.0f : std::ldexp(static_cast<float>(static_cast<int>(rng() % 2000001) - 1000000) / 1e6f, cexp(rng));
      const float got = fused_dot_add(a.data(), b.data(), c, m);
      const float want = testing::oracle_truncating(a.data(), b.data(), c, m);
      ASSERT_EQ(bits(got), bits(want)) << "case " << t << " c=" << c;
    }
  }
}

TEST(Oracle, BlackwellMmaMatchesExactProductsThenAddition) {
  std::mt19937_64 rng(7);
  for (const char* name : {"blackwell_mma_fp8", "blackwell_mma_fp8_e5m2"}) {
    const TensorCoreModel& m = tensor_core_by_name(name);
    const Format& f = format_by_name(m.input_format);
    std::vector<float> a(32), b(32);
    for (int t = 0; t < 400; ++t) {
      for (auto& x : a) x = random_value(rng, f);
      for (auto& x : b) x = random_value(rng, f);
      const float c = (t % 3 == 0) ? 0.0f : std::ldexp(static_cast<float>(rng() % 1000003) / 1e6f, static_cast<int>(rng() % 200) - 140);
      ASSERT_EQ(bits(fused_dot_add(a.data(), b.data(), c, m)), bits(testing::oracle_exact_then_c(a.data(), b.data(), c, m)))
          << name << " case " << t;
    }
  }
}

}  // namespace
}  // namespace fp8lab

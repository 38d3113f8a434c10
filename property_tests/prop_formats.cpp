// Laws of encode/decode that hold for every format and rounding mode.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "common/parallel.hpp"
#include "formats/encode.hpp"

namespace fp8lab {
namespace {

const std::vector<std::string> kFormats = {"fp32", "bf16", "fp16", "e5m6", "e4m3", "e5m2", "e2m1", "ue8m0", "e3m4", "e6m9"};

rc::Gen<std::string> genFormatName() { return rc::gen::elementOf(kFormats); }

// A finite double whose exponent lies in (or just around) the format's range, so that the
// interesting regions - subnormals, binade edges, overflow - are hit often.
rc::Gen<double> genValueFor(const Format& f) {
  const int lo = f.min_normal_exponent() - f.mantissa_bits - 3, hi = f.max_exponent() + 2;
  return rc::gen::apply(
      [](int e, std::uint64_t mantissa, bool negative) {
        const double v = std::ldexp(1.0 + static_cast<double>(mantissa >> 12) * 0x1p-52, e);
        return negative ? -v : v;
      },
      rc::gen::inRange(lo, hi + 1), rc::gen::arbitrary<std::uint64_t>(), rc::gen::arbitrary<bool>());
}

// The representable neighbours of a finite non-negative code (nullopt past the ends).
std::optional<double> value_if_finite(std::int64_t code, const Format& f) {
  if (code < 0 || code >= (std::int64_t{1} << (f.total_bits() - (f.is_signed ? 1 : 0)))) return std::nullopt;
  const auto b = static_cast<std::uint32_t>(code);
  if (is_nan_bits(b, f) || is_inf_bits(b, f)) return std::nullopt;
  return decode(b, f);
}

EncodeOptions with(Rounding r) {
  EncodeOptions o;
  o.rounding = r;
  return o;
}

RC_GTEST_PROP(Formats, NearestEvenPicksANearestValueAndBreaksTiesToEven, ()) {
  const Format& f = format_by_name(*genFormatName());
  const double x = std::fabs(*genValueFor(f));
  RC_PRE(x <= f.max_finite());
  const std::uint32_t b = encode(x, f);
  const double v = decode(b, f);
  const auto mag = static_cast<std::int64_t>(b & ~f.sign_mask());
  for (std::int64_t step : {-1, 1}) {
    if (auto n = value_if_finite(mag + step, f)) {
      RC_ASSERT(std::fabs(v - x) <= std::fabs(*n - x));
      if (std::fabs(v - x) == std::fabs(*n - x)) RC_ASSERT((mag & 1) == 0);
    }
  }
}

RC_GTEST_PROP(Formats, DirectedRoundingsBracketTheInputTightly, ()) {
  const Format& f = format_by_name(*genFormatName());
  const double x = *genValueFor(f);
  RC_PRE(std::fabs(x) <= f.max_finite() && (f.is_signed || x >= 0) && (f.has_zero() || x >= f.min_positive()));
  const double tz = round_to_format(x, f, with(Rounding::TowardZero));
  const double up = round_to_format(x, f, with(Rounding::Up));
  const double down = round_to_format(x, f, with(Rounding::Down));
  RC_ASSERT(std::fabs(tz) <= std::fabs(x));
  RC_ASSERT(up >= x);
  RC_ASSERT(down <= x);
  // Tight: up and down are the same value or adjacent codes.
  const auto cu = encode(x, f, with(Rounding::Up)), cd = encode(x, f, with(Rounding::Down));
  if (up != down) {
    const double gap = up - down;
    const double ulp = std::ldexp(1.0, std::max(std::ilogb(std::max(std::fabs(up), std::fabs(down))), f.min_normal_exponent()) - f.mantissa_bits);
    RC_ASSERT(gap <= ulp);
    RC_ASSERT(cu != cd);
  }
}

RC_GTEST_PROP(Formats, EncodeIsMonotone, ()) {
  const Format& f = format_by_name(*genFormatName());
  const auto mode = *rc::gen::element(Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down);
  double x = *genValueFor(f), y = *genValueFor(f);
  if (!f.is_signed) {
    x = std::fabs(x);
    y = std::fabs(y);
  }
  if (x > y) std::swap(x, y);
  RC_ASSERT(round_to_format(x, f, with(mode)) <= round_to_format(y, f, with(mode)));
}

RC_GTEST_PROP(Formats, EncodeIsSignSymmetric, ()) {
  const Format& f = format_by_name(*rc::gen::elementOf(std::vector<std::string>{"fp32", "bf16", "fp16", "e5m6", "e4m3", "e5m2", "e2m1", "e3m4"}));
  const double x = std::fabs(*genValueFor(f));
  for (auto r : {Rounding::NearestEven, Rounding::TowardZero}) RC_ASSERT(encode(-x, f, with(r)) == (encode(x, f, with(r)) | f.sign_mask()));
  RC_ASSERT(encode(-x, f, with(Rounding::Up)) == (encode(x, f, with(Rounding::Down)) | f.sign_mask()));
}

TEST(Formats, EncodeOfDecodeIsIdentityForEveryNonNanPatternOfSmallFormats) {
  for (const auto& name : kFormats) {
    const Format& f = format_by_name(name);
    if (f.total_bits() > 16) continue;
    for (std::uint32_t b = 0; b < (1u << f.total_bits()); ++b) {
      if (is_nan_bits(b, f)) continue;
      EncodeOptions nosat;
      nosat.overflow = Overflow::InfOrNan;  // so that Inf patterns come back as Inf
      ASSERT_EQ(encode(decode(b, f), f, nosat), b) << name << " pattern 0x" << std::hex << b;
    }
  }
}

RC_GTEST_PROP(Formats, EncodeOfDecodeIsIdentityForFp32Patterns, (std::uint32_t b)) {
  const Format& f = format_by_name("fp32");
  RC_PRE(!is_nan_bits(b, f));
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  RC_ASSERT(encode(decode(b, f), f, nosat) == b);
  RC_ASSERT(decode(b, f) == static_cast<double>(std::bit_cast<float>(b)));
}

RC_GTEST_PROP(Formats, StochasticRoundingIsAFunctionOfSeedAndIndexAndLandsOnANeighbour, (std::uint64_t seed, std::uint64_t index)) {
  const Format& f = format_by_name(*genFormatName());
  const double x = *genValueFor(f);
  RC_PRE(std::fabs(x) <= f.max_finite() && (f.is_signed || x >= 0));
  EncodeOptions o = with(Rounding::Stochastic);
  o.seed = seed;
  const auto b = encode(x, f, o, index);
  RC_ASSERT(b == encode(x, f, o, index));
  RC_ASSERT(b == encode(x, f, with(Rounding::Up)) || b == encode(x, f, with(Rounding::Down)));
}

TEST(Formats, StochasticRoundingIsUnbiased) {
  // x = 1 + 5/16 of an e4m3 ULP (0.125) above 1; E[round(x)] must be x. With 200000 draws the
  // standard error of the mean is 0.125 * sqrt(p(1-p)/n) = 1.3e-4; assert within 5 of them.
  const Format& f = format_by_name("e4m3");
  EncodeOptions o = with(Rounding::Stochastic);
  o.seed = 2024;
  const double x = 1.0 + 0.125 * 5 / 16;
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) sum += round_to_format(x, f, o, static_cast<std::uint64_t>(i));
  EXPECT_NEAR(sum / n, x, 5 * 0.125 * std::sqrt(5.0 / 16 * 11.0 / 16 / n));
}

RC_GTEST_PROP(Formats, BulkEncodeIsIndependentOfThreadCount, (std::uint64_t seed)) {
  const Format& f = format_by_name(*genFormatName());
  const auto mode = *rc::gen::element(Rounding::NearestEven, Rounding::Stochastic, Rounding::Down);
  std::vector<float> x(300000);
  std::uint64_t s = seed;
  for (auto& v : x) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v = std::bit_cast<float>(static_cast<std::uint32_t>(s >> 32));
  }
  EncodeOptions o = with(mode);
  o.seed = seed;
  std::vector<std::uint32_t> one(x.size()), many(x.size());
  std::vector<std::uint16_t> a16(x.size()), b16(x.size());
  std::vector<std::uint8_t> a8(x.size()), b8(x.size());
  void* a = f.storage_bits() == 8 ? static_cast<void*>(a8.data()) : f.storage_bits() == 16 ? static_cast<void*>(a16.data()) : one.data();
  void* b = f.storage_bits() == 8 ? static_cast<void*>(b8.data()) : f.storage_bits() == 16 ? static_cast<void*>(b16.data()) : many.data();
  set_num_threads(1);
  encode_array(x.data(), x.size(), f, o, a);
  set_num_threads(5);
  encode_array(x.data(), x.size(), f, o, b);
  set_num_threads(0);
  RC_ASSERT(a8 == b8);
  RC_ASSERT(a16 == b16);
  RC_ASSERT(one == many);
  // The bulk path and the scalar path agree element by element.
  for (std::size_t i = 0; i < x.size(); i += 997) {
    const std::uint32_t bulk = f.storage_bits() == 8 ? a8[i] : f.storage_bits() == 16 ? a16[i] : one[i];
    RC_ASSERT(bulk == encode(static_cast<double>(x[i]), f, o, i));
  }
}

}  // namespace
}  // namespace fp8lab

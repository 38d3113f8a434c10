// The one round-and-pack (formats/round_pack.hpp) against an oracle that does not share its
// arithmetic: each target format's finite values are enumerated by decode() and sorted, the two
// neighbours of the exact input are found by search, and IEEE 754-2019 §4.3 / §7.4 pick between
// them (ties to the even code; overflow when the value rounded with an unbounded exponent is past
// the largest finite one). Every input is exact in binary64: (sig + sticky / 4) * 2^exp, the
// quarter standing for "something non-zero below sig's last bit".
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "formats/round_pack.hpp"

namespace fp8lab {
namespace {

struct Grid {
  std::vector<double> value;  // every non-negative finite value, by code (monotone in the code)
  double past_max;            // the value after the largest finite one on an unbounded exponent range
};

Grid grid_of(const Format& f) {
  Grid g;
  for (std::uint32_t code = 0; code < (1u << (f.exponent_bits + f.mantissa_bits)); ++code) {
    const double v = decode(code, f);
    if (!std::isfinite(v)) break;  // the top of the code space: Inf or NaN
    g.value.push_back(v);
  }
  g.past_max = f.max_finite() + std::ldexp(1.0, f.max_exponent() - f.mantissa_bits);
  return g;
}

// The IEEE result for |x| (x exact), as a code (magnitude) or `overflow`.
struct Want {
  bool overflow;
  std::uint32_t code;
};

Want oracle(const Grid& g, double ax, bool negative, Rounding mode) {
  // lo: the largest code with value <= ax; hi = lo + 1 (past_max beyond the largest finite).
  const auto it = std::upper_bound(g.value.begin(), g.value.end(), ax);
  const auto lo = static_cast<std::uint32_t>((it - g.value.begin()) - 1);
  const double vlo = g.value[lo];
  if (vlo == ax) return {false, lo};
  const std::uint32_t hi = lo + 1;
  const double vhi = hi < g.value.size() ? g.value[hi] : g.past_max;
  if (hi == g.value.size() && ax >= g.past_max) {
    // Beyond even the next grid point: toward-zero directions stop at max, the rest overflow.
    const bool toward_zero = mode == Rounding::TowardZero || (mode == Rounding::Up && negative) ||
                             (mode == Rounding::Down && !negative);
    return toward_zero ? Want{false, lo} : Want{true, 0};
  }
  bool up;
  switch (mode) {
    case Rounding::NearestEven: {
      const double mid = vlo + (vhi - vlo) / 2;  // exact: neighbours of a <= 16-bit format
      up = ax > mid || (ax == mid && (lo & 1u) != 0);
      break;
    }
    case Rounding::TowardZero: up = false; break;
    case Rounding::Up: up = !negative; break;
    case Rounding::Down: up = negative; break;
    default: up = false;
  }
  if (!up) return {false, lo};
  if (hi == g.value.size()) return {true, 0};
  return {false, hi};
}

// The overflow result a plan's options ask for (encode.hpp's Overflow, IEEE 754 §7.4).
std::uint32_t overflow_result(const Format& f, const Grid& g, Overflow o, Rounding mode, bool negative) {
  const auto max_code = static_cast<std::uint32_t>(g.value.size() - 1);
  const bool toward_zero = mode == Rounding::TowardZero || (mode == Rounding::Up && negative) ||
                           (mode == Rounding::Down && !negative);
  if (o == Overflow::Saturate || toward_zero || !f.has_nan()) return max_code;
  return f.has_inf() ? f.inf_bits(false) : f.canonical_nan();
}

void check_format(const char* name, int max_sig_bits, int exp_lo, int exp_hi) {
  const Format& f = format_by_name(name);
  const Grid g = grid_of(f);
  for (Overflow o : {Overflow::Saturate, Overflow::InfOrNan})
    for (Rounding mode : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down}) {
      const detail::EncodePlan p = detail::make_encode_plan(f, {mode, o});
      int failures = 0;
      for (int exp = exp_lo; exp <= exp_hi; ++exp)
        for (std::uint32_t sig = 0; sig < (1u << max_sig_bits); ++sig)
          for (bool sticky : {false, true}) {
            // round_pack's precondition: sticky only under a significand two bits or more finer
            // than the grid (the target quantum 2^(max(top, emin) - m) is 2^(exp + 2) or coarser).
            const int top = exp + std::bit_width(sig) - 1;
            if (sticky && std::max(top, f.min_normal_exponent()) - f.mantissa_bits < exp + 2) continue;
            for (bool negative : {false, true}) {
              const double ax = std::ldexp(sig + (sticky ? 0.25 : 0.0), exp);
              const Want w = oracle(g, ax, negative, mode);
              const std::uint32_t sign = negative ? f.sign_mask() : 0u;
              const std::uint32_t want = (w.overflow ? overflow_result(f, g, o, mode, negative) : w.code) | sign;
              const std::uint32_t got = round_pack(p, negative, std::uint64_t{sig}, exp, sticky);
              if (got != want && ++failures <= 3)
                ADD_FAILURE() << name << " " << rounding_name(mode) << " " << overflow_name(o) << ": "
                              << (negative ? "-" : "+") << "(" << sig << (sticky ? "+sticky" : "") << ") * 2^" << exp
                              << " gave 0x" << std::hex << got << ", want 0x" << want;
            }
          }
      EXPECT_EQ(failures, 0) << name << " " << rounding_name(mode) << " " << overflow_name(o);
    }
}

// Every value from below half the smallest subnormal to past the overflow threshold, on
// significands of up to 10 bits: ties, sticky ties, carries into the next binade and into
// overflow, gradual underflow to zero.
TEST(RoundPack, E4m3AgainstTheEnumeratedGrid) { check_format("e4m3", 10, -22, 4); }
TEST(RoundPack, E5m2AgainstTheEnumeratedGrid) { check_format("e5m2", 10, -29, 9); }
TEST(RoundPack, E2m1AgainstTheEnumeratedGrid) { check_format("e2m1", 8, -10, 2); }
TEST(RoundPack, Fp16AgainstTheEnumeratedGrid) { check_format("fp16", 12, -37, 5); }
TEST(RoundPack, Bf16NearTheTopAndBottomOfItsRange) {
  check_format("bf16", 10, -146, -125);
  check_format("bf16", 10, 118, 128);
}

// FP32 (too many values to enumerate): the compiler's correctly rounded double -> float
// conversion (nearest even, IEEE 754 default) is the oracle, nudged for the directed modes.
TEST(RoundPack, Fp32AgainstTheDoubleToFloatConversion) {
  const Format& f = format_by_name("fp32");
  for (Rounding mode : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down}) {
    const detail::EncodePlan p = detail::make_encode_plan(f, {mode, Overflow::InfOrNan});
    for (int exp : {-180, -175, -160, -150, -149, -140, -126, -100, 0, 80, 100, 103, 104, 105})
      for (std::uint64_t sig = 1; sig < (1u << 27); sig = sig * 3 + 1 + (sig >> 4))
        for (std::uint64_t s : {sig, (sig << 20) | 0x80000u, (sig << 25) - 1, std::uint64_t{1} << 40 | sig})
          for (bool negative : {false, true}) {
            const double x = std::ldexp(static_cast<double>(s), exp) * (negative ? -1 : 1);
            float want = static_cast<float>(x);  // nearest even, Inf past the threshold
            const bool beyond = std::fabs(static_cast<double>(want)) > std::fabs(x);
            const bool to_zero = mode == Rounding::TowardZero || (mode == Rounding::Up && negative) ||
                                 (mode == Rounding::Down && !negative);
            if (mode != Rounding::NearestEven && static_cast<double>(want) != x) {
              if (to_zero && beyond) want = std::nextafter(want, 0.0f);
              if (!to_zero && !beyond) want = std::nextafter(want, negative ? -INFINITY : INFINITY);
            }
            const std::uint32_t got = round_pack(p, negative, s, exp, false);
            ASSERT_EQ(got, std::bit_cast<std::uint32_t>(want))
                << rounding_name(mode) << " " << s << " * 2^" << exp << (negative ? " negative" : "");
          }
  }
}

// Significands wider than the machine word the caller holds: 128-bit ones give the bits the
// 64-bit ones give for the same value, and shifts of the whole width and more discard exactly.
TEST(RoundPack, WideSignificandsAndWholeWidthShifts) {
  using U128 = unsigned __int128;
  EXPECT_EQ(lost_fraction<std::uint64_t>(std::uint64_t{1} << 63, 64, false), LostFraction::Half);
  EXPECT_EQ(lost_fraction<std::uint64_t>(std::uint64_t{1} << 63, 64, true), LostFraction::AboveHalf);
  EXPECT_EQ(lost_fraction<std::uint64_t>((std::uint64_t{1} << 63) + 1, 64, false), LostFraction::AboveHalf);
  EXPECT_EQ(lost_fraction<std::uint64_t>(~std::uint64_t{0}, 65, false), LostFraction::BelowHalf);
  EXPECT_EQ(lost_fraction<std::uint64_t>(0, 70, false), LostFraction::Zero);
  EXPECT_EQ(lost_fraction<std::uint64_t>(0, 70, true), LostFraction::BelowHalf);
  EXPECT_EQ(lost_fraction<U128>(U128{1} << 127, 128, false), LostFraction::Half);
  for (Rounding mode : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down})
    for (const char* name : {"fp32", "e4m3", "fp16"}) {
      const detail::EncodePlan p = detail::make_encode_plan(format_by_name(name), {mode, Overflow::InfOrNan});
      for (std::uint64_t sig : {std::uint64_t{1}, std::uint64_t{3}, (std::uint64_t{1} << 63) + 1, ~std::uint64_t{0},
                                std::uint64_t{0x123456789ABCDEF1}, std::uint64_t{0x8000008000000000}})
        for (int exp : {-260, -220, -200, -190, -180, -150, -100, -64, -40, 0, 40, 64})
          for (bool negative : {false, true}) {
            const std::uint32_t narrow = round_pack(p, negative, sig, exp, false);
            EXPECT_EQ(round_pack(p, negative, U128{sig} << 60, exp - 60, false), narrow) << name << " " << sig;
            // The same value with its low half as a sticky bit below 64 kept bits (round_pack's
            // precondition: the significand is wider than the grid by two bits or more).
            if (sig < (std::uint64_t{1} << 40)) continue;
            const U128 wide = (U128{sig} << 64) | 0x5;
            EXPECT_EQ(round_pack(p, negative, wide, exp - 64, false), round_pack(p, negative, sig, exp, true))
                << name << " " << sig << " * 2^" << exp;
          }
    }
}

}  // namespace
}  // namespace fp8lab

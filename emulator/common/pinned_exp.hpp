// The double-precision exp kernel of the pinned functions (common/pinned_math.cpp) and of their
// lane twins (common/pinned_math_lanes.cpp, built once per instruction set): the constants and
// steps written once. As every header shared by dispatched sources (emulator/README.md), its code
// lies in an anonymous namespace inside fp8lab::FP8LAB_ISA_NS: each instruction-set build compiles
// its own copy, and no inline symbol is shared between builds with different flags
// (tools/check_isa_symbols.sh); pinned_math.cpp uses the isa_portable one. Only IEEE + - * / and
// std::fma (-ffp-contract=off): every build gives the same bits.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "common/isa.hpp"

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// 2^k for k in [-1022, 1023], built from its bits (exact; no libm).
inline double pow2(int k) { return std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52); }

// Cody–Waite split of ln 2: LN2_HI has 32 significant bits (so k * LN2_HI is exact for |k| < 2^21),
// LN2_LO = ln 2 - LN2_HI rounded to double. Values: ln 2 = 0x1.62e42fefa39ef35793c7673007e6p-1.
constexpr double LN2_HI = 0x1.62e42fefp-1;
constexpr double LN2_LO = 0x1.473de6af278edp-34;
constexpr double INV_LN2 = 0x1.71547652b82fep+0;
// Adding and subtracting 1.5 * 2^52 rounds a double of magnitude < 2^51 to the nearest integer
// (ties to even) using only IEEE addition in the default rounding mode.
constexpr double ROUND_MAGIC = 0x1.8p52;

// Taylor coefficients 1/n!, n = 0..13, each the double nearest to the rational (written out so the
// values do not depend on compile-time evaluation order). For |r| <= ln2/2 the truncation error
// |r|^14/14! < 2^-57.
constexpr double C[14] = {
    1.0,                      // 1/0!
    1.0,                      // 1/1!
    0x1p-1,                   // 1/2!
    0x1.5555555555555p-3,     // 1/3!
    0x1.5555555555555p-5,     // 1/4!
    0x1.1111111111111p-7,     // 1/5!
    0x1.6c16c16c16c17p-10,    // 1/6!
    0x1.a01a01a01a01ap-13,    // 1/7!
    0x1.a01a01a01a01ap-16,    // 1/8!
    0x1.71de3a556c734p-19,    // 1/9!
    0x1.27e4fb7789f5cp-22,    // 1/10!
    0x1.ae64567f544e4p-26,    // 1/11!
    0x1.1eed8eff8d898p-29,    // 1/12!
    0x1.6124613a86d09p-33,    // 1/13!
};

// exp(r) for |r| <= ~0.35 by Horner with explicit fma: about 2^-52 relative error.
inline double exp_poly(double r) {
  double p = C[13];
#pragma GCC unroll 13  // unrolled, a loop over lanes that calls it vectorises
  for (int i = 12; i >= 0; --i) p = std::fma(p, r, C[i]);
  return p;
}

// x = k ln2 + r with k = nearest integer to x/ln2 (returned as a double in kd); x - k*LN2_HI is
// exact (Sterbenz: for k != 0, x and k*LN2_HI are within a factor of two; both products are exact
// as |k| <= 1075).
inline double exp_reduce(double x, double& kd) {
  kd = (x * INV_LN2 + ROUND_MAGIC) - ROUND_MAGIC;
  return (x - kd * LN2_HI) - kd * LN2_LO;
}

// exp(x) for finite |x| <= 745.2 (caller guarantees), relative error < 2^-50 while the result is a
// normal double.
inline double exp_core(double x) {
  double kd;
  const double p = exp_poly(exp_reduce(x, kd));
  const int k = static_cast<int>(kd);
  // Scale in two exact steps so that 2^k never leaves the normal range of the factor; only the last
  // multiplication can round (when the result is subnormal).
  if (k > 1023) return p * pow2(1023) * pow2(k - 1023);
  if (k < -1022) return p * pow2(-1022) * pow2(k + 1022);
  return p * pow2(k);
}

// 1 / (1 + exp(-x)) in double for float x in [-104, 40], where exp(-x)'s k lies in [-58, 151], so
// exp_core's last step is the only one taken: written without its branches, loops of it vectorise
// (the lane twin, common/pinned_math_lanes.cpp) and give exp_core's bits.
inline double sigmoid_double(float x) {
  double kd;
  const double p = exp_poly(exp_reduce(-static_cast<double>(x), kd));
  return 1.0 / (1.0 + p * pow2(static_cast<int>(kd)));
}

// Ziv margin: the double evaluations below have relative error < 2^-49; if both ends of
// [y(1 - 2^-46), y(1 + 2^-46)] round to the same float, so does the true value. (The products
// y * MARGIN are themselves rounded, by far less than the margin's slack.)
constexpr double MARGIN = 0x1p-46;

inline bool float_rounding_certain(double y, float& out) {
  const float lo = static_cast<float>(y - y * MARGIN);
  const float hi = static_cast<float>(y + y * MARGIN);
  out = static_cast<float>(y);
  return lo == hi;
}

}  // namespace
}  // namespace fp8lab::FP8LAB_ISA_NS

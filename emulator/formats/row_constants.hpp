// Compile-time twins of format-table rows, for the code that takes float bits apart in its inner
// loops (the tensor-core model, the Hopper vector kernel, the Kulisch accumulator, the bounds),
// where a table lookup per call would cost. Each constant is derived, not restated: FP32's from
// the compiler's float (std::numeric_limits, IEEE binary32 by the static_assert below), BF16's
// from FP32 (bfloat16 is the top 16 bits of an FP32), and tests/cpp/test_row_constants.cpp checks
// every one against its row in formats/format.cpp (CUTLASS's habit: a constant written in two
// places is checked against itself). Code that is not in an inner loop reads the row instead
// (format_by_name, unit_roundoff below).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "formats/format.hpp"

namespace fp8lab {

// The unit roundoff of rounding to nearest in a format: half an ulp of 1, 2^-(mantissa_bits + 1)
// (Higham, "Accuracy and Stability of Numerical Algorithms", §2.1).
inline double unit_roundoff(const Format& f) { return std::ldexp(1.0, -(f.mantissa_bits + 1)); }

namespace binary32 {
using Limits = std::numeric_limits<float>;
static_assert(Limits::is_iec559 && Limits::radix == 2, "float must be IEEE 754 binary32");
inline constexpr int kPrecision = Limits::digits;                     // 24 significant bits
inline constexpr int kMantissaBits = kPrecision - 1;                  // 23 fraction bits
inline constexpr int kMaxExponent = Limits::max_exponent - 1;         // 127
inline constexpr int kBias = kMaxExponent;                            // 127
inline constexpr int kMinExponent = Limits::min_exponent - 1;         // -126: min normal 2^-126
inline constexpr int kMinQuantum = kMinExponent - kMantissaBits;      // -149: least subnormal 2^-149
inline constexpr std::uint32_t kFieldMax = 2u * kBias + 1u;           // 0xFF: Inf and NaN
inline constexpr std::uint32_t kHiddenBit = std::uint32_t{1} << kMantissaBits;  // 0x800000
inline constexpr std::uint32_t kFractionMask = kHiddenBit - 1u;                 // 0x7FFFFF
inline constexpr std::uint32_t kExponentMask = kFieldMax << kMantissaBits;      // 0x7F800000, +Inf
inline constexpr std::uint32_t kMagnitudeMask = kExponentMask | kFractionMask;  // 0x7FFFFFFF
inline constexpr std::uint32_t kSignMask = ~kMagnitudeMask;                      // 0x80000000
inline constexpr double kUnitRoundoff = Limits::epsilon() / 2;        // 2^-24
inline constexpr double kLeastSubnormal = Limits::denorm_min();       // 2^-149
inline constexpr double kMinNormal = Limits::min();                   // 2^-126
static_assert(kMantissaBits == 23 && kBias == 127 && kMinExponent == -126 && kMinQuantum == -149);
static_assert(kSignMask == 0x80000000u && kExponentMask == 0x7F800000u);
static_assert(kUnitRoundoff == 0x1p-24 && kLeastSubnormal == 0x1p-149 && kMinNormal == 0x1p-126);

// Unbiased exponent of a finite float's bits, subnormals (and zero) at kMinExponent
// (IEEE 754-2019 §3.4).
constexpr int exponent_of_bits(std::uint32_t u) {
  const int field = static_cast<int>((u >> kMantissaBits) & kFieldMax);
  return field != 0 ? field - kBias : kMinExponent;
}
// Integer significand of a finite float's bits: value = significand * 2^(exponent - kMantissaBits).
constexpr std::uint32_t significand_of_bits(std::uint32_t u) {
  const std::uint32_t frac = u & kFractionMask;
  return ((u >> kMantissaBits) & kFieldMax) != 0 ? (frac | kHiddenBit) : frac;
}
}  // namespace binary32

namespace bfloat16 {
inline constexpr int kPrecision = binary32::kPrecision - 16;                              // 8 significant bits
inline constexpr int kMantissaBits = kPrecision - 1;                                  // 7
inline constexpr double kUnitRoundoff = 1.0 / (2 << kMantissaBits);  // 2^-8
static_assert(kUnitRoundoff == 0x1p-8);
}  // namespace bfloat16

}  // namespace fp8lab

// Internal to accum/: the FP32 bit fields every instruction form reads, and the two ways a form
// hands its exact integer sum back (accum/fused_dot_add.cpp defines them).
#pragma once

#include <cstdint>
#include <cstring>

#include "accum/tensor_core.hpp"
#include "formats/row_constants.hpp"

namespace fp8lab::detail {

// FP32's fields (formats/row_constants.hpp: the compiler's float, checked against the fp32 row).
using binary32::kExponentMask;
using binary32::kMagnitudeMask;
using binary32::kSignMask;
// The NaN returned for any NaN outcome: sign clear, all other bits set (CUDA's canonical FP32 NaN,
// what `cvt` and the CUDA math library produce, and what MMA-Sim returns). What the MMA units
// return is open on hardware (REFERENCE.md "Open on hardware"), so only NaN-ness is modelled.
inline constexpr std::uint32_t kCanonicalNan = kMagnitudeMask;
inline constexpr std::uint32_t kPositiveInf = kExponentMask;

inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
inline bool is_nan_fp32(std::uint32_t u) { return (u & kMagnitudeMask) > kPositiveInf; }
inline bool is_inf_fp32(std::uint32_t u) { return (u & kMagnitudeMask) == kPositiveInf; }

// FP32 fields of a finite value: value = sig * 2^(exp - 23), exp the unbiased exponent with
// subnormals at -126 (IEEE 754-2019 §3.4).
inline int fp32_exponent(std::uint32_t u) { return binary32::exponent_of_bits(u); }
inline std::uint64_t fp32_significand(std::uint32_t u) { return binary32::significand_of_bits(u); }

// Right shift of a magnitude: truncation toward zero, and everything shifted out for shifts of 64
// and more (a plain >> would be undefined there).
inline std::uint64_t shift_right(std::uint64_t v, int s) { return s >= 64 ? 0 : (v >> s); }

// (negative ? -1 : 1) * mag * 2^q as FP32 bits by `rounding`, with the accumulator's conventions
// (a result of 2^128 or more is infinite, a zero is +0).
std::uint32_t accumulator_fp32(bool negative, std::uint64_t mag, int q, Rounding rounding);
// Step 5 of the fused form: an integer sum in units of 2^base, normalised to the model's output
// precision and rounding, then onto the accumulator format.
std::uint32_t normalise_sum(std::int64_t sum, int base, const TensorCoreModel& m);

// The instruction forms other than DotForm::Fused (accum/dot_forms.cpp). Scales: one value of the
// model's scale format per scale_block elements (nullptr for unscaled forms); finite, NaN checked
// by the caller.
float scaled_groups_instruction(const float* a, const float* b, const float* scale_a, const float* scale_b, float c,
                                const TensorCoreModel& m);
float paired_two_level_instruction(const float* a, const float* b, float c, const TensorCoreModel& m);

}  // namespace fp8lab::detail

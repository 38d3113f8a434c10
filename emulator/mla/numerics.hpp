// The floating-point building blocks of the MLA emulator, each with the order it sums in and the
// error constant its bound uses. Every function here is a pure function of its input bits (the
// build uses -ffp-contract=off; no libm call).
#pragma once

#include "common/bf16.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/pinned_math.hpp"
#include "formats/row_constants.hpp"
#include "mla/mla_spec.hpp"

namespace fp8lab::mla {

inline constexpr double kU32 = binary32::kUnitRoundoff;     // unit roundoff of FP32 (2^-24), round to nearest
inline constexpr double kUBf16 = bfloat16::kUnitRoundoff;  // unit roundoff of BF16 (2^-8, 8 significant bits)

// Higham's gamma_n = n u / (1 - n u) for FP32.
inline double gamma32(double n) { return n * kU32 / (1.0 - n * kU32); }

// Unit roundoff of a rounding step to `f` (0 for FP32: an FP32 result is not rounded again).
inline double unit_roundoff(MatmulFormat f) { return f == MatmulFormat::Fp32 ? 0.0 : kUBf16; }

// Rounding of a result in format f: FP8 projections produce BF16 (the GEMM's output format).
inline float round_to(MatmulFormat f, float x) { return f == MatmulFormat::Fp32 ? x : round_to_bf16(x); }

// The dot-product order of every FP32 dot in mla/: 16 lanes, lane j sums the products of the
// indices i = j (mod 16) in increasing i, each product rounded to FP32 (no FMA); then the lanes
// are added as a balanced tree ((0+1)+(2+3))+... . Vectorisable without reassociation, and the
// same bits on every machine. A product passes at most ceil(n/16) - 1 + 4 additions and one
// multiplication, so |fl(dot) - dot| <= gamma32(dot_depth(n)) * sum |a_i b_i|.
inline constexpr std::size_t kDotLanes = 16;
inline double dot_depth(std::size_t n) { return static_cast<double>((n + kDotLanes - 1) / kDotLanes + 4); }

// The last steps of dot_f32 on lanes whose full blocks of 16 are summed (lane j holds the
// products i = j mod 16 for i < full): the remaining products from index `full` on, then the tree.
// mla/attention_tile.cpp finishes its vector accumulators with it.
// The tree that ends dot_f32 (lane j = lane 2j + lane 2j+1, halving to one): the dot's value.
inline float dot_f32_tree(float* lane) {
  for (std::size_t width = kDotLanes / 2; width >= 1; width /= 2)
    for (std::size_t j = 0; j < width; ++j) lane[j] = lane[2 * j] + lane[2 * j + 1];
  return lane[0];
}

inline float dot_f32_finish(float* lane, const float* a, const float* b, std::size_t full, std::size_t n) {
  for (std::size_t j = 0; full + j < n; ++j) {
    const float p = a[full + j] * b[full + j];
    lane[j] = lane[j] + p;
  }
  return dot_f32_tree(lane);
}

inline float dot_f32(const float* a, const float* b, std::size_t n) {
  float lane[kDotLanes] = {};
  std::size_t i = 0;
  for (; i + kDotLanes <= n; i += kDotLanes)
    for (std::size_t j = 0; j < kDotLanes; ++j) {
      const float p = a[i + j] * b[i + j];
      lane[j] = lane[j] + p;
    }
  return dot_f32_finish(lane, a, b, i, n);
}

// The exponential of every bit-exact path: correctly rounded FP32 (common/pinned_math.hpp), so
// its error is at most kU32 relative.
inline float exp_pinned(float x) { return fp8lab::exp_f32(x); }
inline constexpr double kUExp = kU32;

// Natural log correctly rounded to FP32 for finite x > 0 (used for lse); see numerics.cpp.
float log_f32(float x);

}  // namespace fp8lab::mla

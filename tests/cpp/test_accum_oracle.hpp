// An independent formulation of the tensor-core model for tests (tests/cpp/test_accum*.cpp,
// property_tests/prop_accum*.cpp): written from the model's text in accum/tensor_core.hpp
// with exact big-integer arithmetic and <cmath> (frexp, ldexp) instead of FP32 bit fields, so a
// slip in fused_dot_add's bit manipulation cannot repeat itself here.
#pragma once

#include <boost/multiprecision/cpp_int.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "accum/tensor_core.hpp"

namespace fp8lab::testing {

using BigInt = boost::multiprecision::cpp_int;

// Every finite FP32 value, and every product of two, is an integer multiple of 2^-kFix.
constexpr int kFix = 400;

// x * 2^kFix as an exact integer (x finite).
inline BigInt fixed(double x) {
  if (x == 0) return 0;
  int e;
  const double m = std::frexp(std::fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
  const auto sig = static_cast<std::int64_t>(std::ldexp(m, 53));
  BigInt v = BigInt(sig);
  const int shift = e - 53 + kFix;
  v = shift >= 0 ? BigInt(v << shift) : BigInt(v >> (-shift));
  return x < 0 ? BigInt(-v) : v;
}

// floor(log2 |x|) for x != 0.
inline int ilog2(double x) {
  int e;
  std::frexp(std::fabs(x), &e);
  return e - 1;
}

inline float oracle_from_fixed_truncated(const BigInt& value_fix) {
  // value = value_fix * 2^-kFix; round toward zero to FP32 (subnormals on the 2^-149 grid),
  // infinite from 2^128.
  if (value_fix == 0) return 0.0f;
  const bool neg = value_fix < 0;
  const BigInt mag = neg ? BigInt(-value_fix) : value_fix;
  const int top = static_cast<int>(boost::multiprecision::msb(mag)) - kFix;
  if (top >= 128) return neg ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
  const int lsb = std::max(top - 23, -149);
  const BigInt kept = mag >> (lsb + kFix);
  const float r = static_cast<float>(std::ldexp(static_cast<double>(kept.convert_to<std::int64_t>()), lsb));
  if (r == 0.0f) return 0.0f;  // a zero result is +0 (the model's MMA-Sim convention)
  return neg ? -r : r;
}

// The truncating model, steps 1-6, for one instruction.
inline float oracle_truncating(const float* a, const float* b, float c, const TensorCoreModel& m,
                               const int* prod_scale = nullptr) {
  double acc = c;
  for (int start = 0; start < m.k; start += m.block) {
    // An infinite result of an earlier block (overflow) stays infinite: finite products cannot
    // cancel it.
    if (!std::isfinite(acc)) break;
    // Gather terms: (exact value * 2^kFix, alignment exponent).
    std::vector<std::pair<BigInt, int>> terms;
    for (int i = start; i < start + m.block; ++i) {
      const double x = a[i], y = b[i];
      if (x == 0 || y == 0) continue;
      const int s = prod_scale != nullptr ? prod_scale[i] : 0;
      const double p = std::ldexp(x * y, s);  // exact in double: <= 48 significant bits
      terms.emplace_back(fixed(p), std::max(ilog2(x), m.input_min_exponent) +
                                       std::max(ilog2(y), m.input_min_exponent) + s);
    }
    if (acc != 0) terms.emplace_back(fixed(acc), std::max(ilog2(acc), -126));
    if (terms.empty()) {
      acc = 0;
      continue;
    }
    int top = terms[0].second;
    for (const auto& t : terms) top = std::max(top, t.second);
    // Step 3: truncate |term| / 2^(top - F) toward zero; the unit 2^(top-F) is 2^(top-F+kFix)
    // in fixed-point units.
    const int unit = top - m.alignment_frac_bits + kFix;
    BigInt sum = 0;
    for (const auto& t : terms) {
      const bool neg = t.first < 0;
      const BigInt mag = neg ? BigInt(-t.first) : t.first;
      const BigInt q = mag >> unit;
      sum += neg ? BigInt(-q) : q;
    }
    // Step 5: keep output_precision significant bits (truncation or nearest even).
    if (sum == 0) {
      acc = 0;
      continue;
    }
    const bool neg = sum < 0;
    BigInt mag = neg ? BigInt(-sum) : sum;
    const int bits = static_cast<int>(boost::multiprecision::msb(mag)) + 1;
    int shift = 0;
    if (bits > m.output_precision) {
      shift = bits - m.output_precision;
      const BigInt kept = mag >> shift;
      const BigInt rest = mag - (kept << shift);
      BigInt rounded = kept;
      if (m.output_rounding == OutputRounding::NearestEven) {
        const BigInt half = BigInt(1) << (shift - 1);
        if (rest > half || (rest == half && (kept & 1) != 0)) rounded += 1;
      }
      mag = rounded;
    }
    const BigInt value_fix = (mag << (unit + shift)) * (neg ? -1 : 1);
    acc = oracle_from_fixed_truncated(value_fix);
  }
  return static_cast<float>(acc);
}

// The blackwell_mma_* description: exact product sum truncated to FP32, then + C in FP32 (RNE).
inline float oracle_exact_then_c(const float* a, const float* b, float c, const TensorCoreModel& m) {
  BigInt sum = 0;
  for (int i = 0; i < m.k; ++i)
    if (a[i] != 0 && b[i] != 0) sum += fixed(static_cast<double>(a[i]) * static_cast<double>(b[i]));
  const float p = oracle_from_fixed_truncated(sum);
  return p + c;
}

inline std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float from_bits(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace fp8lab::testing

// The steps of the running error bound (gemm/bounds.hpp gives the derivation) that both the
// per-element certificate (gemm/bounds.cpp) and the blocked bound kernel (gemm/bound_kernel.cpp)
// take: the same expressions, evaluated in the same order, so that the two give the same doubles.
// The functions are static (each object its own copy): dispatched sources include this header, and
// an unoptimised build, where a call is not inlined, must not link an AVX-512 copy into baseline code.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

#include "common/bf16.hpp"
#include "formats/row_constants.hpp"
#include "gemm/combine.hpp"
#include "gemm/gemm_spec.hpp"

namespace fp8lab::bound_steps {

inline constexpr double kU32 = binary32::kUnitRoundoff;    // unit roundoff of binary32, 2^-24
inline constexpr double kEta = binary32::kLeastSubnormal;  // an underflowing binary32 product errs by at most this, 2^-149
inline constexpr double kSafety = 1.0 + 0x1p-30;
inline constexpr double kInf = std::numeric_limits<double>::infinity();

struct Fp32Track {  // a binary32 value and the bound on its distance to the exact quantity
  float v;
  double err;
};

// Bound of fl32(acc + c) then of the output rounding; `err` is the bound of acc.
static inline double finish(float acc, double err, const float* c, std::size_t e, OutputFormat out) {
  float v = acc;
  if (c) {
    v = acc + c[e];
    err += kU32 * std::fabs(v);
  }
  if (out == OutputFormat::Bf16) {
    const float r = round_to_bf16(v);
    // BF16's unit roundoff 2^-8, and half its least subnormal 2^-133 below its normal range.
    err += bfloat16::kUnitRoundoff * std::fabs(r) + binary32::kMinNormal * bfloat16::kUnitRoundoff;
    v = r;
  }
  if (!std::isfinite(v)) return kInf;
  return err * kSafety;
}

// The FP32 modes' bound from the value kernel's own sums (gemm/bounds.hpp derives it): K
// products, psum = the binary32 sum of |p_k| in k order, nsum = the binary32 sum of |s_k| (sequential)
// or of |v| over the tree's internal nodes (pairwise), xsum / ysum = the binary64 sums of |x_k| /
// |y_k| in k order. Valid for K <= kFp32SumsMaxK with psum and nsum finite.
inline constexpr std::size_t kFp32SumsMaxK = std::size_t{1} << 20;
inline constexpr double kProductCoef = 3 * kU32 + 3 * kU32 * kU32 + kU32 * kU32 * kU32;  // c1, exact
inline constexpr double kProductConst = kEta * (1 + 2 * kU32);                           // c0, exact
// sums_factor = fp32_sums_factor(K), 1 / (1 - (K - 1) u), the same for every output (taken once).
static inline double fp32_sums_factor(std::size_t K) {
  return 1.0 / (1.0 - static_cast<double>(K > 0 ? K - 1 : 0) * kU32);
}
static inline double fp32_sums_bound(std::size_t K, double sums_factor, float psum, float nsum, double xsum,
                                     double ysum) {
  return (kProductCoef * psum + kU32 * nsum) * sums_factor + kEta * (1 + kU32) * (xsum + ysum) +
         static_cast<double>(K) * kProductConst;
}

// A promoted partial sum p (bound bp) meeting the scales and the accumulator in `order`
// (gemm/combine.hpp), with the bound of the new accumulator.
static inline Fp32Track combine_with_bound(Combine order, float p, double bp, float sa, float sb, Fp32Track acc) {
  const double asa = std::fabs(sa), asb = std::fabs(sb), ap = std::fabs(p);
  double err = acc.err;
  switch (order) {
    case Combine::DeepGemm: {
      const float s = sa * sb;
      const double as = std::fabs(s);
      // |s*p - sa*sb*P| <= |s|*|p - P| + |s - sa*sb|*|P|, |s - sa*sb| <= u32*|s| + eta.
      err += as * bp + (kU32 * as + kEta) * (ap + bp) + kEta;
      break;
    }
    case Combine::Triton: {
      const float q1 = p * sa, q2 = q1 * sb;
      err += kU32 * std::fabs(q2) + kEta + asb * (kU32 * std::fabs(q1) + kEta) + asa * asb * bp;
      break;
    }
    case Combine::Cublas: {
      const float q1 = p * sa;
      err += asb * (kU32 * std::fabs(q1) + kEta) + asa * asb * bp + kEta;
      break;
    }
  }
  const float v = combine_partial(order, p, sa, sb, acc.v);
  err += kU32 * std::fabs(v);
  return {v, err};
}

}  // namespace fp8lab::bound_steps

// The instruction forms beyond the fused one (accum/tensor_core.hpp, DotForm), written on
// integers after MMA-Sim's arithmetic/fdpa.py (`gst_fdpa`, `gtr_fdpa`), which its authors
// differentially tested against the GPUs (arXiv 2511.10909). NaN and Inf are the caller's
// (fused_dot_add.cpp); every value here is finite.
#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>

#include "accum/fp32_terms.hpp"
#include "formats/format.hpp"

namespace fp8lab::detail {
namespace {

constexpr int kMaxGroups = 16;
constexpr int kNone = INT_MIN / 4;  // no term: below every alignment exponent

// A value of an input format as an integer number of its quantum 2^qmin (exact).
inline std::int64_t in_quanta(float x, int qmin) {
  return static_cast<std::int64_t>(std::ldexp(static_cast<double>(x), -qmin));
}

// A scale factor as sig * 2^(exp - mantissa_bits), exp clamped below at the scale format's minimum
// normal exponent (a subnormal UE4M3 scale keeps -6 with leading zeros: MMA-Sim's
// frexp_and_normalize). A zero scale (UE4M3 0x00) has sig 0.
struct ScaleParts {
  std::int64_t sig;
  int exp;
};
ScaleParts scale_parts(float s, const Format& f) {
  if (s == 0.0f) return {0, 0};
  const int exp = std::max(std::ilogb(s), f.min_normal_exponent());
  return {static_cast<std::int64_t>(std::ldexp(static_cast<double>(s), f.mantissa_bits - exp)), exp};
}

// floor(v / 2^s) for s >= 0 (an arithmetic shift), v * 2^-s for s < 0.
inline std::int64_t floor_shift(std::int64_t v, int s) {
  if (s <= 0) return v << -s;
  return s >= 63 ? (v < 0 ? -1 : 0) : (v >> s);
}

// (negative ? -1 : 1) * mag, truncated toward zero at 2^s (s > 0) or widened (s <= 0).
inline std::int64_t trunc_shift(bool negative, std::uint64_t mag, int s) {
  const auto v = static_cast<std::int64_t>(s >= 0 ? shift_right(mag, s) : mag << -s);
  return negative ? -v : v;
}

}  // namespace

// DotForm::ScaledGroups (MMA-Sim `gst_fdpa`; tcgen05 kind::mxf4nvf4 and kind::mxf4): the k
// products fall into groups of scale_group; a group's products are summed exactly (p), and p times
// its two scales' significands is one term whose alignment exponent is the scales' exponent sum
// (not p's own magnitude), or zero_term_exponent when the group's products are all zero or a scale
// is zero; C aligns at its exponent (zero_term_exponent when zero). Terms are truncated to F
// fractional bits below the largest, summed exactly, and normalised (step 5). Magnitudes: a
// group's p * sig_a * sig_b < 2^20 for FP4 with UE4M3 scales, shifted left by at most
// F + 2 * qmin - 2 * scale mantissa bits = 27: the sum stays far inside an int64.
float scaled_groups_instruction(const float* a, const float* b, const float* scale_a, const float* scale_b, float c,
                                const TensorCoreModel& m) {
  const Format& in = format_by_name(m.input_format);
  const Format& sf = format_by_name(m.scale_format);
  const int qin = in.min_normal_exponent() - in.mantissa_bits;
  const int groups = m.k / m.scale_group;
  std::int64_t weight[kMaxGroups];
  int unit[kMaxGroups];
  int top = kNone;
  for (int g = 0; g < groups; ++g) {
    std::int64_t p = 0;
    bool any = false;
    for (int i = g * m.scale_group; i < (g + 1) * m.scale_group; ++i) {
      const std::int64_t x = in_quanta(a[i], qin), y = in_quanta(b[i], qin);
      p += x * y;
      any = any || (x != 0 && y != 0);
    }
    const int blk = g * m.scale_group / m.scale_block;
    const ScaleParts sa = scale_parts(scale_a[blk], sf), sb = scale_parts(scale_b[blk], sf);
    weight[g] = p * sa.sig * sb.sig;  // value = weight * 2^unit
    unit[g] = 2 * qin - 2 * sf.mantissa_bits + sa.exp + sb.exp;
    top = std::max(top, any && sa.sig != 0 && sb.sig != 0 ? sa.exp + sb.exp : m.zero_term_exponent);
  }
  const std::uint32_t uc = bits_of(c);
  const bool c_present = (uc & kMagnitudeMask) != 0;
  top = std::max(top, c_present ? fp32_exponent(uc) : m.zero_term_exponent);
  const int base = top - m.alignment_frac_bits;
  std::int64_t sum = 0;
  for (int g = 0; g < groups; ++g)
    sum += trunc_shift(weight[g] < 0, static_cast<std::uint64_t>(weight[g] < 0 ? -weight[g] : weight[g]),
                       base - unit[g]);
  if (c_present) sum += trunc_shift((uc & kSignMask) != 0, fp32_significand(uc), base - (fp32_exponent(uc) - 23));
  return float_of(normalise_sum(sum, base, m));
}

namespace {

// Level 1 of DotForm::PairedTwoLevel: the products at positions first, first + 2, ... of one block,
// each truncated (toward zero) to F fractional bits below the largest product exponent and summed.
// Returns the sum in units of 2^(exp - F); exp = kNone when every product is zero.
std::int64_t fused_half(const float* a, const float* b, int n, int first, const TensorCoreModel& m, int& exp) {
  exp = kNone;
  for (int i = first; i < n; i += 2) {
    const std::uint32_t ua = bits_of(a[i]), ub = bits_of(b[i]);
    if ((ua & kMagnitudeMask) == 0 || (ub & kMagnitudeMask) == 0) continue;
    exp = std::max(exp, std::max(fp32_exponent(ua), m.input_min_exponent) +
                            std::max(fp32_exponent(ub), m.input_min_exponent));
  }
  std::int64_t sum = 0;
  for (int i = first; i < n && exp != kNone; i += 2) {
    const std::uint32_t ua = bits_of(a[i]), ub = bits_of(b[i]);
    const int unit = fp32_exponent(ua) + fp32_exponent(ub) - 46;
    sum += trunc_shift(((ua ^ ub) & kSignMask) != 0, fp32_significand(ua) * fp32_significand(ub),
                       exp - m.alignment_frac_bits - unit);
  }
  return sum;
}

// One block of DotForm::PairedTwoLevel (MMA-Sim `gtr_fdpa`, AMD CDNA3 FP8 MFMA): level 1 sums the
// even and the odd positions apart (fused_half); level 2 aligns the two at the larger exponent,
// rounding each down (floor, toward -Inf) to F fractional bits; level 3 aligns that sum and C at
// the larger of their exponents -- the sum kept to F2 + 1 fractional bits, C to F, both rounded
// down, C dropped when more than F + 1 binades below -- normalises, rounds down to F2 fractional
// bits, and rounds that to the nearest FP32 (ties to even).
float paired_block(const float* a, const float* b, int n, float c, const TensorCoreModel& m) {
  const int f = m.alignment_frac_bits, f2 = m.second_frac_bits;
  int e_even, e_odd;
  const std::int64_t s_even = fused_half(a, b, n, 0, m, e_even), s_odd = fused_half(a, b, n, 1, m, e_odd);
  const int e_dot = std::max(e_even, e_odd);
  // Level 2, in units of 2^(e_dot - F).
  std::int64_t dot = 0;
  if (e_even != kNone) dot += floor_shift(s_even, e_dot - e_even);
  if (e_odd != kNone) dot += floor_shift(s_odd, e_dot - e_odd);
  // Level 3, in units of 2^(e_max - F2 - 1). A zero C has MMA-Sim's exponent -126.
  const std::uint32_t uc = bits_of(c);
  const int e_c = fp32_exponent(uc);
  const int e_max = std::max(e_dot, e_c);
  std::int64_t sum = e_dot == kNone ? 0 : floor_shift(dot, (e_max - e_dot) - (f2 + 1 - f));
  if (e_c >= e_max - f - 1) {
    const bool negative = (uc & kSignMask) != 0;
    const std::uint64_t mag = fp32_significand(uc);
    const int s = (e_max - f) - (e_c - 23);  // C in units of 2^(e_max - F), rounded down
    const std::int64_t signed_c = negative ? -static_cast<std::int64_t>(mag) : static_cast<std::int64_t>(mag);
    sum += floor_shift(signed_c, s) << (f2 + 1 - f);
  }
  if (sum == 0) return 0.0f;  // +0, whatever the signs (MMA-Sim's sums of +0 and -0)
  const bool negative = sum < 0;
  std::uint64_t mag = static_cast<std::uint64_t>(negative ? -sum : sum);
  const int unit = e_max - f2 - 1;
  const int lead = unit + std::bit_width(mag) - 1;
  const int q = std::max(lead, -126) - f2;  // the quantum of F2 fractional bits (FP32 subnormals: -126)
  if (q > unit) {
    const int s = q - unit;
    const bool rest = (mag & ((std::uint64_t{1} << s) - 1)) != 0;
    mag = (mag >> s) + (negative && rest ? 1 : 0);  // floor: a negative value's magnitude rounds up
    return float_of(accumulator_fp32(negative, mag, q, Rounding::NearestEven));
  }
  return float_of(accumulator_fp32(negative, mag, unit, Rounding::NearestEven));
}

}  // namespace

float paired_two_level_instruction(const float* a, const float* b, float c, const TensorCoreModel& m) {
  float acc = c;
  for (int start = 0; start < m.k; start += m.block) acc = paired_block(a + start, b + start, m.block, acc, m);
  return acc;
}

}  // namespace fp8lab::detail

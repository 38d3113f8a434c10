// Per-instruction error terms: see instruction_bound.hpp. Each bound follows the arithmetic of its
// form as accum/ writes it (MMA-Sim's st_fdpa, gst_fdpa and gtr_fdpa, arXiv 2511.10909): every step
// that drops bits contributes the largest amount it can drop, and nothing when the value it
// processes is already on the step's grid.
#include "gemm/instruction_bound.hpp"

#include <algorithm>
#include <climits>
#include <cmath>

#include "formats/format.hpp"
#include "formats/row_constants.hpp"

namespace fp8lab {
namespace {

constexpr int kNone = INT_MIN / 4;  // no term: below every alignment exponent
constexpr int kMaxTerms = 64;

// floor(log2|x|) clamped below at emin (x != 0): the alignment exponent of an operand or of C.
int clamped(double x, int emin) { return std::max(std::ilogb(x), emin); }

// True when v is not a multiple of 2^ue (truncating it there drops something).
bool off_grid(double v, int ue) {
  const double q = std::ldexp(std::fabs(v), -ue);
  return q != std::floor(q);
}

// Step 4: normalisation truncates to P significant bits (one ULP_P of the result, which keeps the
// leading bit); a result below 2^-125 may land on FP32's subnormal grid (2^-149 more).
double normalisation_error(float d, int precision) {
  double e = 0.0;
  if (d != 0) e += std::ldexp(1.0, std::ilogb(d) + 1 - precision);
  if (std::fabs(d) < 2 * binary32::kMinNormal) e += binary32::kLeastSubnormal;
  return e;
}

}  // namespace

// Step 2 of the scaled forms. The aligned terms: DotForm::Fused (ST-FDPA) aligns each product at its
// operands' clamped exponents plus its two UE8M0 scale exponents; DotForm::ScaledGroups (GST-FDPA)
// sums each group of scale_group products exactly and aligns the group sum times its scales at the
// scales' exponent sum (each clamped at the scale format's minimum normal exponent). A zero product
// (group), a zero scale or a zero C aligns at zero_term_exponent; C at its FP32 exponent. Every term
// is truncated at u = 2^(top - F): < u each, 0 on the grid. Term values are exact in binary64 (at most
// 64 products of <= 4-bit significands, scales of <= 4 bits).
double scaled_instruction_error(const float* a, const float* b, const float* sa, const float* sb, float c, float d,
                                const TensorCoreModel& m) {
  const bool groups = m.form == DotForm::ScaledGroups;
  const int width = groups ? m.scale_group : 1;  // products per aligned term
  const int scale_emin = format_by_name(m.scale_format).min_normal_exponent();
  double term[kMaxTerms + 1];
  int count = 0, top = kNone;
  for (int t0 = 0; t0 < m.k; t0 += width) {
    const int blk = t0 / m.scale_block;
    double v = 0.0;
    bool any = false;
    for (int t = t0; t < t0 + width; ++t) {
      if (a[t] == 0 || b[t] == 0) continue;
      v += static_cast<double>(a[t]) * b[t];
      any = true;
    }
    const bool present = any && sa[blk] != 0 && sb[blk] != 0;
    int align = kNone;
    if (present && groups) {
      align = clamped(sa[blk], scale_emin) + clamped(sb[blk], scale_emin);
    } else if (present) {  // one product: its operands' exponents and its UE8M0 scales' exponents
      align = clamped(a[t0], m.input_min_exponent) + clamped(b[t0], b_input_min_exponent(m)) + std::ilogb(sa[blk]) +
              std::ilogb(sb[blk]);
    }
    top = std::max(top, present ? align : m.zero_term_exponent);
    term[count++] = v * sa[blk] * sb[blk];
  }
  top = std::max(top, c != 0 ? clamped(c, binary32::kMinExponent) : m.zero_term_exponent);
  term[count++] = c;
  double err = 0.0;
  if (top != kNone) {
    const int ue = top - m.alignment_frac_bits;
    for (int t = 0; t < count; ++t)
      if (off_grid(term[t], ue)) err += std::ldexp(1.0, ue);
  }
  return err + normalisation_error(d, m.output_precision);
}

// DotForm::PairedTwoLevel (accum/dot_forms.cpp paired_block), level by level:
//   1. each half (even / odd positions) truncates its products at 2^(e_half - F): < that per product
//      off the grid;
//   2. the half with the smaller exponent is floored at 2^(e_dot - F): < 2^(e_dot - F);
//   3. the dot sum is floored at 2^(e_max - F2 - 1) when it shifts right (< that), C at 2^(e_max - F)
//      (< that, 0 on the grid), or C is dropped when more than F + 1 binades below (|C|);
//   4. the sum is floored to F2 fraction bits below its leading bit, which the result keeps
//      (< 2^(max(e(D), -126) - F2)), then rounded to the nearest FP32 (u32 * |D|, or half the least
//      subnormal; 2^-149 covers a sum that rounds to zero).
double paired_block_error(const float* a, const float* b, int n, float c, float d, const TensorCoreModel& m) {
  const int f = m.alignment_frac_bits, f2 = m.second_frac_bits, emin = m.input_min_exponent;
  double err = 0.0;
  int e_half[2] = {kNone, kNone};
  for (int h = 0; h < 2; ++h) {
    for (int i = h; i < n; i += 2)
      if (a[i] != 0 && b[i] != 0) e_half[h] = std::max(e_half[h], clamped(a[i], emin) + clamped(b[i], emin));
    if (e_half[h] == kNone) continue;
    for (int i = h; i < n; i += 2)
      if (off_grid(static_cast<double>(a[i]) * b[i], e_half[h] - f)) err += std::ldexp(1.0, e_half[h] - f);
  }
  const int e_dot = std::max(e_half[0], e_half[1]);
  if (e_half[0] != kNone && e_half[1] != kNone && e_half[0] != e_half[1]) err += std::ldexp(1.0, e_dot - f);
  const int e_c = c != 0 ? clamped(c, binary32::kMinExponent) : binary32::kMinExponent;
  const int e_max = std::max(e_dot, e_c);
  if (e_dot != kNone && (e_max - e_dot) - (f2 + 1 - f) > 0) err += std::ldexp(1.0, e_max - f2 - 1);
  if (e_c >= e_max - f - 1) {
    if (off_grid(c, e_max - f)) err += std::ldexp(1.0, e_max - f);
  } else {
    err += std::fabs(c);
  }
  const int lead = d != 0 ? std::max(std::ilogb(d), binary32::kMinExponent) : binary32::kMinExponent;
  return err + std::ldexp(1.0, lead - f2) + binary32::kUnitRoundoff * std::fabs(d) + binary32::kLeastSubnormal;
}

}  // namespace fp8lab

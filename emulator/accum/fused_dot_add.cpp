// The arithmetic of one tensor-core instruction, written once against TensorCoreModel's
// parameters (the model's steps are numbered in accum/tensor_core.hpp). Integer arithmetic
// on the FP32 bit patterns: a product of two 24-bit significands is exact in 48 bits, the aligned
// terms fit in F + 2 bits, and the sum of at most 65 of them fits an int64 for every preset
// (F <= 46 is checked by tests/cpp/test_accum.cpp). (A variant on 32-bit lanes with
// input-format significands measured 3x slower with GCC 12 -O3 -march=native.)
// NaN and infinite operands take a separate, slower path. Precondition (unchecked: this is the
// GEMM emulator's inner loop): a and b hold values of the model's input format; fp8lab.dot and
// the GEMM operand checks enforce it before calling.
#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>

#include "accum/fp32_terms.hpp"
#include "accum/tensor_core.hpp"
#include "formats/format.hpp"
#include "formats/round_pack.hpp"
#include "formats/row_constants.hpp"

namespace fp8lab {
namespace {

constexpr int kMaxBlock = 64;
using detail::bits_of;
using detail::float_of;
using detail::fp32_exponent;
using detail::fp32_significand;
using detail::kCanonicalNan;
using detail::kExponentMask;
using detail::kMagnitudeMask;
using detail::kPositiveInf;
using detail::kSignMask;
using detail::shift_right;
constexpr int kM32 = binary32::kMantissaBits;

const detail::EncodePlan& accumulator_plan_for(AccumulatorFormat f, OutputRounding rounding);

// Step 2: C's alignment exponent. An FP16 accumulator's subnormals keep FP16's minimum exponent
// (-14, the fp16 row's; MMA-Sim's frexp_and_normalize of an fp16 C), as input subnormals keep theirs.
inline int c_alignment_exponent(std::uint32_t uc, const TensorCoreModel& m) {
  const int x = fp32_exponent(uc);
  if (m.accumulator != AccumulatorFormat::Fp16) return x;
  return std::max(x, accumulator_plan_for(AccumulatorFormat::Fp16, m.output_rounding).emin);
}

// The accumulator format's row for round_pack, with the published models' conventions: a result
// of 2^emax+1 or more after rounding is infinite whatever the rounding (the MATLAB models'
// Generic_BFMA_TC.m and GEMM.m do so for truncation too), and a sum rounded to zero is +0 whatever
// its sign (MMA-Sim's "-0.0 to +0.0", mmasim arithmetic/fdpa.py, differentially tested against
// GPUs; the MATLAB models would keep -0, and REFERENCE.md lists signed zeros as open on hardware).
detail::EncodePlan accumulator_plan(const char* format, OutputRounding rounding) {
  detail::EncodePlan p = detail::make_encode_plan(format_by_name(format), {rounding, Overflow::InfOrNan});
  p.overflow_pos = p.overflow_neg = p.inf_code;
  p.signed_zero = false;
  return p;
}

// The plans, worked out once, for every Rounding (the presets use TowardZero and NearestEven).
const detail::EncodePlan& accumulator_plan_for(AccumulatorFormat f, OutputRounding rounding) {
  struct Plans {
    detail::EncodePlan fp32[5], fp16[5];
  };
  static const Plans kPlans = [] {
    Plans p;
    for (Rounding r : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down, Rounding::Stochastic}) {
      p.fp32[static_cast<int>(r)] = accumulator_plan("fp32", r);
      p.fp16[static_cast<int>(r)] = accumulator_plan("fp16", r);
    }
    return p;
  }();
  const int r = static_cast<int>(rounding);
  return f == AccumulatorFormat::Fp16 ? kPlans.fp16[r] : kPlans.fp32[r];
}

// mag * 2^q (+ sticky below mag's last bit) as FP32 bits with the given rounding.
template <class U>
std::uint32_t compose_fp32(bool negative, U mag, int q, OutputRounding rounding, bool sticky = false) {
  return round_pack(accumulator_plan_for(AccumulatorFormat::Fp32, rounding), negative, mag, q, sticky);
}

// mag * 2^q rounded onto FP16's grid (IEEE binary16: 11 significant bits, quantum 2^-24),
// returned as the FP32 bits of that value (exact); from 2^16 after rounding the result is infinite.
std::uint32_t compose_fp16(bool negative, std::uint64_t mag, int q, OutputRounding rounding) {
  const detail::EncodePlan& p = accumulator_plan_for(AccumulatorFormat::Fp16, rounding);
  const std::uint32_t h = round_pack(p, negative, mag, q, false);
  const std::uint32_t sign = (h & p.sign_bit) != 0 ? kSignMask : 0u;
  const std::uint32_t bits = h & ~p.sign_bit;
  if (bits == p.inf_code) return kPositiveInf | sign;  // overflow gives Inf, never NaN
  // value = sig * 2^(qmin + max(field, 1) - 1): at most 11 bits, exact in FP32.
  const std::uint32_t field = bits >> p.m, hidden = std::uint32_t{1} << p.m;
  const std::uint64_t sig = field != 0 ? ((bits & (hidden - 1u)) | hidden) : bits;
  return compose_fp32(sign != 0, sig, p.qmin + static_cast<int>(std::max(field, 1u)) - 1, Rounding::TowardZero);
}

// NaN and infinity (the MATLAB models' GEMM.m, which MMA-Sim agrees with): any NaN operand, or an
// infinite product with a zero factor, or infinities of both signs, give NaN; otherwise an
// infinity among the terms is the result. Returns false when every operand is finite.
bool non_finite_result(const float* a, const float* b, int n, float c, std::uint32_t& out) {
  bool found = (bits_of(c) & kExponentMask) == kExponentMask;
  for (int i = 0; i < n && !found; ++i)
    found = (bits_of(a[i]) & kExponentMask) == kExponentMask || (bits_of(b[i]) & kExponentMask) == kExponentMask;
  if (!found) return false;
  bool pos_inf = false, neg_inf = false, nan = false;
  auto classify = [&](std::uint32_t u, bool term_is_nan) {
    if (term_is_nan) {
      nan = true;
    } else if ((u & kMagnitudeMask) == kPositiveInf) {
      ((u & kSignMask) ? neg_inf : pos_inf) = true;
    }
  };
  for (int i = 0; i < n; ++i) {
    const std::uint32_t ua = bits_of(a[i]), ub = bits_of(b[i]);
    const bool a_nan = (ua & kMagnitudeMask) > kPositiveInf, b_nan = (ub & kMagnitudeMask) > kPositiveInf;
    const bool a_inf = (ua & kMagnitudeMask) == kPositiveInf, b_inf = (ub & kMagnitudeMask) == kPositiveInf;
    const bool a_zero = (ua & kMagnitudeMask) == 0, b_zero = (ub & kMagnitudeMask) == 0;
    if (a_nan || b_nan || (a_inf && b_zero) || (b_inf && a_zero)) {
      nan = true;
    } else if (a_inf || b_inf) {
      classify(kPositiveInf | ((ua ^ ub) & kSignMask), false);
    }
  }
  const std::uint32_t uc = bits_of(c);
  classify(uc, (uc & kMagnitudeMask) > kPositiveInf);
  // `found` means some operand is NaN or infinite, so one of the two branches applies.
  out = (nan || (pos_inf && neg_inf)) ? kCanonicalNan : (kPositiveInf | (neg_inf ? kSignMask : 0u));
  return true;
}

// One exact term: value = (negative ? -1 : 1) * sig * 2^unit, with alignment exponent `align`.
struct Term {
  std::uint64_t sig;
  int unit;
  int align;
  bool negative;
};

// Steps 1-2: the non-zero terms of one block. Returns how many; `top` gets their largest
// alignment exponent.
int gather_terms(const float* a, const float* b, int n, float c, const TensorCoreModel& m, const int* prod_scale,
                 Term* terms, int& top) {
  // (c is passed as 0 by the caller when C is added after the products.)
  int count = 0;
  top = INT_MIN;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t ua = bits_of(a[i]), ub = bits_of(b[i]);
    if ((ua & kMagnitudeMask) == 0 || (ub & kMagnitudeMask) == 0) continue;  // zero products take no part
    const int xa = fp32_exponent(ua), xb = fp32_exponent(ub);
    const int scale = prod_scale != nullptr ? prod_scale[i] : 0;
    // Step 1: the clamp makes an input-format subnormal keep the format's minimum exponent, with
    // leading zeros in its significand (MMA-Sim §4; Generic_BFMA_TC.m `max(a_exp, emin_input)`).
    const int align = std::max(xa, m.input_min_exponent) + std::max(xb, b_input_min_exponent(m)) + scale;
    terms[count++] = Term{fp32_significand(ua) * fp32_significand(ub), xa + xb - 2 * kM32 + scale, align,
                          ((ua ^ ub) & kSignMask) != 0};
    top = std::max(top, align);
  }
  const std::uint32_t uc = bits_of(c);
  if ((uc & kMagnitudeMask) != 0) {
    const int xc = fp32_exponent(uc);
    const int align = c_alignment_exponent(uc, m);
    terms[count++] = Term{fp32_significand(uc), xc - kM32, align, (uc & kSignMask) != 0};
    top = std::max(top, align);
  }
  return count;
}

// Step 5: sum (in units of 2^base) normalised to output_precision significant bits, then FP32.
std::uint32_t normalise(std::int64_t sum, int base, const TensorCoreModel& m) {
  if (sum == 0) return 0u;
  const bool negative = sum < 0;
  std::uint64_t mag = negative ? static_cast<std::uint64_t>(-sum) : static_cast<std::uint64_t>(sum);
  // FP16 accumulators: one rounding onto FP16's grid (its 11 bits are the output precision), so
  // FP16 subnormals are not rounded twice.
  if (m.accumulator == AccumulatorFormat::Fp16) return compose_fp16(negative, mag, base, m.output_rounding);
  // output_precision significant bits, with no exponent range of their own.
  const Rounded<std::uint64_t> r =
      round_to_grid(negative, mag, base, false, m.output_precision, INT_MIN / 2, m.output_rounding);
  // At most 24 significant bits remain, so only FP32 subnormals and overflow round again; the
  // published models truncate there too (Generic_BFMA_TC.m, `subnormalsignificand`).
  return compose_fp32(negative, r.sig, r.exp, m.output_rounding);
}

// Steps 1-5 for the truncating models, without branches over the products so that the two
// passes vectorise: a zero product has significand 0 and is kept out of the maximum by a select.
// Returns false when an operand is NaN or infinite (non_finite_result handles those).
constexpr int kNoTerm = kNoZeroTerm;

bool truncated_block(const float* a, const float* b, int n, float c, const TensorCoreModel& m, const int* prod_scale,
                     std::uint32_t& out) {
  std::uint64_t sig[kMaxBlock];
  int unit[kMaxBlock];
  std::uint64_t neg[kMaxBlock];
  int top = kNoTerm;
  std::uint32_t special = 0;
  const int emin = m.input_min_exponent, emin_b = b_input_min_exponent(m);
  for (int i = 0; i < n; ++i) {
    const std::uint32_t ua = bits_of(a[i]), ub = bits_of(b[i]);
    constexpr int kFieldMax = static_cast<int>(binary32::kFieldMax);
    const int fa = static_cast<int>(ua >> kM32) & kFieldMax, fb = static_cast<int>(ub >> kM32) & kFieldMax;
    special |= static_cast<std::uint32_t>(fa == kFieldMax) | static_cast<std::uint32_t>(fb == kFieldMax);
    // FP32 exponent with subnormals at -126; significand with the implicit bit when normal.
    const int xa = std::max(fa, 1) - binary32::kBias, xb = std::max(fb, 1) - binary32::kBias;
    const std::uint64_t ma = (ua & binary32::kFractionMask) | (static_cast<std::uint32_t>(fa != 0) << kM32);
    const std::uint64_t mb = (ub & binary32::kFractionMask) | (static_cast<std::uint32_t>(fb != 0) << kM32);
    const int scale = prod_scale != nullptr ? prod_scale[i] : 0;
    sig[i] = ma * mb;
    unit[i] = xa + xb - 2 * kM32 + scale;
    neg[i] = ((ua ^ ub) >> 31) & 1u;
    // Step 1: the clamp gives an input-format subnormal the format's minimum exponent, with
    // leading zeros in its significand (MMA-Sim; Generic_BFMA_TC.m `max(a_exp, emin_input)`).
    const int align = std::max(xa, emin) + std::max(xb, emin_b) + scale;
    top = std::max(top, sig[i] != 0 ? align : m.zero_term_exponent);  // kNoTerm unless the model says
  }
  const std::uint32_t uc = bits_of(c);
  if (special != 0 || (uc & kExponentMask) == kExponentMask) return false;
  const bool c_present = (uc & kMagnitudeMask) != 0;
  const int xc = c_alignment_exponent(uc, m);
  top = std::max(top, c_present ? xc : m.zero_term_exponent);  // step 2
  if (top == kNoTerm) {
    out = 0u;  // +0 for all-zero terms, as in the published models
    return true;
  }
  // Step 3: units of 2^base; the shift is >= 46 - F >= 0 for every non-zero product (top >= its
  // alignment exponent >= its unit + 46), and is clamped for zero products, whose significand is 0.
  const int base = top - m.alignment_frac_bits;
  std::int64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    const int s = std::clamp(base - unit[i], 0, 63);
    const std::uint64_t v = sig[i] >> s;
    sum += static_cast<std::int64_t>((v ^ (0 - neg[i])) + neg[i]);  // magnitude truncated, then signed
  }
  if (c_present) {
    // s < 0 only when F > 23 and C has the largest exponent: a left shift by at most F - 23.
    const int s = base - (fp32_exponent(uc) - kM32);
    const std::uint64_t mc = fp32_significand(uc);
    const auto v = static_cast<std::int64_t>(s >= 0 ? shift_right(mc, s) : mc << (-s));
    sum += (uc & kSignMask) != 0 ? -v : v;
  }
  out = normalise(sum, base, m);  // steps 4-5
  return true;
}

// Steps 3-5 over gathered terms (the path for C added after the products).
std::uint32_t truncated_sum(const Term* terms, int count, int top, const TensorCoreModel& m) {
  const int base = top - m.alignment_frac_bits;
  std::int64_t sum = 0;
  for (int i = 0; i < count; ++i) {
    const int s = base - terms[i].unit;
    const std::uint64_t mag = s >= 0 ? shift_right(terms[i].sig, s) : terms[i].sig << (-s);
    const auto v = static_cast<std::int64_t>(mag);
    sum += terms[i].negative ? -v : v;
  }
  return normalise(sum, base, m);
}

// The exact alternative: the exact sum of the exact terms, rounded once to FP32 with the
// model's output rounding. 128-bit integers hold it when the terms span fewer than 120 bits (always for
// FP8 products without a far-away C); otherwise an arbitrary-precision integer does.
std::uint32_t exact_sum(const Term* terms, int count, OutputRounding rounding) {
  int lo = INT_MAX, hi = INT_MIN;
  for (int i = 0; i < count; ++i) {
    lo = std::min(lo, terms[i].unit);
    hi = std::max(hi, terms[i].unit + 64 - std::countl_zero(terms[i].sig));
  }
  if (hi - lo <= 56) {
    // Up to 65 terms below 2^56 each: the sum stays below 2^63 (E4M3 products span 36 bits).
    std::int64_t sum = 0;
    for (int i = 0; i < count; ++i) {
      const auto v = static_cast<std::int64_t>(terms[i].sig << (terms[i].unit - lo));
      sum += terms[i].negative ? -v : v;
    }
    if (sum == 0) return 0u;
    const bool negative = sum < 0;
    return compose_fp32(negative, negative ? static_cast<std::uint64_t>(-sum) : static_cast<std::uint64_t>(sum), lo,
                        rounding);
  }
  if (hi - lo < 120) {
    __int128 sum = 0;
    for (int i = 0; i < count; ++i) {
      const __int128 v = static_cast<__int128>(terms[i].sig) << (terms[i].unit - lo);
      sum += terms[i].negative ? -v : v;
    }
    if (sum == 0) return 0u;
    const bool negative = sum < 0;
    return compose_fp32(negative, negative ? static_cast<unsigned __int128>(-sum) : static_cast<unsigned __int128>(sum),
                        lo, rounding);
  }
  using boost::multiprecision::cpp_int;
  cpp_int sum = 0;
  for (int i = 0; i < count; ++i) {
    cpp_int v = cpp_int(terms[i].sig) << (terms[i].unit - lo);
    if (terms[i].negative) v = -v;
    sum += v;
  }
  if (sum == 0) return 0u;
  const bool negative = sum < 0;
  cpp_int mag = negative ? cpp_int(-sum) : sum;
  int q = lo;
  bool sticky = false;
  const auto bits = static_cast<int>(boost::multiprecision::msb(mag)) + 1;
  if (bits > 64) {
    // Keep 64 bits, 40 more than FP32 keeps, and whether anything non-zero lies below them.
    const int s = bits - 64;
    sticky = boost::multiprecision::lsb(mag) < static_cast<unsigned>(s);
    mag >>= s;
    q += s;
  }
  return compose_fp32(negative, mag.convert_to<std::uint64_t>(), q, rounding, sticky);
}

float one_block(const float* a, const float* b, int n, float c, const TensorCoreModel& m, const int* prod_scale) {
  std::uint32_t out;
  if (!m.exact_sum && !m.c_after_products && truncated_block(a, b, n, c, m, prod_scale, out)) return float_of(out);
  std::uint32_t special;
  if (non_finite_result(a, b, n, c, special)) return float_of(special);
  Term terms[kMaxBlock + 1];
  int top;
  const int count = gather_terms(a, b, n, m.c_after_products ? 0.0f : c, m, prod_scale, terms, top);
  std::uint32_t sum = 0u;  // +0 for all-zero terms, as in the published models
  if (count != 0) sum = m.exact_sum ? exact_sum(terms, count, m.output_rounding) : truncated_sum(terms, count, top, m);
  // C after the products: one FP32 addition, nearest even (the build keeps -ffp-contract=off and
  // the default rounding mode, so this is IEEE 754 addition).
  return m.c_after_products ? float_of(sum) + c : float_of(sum);
}

float instruction(const float* a, const float* b, float c, const TensorCoreModel& m, const int* prod_scale) {
  if (m.form == DotForm::PairedTwoLevel) {
    std::uint32_t special;
    if (non_finite_result(a, b, m.k, c, special)) return float_of(special);
    return detail::paired_two_level_instruction(a, b, c, m);
  }
  // Step 6: blocks in sequence, each consuming the previous result as C.
  float acc = c;
  for (int start = 0; start < m.k; start += m.block)
    acc = one_block(a + start, b + start, m.block, acc, m, prod_scale != nullptr ? prod_scale + start : nullptr);
  return acc;
}

}  // namespace

float fused_dot_add(const float* a, const float* b, float c, const TensorCoreModel& model) {
  if (model.form == DotForm::ScaledGroups) {  // its scales are part of the arithmetic: unit scales
    float ones[kMaxBlock];
    std::fill(ones, ones + kMaxBlock, 1.0f);
    return fused_dot_add_scaled(a, b, ones, ones, c, model);
  }
  return instruction(a, b, c, model, nullptr);
}

float fused_dot_add_scaled(const float* a, const float* b, const float* scale_a, const float* scale_b, float c,
                           const TensorCoreModel& model) {
  if (model.scale_block <= 0)
    throw std::invalid_argument(std::string("model: preset '") + model.name +
                                "' is not block-scaled (use fused_dot_add, or a *_mx preset)");
  const int nblk = model.k / model.scale_block;
  for (int j = 0; j < nblk; ++j)
    if (std::isnan(scale_a[j]) || std::isnan(scale_b[j])) return float_of(kCanonicalNan);
  if (model.form == DotForm::ScaledGroups) {
    std::uint32_t special;
    if (non_finite_result(a, b, model.k, c, special)) return float_of(special);
    return detail::scaled_groups_instruction(a, b, scale_a, scale_b, c, model);
  }
  // Fused (ST-FDPA): UE8M0 scales are powers of two, whose exponents join the products'.
  int prod_scale[kMaxBlock];
  for (int i = 0; i < model.k; ++i) {
    const int blk = i / model.scale_block;
    prod_scale[i] = std::ilogb(scale_a[blk]) + std::ilogb(scale_b[blk]);
  }
  return instruction(a, b, c, model, prod_scale);
}

float fused_dot_add_block_scaled(const float* a, const float* b, const int* scale_a_exp, const int* scale_b_exp,
                                 float c, const TensorCoreModel& model) {
  float sa[kMaxBlock], sb[kMaxBlock];
  const int nblk = model.scale_block > 0 ? model.k / model.scale_block : 0;
  for (int j = 0; j < nblk; ++j) {
    sa[j] = std::ldexp(1.0f, scale_a_exp[j]);  // 2^-127 is an FP32 subnormal: exact
    sb[j] = std::ldexp(1.0f, scale_b_exp[j]);
  }
  return fused_dot_add_scaled(a, b, sa, sb, c, model);
}

namespace detail {

std::uint32_t accumulator_fp32(bool negative, std::uint64_t mag, int q, Rounding rounding) {
  return compose_fp32(negative, mag, q, rounding);
}

std::uint32_t normalise_sum(std::int64_t sum, int base, const TensorCoreModel& m) { return normalise(sum, base, m); }

}  // namespace detail

}  // namespace fp8lab

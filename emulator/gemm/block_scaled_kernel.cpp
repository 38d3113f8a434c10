// Block-scaled GEMM fast path: see block_scaled_kernel.hpp. The per-instruction arithmetic is
// accum/fused_dot_add.cpp truncated_block (DotForm::Fused) and accum/dot_forms.cpp
// scaled_groups_instruction (DotForm::ScaledGroups) on operands decoded once, in the same order of
// operations, so every intermediate integer is the same.
#include "gemm/block_scaled_kernel.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "accum/fp32_terms.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/format.hpp"

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): each build in its
// own namespace; the entry point at the end chooses one at run time.
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using detail::bits_of;
using detail::float_of;
using detail::fp32_exponent;
using detail::fp32_significand;
using detail::kExponentMask;
using detail::kMagnitudeMask;
using detail::kSignMask;
using detail::shift_right;
constexpr int kMaxK = 64;
constexpr int kM32 = 23;  // FP32 fraction bits (accum/fp32_terms.hpp's fields)

// One operand decoded once, rows padded with zeros to whole instructions (TMA's out-of-bounds fill,
// as the chain's zero padding). Fused: per element significand (0 for zero), FP32 exponent
// (subnormals -126), that exponent clamped at the input format's minimum, sign; per scale block the
// UE8M0 exponent. ScaledGroups: per element the value in quanta of the input format; per scale
// block the scale's significand and (clamped) exponent.
struct Decoded {
  std::size_t kp = 0, nblk = 0;  // padded K, scale blocks per row
  std::vector<std::uint32_t> sig;
  std::vector<std::int16_t> ex, cl, quanta;
  std::vector<std::uint8_t> neg;
  std::vector<std::int64_t> ssig;
  std::vector<std::int32_t> sexp;
  std::vector<std::uint8_t> finite;  // per row: no NaN or Inf element
};

// fmt, emin: the operand's input format and minimum exponent (A's or B's, tensor_core.hpp).
Decoded decode(const GemmOperand& x, const TensorCoreModel& m, std::size_t kp, const char* fmt, int emin) {
  const bool groups = m.form == DotForm::ScaledGroups;
  const Format& in = format_by_name(fmt);
  const Format& sf = format_by_name(m.scale_format);
  const int qin = in.min_normal_exponent() - in.mantissa_bits;
  const auto sb = static_cast<std::size_t>(m.scale_block);
  Decoded d;
  d.kp = kp;
  d.nblk = kp / sb;
  const std::size_t n = x.rows * kp;
  if (groups) {
    d.quanta.assign(n, 0);
  } else {
    d.sig.assign(n, 0);
    d.ex.assign(n, 0);
    d.cl.assign(n, 0);
    d.neg.assign(n, 0);
  }
  d.ssig.assign(x.rows * d.nblk, 0);
  d.sexp.assign(x.rows * d.nblk, 0);
  d.finite.assign(x.rows, 1);
  parallel_for(x.rows, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      for (std::size_t t = 0; t < x.cols; ++t) {
        const float v = x.row(r)[t];
        const std::uint32_t u = bits_of(v);
        if ((u & kExponentMask) == kExponentMask) d.finite[r] = 0;
        const std::size_t e = r * kp + t;
        if (groups) {
          d.quanta[e] = static_cast<std::int16_t>(std::ldexp(static_cast<double>(v), -qin));
        } else {
          const int f = static_cast<int>((u >> kM32) & 0xFFu);
          d.sig[e] = (u & 0x7FFFFFu) | (static_cast<std::uint32_t>(f != 0) << kM32);
          d.ex[e] = static_cast<std::int16_t>(std::max(f, 1) - 127);
          d.cl[e] = static_cast<std::int16_t>(std::max<int>(d.ex[e], emin));
          d.neg[e] = static_cast<std::uint8_t>(u >> 31);
        }
      }
      // A block that starts past K holds zeros only: its scale never reaches the arithmetic.
      for (std::size_t blk = 0; blk * sb < x.cols && blk < d.nblk; ++blk) {
        const float s = x.scale(r, blk * sb);
        const std::size_t e = r * d.nblk + blk;
        if (!groups) {
          d.sexp[e] = std::ilogb(s);  // UE8M0: a power of two (validated)
        } else if (s != 0.0f) {     // accum/dot_forms.cpp scale_parts
          d.sexp[e] = std::max(std::ilogb(s), sf.min_normal_exponent());
          d.ssig[e] = static_cast<std::int64_t>(std::ldexp(static_cast<double>(s), sf.mantissa_bits - d.sexp[e]));
        }
      }
    }
  });
  return d;
}

// One DotForm::Fused instruction (block == k) of products t0 .. t0 + k of rows ia and jb; false when
// C is not finite (the chain's non-finite path takes over).
bool fused_step(const Decoded& A, std::size_t ia, const Decoded& B, std::size_t jb, std::size_t t0, float c,
                const TensorCoreModel& m, float& out) {
  std::uint64_t sig[kMaxK], neg[kMaxK];
  int unit[kMaxK];
  int top = kNoZeroTerm;
  const std::size_t sb = static_cast<std::size_t>(m.scale_block), k = static_cast<std::size_t>(m.k);
  const std::size_t ea = ia * A.kp + t0, eb = jb * B.kp + t0;
  for (std::size_t b0 = 0; b0 < k; b0 += sb) {
    const int scale = A.sexp[ia * A.nblk + (t0 + b0) / sb] + B.sexp[jb * B.nblk + (t0 + b0) / sb];
    for (std::size_t t = b0; t < b0 + sb; ++t) {
      sig[t] = static_cast<std::uint64_t>(A.sig[ea + t]) * B.sig[eb + t];
      unit[t] = A.ex[ea + t] + B.ex[eb + t] - 2 * kM32 + scale;
      neg[t] = A.neg[ea + t] ^ B.neg[eb + t];
      const int align = A.cl[ea + t] + B.cl[eb + t] + scale;
      top = std::max(top, sig[t] != 0 ? align : m.zero_term_exponent);
    }
  }
  const std::uint32_t uc = bits_of(c);
  if ((uc & kExponentMask) == kExponentMask) return false;
  const bool c_present = (uc & kMagnitudeMask) != 0;
  top = std::max(top, c_present ? fp32_exponent(uc) : m.zero_term_exponent);
  if (top == kNoZeroTerm) {
    out = 0.0f;
    return true;
  }
  const int base = top - m.alignment_frac_bits;
  std::int64_t sum = 0;
  for (std::size_t t = 0; t < k; ++t) {
    const std::uint64_t v = sig[t] >> std::clamp(base - unit[t], 0, 63);
    sum += static_cast<std::int64_t>((v ^ (0 - neg[t])) + neg[t]);
  }
  if (c_present) {
    const int s = base - (fp32_exponent(uc) - kM32);
    const std::uint64_t mc = fp32_significand(uc);
    const auto v = static_cast<std::int64_t>(s >= 0 ? shift_right(mc, s) : mc << (-s));
    sum += (uc & kSignMask) != 0 ? -v : v;
  }
  out = float_of(detail::normalise_sum(sum, base, m));
  return true;
}

inline std::int64_t trunc_shift(bool negative, std::uint64_t mag, int s) {
  const auto v = static_cast<std::int64_t>(s >= 0 ? shift_right(mag, s) : mag << -s);
  return negative ? -v : v;
}

// One DotForm::ScaledGroups instruction; false when C is not finite.
bool groups_step(const Decoded& A, std::size_t ia, const Decoded& B, std::size_t jb, std::size_t t0, float c,
                 const TensorCoreModel& m, int unit0, float& out) {
  const std::uint32_t uc = bits_of(c);
  if ((uc & kExponentMask) == kExponentMask) return false;
  std::int64_t weight[kMaxK];
  int unit[kMaxK];
  int top = INT_MIN / 4;
  const std::size_t g = static_cast<std::size_t>(m.scale_group), sb = static_cast<std::size_t>(m.scale_block);
  const std::size_t groups = static_cast<std::size_t>(m.k) / g;
  const std::int16_t* qa = A.quanta.data() + ia * A.kp + t0;
  const std::int16_t* qb = B.quanta.data() + jb * B.kp + t0;
  for (std::size_t gi = 0; gi < groups; ++gi) {
    std::int64_t p = 0;
    bool any = false;
    for (std::size_t t = gi * g; t < (gi + 1) * g; ++t) {
      const std::int64_t x = qa[t], y = qb[t];
      p += x * y;
      any = any || (x != 0 && y != 0);
    }
    const std::size_t sa_i = ia * A.nblk + (t0 + gi * g) / sb, sb_i = jb * B.nblk + (t0 + gi * g) / sb;
    weight[gi] = p * A.ssig[sa_i] * B.ssig[sb_i];
    unit[gi] = unit0 + A.sexp[sa_i] + B.sexp[sb_i];
    top = std::max(top, any && A.ssig[sa_i] != 0 && B.ssig[sb_i] != 0 ? A.sexp[sa_i] + B.sexp[sb_i]
                                                                        : m.zero_term_exponent);
  }
  const bool c_present = (uc & kMagnitudeMask) != 0;
  top = std::max(top, c_present ? fp32_exponent(uc) : m.zero_term_exponent);
  const int base = top - m.alignment_frac_bits;
  std::int64_t sum = 0;
  for (std::size_t gi = 0; gi < groups; ++gi)
    sum += trunc_shift(weight[gi] < 0, static_cast<std::uint64_t>(weight[gi] < 0 ? -weight[gi] : weight[gi]),
                       base - unit[gi]);
  if (c_present) sum += trunc_shift((uc & kSignMask) != 0, fp32_significand(uc), base - (fp32_exponent(uc) - kM32));
  out = float_of(detail::normalise_sum(sum, base, m));
  return true;
}

}  // namespace

std::vector<float> block_scaled_kernel(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& m,
                                       const std::function<float(std::size_t, std::size_t)>& chain) {
  const bool fused = m.form == DotForm::Fused && m.block == m.k && !m.exact_sum && !m.c_after_products;
  const bool groups = m.form == DotForm::ScaledGroups;
  if ((!fused && !groups) || m.accumulator != AccumulatorFormat::Fp32 || m.k > kMaxK || m.scale_block <= 0) return {};
  const std::size_t M = a.rows, N = b.rows, K = a.cols, k = static_cast<std::size_t>(m.k);
  const std::size_t kp = (K + k - 1) / k * k;
  const Decoded A = decode(a, m, kp, m.input_format, m.input_min_exponent);
  const Decoded B = decode(b, m, kp, b_input_format(m), b_input_min_exponent(m));
  const Format& in = format_by_name(m.input_format);
  const int qin = in.min_normal_exponent() - in.mantissa_bits;
  const int unit0 = 2 * qin - 2 * format_by_name(m.scale_format).mantissa_bits;
  std::vector<float> acc(M * N, 0.0f);
  parallel_for(M, 1, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        bool ok = A.finite[i] && B.finite[j];
        float d = 0.0f;
        for (std::size_t t0 = 0; ok && t0 < kp; t0 += k)
          ok = fused ? fused_step(A, i, B, j, t0, d, m, d) : groups_step(A, i, B, j, t0, d, m, unit0, d);
        acc[i * N + j] = ok && std::isfinite(d) ? d : chain(i, j);
      }
  });
  return acc;
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(std::vector<float>, block_scaled_kernel,
                      (const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& m,
                       const std::function<float(std::size_t, std::size_t)>& chain),
                      (a, b, m, chain))

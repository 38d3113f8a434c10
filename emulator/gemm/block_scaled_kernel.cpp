// Block-scaled GEMM fast path: see block_scaled_kernel.hpp. The per-instruction arithmetic is
// accum/fused_dot_add.cpp truncated_block (DotForm::Fused) and accum/dot_forms.cpp
// scaled_groups_instruction (DotForm::ScaledGroups) on operands decoded once, in the same order of
// operations, so every intermediate integer is the same.
#include "gemm/block_scaled_kernel.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "accum/fp32_terms.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/format.hpp"

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): each build in its
// own namespace; the entry point at the end chooses one at run time.
// The vectors below are internal (anonymous namespace, inlined), so the compilers' note that
// passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

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

// DotForm::Fused across kLanes output columns at a time (GCC vector extensions: one source for the
// AVX2 and AVX-512 variants; they differ in registers, never in the integers). B is laid out per
// group of kLanes columns and per element of K as kLanes lanes: significand, the product-unit part ex + scale exponent,
// the alignment part cl + scale exponent, and the sign. fused_step's arithmetic lane by lane: the
// same top, the same truncated shifts (clamped to 0 .. 63) and the same int64 sum per output.
// One group of output columns: 16 int32 lanes with AVX-512, 8 with AVX2 (the widest native vector:
// GCC lowers wider ones through memory); the 64-bit terms in two halves of as many lanes.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
constexpr std::size_t kLanes = 16;
#else
constexpr std::size_t kLanes = 8;
#endif
using I16 = std::int32_t __attribute__((vector_size(4 * kLanes)));
using U16 = std::uint32_t __attribute__((vector_size(4 * kLanes)));
using U8 = std::uint64_t __attribute__((vector_size(4 * kLanes)));
using U8h = std::uint32_t __attribute__((vector_size(2 * kLanes)));
constexpr std::size_t kHalf = kLanes / 2;
// Without AVX2's vpsrlvq GCC shifts 64-bit lanes one at a time: the portable build keeps the scalar
// fused_step (faster there).
#if defined(__AVX2__)
constexpr bool kFusedLanes = true;
#else
constexpr bool kFusedLanes = false;
#endif

struct FusedLanes {
  std::size_t groups = 0, kp = 0;
  std::vector<U16> sig, neg;
  std::vector<I16> unit, align;  // ex + scale exponent, cl + scale exponent
};

FusedLanes fused_lanes(const Decoded& B, std::size_t N, std::size_t sb) {
  FusedLanes L;
  L.groups = (N + kLanes - 1) / kLanes;
  L.kp = B.kp;
  const std::size_t n = L.groups * B.kp;
  L.sig.assign(n, U16{});
  L.neg.assign(n, U16{});
  L.unit.assign(n, I16{});
  L.align.assign(n, I16{});
  parallel_for(L.groups, 1, [&](std::size_t g0, std::size_t g1) {
    for (std::size_t g = g0; g < g1; ++g)
      for (std::size_t l = 0; l < kLanes && g * kLanes + l < N; ++l) {
        const std::size_t j = g * kLanes + l;
        for (std::size_t t = 0; t < B.kp; ++t) {
          const std::size_t e = j * B.kp + t, o = g * B.kp + t;
          const int s = B.sexp[j * B.nblk + t / sb];
          L.sig[o][l] = B.sig[e];
          L.neg[o][l] = B.neg[e];
          L.unit[o][l] = B.ex[e] + s;
          L.align[o][l] = B.cl[e] + s;
        }
      }
  });
  return L;
}

inline U8 widen(U8h v) { return __builtin_convertvector(v, U8); }

// One instruction (products t0 .. t0 + k) of row ia against the kLanes columns of group g; c: their
// accumulators (in and out); bad: lanes whose C is not finite (the chain takes them over).
void fused_lanes_step(const Decoded& A, std::size_t ia, const FusedLanes& L, std::size_t g, std::size_t t0,
                      const TensorCoreModel& m, float* c, bool* bad) {
  const std::size_t sb = static_cast<std::size_t>(m.scale_block), k = static_cast<std::size_t>(m.k);
  const std::size_t ea = ia * A.kp + t0, o = g * L.kp + t0;
  const I16 zte = I16{} + m.zero_term_exponent;
  I16 top = I16{} + kNoZeroTerm;
  for (std::size_t t = 0; t < k; ++t) {
    const int sa = A.sexp[ia * A.nblk + (t0 + t) / sb];
    const I16 al = L.align[o + t] + (A.cl[ea + t] + sa);
    const I16 nz = (L.sig[o + t] != 0) & (A.sig[ea + t] != 0 ? -1 : 0);
    const I16 cand = nz ? al : zte;
    top = top > cand ? top : cand;
  }
  std::int32_t ctop[kLanes];
  for (std::size_t l = 0; l < kLanes; ++l) {
    const std::uint32_t uc = bits_of(c[l]);
    if ((uc & kExponentMask) == kExponentMask) {
      bad[l] = true;
      c[l] = 0.0f;
    }
    ctop[l] = (bits_of(c[l]) & kMagnitudeMask) != 0 ? fp32_exponent(bits_of(c[l])) : m.zero_term_exponent;
  }
  I16 ct;
  std::memcpy(&ct, ctop, sizeof ct);
  top = top > ct ? top : ct;
  const I16 base = top - m.alignment_frac_bits;
  U8 sum_lo{}, sum_hi{};
  for (std::size_t t = 0; t < k; ++t) {
    const int sa = A.sexp[ia * A.nblk + (t0 + t) / sb];
    const I16 unit = L.unit[o + t] + (A.ex[ea + t] - 2 * kM32 + sa);
    I16 sh = base - unit;
    sh = sh < 0 ? 0 : sh;
    sh = sh > 63 ? 63 : sh;
    const U16 ush = reinterpret_cast<U16&>(sh);
    const U16 neg = L.neg[o + t] ^ static_cast<std::uint32_t>(A.neg[ea + t]);
    const U16 sig = L.sig[o + t];
    const std::uint64_t as = A.sig[ea + t];
    U8h s_lo, s_hi, h_lo, h_hi, n_lo, n_hi;
    std::memcpy(&s_lo, &sig, sizeof s_lo);
    std::memcpy(&s_hi, reinterpret_cast<const char*>(&sig) + sizeof s_lo, sizeof s_hi);
    std::memcpy(&h_lo, &ush, sizeof h_lo);
    std::memcpy(&h_hi, reinterpret_cast<const char*>(&ush) + sizeof h_lo, sizeof h_hi);
    std::memcpy(&n_lo, &neg, sizeof n_lo);
    std::memcpy(&n_hi, reinterpret_cast<const char*>(&neg) + sizeof n_lo, sizeof n_hi);
    const U8 v_lo = (widen(s_lo) * as) >> widen(h_lo), v_hi = (widen(s_hi) * as) >> widen(h_hi);
    const U8 m_lo = widen(n_lo), m_hi = widen(n_hi);
    sum_lo += (v_lo ^ (0 - m_lo)) + m_lo;
    sum_hi += (v_hi ^ (0 - m_hi)) + m_hi;
  }
  for (std::size_t l = 0; l < kLanes; ++l) {
    if (top[l] == kNoZeroTerm) {
      c[l] = 0.0f;
      continue;
    }
    const std::uint32_t uc = bits_of(c[l]);
    auto sum = static_cast<std::int64_t>(l < kHalf ? sum_lo[l] : sum_hi[l - kHalf]);
    if ((uc & kMagnitudeMask) != 0) {
      const int s = base[l] - (fp32_exponent(uc) - kM32);
      const std::uint64_t mc = fp32_significand(uc);
      const auto v = static_cast<std::int64_t>(s >= 0 ? shift_right(mc, s) : mc << (-s));
      sum += (uc & kSignMask) != 0 ? -v : v;
    }
    c[l] = float_of(detail::normalise_sum(sum, base[l], m));
  }
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
    // A group under a zero scale is a zero term (accum/dot_forms.cpp): it does not set the alignment.
    // No result shows the two scale conditions (here and in the lanes below) today: only UE4M3 scales
    // have a zero, such a group's exponent is at most 8 (448's) + 0, and every C of the chain lies on
    // the 2^-20 grid (E2M1 0.5 * 0.5 * UE4M3's smallest 2^-9 twice; the GEMM's C is added after the
    // chain), so 35 fractional alignment bits below it cut nothing; mutating them passes every test.
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

// DotForm::ScaledGroups across kLanes output columns: B's quanta per group of columns and element
// of K, its scales' significands and exponents per block, as lanes; groups_step's arithmetic lane
// by lane (each group's product sum in int32 lanes: exact when g * qmax^2 < 2^31, which the caller
// checks; the weights and terms in int64 lanes).
using L8 = std::int64_t __attribute__((vector_size(4 * kLanes)));
using I8h = std::int32_t __attribute__((vector_size(2 * kLanes)));

struct GroupLanes {
  std::size_t groups = 0, kp = 0, nblk = 0;
  std::vector<I16> q, ssig, sexp;
};

GroupLanes group_lanes(const Decoded& B, std::size_t N) {
  GroupLanes L;
  L.groups = (N + kLanes - 1) / kLanes;
  L.kp = B.kp;
  L.nblk = B.nblk;
  L.q.assign(L.groups * B.kp, I16{});
  L.ssig.assign(L.groups * B.nblk, I16{});
  L.sexp.assign(L.groups * B.nblk, I16{});
  for (std::size_t j = 0; j < N; ++j) {
    const std::size_t g = j / kLanes, l = j % kLanes;
    for (std::size_t t = 0; t < B.kp; ++t) L.q[g * B.kp + t][l] = B.quanta[j * B.kp + t];
    for (std::size_t b = 0; b < B.nblk; ++b) {
      L.ssig[g * B.nblk + b][l] = static_cast<std::int32_t>(B.ssig[j * B.nblk + b]);
      L.sexp[g * B.nblk + b][l] = B.sexp[j * B.nblk + b];
    }
  }
  return L;
}

inline void halves(const I16& v, L8& lo, L8& hi) {
  I8h a, b;
  std::memcpy(&a, &v, sizeof a);
  std::memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof a, sizeof b);
  lo = __builtin_convertvector(a, L8);
  hi = __builtin_convertvector(b, L8);
}

// trunc_shift lane by lane: |w| shifted right by s (everything out from 64) or left by -s, signed back.
inline L8 trunc_shift_lanes(L8 w, L8 s) {
  const L8 mag = w < 0 ? -w : w;
  const L8 r = s >= 64 ? L8{} : (L8)((U8)mag >> (U8)(s < 0 ? 0 : s > 63 ? 63 : s));
  const L8 v = s >= 0 ? r : mag << (s < 0 ? -s : 0);
  return w < 0 ? -v : v;
}

void groups_lanes_step(const Decoded& A, std::size_t ia, const GroupLanes& L, std::size_t gl, std::size_t t0,
                       const TensorCoreModel& m, int unit0, float* c, bool* bad) {
  const std::size_t g = static_cast<std::size_t>(m.scale_group), sb = static_cast<std::size_t>(m.scale_block);
  const std::size_t groups = static_cast<std::size_t>(m.k) / g;
  const std::int16_t* qa = A.quanta.data() + ia * A.kp + t0;
  const I16* qb = L.q.data() + gl * L.kp + t0;
  const I16 zte = I16{} + m.zero_term_exponent;
  I16 top = I16{} + INT_MIN / 4;
  L8 w_lo[kMaxK], w_hi[kMaxK], u_lo[kMaxK], u_hi[kMaxK];
  for (std::size_t gi = 0; gi < groups; ++gi) {
    I16 p{}, any{};
    for (std::size_t t = gi * g; t < (gi + 1) * g; ++t) {
      const std::int32_t x = qa[t];
      p += qb[t] * x;
      any |= (qb[t] != 0) & (x != 0 ? -1 : 0);
    }
    const std::size_t blk = (t0 + gi * g) / sb, sa_i = ia * A.nblk + blk, sb_i = gl * L.nblk + blk;
    const std::int64_t ssa = A.ssig[sa_i];
    const int sea = A.sexp[sa_i];
    const I16 ssb = L.ssig[sb_i], seb = L.sexp[sb_i] + sea;
    L8 p_lo, p_hi, b_lo, b_hi, e_lo, e_hi;
    halves(p, p_lo, p_hi);
    halves(ssb, b_lo, b_hi);
    halves(seb, e_lo, e_hi);
    w_lo[gi] = p_lo * ssa * b_lo;
    w_hi[gi] = p_hi * ssa * b_hi;
    u_lo[gi] = e_lo + unit0;
    u_hi[gi] = e_hi + unit0;
    const I16 live = any & (ssb != 0) & (ssa != 0 ? -1 : 0);
    const I16 cand = live ? seb : zte;
    top = top > cand ? top : cand;
  }
  std::int32_t ctop[kLanes];
  for (std::size_t l = 0; l < kLanes; ++l) {
    if ((bits_of(c[l]) & kExponentMask) == kExponentMask) {
      bad[l] = true;
      c[l] = 0.0f;
    }
    const std::uint32_t uc = bits_of(c[l]);
    ctop[l] = (uc & kMagnitudeMask) != 0 ? fp32_exponent(uc) : m.zero_term_exponent;
  }
  I16 ct;
  std::memcpy(&ct, ctop, sizeof ct);
  top = top > ct ? top : ct;
  const I16 base = top - m.alignment_frac_bits;
  L8 b_lo, b_hi, sum_lo{}, sum_hi{};
  halves(base, b_lo, b_hi);
  for (std::size_t gi = 0; gi < groups; ++gi) {
    sum_lo += trunc_shift_lanes(w_lo[gi], b_lo - u_lo[gi]);
    sum_hi += trunc_shift_lanes(w_hi[gi], b_hi - u_hi[gi]);
  }
  for (std::size_t l = 0; l < kLanes; ++l) {
    const std::uint32_t uc = bits_of(c[l]);
    std::int64_t sum = l < kHalf ? sum_lo[l] : sum_hi[l - kHalf];
    if ((uc & kMagnitudeMask) != 0)
      sum += trunc_shift((uc & kSignMask) != 0, fp32_significand(uc), base[l] - (fp32_exponent(uc) - kM32));
    c[l] = float_of(detail::normalise_sum(sum, base[l], m));
  }
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
  // Each group's product sum fits an int32 lane: g * qmax^2 < 2^31 (qmax: the largest quantum count).
  const Format& in_b = format_by_name(b_input_format(m));
  const double qmax = std::ldexp(in.max_finite(), -qin);
  const double qmax_b = std::ldexp(in_b.max_finite(), in_b.mantissa_bits - in_b.min_normal_exponent());
  const bool group_lanes_ok = groups && static_cast<double>(m.scale_group) * qmax * qmax_b < 2147483648.0;
  if ((fused || group_lanes_ok) && kFusedLanes) {
    const FusedLanes L = fused ? fused_lanes(B, N, static_cast<std::size_t>(m.scale_block)) : FusedLanes{};
    const GroupLanes G = fused ? GroupLanes{} : group_lanes(B, N);
    const std::size_t ngroups = (N + kLanes - 1) / kLanes;
    parallel_for(M, 1, [&](std::size_t i0, std::size_t i1) {
      for (std::size_t g = 0; g < ngroups; ++g)
        for (std::size_t i = i0; i < i1; ++i) {
          float d[kLanes] = {};
          bool bad[kLanes] = {};
          for (std::size_t t0 = 0; A.finite[i] && t0 < kp; t0 += k)
            if (fused)
              fused_lanes_step(A, i, L, g, t0, m, d, bad);
            else
              groups_lanes_step(A, i, G, g, t0, m, unit0, d, bad);
          for (std::size_t l = 0; l < kLanes && g * kLanes + l < N; ++l) {
            const std::size_t j = g * kLanes + l;
            acc[i * N + j] = A.finite[i] && B.finite[j] && !bad[l] && std::isfinite(d[l]) ? d[l] : chain(i, j);
          }
        }
    });
    return acc;
  }
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

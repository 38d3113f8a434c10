// Block-scaled GEMM fast path: see block_scaled_kernel.hpp. The per-instruction arithmetic is
// accum/fused_dot_add.cpp truncated_block (DotForm::Fused) and accum/dot_forms.cpp
// scaled_groups_instruction (DotForm::ScaledGroups) on operands decoded once, in the same order of
// operations, so every intermediate integer is the same.
#include "gemm/block_scaled_kernel.hpp"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string_view>

#include "accum/fp32_terms.hpp"
#include "common/buffer_pool.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/format.hpp"
#include "formats/row_constants.hpp"

#if defined(__AVX2__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_* in the masked intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

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
        if (std::isnan(s)) {  // every output of the row is NaN: the chain's
          d.finite[r] = 0;
        } else if (!groups) {
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

// The register-tile kernels of the AVX2 and AVX-512 builds (GCC vector extensions: one source, W
// output columns a vector: 16 with AVX-512, 8 with AVX2; the variants differ in registers, never in
// the values). A tile is kTileRows rows of A against kTileGroups groups of W columns of B, chained
// over every instruction of K with its accumulators in registers and L1; the operands are packed
// once per GEMM: values, per element exponents (Fused) or quanta pairs (ScaledGroups), and per
// instruction the scales' fields.
//
// Fused (ST-FDPA, one UE8M0 scale per instruction: scale_block == k): with s = sa + sb, the
// largest alignment exponent is top = max(max_t (cla_t + clb_t) + s over the non-zero products,
// C's exponent, or zero_term when C is zero); a zero product's zero_term never decides it, as
// zero_term <= -126 <= the exponent of any non-zero C (checked). Each product's term is sig >> (top - F - unit), which is
// |a b| 2^(s + F - top) truncated toward zero: a b is exact in binary32 (at most 2 x 4 significant
// bits, a normal float), and so is its product by 2^x, x = s + F - top (a power of two, clamped to
// [-126, 127]: a term with x below -126 is below 1 whatever the rounding, and x exceeds 127 only
// when every product is zero). |term| < T = (largest significand)^2 2^F, so the truncating
// conversion to int32 is exact, and chunk = (2^31 - 1) / T of them summed in int32 lanes cannot
// wrap; the chunks' sums and C's term (|C| 2^(F - top) truncated, |.| < 2^(F + 1)) add exactly in
// binary64 (< 2^53). Step 5 on the double: normalise_lanes.
//
// ScaledGroups (GST-FDPA): a group's product sum p = sum qa qb (input quanta, int16 pairs summed
// by vpmaddwd / vpdpwssd into int32: exact while g qmax^2 < 2^31), its weight p ssa ssb exact in
// binary32 (< 2^24, checked), its term weight 2^(c0 + sea + seb - top) truncated toward zero
// (c0 = 2 qin - 2 scale mantissa bits + F; exact in binary32: at most 24 significant bits, the
// power of two clamped to [-60, 100], below which every weight's term is 0), the terms and C's
// added in binary64 (< 2^53, checked).
//
// The portable build (x86-64's SSE2; NEON on aarch64, where it is the only build) runs the same
// tiles on 4 lanes (16-byte vectors, one machine register each) with the helpers below written as
// vector operations the baseline has natively: int32, int16 and float lanes, binary64 arithmetic
// and bitwise logic (no 64-bit integer compares, variable shifts or int64 conversions, which SSE2
// lacks and GCC lowers lane by lane). ScaledGroups sums a group's int16 products in int16 lanes
// there (pmullw / paddw; exact while g / 2 qmax^2 < 2^15, checked); C's term is formed in binary32
// (c_term), and step 5, for precision 24 only (checked: every block-scaled preset's), is the
// binary64 sum's conversion to binary32 stepped back where it rounded away from zero (finish).
#if defined(__AVX512F__)
constexpr std::size_t W = 16;
constexpr std::size_t kTileRows = 6, kTileGroups = 2;
#elif defined(__AVX2__)
constexpr std::size_t W = 8;
constexpr std::size_t kTileRows = 2, kTileGroups = 2;
#else
constexpr std::size_t W = 4;
constexpr std::size_t kTileRows = 2, kTileGroups = 2;
#endif
constexpr std::size_t WH = W / 2;
using FV = float __attribute__((vector_size(4 * W)));
using IV = std::int32_t __attribute__((vector_size(4 * W)));
using UV = std::uint32_t __attribute__((vector_size(4 * W)));
using FH = float __attribute__((vector_size(4 * WH)));
using IH = std::int32_t __attribute__((vector_size(4 * WH)));
using DH = double __attribute__((vector_size(8 * WH)));
using LH = std::int64_t __attribute__((vector_size(8 * WH)));
using UH = std::uint64_t __attribute__((vector_size(8 * WH)));
using SH = std::int16_t __attribute__((vector_size(2 * W)));
using SV = std::int16_t __attribute__((vector_size(2 * W * kTileGroups)));  // the G groups of a tile

template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class H, class V>
inline H half(const V& v, std::size_t h) {
  H r;
  std::memcpy(&r, reinterpret_cast<const char*>(&v) + h * sizeof r, sizeof r);
  return r;
}
inline IV vmax(const IV& x, const IV& y) { return x > y ? x : y; }
// 2^e from its bits: e in [-126, 127] (binary32), [-1022, 1023] (binary64).
inline FV pow2f(const IV& e) { return lanes_cast<FV>((e + 127) << kM32); }

#if defined(__AVX2__)
inline DH pow2d(const LH& e) { return lanes_cast<DH>((e + 1023) << 52); }

// Truncation toward zero of every lane (vroundps / vrndscaleps, and the binary64 forms).
inline FV trunc_lanes(const FV& x) {
#if defined(__AVX512F__)
  return lanes_cast<FV>(_mm512_roundscale_ps(lanes_cast<__m512>(x), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#else
  return lanes_cast<FV>(_mm256_round_ps(lanes_cast<__m256>(x), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#endif
}
inline DH trunc_lanes(const DH& x) {
#if defined(__AVX512F__)
  return lanes_cast<DH>(_mm512_roundscale_pd(lanes_cast<__m512d>(x), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#else
  return lanes_cast<DH>(_mm256_round_pd(lanes_cast<__m256d>(x), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#endif
}
// Widening conversions of a half vector (one instruction each; GCC's generic lowering of
// __builtin_convertvector here went through narrower pieces).
inline DH to_double(const FH& x) {
#if defined(__AVX512F__)
  return lanes_cast<DH>(_mm512_cvtps_pd(lanes_cast<__m256>(x)));
#else
  return lanes_cast<DH>(_mm256_cvtps_pd(lanes_cast<__m128>(x)));
#endif
}
inline DH to_double(const IH& x) {
#if defined(__AVX512F__)
  return lanes_cast<DH>(_mm512_cvtepi32_pd(lanes_cast<__m256i>(x)));
#else
  return lanes_cast<DH>(_mm256_cvtepi32_pd(lanes_cast<__m128i>(x)));
#endif
}
inline IV to_int32(const SH& x) {
#if defined(__AVX512F__)
  return lanes_cast<IV>(_mm512_cvtepi16_epi32(lanes_cast<__m256i>(x)));
#else
  return lanes_cast<IV>(_mm256_cvtepi16_epi32(lanes_cast<__m128i>(x)));
#endif
}
inline LH to_int64(const IH& x) {
#if defined(__AVX512F__)
  return lanes_cast<LH>(_mm512_cvtepi32_epi64(lanes_cast<__m256i>(x)));
#else
  return lanes_cast<LH>(_mm256_cvtepi32_epi64(lanes_cast<__m128i>(x)));
#endif
}

// The sums of adjacent int16 products of a (the same pair in every lane) and b.
inline IV madd(std::int32_t a, const IV& b) {
#if defined(__AVX512F__)
  return lanes_cast<IV>(_mm512_madd_epi16(_mm512_set1_epi32(a), lanes_cast<__m512i>(b)));
#else
  return lanes_cast<IV>(_mm256_madd_epi16(_mm256_set1_epi32(a), lanes_cast<__m256i>(b)));
#endif
}
// acc + the sums of adjacent int16 products of a (the same pair in every lane) and b.
inline IV madd(const IV& acc, std::int32_t a, const IV& b) {
#if defined(__AVX512F__)
  return lanes_cast<IV>(_mm512_dpwssd_epi32(lanes_cast<__m512i>(acc), _mm512_set1_epi32(a), lanes_cast<__m512i>(b)));
#else
  return acc + lanes_cast<IV>(_mm256_madd_epi16(_mm256_set1_epi32(a), lanes_cast<__m256i>(b)));
#endif
}

// Step 5 on WH lanes: sum (an integer, |sum| < 2^53) times 2^q, truncated to `precision`
// significant bits and onto FP32's grid (multiples of 2^-149; truncating twice onto nested grids is
// truncating once onto the coarser), infinite from 2^128 (the conversion of a value with at most
// 24 significant bits, 2^128 or more, to binary32), +0 for a zero result whatever the sum's sign:
// accum's normalise with TowardZero rounding and an FP32 accumulator.
inline FH normalise_lanes(const DH& sum, const LH& q, int precision) {
  const UH bits = lanes_cast<UH>(sum * pow2d(q));  // exact: a normal double
  const UH sign = bits & (UH{} + (std::uint64_t{1} << 63)), mag = bits ^ sign;
  const LH e = lanes_cast<LH>(mag >> 52) - 1023;  // a zero's: -1023
  const LH keep_low = LH{} + (53 - precision), sub = (binary32::kMinQuantum + 52) - e;
  const LH clear = keep_low > sub ? keep_low : sub;  // low bits of the double's 53 to clear
  const UH kept = clear > 52 ? UH{} : mag & (~UH{} << lanes_cast<UH>(clear > 63 ? LH{} + 63 : clear));
  const DH r = lanes_cast<DH>(kept == 0 ? UH{} : kept | sign);
#if defined(__AVX512F__)
  return lanes_cast<FH>(_mm512_cvtpd_ps(lanes_cast<__m512d>(r)));
#else
  return lanes_cast<FH>(_mm256_cvtpd_ps(lanes_cast<__m256d>(r)));
#endif
}

// Half h of a vector's lanes in binary64.
inline DH half_to_double(const FV& x, std::size_t h) { return to_double(half<FH>(x, h)); }
inline DH half_to_double(const IV& x, std::size_t h) { return to_double(half<IH>(x, h)); }

// ScaledGroups: a group's sums of adjacent int16 products, int32 lanes (vpmaddwd, vpdpwssd).
using GroupSums = IV;
constexpr bool kGroupsInt16 = false;
inline IV vmin(const IV& x, const IV& y) { return x < y ? x : y; }
// x clamped to [lo, hi] (vpmaxsd, vpminsd).
inline IV clamp_small(const IV& x, int lo, int hi) { return vmin(vmax(x, IV{} + lo), IV{} + hi); }
constexpr bool kFinish24 = false;  // step 5 for any precision up to 24
// Fused step 1: an A exponent in every int16 lane (vpbroadcastw from memory).
constexpr std::size_t kExpCopies = 1;
inline SV splat_exp(const std::int16_t* e) { return SV{} + *e; }
inline IV group_sums(const GroupSums& p) { return p; }
#else
// The portable helpers (see above): operations every 16-byte vector unit has.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "lanes_cast of int16 pairs and binary64 words");
constexpr std::uint64_t kSign64 = std::uint64_t{1} << 63;

// Truncation toward zero: through int32 below 2^23 (larger floats are integers).
inline FV trunc_lanes(const FV& x) {
  const IV small = lanes_cast<FV>(lanes_cast<UV>(x) & kMagnitudeMask) < 0x1p23f;
  const FV t = __builtin_convertvector(__builtin_convertvector(small ? x : FV{}, IV), FV);
  return small ? t : x;
}
inline IV to_int32(const SH& x) { return __builtin_convertvector(x, IV); }
// Half h of a vector's lanes in binary64 (cvtps2pd, cvtdq2pd; all four lanes converted, then
// halved: converting a two-lane half, GCC loaded int32 pairs into general registers and the upper
// float pair went through cvtss2sd), and 2^e for half h of e's lanes (binary64's high words from
// int32 lanes, interleaved with zero low words).
static_assert(W == 4, "the portable halves below are two lanes");
using DV = double __attribute__((vector_size(8 * W)));
inline DH half_to_double(const FV& x, std::size_t h) {
  const DV d = __builtin_convertvector(x, DV);
  return h == 0 ? __builtin_shufflevector(d, d, 0, 1) : __builtin_shufflevector(d, d, 2, 3);
}
inline DH half_to_double(const IV& x, std::size_t h) {
  const DV d = __builtin_convertvector(x, DV);
  return h == 0 ? __builtin_shufflevector(d, d, 0, 1) : __builtin_shufflevector(d, d, 2, 3);
}
inline DH half_pow2d(const IV& e, std::size_t h) {
  const IV hi = (e + 1023) << 20;
  return lanes_cast<DH>(h == 0 ? __builtin_shufflevector(IV{}, hi, 0, 4, 0, 5) : __builtin_shufflevector(IV{}, hi, 0, 6, 0, 7));
}

// ScaledGroups: a group's int16 products summed in int16 lanes (an operand's pair of quanta in
// each int32 lane; exact: the tiles' condition), then each lane pair's two sums added in int32.
using S2 = std::int16_t __attribute__((vector_size(4 * W)));
using GroupSums = S2;
constexpr bool kGroupsInt16 = true;
// x clamped to [lo, hi], every lane of x, lo and hi in int16's range (exponent sums, below 2^15 in
// magnitude: see the callers): then the low int16 halves compare as the int32 lanes do and each
// high half is its low half's sign, so int16 max and min (pmaxsw, pminsw; SSE2 has no int32 ones,
// and an int32 max is four instructions) give the int32 clamp.
inline IV clamp_small(const IV& x, int lo, int hi) {
  const S2 y = lanes_cast<S2>(x), l = lanes_cast<S2>(IV{} + lo), h = lanes_cast<S2>(IV{} + hi);
  const S2 m = y > l ? y : l;
  return lanes_cast<IV>(m < h ? m : h);
}
constexpr bool kFinish24 = true;  // step 5 (finish) for precision 24 only
// Fused step 1: an A exponent in every int16 lane, from the two copies A's panel holds (movd,
// pshufd: a 16-bit broadcast is four instructions on SSE2).
constexpr std::size_t kExpCopies = 2;
static_assert(sizeof(SV) == sizeof(IV));
inline SV splat_exp(const std::int16_t* e) { return lanes_cast<SV>(IV{} + load<std::int32_t>(e)); }
inline S2 madd(std::int32_t a, const IV& b) { return lanes_cast<S2>(IV{} + a) * lanes_cast<S2>(b); }
inline S2 madd(const S2& acc, std::int32_t a, const IV& b) { return acc + madd(a, b); }
inline IV group_sums(const S2& p) {
  const IV x = lanes_cast<IV>(p);
  return ((x << 16) >> 16) + (x >> 16);
}

#endif

// The alignment exponent of a zero element (int16 lanes): two of them sum to -32768, one and a real
// exponent stay far below every sum of two real ones.
constexpr std::int16_t kZeroExp16 = -16384;

// One operand packed for the tiles: rows in blocks of L lanes (A: kTileRows, B: W), element t of
// row i at [(i / L) kp + t] L + i % L, instruction (or group) u of row i at [(i / L) nu + u] L + i % L.
struct Panel {
  std::size_t L = 0, blocks = 0, kp = 0, nu = 0;
  PooledVector<float> v;          // Fused: values (0 for NaN and Inf)
  std::size_t Le = 0;             // Fused: alignment exponents (kZeroExp16 for zero) in rows of Le lanes
  PooledVector<std::int16_t> e16;  // (A: kTileRows, B: a tile's kTileGroups x W columns), element t
                                   // of row i at ([(i / Le) kp + t] Le + i % Le) copies, `copies`
                                   // times (A's: kExpCopies)
  PooledVector<std::int32_t> e;   // ScaledGroups: quanta pairs
  PooledVector<std::int32_t> s;   // per instruction (group): scale exponent
  PooledVector<std::int32_t> z;   // ScaledGroups, per group: mask of the nonzero elements
  PooledVector<float> ss;         // ScaledGroups, per group: the scale's significand
  std::vector<std::uint8_t> ok;  // per row: finite elements and no NaN scale
  std::size_t at(std::size_t i, std::size_t t) const { return ((i / L) * kp + t) * L + i % L; }
  std::size_t at_u(std::size_t i, std::size_t u) const { return ((i / L) * nu + u) * L + i % L; }
};

// std::ilogb of a positive finite scale (binary32 normals from the bits), and s 2^e exact (the
// scales' significands: small integers).
inline int scale_exponent(float s) {
  const std::uint32_t field = bits_of(s) >> kM32;
  return field != 0 ? static_cast<int>(field) - binary32::kBias : std::ilogb(s);
}
inline float times_pow2(float s, int e) {
  return e >= -126 && e <= 127 ? s * float_of(static_cast<std::uint32_t>(e + binary32::kBias) << kM32) : std::ldexp(s, e);
}

// blocks: a multiple of `mult` (B's: whole tiles of column groups), whose exponents share rows.
template <std::size_t copies = 1>
Panel fused_panel(const GemmOperand& x, std::size_t L, std::size_t mult, std::size_t kp, std::size_t k, int emin) {
  Panel p;
  p.L = L;
  p.Le = L * mult;
  p.blocks = ((x.rows + L - 1) / L + mult - 1) / mult * mult;
  p.kp = kp;
  p.nu = kp / k;
  p.v.assign(p.blocks * kp * L, 0.0f);
  p.e16.assign(p.v.size() * copies, kZeroExp16);
  p.s.assign(p.blocks * p.nu * L, 0);
  p.ok.assign(x.rows, 1);
  const std::size_t K = x.cols;
  parallel_for(x.rows, 16, [&](std::size_t r0, std::size_t r1) {
    std::vector<float> v(K);
    std::vector<std::int16_t> e(K);
    for (std::size_t i = r0; i < r1; ++i) {
      const float* row = x.row(i);
      std::uint32_t special = 0;
      for (std::size_t t = 0; t < K; ++t) {
        const std::uint32_t b = bits_of(row[t]), mag = b & kMagnitudeMask;
        const bool bad = (b & kExponentMask) == kExponentMask;
        special |= static_cast<std::uint32_t>(bad);
        const int ex = std::max(std::max(static_cast<int>(mag >> kM32) - binary32::kBias, binary32::kMinExponent), emin);
        v[t] = bad ? 0.0f : row[t];
        e[t] = static_cast<std::int16_t>(mag == 0 || bad ? kZeroExp16 : ex);
      }
      float* pv = p.v.data() + p.at(i, 0);
      std::int16_t* pe = p.e16.data() + ((i / p.Le) * kp * p.Le + i % p.Le) * copies;
      for (std::size_t t = 0; t < K; ++t) {
        pv[t * L] = v[t];
        for (std::size_t c = 0; c < copies; ++c) pe[t * p.Le * copies + c] = e[t];
      }
      bool nan_scale = false;
      for (std::size_t u = 0; u < p.nu; ++u) {
        const float sc = x.scale(i, u * k);
        nan_scale = nan_scale || std::isnan(sc);
        p.s[p.at_u(i, u)] = std::isnan(sc) ? 0 : scale_exponent(sc);  // UE8M0: a power of two
      }
      p.ok[i] = special == 0 && !nan_scale ? 1 : 0;
    }
  });
  return p;
}

// Groups of g elements (g even), quanta of 2^qin, scale format sf.
Panel groups_panel(const GemmOperand& x, std::size_t L, std::size_t mult, std::size_t kp, std::size_t g, int qin,
                   const Format& sf) {
  Panel p;
  p.L = L;
  p.blocks = ((x.rows + L - 1) / L + mult - 1) / mult * mult;
  p.kp = kp / 2;  // pairs
  p.nu = kp / g;
  p.e.assign(p.blocks * p.kp * L, 0);
  p.s.assign(p.blocks * p.nu * L, 0);
  p.z.assign(p.s.size(), 0);
  p.ss.assign(p.s.size(), 0.0f);
  p.ok.assign(x.rows, 1);
  const std::size_t K = x.cols;
  const float to_quanta = std::ldexp(1.0f, -qin);
  parallel_for(x.rows, 16, [&](std::size_t r0, std::size_t r1) {
    std::vector<std::int32_t> q(kp, 0);  // the row's quanta, zeros past K
    for (std::size_t i = r0; i < r1; ++i) {
      const float* row = x.row(i);
      std::uint32_t special = 0;
      for (std::size_t t = 0; t < K; ++t) {  // exact: whole numbers of quanta
        const bool bad = (bits_of(row[t]) & kExponentMask) == kExponentMask;
        special |= static_cast<std::uint32_t>(bad);
        const float v = bad ? 0.0f : row[t];
        q[t] = static_cast<std::int32_t>(v * to_quanta);
      }
      std::int32_t* e = p.e.data() + p.at(i, 0);
      for (std::size_t t = 0; t < kp; t += 2)
        e[t / 2 * L] = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(q[t])) |
                                                 static_cast<std::uint32_t>(static_cast<std::uint16_t>(q[t + 1])) << 16);
      bool nan_scale = false;
      for (std::size_t u = 0; u < p.nu; ++u) {
        const std::size_t t0 = u * g, o = p.at_u(i, u);
        std::uint32_t mask = 0;
        for (std::size_t t = 0; t < g; ++t) mask |= static_cast<std::uint32_t>(q[t0 + t] != 0) << t;
        p.z[o] = static_cast<std::int32_t>(mask);
        if (t0 >= K) continue;  // a group past K: no product, no term, whatever its scale
        const float sc = x.scale(i, t0);
        if (std::isnan(sc)) {
          nan_scale = true;
        } else if (sc != 0.0f) {  // accum/dot_forms.cpp scale_parts
          const int ex = std::max(scale_exponent(sc), sf.min_normal_exponent());
          p.s[o] = ex;
          p.ss[o] = times_pow2(sc, sf.mantissa_bits - ex);
        }
      }
      p.ok[i] = special == 0 && !nan_scale ? 1 : 0;
    }
  });
  return p;
}

constexpr std::size_t kMaxChunks = 4;  // Fused: int32 partial sums per instruction

struct TileParams {
  std::size_t k = 0, chunk = 0, groups = 0, g = 0;
  int frac = 0, precision = 0, zte = 0, c0 = 0;
  bool int_finish = false;  // Fused, AVX-512: finish_int applies
};

using Acc = float[kTileRows][kTileGroups][W];
using Bad = IV[kTileRows][kTileGroups];

// C's alignment exponent (zero_term when zero) per lane, and C with non-finite lanes zeroed and
// marked in bad (the chain takes those outputs).
inline IV c_exponent(FV& c, IV& bad, int zte) {
  const UV cu = lanes_cast<UV>(c);
  const IV nonfinite = (cu & kExponentMask) == kExponentMask;
  bad |= nonfinite;
  c = nonfinite ? FV{} : c;
  const IV field = lanes_cast<IV>((cu >> kM32) & 0xFFu);
  const IV e = (field > 1 ? field : IV{} + 1) - binary32::kBias;
  return ((cu & kMagnitudeMask) == 0) | nonfinite ? IV{} + zte : e;
}

#if defined(__AVX2__)
// C's term for one output vector: trunc(C 2^(F - top)) (|.| < 2^(F + 1)), in binary64 halves.
inline void c_term(const FV& c, const IV& top, const TileParams& tp, DH (&out)[2]) {
  for (std::size_t h = 0; h < 2; ++h)
    out[h] = trunc_lanes(to_double(half<FH>(c, h)) * pow2d(tp.frac - to_int64(half<IH>(top, h))));
}

// Step 5 for one output vector: d = normalise(sum, top - F).
inline void finish(const DH (&sum)[2], const IV& top, const TileParams& tp, float* d) {
  for (std::size_t h = 0; h < 2; ++h) {
    const FH out = normalise_lanes(sum[h], to_int64(half<IH>(top, h)) - tp.frac, tp.precision);
    std::memcpy(d + h * WH, &out, sizeof out);
  }
}
#else
// C's term, the same values in binary32: C 2^x (x = F - top) in two exact steps of 2^floor(x / 2)
// and 2^ceil(x / 2), x clamped to [-252, 254] (a C term with x below -252 is below 2^-124, and
// x exceeds 254 only when C is zero: top >= C's exponent >= -126), truncated (an integer below
// 2^(F + 1), so exact in binary32), then to binary64 halves. A step that leaves the normal range
// is exact but for a product below 2^-126, where the term is 0 either way.
inline void c_term(const FV& c, const IV& top, const TileParams& tp, DH (&out)[2]) {
  const IV x = clamp_small(tp.frac - top, -252, 254), xa = x >> 1;  // |F - top| < 500
  const FV t = trunc_lanes((c * pow2f(xa)) * pow2f(x - xa));
  for (std::size_t h = 0; h < 2; ++h) out[h] = half_to_double(t, h);
}

// Step 5 for one output vector, precision 24 (the portable tiles' condition): v = sum 2^(top - F)
// is exact in binary64; its conversion to binary32 rounds to nearest (onto 24 bits, or onto the
// 2^-149 grid below 2^-126), so where that rounded away from zero the binary32 one step toward
// zero (its bits minus one) is v truncated, as normalise truncates; infinite from 2^128 (not
// stepped: normalise's overflow), +0 for a zero result.
inline void finish(const DH (&sum)[2], const IV& top, const TileParams& tp, float* d) {
  FH f[2];
  IV up[2];  // per binary64 lane: all ones where the conversion rounded away from zero
  for (std::size_t h = 0; h < 2; ++h) {
    const DH v = sum[h] * half_pow2d(top - tp.frac, h);
    f[h] = __builtin_convertvector(v, FH);
    const DH a = lanes_cast<DH>(lanes_cast<UH>(v) & ~kSign64);
    DH b = lanes_cast<DH>(lanes_cast<UH>(__builtin_convertvector(f[h], DH)) & ~kSign64);
    b = b < 0x1p128 ? b : DH{} + 0x1p128;  // an infinite f stays where |v| >= 2^128
    up[h] = lanes_cast<IV>(b > a);
  }
  IV bits = lanes_cast<IV>(__builtin_shufflevector(f[0], f[1], 0, 1, 2, 3)) +
            __builtin_shufflevector(up[0], up[1], 0, 2, 4, 6);
  bits = (bits & static_cast<std::int32_t>(kMagnitudeMask)) == 0 ? IV{} : bits;
  std::memcpy(d, &bits, sizeof bits);
}
#endif

#if defined(__AVX512F__)
// Fused's C term, S and step 5 on 16 int32 lanes (TileParams::int_finish: at most two chunks, the
// second's sum plus C's term an int32, |S| < 2^32): C 2^(F - top) by vscalefps toward zero (exact,
// or below 1), truncated to an int32; S = p0 + (p1 + C's term) as a sign and a 32-bit magnitude
// (when the two addends' signs agree S has it, else S fits an int32 and the wrapped sum's sign is
// S's: the majority of the three sign bits); |S| to binary32 toward zero (its 24 leading bits),
// masked to `precision` bits, scaled by 2^(top - F) toward zero (onto the subnormal grid: nested
// grids), infinite from 2^128 (vscalefps gives FLT_MAX toward zero); +0 for zero. The same values
// as finish() (the hostile and preset tests run both: AVX-512 this, AVX2 finish()).
inline void finish_int(const IV& top, const IV& p0, const IV& p1, const TileParams& tp, float* d) {
  constexpr int kRz = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
  const __m512i t = lanes_cast<__m512i>(top);
  const __m512 c = _mm512_loadu_ps(d);
  const __m512 cs = _mm512_scalef_round_ps(c, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(tp.frac), t)), kRz);
  const __m512i u = lanes_cast<__m512i>(p0);
  const __m512i v = _mm512_add_epi32(lanes_cast<__m512i>(p1), _mm512_cvttps_epi32(cs));
  const __m512i w = _mm512_add_epi32(u, v);
  const __mmask16 neg = _mm512_movepi32_mask(_mm512_ternarylogic_epi32(u, v, w, 0xE8));
  const __m512i mag = _mm512_mask_sub_epi32(w, neg, _mm512_setzero_si512(), w);
  __m512 val = _mm512_cvt_roundepu32_ps(mag, kRz);
  if (tp.precision < binary32::kPrecision)
    val = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(val),
                                               _mm512_set1_epi32(~((1 << (binary32::kPrecision - tp.precision)) - 1))));
  const __m512i q = _mm512_sub_epi32(t, _mm512_set1_epi32(tp.frac));
  __m512 r = _mm512_scalef_round_ps(val, _mm512_cvtepi32_ps(q), kRz);
  // |S| 2^q >= 2^128: val's biased exponent field + q > 254 (val not zero).
  const __mmask16 big =
      _mm512_mask_cmpgt_epi32_mask(_mm512_test_epi32_mask(mag, mag),
                                   _mm512_add_epi32(_mm512_srli_epi32(_mm512_castps_si512(val), kM32), q),
                                   _mm512_set1_epi32(2 * binary32::kBias));
  r = _mm512_mask_mov_ps(r, big, _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(kExponentMask))));
  __m512i rb = _mm512_castps_si512(r);
  rb = _mm512_mask_or_epi32(rb, neg & _mm512_test_epi32_mask(rb, rb), rb, _mm512_set1_epi32(static_cast<int>(kSignMask)));
  _mm512_storeu_si512(d, rb);
}
#endif

void fused_tile(const Panel& A, const Panel& B, std::size_t rb, std::size_t g0, const TileParams& tp, Acc& d, Bad& bad) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const std::size_t k = tp.k;
  for (std::size_t u = 0; u < A.nu; ++u) {
    const std::size_t t0 = u * k;
    const float* av = A.v.data() + (rb * A.kp + t0) * R;
    const std::int16_t* ae = A.e16.data() + (rb * A.kp + t0) * R * kExpCopies;
    const std::int16_t* be = B.e16.data() + (g0 / G * B.kp + t0) * G * W;
    const float* bv[G];
    for (std::size_t g = 0; g < G; ++g) bv[g] = B.v.data() + ((g0 + g) * B.kp + t0) * W;
    // Steps 1-2: each lane's largest alignment exponent, all G groups of a row in int16 lanes.
    SV top16[R];
    for (std::size_t r = 0; r < R; ++r) top16[r] = SV{} + static_cast<std::int16_t>(2 * kZeroExp16);
    for (std::size_t t = 0; t < k; ++t) {
      const SV eb = load<SV>(be + t * G * W);
      for (std::size_t r = 0; r < R; ++r) {
        const SV s = eb + splat_exp(ae + (t * R + r) * kExpCopies);
        top16[r] = top16[r] > s ? top16[r] : s;
      }
    }
    IV top[R][G];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) top[r][g] = to_int32(half<SH>(top16[r], g));
    // C's exponent (C with non-finite lanes zeroed back into d), the lanes' top, and 2^x.
    alignas(64) std::int32_t tops[R][G][W];
    FV sf[R][G];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const std::size_t ua = (rb * A.nu + u) * R + r, ub = ((g0 + g) * B.nu + u) * W;
        const IV s = load<IV>(B.s.data() + ub) + A.s[ua];
        FV c = load<FV>(d[r][g]);
        const IV ce = c_exponent(c, bad[r][g], tp.zte);
        std::memcpy(d[r][g], &c, sizeof c);
        const IV t = vmax(top[r][g] + s, ce);
        std::memcpy(tops[r][g], &t, sizeof t);
        // |F - t + s| < 1000: t in [zero_term, 2 * 15 + 254], |s| <= 254.
        sf[r][g] = pow2f(clamp_small(tp.frac - t + s, -126, 127));
      }
    // Step 3: the truncated terms, chunk by chunk in int32 lanes (kept in L1 between chunks).
    alignas(64) std::int32_t parts[kMaxChunks][R][G][W];
    std::size_t chunks = 0;
    for (std::size_t c0 = 0; c0 < k; c0 += tp.chunk, ++chunks) {
      IV part[R][G];  // the chunk's first term sets it (a zero-initialised array was a memset)
      const std::size_t c1 = std::min(k, c0 + tp.chunk);
      for (std::size_t g = 0; g < G; ++g) {
        const FV b = load<FV>(bv[g] + c0 * W);
        for (std::size_t r = 0; r < R; ++r) part[r][g] = __builtin_convertvector((av[c0 * R + r] * b) * sf[r][g], IV);
      }
      for (std::size_t t = c0 + 1; t < c1; ++t) {
        FV b[G];
        for (std::size_t g = 0; g < G; ++g) b[g] = load<FV>(bv[g] + t * W);
        for (std::size_t r = 0; r < R; ++r) {
          const float a = av[t * R + r];
          for (std::size_t g = 0; g < G; ++g) part[r][g] += __builtin_convertvector((a * b[g]) * sf[r][g], IV);
        }
      }
      std::memcpy(parts[chunks], part, sizeof part);
    }
#if defined(__AVX512F__)
    if (tp.int_finish) {
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t g = 0; g < G; ++g)
          finish_int(load<IV>(tops[r][g]), load<IV>(parts[0][r][g]), chunks > 1 ? load<IV>(parts[1][r][g]) : IV{}, tp,
                     d[r][g]);
      continue;
    }
#endif
    // The chunks' sums in binary64, C's term, step 5.
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const IV t = load<IV>(tops[r][g]);
        DH sum[2];
        c_term(load<FV>(d[r][g]), t, tp, sum);
        for (std::size_t ch = 0; ch < chunks; ++ch)
          for (std::size_t h = 0; h < 2; ++h)
            sum[h] += half_to_double(load<IV>(parts[ch][r][g]), h);
        finish(sum, t, tp, d[r][g]);
      }
  }
}

void groups_tile(const Panel& A, const Panel& B, std::size_t rb, std::size_t g0, const TileParams& tp, Acc& d, Bad& bad) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const std::size_t pairs = tp.g / 2;
  const std::size_t ninst = A.nu / tp.groups;
  for (std::size_t u = 0; u < ninst; ++u) {
    const std::size_t u0 = u * tp.groups;
    // Steps 1-2: C's exponent (C with non-finite lanes zeroed back into d), then each live
    // group's scale exponents.
    IV top[R][G];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        FV c = load<FV>(d[r][g]);
        top[r][g] = c_exponent(c, bad[r][g], tp.zte);
        std::memcpy(d[r][g], &c, sizeof c);
      }
    for (std::size_t gi = 0; gi < tp.groups; ++gi)
      for (std::size_t r = 0; r < R; ++r) {
        const std::size_t ua = (rb * A.nu + u0 + gi) * R + r;
        const std::int32_t ma = A.z[ua], sea = A.s[ua];
        const bool sa_live = A.ss[ua] != 0.0f;
        for (std::size_t g = 0; g < G; ++g) {
          const std::size_t ub = ((g0 + g) * B.nu + u0 + gi) * W;
          const IV live = ((load<IV>(B.z.data() + ub) & ma) != 0) & (load<FV>(B.ss.data() + ub) != 0.0f) &
                          (sa_live ? -1 : 0);
          top[r][g] = vmax(top[r][g], live != 0 ? load<IV>(B.s.data() + ub) + sea : IV{} + tp.zte);
        }
      }
    // Step 3: each group's product sum, weight and truncated term; the terms added in binary64 (in L1).
    alignas(64) double sums[R][G][W];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        DH ct[2];
        c_term(load<FV>(d[r][g]), top[r][g], tp, ct);
        std::memcpy(sums[r][g], ct, sizeof ct);
      }
    for (std::size_t gi = 0; gi < tp.groups; ++gi) {
      const std::int32_t* aq = A.e.data() + (rb * A.kp + (u0 + gi) * pairs) * R;
      const std::int32_t* bq[G];
      for (std::size_t g = 0; g < G; ++g) bq[g] = B.e.data() + ((g0 + g) * B.kp + (u0 + gi) * pairs) * W;
      GroupSums p[R][G];  // the first pair sets p (a zero-initialised array was a memset per group)
      for (std::size_t g = 0; g < G; ++g) {
        const IV b = load<IV>(bq[g]);
        for (std::size_t r = 0; r < R; ++r) p[r][g] = madd(aq[r], b);
      }
      for (std::size_t t = 1; t < pairs; ++t) {
        IV b[G];
        for (std::size_t g = 0; g < G; ++g) b[g] = load<IV>(bq[g] + t * W);
        for (std::size_t r = 0; r < R; ++r)
          for (std::size_t g = 0; g < G; ++g) p[r][g] = madd(p[r][g], aq[t * R + r], b[g]);
      }
      for (std::size_t r = 0; r < R; ++r) {
        const std::size_t ua = (rb * A.nu + u0 + gi) * R + r;
        for (std::size_t g = 0; g < G; ++g) {
          const std::size_t ub = ((g0 + g) * B.nu + u0 + gi) * W;
          const FV w = __builtin_convertvector(group_sums(p[r][g]), FV) * (load<FV>(B.ss.data() + ub) * A.ss[ua]);
          // |sh - c0| < 1000 (scale exponents within +-150, top within [zero_term, 300]), |c0| < 2^14.
          const IV sh = clamp_small(tp.c0 + (load<IV>(B.s.data() + ub) + A.s[ua]) - top[r][g], -60, 100);
          const FV term = trunc_lanes(w * pow2f(sh));
          for (std::size_t h = 0; h < 2; ++h) {
            const DH s = load<DH>(sums[r][g] + h * WH) + half_to_double(term, h);
            std::memcpy(sums[r][g] + h * WH, &s, sizeof s);
          }
        }
      }
    }
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const DH sum[2] = {load<DH>(sums[r][g]), load<DH>(sums[r][g] + WH)};
        finish(sum, top[r][g], tp, d[r][g]);
      }
  }
}

// Every tile (rows block rb, column groups from g0) of the GEMM; the chain takes the outputs of
// rows or columns with NaN or Inf elements or NaN scales, and of lanes whose running sum left the
// finite range.
template <class TileFn>
void run_tiles(const Panel& A, const Panel& B, std::size_t M, std::size_t N, const TileParams& tp, TileFn tile,
               const std::function<float(std::size_t, std::size_t)>& chain, std::vector<float>& acc) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const std::size_t gblocks = (B.blocks + G - 1) / G, n = A.blocks * gblocks;
  parallel_for(n, 1, [&](std::size_t n0, std::size_t n1) {
    for (std::size_t task = n0; task < n1; ++task) {
      const std::size_t rb = task % A.blocks, g0 = task / A.blocks * G;
      Acc d = {};
      Bad bad = {};
      tile(A, B, rb, g0, tp, d, bad);
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t l = 0; l < W; ++l) {
            const std::size_t i = rb * R + r, j = (g0 + g) * W + l;
            if (i >= M || j >= N) continue;
            const float v = d[r][g][l];
            acc[i * N + j] = A.ok[i] && B.ok[j] && bad[r][g][l] == 0 && std::isfinite(v) ? v : chain(i, j);
          }
    }
  });
}
}  // namespace

std::vector<float> block_scaled_kernel(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& m,
                                       const std::function<float(std::size_t, std::size_t)>& chain) {
  const bool fused = m.form == DotForm::Fused && m.block == m.k && !m.exact_sum && !m.c_after_products;
  const bool groups = m.form == DotForm::ScaledGroups;
  if ((!fused && !groups) || m.accumulator != AccumulatorFormat::Fp32 || m.k > kMaxK || m.scale_block <= 0) return {};
  const std::size_t M = a.rows, N = b.rows, K = a.cols, k = static_cast<std::size_t>(m.k);
  const std::size_t kp = (K + k - 1) / k * k;
  const Format& in = format_by_name(m.input_format);
  std::vector<float> acc(M * N, 0.0f);
  {
    const Format& in_b = format_by_name(b_input_format(m));
    const Format& sf = format_by_name(m.scale_format);
    const int F = m.alignment_frac_bits;
    const bool step5 = m.output_rounding == Rounding::TowardZero &&
                       (kFinish24 ? m.output_precision == 24 : m.output_precision <= 24) &&
                       m.zero_term_exponent != kNoZeroTerm;
    TileParams tp;
    tp.k = k;
    tp.frac = F;
    tp.precision = m.output_precision;
    tp.zte = m.zero_term_exponent;
    if (fused && step5) {
      // The conditions of the Fused tiles (see above): power-of-two scales, one per instruction;
      // products exact binary32 normals in [2^-100, 2^100]; 2^x normal whenever a product is not
      // zero (F - emin_a - emin_b <= 127); each term an int32, their sum and C's below 2^53.
      auto sig_max = [](const Format& f) { return 2.0 - std::ldexp(1.0, -f.mantissa_bits); };
      const double T = sig_max(in) * sig_max(in_b) * std::ldexp(1.0, F);
      const bool ok = sf.mantissa_bits == 0 && m.scale_block == m.k && in.mantissa_bits + in_b.mantissa_bits <= 22 &&
                      in.max_finite() * in_b.max_finite() < 0x1p100 && in.min_positive() * in_b.min_positive() >= 0x1p-100 &&
                      F - m.input_min_exponent - b_input_min_exponent(m) <= 127 && T < 0x1p31 &&
                      m.zero_term_exponent <= binary32::kMinExponent &&
                      static_cast<double>(k) * T + std::ldexp(1.0, F + 1) < 0x1p53;
      tp.chunk = static_cast<std::size_t>(std::min((0x1p31 - 1) / T, 64.0));
      if (ok && (k + tp.chunk - 1) / tp.chunk <= kMaxChunks) {
        const double c_term = std::ldexp(1.0, F + 1), rest = static_cast<double>(k > tp.chunk ? k - tp.chunk : 0);
        tp.int_finish = k <= 2 * tp.chunk && rest * T + c_term < 0x1p31 && static_cast<double>(k) * T + c_term < 0x1p32;
        const Panel PA = fused_panel<kExpCopies>(a, kTileRows, 1, kp, k, m.input_min_exponent);
        const Panel PB = fused_panel(b, W, kTileGroups, kp, k, b_input_min_exponent(m));
        run_tiles(PA, PB, M, N, tp, fused_tile, chain, acc);
        return acc;
      }
    }
    if (groups && step5) {
      const int qin = in.min_normal_exponent() - in.mantissa_bits;
      const double qmax = std::ldexp(in.max_finite(), -qin), ssmax = std::ldexp(1.0, sf.mantissa_bits + 1) - 1;
      const auto g = static_cast<std::size_t>(m.scale_group);
      const double wmax = static_cast<double>(g) * qmax * qmax * ssmax * ssmax;
      const int c0 = 2 * qin - 2 * sf.mantissa_bits + F;
      const bool ok = std::string_view(b_input_format(m)) == m.input_format && g % 2 == 0 && g <= 32 && k % g == 0 &&
                      qmax < 0x1p15 && static_cast<double>(g) * qmax * qmax < 0x1p31 && wmax < 0x1p24 && c0 <= 100 &&
                      static_cast<double>(k / g) * wmax * std::ldexp(1.0, c0) + std::ldexp(1.0, F + 1) < 0x1p53 &&
                      (!kGroupsInt16 || (static_cast<double>(g / 2) * qmax * qmax < 0x1p15 && c0 > -0x1p14));
      if (ok) {
        tp.groups = k / g;
        tp.g = g;
        tp.c0 = c0;
        const Panel PA = groups_panel(a, kTileRows, 1, kp, g, qin, sf);
        const Panel PB = groups_panel(b, W, kTileGroups, kp, g, qin, sf);
        run_tiles(PA, PB, M, N, tp, groups_tile, chain, acc);
        return acc;
      }
    }
  }
  const Decoded A = decode(a, m, kp, m.input_format, m.input_min_exponent);
  const Decoded B = decode(b, m, kp, b_input_format(m), b_input_min_exponent(m));
  const int qin = in.min_normal_exponent() - in.mantissa_bits;
  const int unit0 = 2 * qin - 2 * format_by_name(m.scale_format).mantissa_bits;
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

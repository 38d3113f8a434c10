#include "gemm/bound_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/row_constants.hpp"
#include "gemm/bound_steps.hpp"

#if defined(__AVX512BW__) && defined(__AVX512CD__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_epi32 in the shift intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "gemm/fp8_pair_steps.hpp"
#define FP8LAB_BOUND_AVX512 1
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // internal 64-byte vector helpers (see hopper_fp8_kernel.cpp)
#endif

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp).
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using bound_steps::Fp32Track;

constexpr std::size_t kLanes = 16;         // output columns per vector group
constexpr std::size_t kRowsPerTask = 6;    // rows of A per task
constexpr std::size_t kGroupsPerTask = 2;  // column groups per task
// Exponents of a zero operand and of a zero C: low enough never to be the largest (a real
// product's is >= 2 * min_exp >= -28), and every difference fits int16.
constexpr int kZeroExp = -200;
constexpr int kZeroC = -400;

// The numbers of the model row the kernel uses (hopper_fp8_kernel_models has checked them
// against the kernel's: k = 32, F = 13, P = 14, FP8 operands, so that every shifted |product|
// fits int16).
struct Params {
  int k, frac, out_bits, min_exp, mant_bits;
  int product_shift() const { return frac - 2 * mant_bits; }  // |product| onto the alignment grid's headroom
};

// An operand value's exponent (clamped at min_exp; kZeroExp for zero), |significand| (value =
// m * 2^(e - mant_bits)) and sign mask (0 or -1), from the float's bits (v is a value of the
// operand format: the caller checked).
struct Parts {
  int e, m, s;
};
Parts parts(float v, const Params& p) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(v);
  if ((bits & binary32::kMagnitudeMask) == 0) return {kZeroExp, 0, 0};
  const int e = static_cast<int>((bits & binary32::kExponentMask) >> binary32::kMantissaBits) - binary32::kBias;
  const int frac = static_cast<int>((bits & binary32::kFractionMask) >> (binary32::kMantissaBits - p.mant_bits));
  const int m = ((1 << p.mant_bits) | frac) >> std::max(p.min_exp - e, 0);  // subnormal: shifted exactly
  return {std::max(e, p.min_exp), m, (bits & binary32::kSignMask) ? -1 : 0};
}

// One (row, column group)'s chain between instructions: D = kept * 2^(emax - F) with |kept| < 2^P
// (kept = 0 for D = 0), and bp, the bound of the promotion block's partial sum so far.
struct Chain {
  alignas(64) std::int32_t kept[kLanes];
  alignas(64) std::int32_t emax[kLanes];
  alignas(64) double bp[kLanes];
};

#ifdef FP8LAB_BOUND_AVX512
// AVX-512 BW/CD: k in pairs of 16-bit lanes (as the GEMM kernel's paired path).
constexpr std::size_t kAWords = 3;                        // per (row, k pair): exponents, |significands|, sign masks
constexpr std::size_t kAStride = kRowsPerTask * kAWords;  // int32 words of A per pair in a row block
constexpr std::size_t kBStride = kAWords * 2 * kLanes;    // int16 of B per pair in a column group

std::int32_t pack(int lo, int hi) {
  return static_cast<std::int32_t>((static_cast<std::uint32_t>(lo) & 0xFFFFu) | (static_cast<std::uint32_t>(hi) << 16));
}

// A: per (block of kRowsPerTask rows, pair, row) kAWords int32, each two int16 (k even low, k odd
// high), broadcast to the lanes; B: per (group of 16 columns, pair) three rows of 32 int16 (lane l,
// k even at 2l, odd at 2l + 1): exponents, |significand| << product_shift, sign masks. A missing k
// or column is a zero operand.
struct Operands {
  std::size_t pairs;
  std::vector<std::int32_t> a;
  std::vector<std::int16_t> b;
  const std::int32_t* row(std::size_t i) const {
    return a.data() + (i / kRowsPerTask) * pairs * kAStride + (i % kRowsPerTask) * kAWords;
  }
  const std::int16_t* group(std::size_t jt) const { return b.data() + jt * pairs * kBStride; }
};

Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups, const Params& p) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, K2 = (K + 1) / 2;
  const std::size_t row_blocks = (M + kRowsPerTask - 1) / kRowsPerTask;
  Operands o{K2, std::vector<std::int32_t>(row_blocks * K2 * kAStride), std::vector<std::int16_t>(groups * K2 * kBStride)};
  parallel_for(M, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t i = r0; i < r1; ++i)
      for (std::size_t q = 0; q < K2; ++q) {
        const Parts lo = parts(a.row(i)[2 * q], p), hi = 2 * q + 1 < K ? parts(a.row(i)[2 * q + 1], p) : Parts{kZeroExp, 0, 0};
        std::int32_t* w = o.a.data() + (i / kRowsPerTask) * K2 * kAStride + q * kAStride + (i % kRowsPerTask) * kAWords;
        w[0] = pack(lo.e, hi.e);
        w[1] = pack(lo.m, hi.m);
        w[2] = pack(lo.s, hi.s);
      }
  });
  for (std::size_t g = 0; g < groups * K2; ++g)  // padding: zero operands
    std::fill_n(o.b.data() + g * kBStride, 2 * kLanes, static_cast<std::int16_t>(kZeroExp));
  parallel_for(N, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t j = r0; j < r1; ++j)
      for (std::size_t k = 0; k < K; ++k) {
        const Parts x = parts(b.row(j)[k], p);
        std::int16_t* w = o.b.data() + (j / kLanes) * K2 * kBStride + (k / 2) * kBStride + 2 * (j % kLanes) + (k & 1);
        w[0] = static_cast<std::int16_t>(x.e);
        w[2 * kLanes] = static_cast<std::int16_t>(x.m << p.product_shift());
        w[4 * kLanes] = static_cast<std::int16_t>(x.s);
      }
  });
  return o;
}

inline __m512i in_register(__m512i v) {  // keeps a loaded B vector in a register for all rows
  asm("" : "+v"(v));
  return v;
}

// 2^e for 8 int32 exponents in the normal binary64 range, exact, from the bits.
inline __m512d pow2(__m256i e) {
  return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(e), _mm512_set1_epi64(1023)), 52));
}

// The bound's doubles for one instruction, lane by lane as bounds.cpp adds them: alignment
// (n inexact terms times 2^(emax - F)), then one ULP_P of D, or for D = 0 the FP32-subnormal
// term eta (a non-zero D is >= 2^(2 min_exp - F) >= 2^-41 here, never below 2^-125), into bp.
inline void add_instruction_bound(__m512i n, __m512i ue, __m512i ulp_e, __mmask16 zero, double* bp) {
  for (int h = 0; h < 2; ++h) {
    const __m256i nh = h ? _mm512_extracti64x4_epi64(n, 1) : _mm512_castsi512_si256(n);
    const __m256i uh = h ? _mm512_extracti64x4_epi64(ue, 1) : _mm512_castsi512_si256(ue);
    const __m256i lh = h ? _mm512_extracti64x4_epi64(ulp_e, 1) : _mm512_castsi512_si256(ulp_e);
    const __mmask8 zh = static_cast<__mmask8>(h ? zero >> 8 : zero);
    const __m512d align = _mm512_mul_pd(_mm512_cvtepi32_pd(nh), pow2(uh));
    const __m512d last = _mm512_mask_blend_pd(zh, pow2(lh), _mm512_set1_pd(bound_steps::kEta));
    _mm512_store_pd(bp + 8 * h, _mm512_add_pd(_mm512_load_pd(bp + 8 * h), _mm512_add_pd(align, last)));
  }
}

// One instruction (pairs [q0, q1)) for R rows against C column groups: the model's steps as the
// GEMM kernel takes them (largest exponent, terms truncated onto 2^(emax - F) and summed, D
// truncated to P bits), and alongside, the count of terms that truncation changed (a shifted
// |product| that does not shift back; C's dropped bits) and the bound's doubles.
template <int R, int C>
inline void instruction_block(const std::int32_t* const* a, const std::int16_t* const* b, std::size_t q0,
                              std::size_t q1, const Params& m, Chain (*ch)[kGroupsPerTask]) {
  __m512i vmax[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) vmax[r][c] = _mm512_set1_epi16(INT16_MIN);
  for (std::size_t q = q0; q < q1; ++q) {  // pass 1: the largest product exponent per lane and k parity
    __m512i eb[C];
    for (int c = 0; c < C; ++c) eb[c] = in_register(_mm512_loadu_si512(b[c] + q * kBStride));
    for (int r = 0; r < R; ++r) {
      const __m512i ea = _mm512_set1_epi32(a[r][q * kAStride]);
      for (int c = 0; c < C; ++c) vmax[r][c] = _mm512_max_epi16(vmax[r][c], _mm512_add_epi16(ea, eb[c]));
    }
  }
  // With C (= kept * 2^(pe - F), exponent pe - F + 31 - lzcnt|kept|): the alignment exponent, and
  // C truncated onto 2^(emax - F), computed as (|kept| << P) >> (emax - pe + P) (the shift is >= 1:
  // pe - emax <= F - floor(log2 |kept|)); it is inexact when the bits do not shift back.
  const __m512i one = _mm512_set1_epi16(1), hr = _mm512_set1_epi32(m.out_bits);
  __m512i emax[R][C], e2[R][C], s[R][C], cnt[R][C];
  __mmask16 c_cut[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const __m512i kept = _mm512_load_si512(ch[r][c].kept), pe = _mm512_load_si512(ch[r][c].emax);
      const __m512i ck = _mm512_abs_epi32(kept);
      const __m512i ce = _mm512_mask_mov_epi32(
          _mm512_sub_epi32(_mm512_add_epi32(pe, _mm512_set1_epi32(31 - m.frac)), _mm512_lzcnt_epi32(ck)),
          _mm512_testn_epi32_mask(ck, ck), _mm512_set1_epi32(kZeroC));
      const __m512i mx = _mm512_max_epi16(vmax[r][c], _mm512_srli_epi32(vmax[r][c], 16));
      __m512i e = _mm512_srai_epi32(_mm512_slli_epi32(mx, 16), 16);
      e = _mm512_mask_mov_epi32(e, _mm512_cmplt_epi32_mask(e, _mm512_set1_epi32(2 * m.min_exp)), _mm512_set1_epi32(kZeroExp));
      emax[r][c] = _mm512_max_epi32(e, ce);
      e2[r][c] = _mm512_or_si512(_mm512_and_si512(emax[r][c], _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(emax[r][c], 16));
      const __m512i sh = _mm512_add_epi32(_mm512_sub_epi32(emax[r][c], pe), hr), c_hr = _mm512_sllv_epi32(ck, hr);
      const __m512i tc = _mm512_srlv_epi32(c_hr, sh);
      c_cut[r][c] = _mm512_cmpneq_epi32_mask(_mm512_sllv_epi32(tc, sh), c_hr);
      s[r][c] = _mm512_mask_sub_epi32(tc, _mm512_cmplt_epi32_mask(kept, _mm512_setzero_si512()), _mm512_setzero_si512(), tc);
      cnt[r][c] = _mm512_setzero_si512();
    }
  // Pass 2: each |product| << product_shift shifted right by its distance to emax (16 or more gives
  // 0; a zero product stays 0), counted when it does not shift back, signed (+-1 from the sign
  // masks) and added pairwise into the int32 sum.
  for (std::size_t q = q0; q < q1; ++q) {
    __m512i eb[C], mb[C], sb[C];
    for (int c = 0; c < C; ++c) {
      eb[c] = in_register(_mm512_loadu_si512(b[c] + q * kBStride));
      mb[c] = in_register(_mm512_loadu_si512(b[c] + q * kBStride + 2 * kLanes));
      sb[c] = in_register(_mm512_loadu_si512(b[c] + q * kBStride + 4 * kLanes));
    }
    for (int r = 0; r < R; ++r) {
      const std::int32_t* w = a[r] + q * kAStride;
      const __m512i ea = _mm512_set1_epi32(w[0]), ma = _mm512_set1_epi32(w[1]), sa = _mm512_set1_epi32(w[2]);
      for (int c = 0; c < C; ++c) {
        const __m512i d = _mm512_sub_epi16(e2[r][c], _mm512_add_epi16(ea, eb[c]));
        const __m512i prod = _mm512_mullo_epi16(ma, mb[c]);
        const __m512i t = _mm512_srlv_epi16(prod, d);
        cnt[r][c] = _mm512_mask_add_epi16(cnt[r][c], _mm512_cmpneq_epi16_mask(_mm512_sllv_epi16(t, d), prod), cnt[r][c], one);
        s[r][c] = add_signed_pairs(s[r][c], t, sa, sb[c], one);
      }
    }
  }
  // D: |S| truncated to P significant bits with S's sign; the bound of this instruction.
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const Truncated d = truncate_to_bits(s[r][c], m.out_bits);
      _mm512_store_si512(ch[r][c].kept, d.kept);
      _mm512_store_si512(ch[r][c].emax, _mm512_add_epi32(emax[r][c], d.cut));
      const __m512i n = _mm512_mask_add_epi32(_mm512_madd_epi16(cnt[r][c], one), c_cut[r][c], _mm512_madd_epi16(cnt[r][c], one),
                                              _mm512_set1_epi32(1));
      const __m512i ue = _mm512_sub_epi32(emax[r][c], _mm512_set1_epi32(m.frac));
      // ilogb(D) = emax - F + 31 - lzcnt|S| (truncation keeps the leading bit); one ULP_P is 2^(ilogb + 1 - P).
      const __m512i ulp_e = _mm512_sub_epi32(_mm512_add_epi32(ue, _mm512_set1_epi32(32 - m.out_bits)), d.lz);
      add_instruction_bound(n, ue, ulp_e, _mm512_testn_epi32_mask(s[r][c], s[r][c]), ch[r][c].bp);
    }
}

// One instruction for `rows` rows (from i0) against `groups` column groups (from jt), three rows
// at a time (3 x 2 sums, counts and exponents with the B vectors fill the 32 registers).
template <int R>
inline void rows_block(const std::int32_t* const* a, const std::int16_t* const* b, std::size_t groups, std::size_t q0,
                       std::size_t q1, const Params& m, Chain (*ch)[kGroupsPerTask]) {
  if (groups == 2) instruction_block<R, 2>(a, b, q0, q1, m, ch);
  else instruction_block<R, 1>(a, b, q0, q1, m, ch);
}
// Products k in [k0, k1) (k0 even).
inline void instruction(const Operands& o, const Params& m, std::size_t i0, std::size_t rows, std::size_t jt,
                        std::size_t groups, std::size_t k0, std::size_t k1, Chain (*ch)[kGroupsPerTask]) {
  const std::size_t q0 = k0 / 2, q1 = (k1 + 1) / 2;
  const std::int32_t* a[kRowsPerTask];
  const std::int16_t* b[kGroupsPerTask];
  for (std::size_t r = 0; r < rows; ++r) a[r] = o.row(i0 + r);
  for (std::size_t c = 0; c < groups; ++c) b[c] = o.group(jt + c);
  for (std::size_t r = 0; r < rows; r += 3) switch (std::min<std::size_t>(3, rows - r)) {
      case 3: rows_block<3>(a + r, b, groups, q0, q1, m, ch + r); break;
      case 2: rows_block<2>(a + r, b, groups, q0, q1, m, ch + r); break;
      default: rows_block<1>(a + r, b, groups, q0, q1, m, ch + r); break;
    }
}

// The chain's D as a float (exact: P bits; 2^(emax - F) is a normal float whenever D != 0).
inline void chain_value(const Chain& ch, const Params& m, float* out) {
  const __m512i e = _mm512_max_epi32(_mm512_sub_epi32(_mm512_load_si512(ch.emax), _mm512_set1_epi32(m.frac)),
                                     _mm512_set1_epi32(binary32::kMinExponent));
  const __m512 p2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(binary32::kBias)), binary32::kMantissaBits));
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(ch.kept)), p2));
}

#else
// Every other build (AVX2, the baseline): the same integers as the AVX-512 path above, so the same
// doubles, on int32 lanes of a GCC/Clang vector extension, one k at a time. A vector holds 8 lanes
// (one ymm with AVX2, two xmm with SSE2; 16 lanes made GCC spill AVX2's shift counts), each column
// group two of them. The once-per-instruction steps (C's alignment, D's truncation, the bound's
// doubles) are loops over the 16 lanes.
constexpr std::size_t kW = 8;
using Lanes = std::int32_t __attribute__((vector_size(kW * sizeof(std::int32_t))));
inline Lanes load(const std::int32_t* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(std::int32_t* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }
inline Lanes lanes_max(const Lanes& x, const Lanes& y) { return x > y ? x : y; }
inline Lanes lanes_min(const Lanes& x, const Lanes& y) { return x < y ? x : y; }

constexpr std::size_t kAWords = 3;               // per (row, k): exponent, |significand|, sign mask
constexpr std::size_t kBStride = kAWords * kLanes;  // per (column group, k): the same, 16 lanes each

// A: per (row, k) kAWords int32; B: per (group of 16 columns, k) three rows of 16 int32 lanes:
// exponents, |significand| << product_shift, sign masks. A missing column is a zero operand.
struct Operands {
  std::size_t K;
  std::vector<std::int32_t> a, b;
  const std::int32_t* row(std::size_t i) const { return a.data() + i * K * kAWords; }
  const std::int32_t* group(std::size_t jt) const { return b.data() + jt * K * kBStride; }
};

Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups, const Params& p) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  Operands o{K, std::vector<std::int32_t>(M * K * kAWords), std::vector<std::int32_t>(groups * K * kBStride, 0)};
  parallel_for(M, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t i = r0; i < r1; ++i)
      for (std::size_t k = 0; k < K; ++k) {
        const Parts x = parts(a.row(i)[k], p);
        std::int32_t* w = o.a.data() + (i * K + k) * kAWords;
        w[0] = x.e;
        w[1] = x.m;
        w[2] = x.s;
      }
  });
  for (std::size_t g = 0; g < groups * K; ++g)  // padding: zero operands
    std::fill_n(o.b.data() + g * kBStride, kLanes, kZeroExp);
  parallel_for(N, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t j = r0; j < r1; ++j)
      for (std::size_t k = 0; k < K; ++k) {
        const Parts x = parts(b.row(j)[k], p);
        std::int32_t* w = o.b.data() + ((j / kLanes) * K + k) * kBStride + j % kLanes;
        w[0] = x.e;
        w[kLanes] = x.m << p.product_shift();
        w[2 * kLanes] = x.s;
      }
  });
  return o;
}

// 2^e as a double from its bits (e in the normal binary64 range).
inline double pow2(int e) { return std::bit_cast<double>(static_cast<std::uint64_t>(e + 1023) << 52); }

// One instruction (products k in [k0, k1)) of one row of A against one column group: the AVX-512
// path's steps (see instruction_block there), lane by lane.
inline void instruction_lanes(const std::int32_t* a, const std::int32_t* b, std::size_t k0, std::size_t k1,
                              const Params& m, Chain& ch) {
  constexpr std::size_t L = kLanes;
  alignas(64) std::int32_t e[L], emax[L], s[L], c_cut[L], cnt[L];
  for (std::size_t h = 0; h < L; h += kW) {  // pass 1: the largest product exponent per lane
    Lanes vmax = Lanes{} + kZeroExp;
    for (std::size_t k = k0; k < k1; ++k) vmax = lanes_max(a[k * kAWords] + load(b + k * kBStride + h), vmax);
    store(e + h, vmax < 2 * m.min_exp ? Lanes{} + kZeroExp : vmax);  // no non-zero product
  }
  // C = kept * 2^(pe - F): the alignment exponent, and C truncated onto 2^(emax - F) as
  // (|kept| << P) >> (emax - pe + P), inexact when the bits do not shift back (a shift past 31
  // clamped to 31: |kept| << P < 2^31 leaves 0 either way).
  for (std::size_t l = 0; l < L; ++l) {
    const std::int32_t kept = ch.kept[l], pe = ch.emax[l];
    const auto ck = static_cast<std::uint32_t>(kept < 0 ? -kept : kept);
    const std::int32_t ce = ck != 0 ? pe + 31 - m.frac - std::countl_zero(ck) : kZeroC;
    emax[l] = std::max(e[l], ce);
    const std::uint32_t sh = std::min<std::uint32_t>(static_cast<std::uint32_t>(emax[l] - pe + m.out_bits), 31);
    const std::uint32_t c_hr = ck << m.out_bits, tc = c_hr >> sh;
    c_cut[l] = (tc << sh) != c_hr;
    s[l] = kept < 0 ? -static_cast<std::int32_t>(tc) : static_cast<std::int32_t>(tc);
  }
  // Pass 2: each |product| << product_shift (< 2^16) shifted right by its distance to emax, clamped
  // to [0, 31] (a zero product's distance can be negative; 16 or more leaves 0 either way),
  // counted when it does not shift back, signed and summed (one vpsravd, vpsllvd, vpcmpeqd per k
  // with AVX2).
  for (std::size_t h = 0; h < L; h += kW) {
    const Lanes ve = load(emax + h);
    Lanes vs = load(s + h), vc = Lanes{};
    for (std::size_t k = k0; k < k1; ++k) {
      const std::int32_t* w = a + k * kAWords;
      const std::int32_t* v = b + k * kBStride + h;
      const Lanes d = lanes_min(lanes_max(ve - (w[0] + load(v)), Lanes{}), Lanes{} + 31);
      const Lanes prod = w[1] * load(v + L);
      const Lanes t = prod >> d;
      vc += (t << d) == prod;  // -1 where exact (one compare fewer than counting the inexact)
      const Lanes sg = w[2] ^ load(v + 2 * L);
      vs += (t ^ sg) - sg;
    }
    store(s + h, vs);
    store(cnt + h, vc + static_cast<std::int32_t>(k1 - k0));  // the inexact ones
  }
  // D: |S| truncated to P significant bits with S's sign; the bound of this instruction, added as
  // the AVX-512 path adds it: n * 2^(emax - F) + (one ULP_P of D, or eta for D = 0).
  for (std::size_t l = 0; l < L; ++l) {
    const auto as = static_cast<std::uint32_t>(s[l] < 0 ? -s[l] : s[l]);
    const int lz = std::countl_zero(as | 1u);
    const int cut = std::max(32 - m.out_bits - lz, 0);
    const auto kept = static_cast<std::int32_t>(as >> cut);
    ch.kept[l] = s[l] < 0 ? -kept : kept;
    ch.emax[l] = emax[l] + cut;
    const int ue = emax[l] - m.frac;
    const double align = static_cast<double>(cnt[l] + c_cut[l]) * pow2(ue);
    const double last = s[l] == 0 ? bound_steps::kEta : pow2(ue + 32 - m.out_bits - lz);
    ch.bp[l] = ch.bp[l] + (align + last);
  }
}

inline void instruction(const Operands& o, const Params& m, std::size_t i0, std::size_t rows, std::size_t jt,
                        std::size_t groups, std::size_t k0, std::size_t k1, Chain (*ch)[kGroupsPerTask]) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < groups; ++c) instruction_lanes(o.row(i0 + r), o.group(jt + c), k0, k1, m, ch[r][c]);
}

// The chain's D as a float (exact: P bits; 2^(emax - F) is a normal float whenever D != 0).
inline void chain_value(const Chain& ch, const Params& m, float* out) {
  for (std::size_t l = 0; l < kLanes; ++l) {
    const int e = std::max(ch.emax[l] - m.frac, binary32::kMinExponent);
    const float p2 = std::bit_cast<float>(static_cast<std::uint32_t>(e + binary32::kBias) << binary32::kMantissaBits);
    out[l] = static_cast<float>(ch.kept[l]) * p2;
  }
}
#endif

// Promotion of one (row, group): the partial sums meet the scales and the accumulators, each lane
// through bound_steps::combine_with_bound; one loop per order so that each can vectorise.
template <Combine order>
inline void promote(const float* p, const double* bp, float sa, const float* sb, float* v, double* err) {
  for (std::size_t l = 0; l < kLanes; ++l) {
    const Fp32Track t = bound_steps::combine_with_bound(order, p[l], bp[l], sa, sb[l], Fp32Track{v[l], err[l]});
    v[l] = t.v;
    err[l] = t.err;
  }
}

}  // namespace

void hopper_fp8_chain_bounds(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                             std::size_t promote_every, Combine combine, float* acc, double* err) {
  constexpr std::size_t L = kLanes, TM = kRowsPerTask, TG = kGroupsPerTask;
  const Params m{model.k, model.alignment_frac_bits, model.output_precision, model.input_min_exponent,
                 model.input_mantissa_bits};
  const std::size_t M = a.rows, N = b.rows, K = a.cols, kI = static_cast<std::size_t>(m.k);
  const std::size_t NC = promote_every == 0 ? std::max<std::size_t>(K, 1) : promote_every;
  const std::size_t JT = (N + L - 1) / L, IT = (M + TM - 1) / TM, JS = (JT + TG - 1) / TG;
  const Operands o = prepare(a, b, JT, m);
  const std::size_t KB = (K + NC - 1) / NC;  // the scales per row and promotion block, looked up once
  std::vector<float> sa(M * KB), sb(JT * L * KB, 0.0f);  // sb: per (block, column), padding columns 0
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t kb = 0; kb < KB; ++kb) sa[i * KB + kb] = a.scale(i, kb * NC);
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t kb = 0; kb < KB; ++kb) sb[kb * JT * L + j] = b.scale(j, kb * NC);
  parallel_for(IT * JS, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t jt = (t / IT) * TG, i0 = (t % IT) * TM;
      const std::size_t rows = std::min(TM, M - i0), groups = std::min(TG, JT - jt);
      alignas(64) float v[TM][TG][L] = {};
      alignas(64) double e[TM][TG][L] = {};
      Chain ch[TM][TG];
      for (std::size_t kb = 0; kb < K; kb += NC) {
        const std::size_t ke = std::min(K, kb + NC);
        std::memset(ch, 0, sizeof ch);
        for (std::size_t kc = kb; kc < ke; kc += kI)  // kc even: kI and NC are multiples of 32
          instruction(o, m, i0, rows, jt, groups, kc, std::min(kc + kI, ke), ch);
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t c = 0; c < groups; ++c) {
            const float sar = sa[(i0 + r) * KB + kb / NC];
            const float* sbc = sb.data() + (kb / NC) * JT * L + (jt + c) * L;
            alignas(64) float p[L];
            chain_value(ch[r][c], m, p);
            switch (combine) {
              case Combine::DeepGemm: promote<Combine::DeepGemm>(p, ch[r][c].bp, sar, sbc, v[r][c], e[r][c]); break;
              case Combine::Triton: promote<Combine::Triton>(p, ch[r][c].bp, sar, sbc, v[r][c], e[r][c]); break;
              case Combine::Cublas: promote<Combine::Cublas>(p, ch[r][c].bp, sar, sbc, v[r][c], e[r][c]); break;
            }
          }
      }
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < groups; ++c)
          for (std::size_t l = 0; l < L && (jt + c) * L + l < N; ++l) {
            acc[(i0 + r) * N + (jt + c) * L + l] = v[r][c][l];
            err[(i0 + r) * N + (jt + c) * L + l] = e[r][c][l];
          }
    }
  });
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, hopper_fp8_chain_bounds,
                      (const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                       std::size_t promote_every, Combine combine, float* acc, double* err),
                      (a, b, model, promote_every, combine, acc, err))

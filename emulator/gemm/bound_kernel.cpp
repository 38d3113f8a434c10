#include "gemm/bound_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "common/buffer_pool.hpp"
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
#if defined(__AVX2__) && !defined(FP8LAB_BOUND_AVX512)
#include <immintrin.h>  // the AVX2 path's widening to binary64 (add_bound)
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // internal 64-byte vector helpers (see hopper_fp8_kernel.cpp)
#endif
#include "gemm/hopper_fp8_tile.hpp"

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp).
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using bound_steps::Fp32Track;

// The task's tile and the exponents of zeros: gemm/hopper_fp8_tile.hpp.

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
  const std::uint32_t bits = lanes_cast<std::uint32_t>(v);
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
  PooledVector<std::int32_t> a;  // reused between calls (common/buffer_pool.hpp)
  PooledVector<std::int16_t> b;
  const std::int32_t* row(std::size_t i) const {
    return a.data() + (i / kRowsPerTask) * pairs * kAStride + (i % kRowsPerTask) * kAWords;
  }
  const std::int16_t* group(std::size_t jt) const { return b.data() + jt * pairs * kBStride; }
};

Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups, const Params& p) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, K2 = (K + 1) / 2;
  const std::size_t row_blocks = (M + kRowsPerTask - 1) / kRowsPerTask;
  Operands o{K2, PooledVector<std::int32_t>(row_blocks * K2 * kAStride, 0), PooledVector<std::int16_t>(groups * K2 * kBStride, 0)};
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
// Every other build (AVX2, the baseline): the same steps in the GEMM kernel's portable layout
// (gemm/hopper_fp8_kernel.cpp, its #else path): one machine register of lanes per vector (8 with
// AVX2, 4 otherwise), R rows of A sharing each load of B. Each product is taken in FP32 (exact: two
// values of the format) times 2^(F - emax) (exact) and truncated toward zero by the conversion: the
// AVX-512 path's term. Whether truncation changed a term is read from exponents alone: a product's
// lowest set bit is 2^(la + lb), la and lb its operands' (value = odd * 2^l), so its term is inexact
// exactly when la + lb < emax - F, which a third pass counts on bytes, four k per lane.
using VS8 = std::int8_t __attribute__((vector_size(kW * sizeof(std::int32_t))));
using VI4 = std::int32_t __attribute__((vector_size(4 * sizeof(std::int32_t))));
using VL4 = std::int64_t __attribute__((vector_size(4 * sizeof(std::int64_t))));
using VD4 = double __attribute__((vector_size(4 * sizeof(double))));
// x >> n, 0 for n outside [0, 31]; x << n likewise (unsigned min: a negative n is huge).
inline VU shr(const VU& x, const VI& n) { return x >> lanes_min(lanes_cast<VU>(n), VU{} + 31); }
inline VU shl(const VU& x, const VI& n) { return x << lanes_min(lanes_cast<VU>(n), VU{} + 31); }
// floor(log2 x) per lane for 0 < x < 2^24 (exact from its float's exponent; x = 0 gives -127).
inline VI log2_floor(const VI& x) { return (lanes_cast<VI>(__builtin_convertvector(x, VF)) >> 23) - binary32::kBias; }

// Operands. A's values per (block of kRowsPerTask rows, k): the block's kRowsPerTask values (a task
// reads A as one stream); B's per (column group, k), 16 lanes, 0 past N. Per quad of k, as bytes
// four k to a 32-bit word (A one word per row of the block, B 16 lanes): the exponents as pass 1
// reads them (kExpBias8), and the lowest set bit's exponents for pass 3 (kLowZero8 for a zero
// operand: see thresholds()).
constexpr int kLowZero8 = 63;
constexpr int kEtaExp = binary32::kMinQuantum;  // bound_steps::kEta = 2^-149
static_assert(bound_steps::kEta == 0x1p-149 && kEtaExp == -149);
struct Operands {
  std::size_t K, quads;
  PooledVector<float> a, b;  // reused between calls (common/buffer_pool.hpp)
  PooledVector<std::uint8_t> a4, b4;
  PooledVector<std::int8_t> al, bl;
};

// Row r (K values x) of a row block of A (W = kRowsPerTask) or column group of B (W = kLanes): value
// k at f[k * W + r], its exponent and lowest-bit bytes at e4 and l4[((k / 4) * W + r) * 4 + k % 4]
// (a zero operand's are the fill's, 0 and kLowZero8). parts() lane-wise, kW k at a time (kW is a
// multiple of 4, so a vector's bytes are whole quads), the tail one k at a time.
template <std::size_t W>
void pack_row(const float* x, std::size_t r, std::size_t K, const Params& p, float* f, std::uint8_t* e4,
              std::int8_t* l4) {
  using Bytes = std::int8_t __attribute__((vector_size(kW)));
  static_assert(kW % 4 == 0);
  constexpr int kM32 = binary32::kMantissaBits;
  std::size_t k = 0;
  for (; k + kW <= K; k += kW) {
    const VU u = load<VU>(x + k);
    const VI field = lanes_cast<VI>((u & binary32::kMagnitudeMask) >> kM32) - binary32::kBias;
    const VI top = lanes_cast<VI>((u >> (kM32 - p.mant_bits)) & ((1u << p.mant_bits) - 1)) | (1 << p.mant_bits);
    const VI m = top >> lanes_min(lanes_max(p.min_exp - field, VI{}), VI{} + 31);
    const VI e = lanes_max(field, VI{} + p.min_exp);
    const VI low = m & -m;  // 1, 2, 4 or 8: |significand| < 16
    const VI zero = (u & binary32::kMagnitudeMask) == 0;
    const Bytes eb = __builtin_convertvector(zero ? VI{} : e + kExpBias8, Bytes);
    const Bytes lb = __builtin_convertvector(zero ? VI{} + kLowZero8 : e - p.mant_bits + (low >> 1) - (low >> 3), Bytes);
    for (std::size_t q = 0; q < kW / 4; ++q) {
      std::memcpy(e4 + ((k / 4 + q) * W + r) * 4, reinterpret_cast<const char*>(&eb) + 4 * q, 4);
      std::memcpy(l4 + ((k / 4 + q) * W + r) * 4, reinterpret_cast<const char*>(&lb) + 4 * q, 4);
    }
    for (std::size_t j = 0; j < kW; ++j) f[(k + j) * W + r] = x[k + j];
  }
  for (; k < K; ++k) {
    f[k * W + r] = x[k];
    const Parts v = parts(x[k], p);
    if (v.m == 0) continue;
    const std::size_t at = ((k / 4) * W + r) * 4 + k % 4;
    e4[at] = static_cast<std::uint8_t>(v.e + kExpBias8);
    l4[at] = static_cast<std::int8_t>(v.e - p.mant_bits + std::countr_zero(static_cast<unsigned>(v.m)));
  }
}

Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups, const Params& p) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, K4 = (K + 3) / 4, TM = kRowsPerTask;
  const std::size_t row_blocks = (M + TM - 1) / TM;
  Operands o{K,
             K4,
             PooledVector<float>(row_blocks * K * TM, 0.0f),
             PooledVector<float>(groups * K * kLanes, 0.0f),
             PooledVector<std::uint8_t>(row_blocks * K4 * TM * 4, 0),
             PooledVector<std::uint8_t>(groups * K4 * 4 * kLanes, 0),
             PooledVector<std::int8_t>(row_blocks * K4 * TM * 4, kLowZero8),
             PooledVector<std::int8_t>(groups * K4 * 4 * kLanes, kLowZero8)};
  parallel_for(row_blocks, 4, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t blk = b0; blk < b1; ++blk)
      for (std::size_t i = blk * TM; i < std::min(M, (blk + 1) * TM); ++i)
        pack_row<TM>(a.row(i), i % TM, K, p, o.a.data() + blk * K * TM, o.a4.data() + blk * K4 * TM * 4,
                     o.al.data() + blk * K4 * TM * 4);
  });
  parallel_for((N + kLanes - 1) / kLanes, 1, [&](std::size_t g0, std::size_t g1) {
    for (std::size_t jt = g0; jt < g1; ++jt)
      for (std::size_t j = jt * kLanes; j < std::min(N, (jt + 1) * kLanes); ++j)
        pack_row<kLanes>(b.row(j), j % kLanes, K, p, o.b.data() + jt * K * kLanes, o.b4.data() + jt * K4 * kLanes * 4,
                         o.bl.data() + jt * K4 * kLanes * 4);
  });
  return o;
}

// Pass 3's threshold per lane, emax - F as a byte in each of the four: a term is inexact when its
// product's la + lb is below it. Clamped to [-128, kLowZero8 + min_exp - mant_bits]: below -128
// nothing is (every la + lb >= 2 * (min_exp - mant_bits) >= -32), and the top clamp leaves every
// non-zero product inexact as before (la + lb <= 2 * 15 = 30 in E4M3 and E5M2) while a product with
// a zero operand (la + lb >= kLowZero8 + min_exp - mant_bits, at most 126: no byte wraps) never is.
inline VU thresholds(const VI& emax, const Params& m) {
  const VI t = lanes_min(lanes_max(emax - m.frac, VI{} - 128), VI{} + (kLowZero8 + m.min_exp - m.mant_bits));
  return (lanes_cast<VU>(t) & 0xFFu) * 0x01010101u;
}

// bp[l] += n[l] * 2^ue[l] + 2^last[l] for kW lanes (exponents in binary64's normal range: every
// term exact, the sums rounded as bounds.cpp rounds them); 2^e from the bits.
inline void add_bound(double* bp, const VI& n, const VI& ue, const VI& last) {
  const VI be = ue + 1023, bl = last + 1023;
#if defined(__AVX2__)
  // GCC lowers the generic code below through 128-bit halves (two vcvtdq2pd xmm and an insert per
  // conversion); one vcvtdq2pd / vpmovsxdq ymm each here.
  const __m256i n8 = lanes_cast<__m256i>(n), e8 = lanes_cast<__m256i>(be), l8 = lanes_cast<__m256i>(bl);
  for (int h = 0; h < 2; ++h) {
    const __m128i nh = h ? _mm256_extracti128_si256(n8, 1) : _mm256_castsi256_si128(n8);
    const __m128i eh = h ? _mm256_extracti128_si256(e8, 1) : _mm256_castsi256_si128(e8);
    const __m128i lh = h ? _mm256_extracti128_si256(l8, 1) : _mm256_castsi256_si128(l8);
    const __m256d align = _mm256_mul_pd(_mm256_cvtepi32_pd(nh), _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(eh), 52)));
    const __m256d tail = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(lh), 52));
    _mm256_storeu_pd(bp + 4 * h, _mm256_add_pd(_mm256_loadu_pd(bp + 4 * h), _mm256_add_pd(align, tail)));
  }
#else
  for (std::size_t h = 0; h < kW; h += 4) {
    VI4 n4, e4, l4;
    std::memcpy(&n4, reinterpret_cast<const std::int32_t*>(&n) + h, sizeof n4);
    std::memcpy(&e4, reinterpret_cast<const std::int32_t*>(&be) + h, sizeof e4);
    std::memcpy(&l4, reinterpret_cast<const std::int32_t*>(&bl) + h, sizeof l4);
    const VD4 align = __builtin_convertvector(n4, VD4) * lanes_cast<VD4>(__builtin_convertvector(e4, VL4) << 52);
    const VD4 tail = lanes_cast<VD4>(__builtin_convertvector(l4, VL4) << 52);
    store(bp + h, load<VD4>(bp + h) + (align + tail));
  }
#endif
}

// One instruction (products k in [k0, k1), k0 a multiple of 4) for R rows of A from i (all in one
// row block) against column group jt: the AVX-512 path's integers (largest exponent, C and the
// terms truncated onto 2^(emax - F) and summed, D truncated to P bits, the count of inexact terms)
// and the bound's doubles, lane by lane as bounds.cpp adds them.
template <std::size_t R>
inline void instruction_block(const Operands& o, const Params& m, std::size_t i, std::size_t jt, std::size_t k0,
                              std::size_t k1, Chain* const* ch) {
  constexpr std::size_t TM = kRowsPerTask;
  const std::size_t K = o.K, blk = i / TM, u0 = k0 / 4, u1 = (k1 + 3) / 4;
  const float* x[R];          // row r's value k is x[r][k * TM]
  const std::uint8_t* x4[R];  // row r's exponent bytes of quad u are x4[r] + u * TM * 4
  const std::int8_t* xl[R];   // and its lowest-bit bytes xl[r] + u * TM * 4
  for (std::size_t r = 0; r < R; ++r) {
    x[r] = o.a.data() + blk * K * TM + (i + r) % TM;
    x4[r] = o.a4.data() + (blk * o.quads * TM + (i + r) % TM) * 4;
    xl[r] = o.al.data() + (blk * o.quads * TM + (i + r) % TM) * 4;
  }
  const float* y = o.b.data() + jt * K * kLanes;
  const std::uint8_t* y4 = o.b4.data() + jt * o.quads * 4 * kLanes;
  const std::int8_t* yl = o.bl.data() + jt * o.quads * 4 * kLanes;
  VI e[R][kV];
  largest_exponent_sums<R>(x4, y4, u0, u1, e);
  // With C (= kept * 2^(pe - F), exponent pe - F + floor(log2 |kept|)): the alignment exponent
  // emax (the largest product exponent, below 2 * min_exp when no product is non-zero: then none
  // counts), C truncated onto 2^(emax - F) as (|kept| << P) >> (emax - pe + P), inexact
  // when the bits do not shift back (c_cut, -1), and scale = 2^(F - emax) (a normal float: the
  // clamp at -100 matters only when every product is zero).
  VI emax[R][kV], s[R][kV], c_cut[R][kV];
  VF scale[R][kV];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t v = 0; v < kV; ++v) {
      const VI kept = load<VI>(ch[r]->kept + v * kW), pe = load<VI>(ch[r]->emax + v * kW);
      const VI ck = kept < 0 ? -kept : kept;
      const VI ce = ck == 0 ? VI{} + kZeroC : pe - m.frac + log2_floor(ck);
      emax[r][v] = lanes_max(e[r][v] < 2 * m.min_exp ? VI{} + kZeroExp : e[r][v], ce);
      const VI sh = emax[r][v] - pe + m.out_bits;
      const VU c_hr = lanes_cast<VU>(ck) << m.out_bits, tc = shr(c_hr, sh);
      c_cut[r][v] = shl(tc, sh) != c_hr;
      s[r][v] = kept < 0 ? -lanes_cast<VI>(tc) : lanes_cast<VI>(tc);
      scale[r][v] = lanes_cast<VF>((m.frac - lanes_max(emax[r][v], VI{} - 100) + binary32::kBias) << binary32::kMantissaBits);
    }
  add_aligned_products<R>(x, y, k0, k1, scale, s);  // pass 2
  // Pass 3: per lane and k mod 4, minus the count of inexact terms (at most 8 per byte).
  VS8 n8[R][kV] = {};
  {
    VS8 thr[R][kV];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t v = 0; v < kV; ++v) thr[r][v] = lanes_cast<VS8>(thresholds(emax[r][v], m));
    for (std::size_t u = u0; u < u1; ++u) {
      VS8 lb[kV];
      for (std::size_t v = 0; v < kV; ++v) lb[v] = load<VS8>(yl + (u * kLanes + v * kW) * 4);
      for (std::size_t r = 0; r < R; ++r) {
        const VS8 la = lanes_cast<VS8>(VU{} + load<std::uint32_t>(xl[r] + u * TM * 4));
        for (std::size_t v = 0; v < kV; ++v) n8[r][v] += thr[r][v] > la + lb[v];
      }
    }
  }
  // D: |S| truncated to P significant bits with S's sign (|S| < 2^21: its bit length read from its
  // float); the bound of this instruction, added as the AVX-512 path adds it: n * 2^(emax - F) +
  // (one ULP_P of D, 2^(emax - F + floor(log2 |S|) + 1 - P), or eta = 2^kEtaExp for D = 0).
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t v = 0; v < kV; ++v) {
      const VI sv = s[r][v];
      const VI as = sv < 0 ? -sv : sv;
      const VI fl = log2_floor(as | 1);
      const VI cut = lanes_max(fl + 1 - m.out_bits, VI{});
      const VI kept = as >> cut;
      store(ch[r]->kept + v * kW, sv < 0 ? -kept : kept);
      store(ch[r]->emax + v * kW, emax[r][v] + cut);
      // The four bytes' counts summed into the top byte (at most 32: no carry out of a byte).
      const VI n = lanes_cast<VI>((lanes_cast<VU>(VS8{} - n8[r][v]) * 0x01010101u) >> 24) - c_cut[r][v];
      const VI ue = emax[r][v] - m.frac;
      add_bound(ch[r]->bp + v * kW, n, ue, sv == 0 ? VI{} + kEtaExp : ue + fl + 1 - m.out_bits);
    }
}

// One instruction (products k in [k0, k1)) for `rows` rows (from i0) against `groups` column groups
// (from jt), per group in row blocks.
inline void instruction(const Operands& o, const Params& m, std::size_t i0, std::size_t rows, std::size_t jt,
                        std::size_t groups, std::size_t k0, std::size_t k1, Chain (*ch)[kGroupsPerTask]) {
  for (std::size_t c = 0; c < groups; ++c)
    in_row_blocks(rows, [&]<std::size_t R>(std::size_t r) {
      Chain* d[R];
      for (std::size_t q = 0; q < R; ++q) d[q] = &ch[r + q][c];
      instruction_block<R>(o, m, i0 + r, jt + c, k0, k1, d);
    });
}

// The chain's D as a float (exact: P bits; 2^(emax - F) is a normal float whenever D != 0).
inline void chain_value(const Chain& ch, const Params& m, float* out) {
  for (std::size_t l = 0; l < kLanes; ++l) {
    const int e = std::max(ch.emax[l] - m.frac, binary32::kMinExponent);
    const float p2 = lanes_cast<float>(static_cast<std::uint32_t>(e + binary32::kBias) << binary32::kMantissaBits);
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

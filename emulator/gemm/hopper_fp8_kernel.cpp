#include "gemm/hopper_fp8_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/buffer_pool.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/row_constants.hpp"
#include "gemm/combine.hpp"

#if defined(__AVX512BW__) && defined(__AVX512CD__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_epi32 in the shift intrinsics),
// as maybe-uninitialized or, for some inlining orders, uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
// With AVX-512BW the two per-k loops run on pairs of k in 16-bit lanes (see PairedB below):
// exponents, |products| and shifts all fit in int16, and vpmaddwd applies both signs and adds a
// pair into the int32 sum in one instruction. Same integers, same sums: the bits cannot change
// (test_gemm checks this kernel against fused_dot_add in either build).
#define FP8LAB_PAIRED_K 1
#endif

// The 64-byte vector helpers below are internal (anonymous namespace, inlined), so the compilers'
// note that passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#include "gemm/hopper_fp8_tile.hpp"
#if defined(__AVX2__) && !defined(FP8LAB_PAIRED_K)
#include <immintrin.h>  // the AVX2 path's vpsrlvd and vpsignd (shift_right, with_sign)
#endif

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): each build in its
// own namespace; the entry points at the end choose one at run time.
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// Model parameters (REFERENCE.md "Tensor cores", Hopper FP8 wgmma), constants for the vector
// code; hopper_fp8_kernel_models() checks them against a preset's row, and
// tests/cpp/test_row_constants.cpp that it accepts both Hopper FP8 presets the kernel is used for.
constexpr int kInstructionK = 32;   // products per wgmma
constexpr int kFracBits = 13;       // aligned terms keep 13 fractional bits below the largest exponent
constexpr int kOutBits = 14;        // the sum is truncated to 14 significant bits
constexpr int kM32 = binary32::kMantissaBits;  // FP32's fraction bits (formats/row_constants.hpp)

// The operands of the two Hopper FP8 presets the vector kernel covers (accum's hopper_fp8 and
// hopper_fp8_e5m2 share k = 32, one fused block, 13 fractional alignment bits and 14 output bits;
// they differ in the operands): exponents clamp at min_exp (subnormals), significand 1.m with
// mant_bits fraction bits, so value = m * 2^(e - mant_bits) and a product is
// pm * 2^(pe - 2 * mant_bits) with |pm| <= (2^(mant_bits+1) - 1)^2.
struct Fp8Layout {
  int min_exp;
  int mant_bits;
  std::uint32_t max_finite_bits;  // the float bits of the largest finite value
};
constexpr Fp8Layout kE4m3Layout{-6, 3, 0x43E00000u /* 448 */}, kE5m2Layout{-14, 2, 0x47600000u /* 57344 */};  // checked against the format rows as above
constexpr int kE4m3MinExp = kE4m3Layout.min_exp;    // operand exponents clamp here (E4M3 subnormals)
constexpr int kMantShift = kE4m3Layout.mant_bits;   // E4M3 significand = 1.mmm: value = m * 2^(e - 3), |m| <= 15
// |product| shifted up onto the alignment grid's headroom: the product's lowest bit is
// 2^(pe - 2 * mant_bits) = 2^(emax - 13) * 2^(13 - 2 * mant_bits - d), d = emax - pe.
constexpr int product_shift(Fp8Layout op) { return kFracBits - 2 * op.mant_bits; }
// Every shifted |product| fits int16 (vpmullw / vpsrlvw lanes): 15^2 << 7 and 7^2 << 9.
static_assert(((15 * 15) << product_shift(kE4m3Layout)) < (1 << 15));
static_assert(((7 * 7) << product_shift(kE5m2Layout)) < (1 << 15));

struct E4m3Parts {
  int e;  // exponent, clamped at -6; kZeroExp for zero
  int m;  // signed significand, value = m * 2^(e - 3)
};

E4m3Parts e4m3_parts(float v) {
  if (v == 0) return {kZeroExp, 0};
  int x;
  std::frexp(v, &x);  // |v| = f * 2^x, f in [0.5, 1)
  const int e = std::max(x - 1, kE4m3MinExp);
  return {e, static_cast<int>(std::ldexp(v, kMantShift - e))};
}

struct Fp32Parts {
  int e;         // exponent, clamped at -126; kZeroC for zero
  std::int32_t m;  // 24-bit significand magnitude: |c| = m * 2^(e - 23)
  bool negative;
};

inline Fp32Parts fp32_parts(float c) {
  const std::uint32_t bits = lanes_cast<std::uint32_t>(c);
  const auto m = static_cast<std::int32_t>(binary32::significand_of_bits(bits));
  return {m == 0 ? kZeroC : binary32::exponent_of_bits(bits), m, (bits & binary32::kSignMask) != 0};
}

// |S| * 2^(emax - 13) truncated to 14 significant bits, with S's sign.
inline float normalise(std::int32_t s, int emax) {
  if (s == 0) return 0.0f;
  std::uint32_t as = static_cast<std::uint32_t>(s < 0 ? -s : s);
  const int nb = 32 - std::countl_zero(as);
  if (nb > kOutBits) as = (as >> (nb - kOutBits)) << (nb - kOutBits);
  // as * 2^(emax - 13) in binary64 (exact: 14 bits, and 2^(emax - 13) is a normal double for any
  // emax here, >= kZeroC), then to float; the power of two built from its bits, not std::ldexp.
  const double pow2 = lanes_cast<double>(static_cast<std::uint64_t>(emax - kFracBits + 1023) << 52);
  const float v = static_cast<float>(static_cast<double>(as) * pow2);
  return s < 0 ? -v : v;
}

// 16 int32 lanes as a GCC/Clang vector extension: element-wise operators, kept in registers
// (a zmm with AVX-512, two ymm with AVX2, scalar code elsewhere), for the single-instruction
// batches and the AVX-512 operand layout; the portable GEMM path uses 8 (Lanes8, below). Same
// arithmetic as the scalar loops; only the register allocation differs.
using Lanes = std::int32_t __attribute__((vector_size(64)));
using ULanes = std::uint32_t __attribute__((vector_size(64)));

// e4m3_parts from the float's bits, for the bulk decomposition of the operands, for either
// layout (v must be a value of the operand format: the caller checks). A subnormal FP8 value is a
// normal float below 2^min_exp whose significand has few enough bits to shift right exactly.
template <Fp8Layout Op>
inline E4m3Parts fp8_parts_from_bits(float v) {
  const std::uint32_t bits = lanes_cast<std::uint32_t>(v);
  if ((bits & binary32::kMagnitudeMask) == 0) return {kZeroExp, 0};
  const int e = static_cast<int>((bits >> kM32) & binary32::kFieldMax) - binary32::kBias;
  const int top = static_cast<int>((1u << Op.mant_bits) | ((bits >> (kM32 - Op.mant_bits)) & ((1u << Op.mant_bits) - 1)));
  const int m = top >> std::max(Op.min_exp - e, 0);
  return {std::max(e, Op.min_exp), (bits & binary32::kSignMask) ? -m : m};
}

// The scales of every row (of A) or column (of B) per promotion block, looked up once: the
// operand's lookup divides by its tile sizes.
std::vector<float> block_scales(const GemmOperand& x, std::size_t blocks, std::size_t nc) {
  std::vector<float> s(x.rows * blocks);
  for (std::size_t r = 0; r < x.rows; ++r)
    for (std::size_t kb = 0; kb < blocks; ++kb) s[r * blocks + kb] = x.scale(r, kb * nc);
  return s;
}

#ifdef FP8LAB_PAIRED_K
// Operands in k pairs: k even in the low int16, k odd in the high one; a missing k (odd K) is
// a zero product. A: per (row, pair) three int32 words, of exponents, |significands| and signs
// (+1 or -1), each broadcast to all lanes; stored per block of kRowsPerTask rows, pair by
// pair, so that a task reads A as one stream (rows a power-of-two apart would share L1 sets).
// B: per (column group, pair) 16 lanes x 2 int16 of the same, |significand| pre-shifted by 7
// (the alignment's headroom, see hopper_e4m3_dot_add), the sign as 0 (+) or -2 (-), so that A's
// sign ^ B's is the product's sign as +-1 (a zero operand's sign is that of +0: its product, and
// the padding's, is 0 whatever the sign). Padding columns of B are zero products.
// The first pass (the largest exponent) reads exponents alone, four k per 32-bit lane as int8
// (exponents are -6..8 in E4M3, -14..15 in E5M2; a zero operand is -64, so that any product with
// a zero operand sums to -128..-49, below every real product's -28..30, without overflow): A one
// int32 word per (row, quad) in the same row-block order, B 16 lanes x 4 int8 per (group, quad).
constexpr std::size_t kPairStride = kRowsPerTask * 3;  // int32 words of A per pair in a row block
constexpr std::size_t kPrefetchAhead = 4;  // instructions (see instruction())
constexpr int kZeroExp8 = -64;
struct PairedA {
  const std::int32_t* w;   // this row's words of pair 0
  const std::int8_t* w4;   // this row's exponent bytes of quad 0
  std::int32_t e(std::size_t q) const { return w[q * kPairStride]; }
  std::int32_t m(std::size_t q) const { return w[q * kPairStride + 1]; }
  std::int32_t s(std::size_t q) const { return w[q * kPairStride + 2]; }
  std::int32_t e4(std::size_t u) const {
    std::int32_t v;
    std::memcpy(&v, w4 + u * kRowsPerTask * 4, sizeof v);
    return v;
  }
};
struct PairedB {
  const std::int16_t *e, *m, *s;
  const std::int8_t* e4;
};
struct PairedOperands {
  std::size_t pairs, quads;
  // Reused between calls (common/buffer_pool.hpp): fresh pages for ~13 MB at 1024^3 cost a page
  // fault each, on every call.
  PooledVector<std::int32_t> a;
  PooledVector<std::int8_t> a4;
  PooledVector<std::int16_t> eb, mb, sb;
  PooledVector<std::int8_t> eb4;
  PairedA row(std::size_t i) const {
    const std::size_t blk = i / kRowsPerTask, r = i % kRowsPerTask;
    return {a.data() + blk * pairs * kPairStride + r * 3, a4.data() + (blk * quads * kRowsPerTask + r) * 4};
  }
  PairedB group(std::size_t jt) const {
    const std::size_t at = jt * pairs * 2 * kLanes;
    return {eb.data() + at, mb.data() + at, sb.data() + at, eb4.data() + jt * quads * 4 * kLanes};
  }
};

// 32 consecutive k of one row (n <= 32 valid, the rest zero: a missing k's parts) as the layouts'
// words, fp8_parts_from_bits lane-wise: per k pair, the int16 pair (k even low, odd high) of
// exponents, of |significands| << shift and of signs (SignA: A's +-1, else B's 0 or -2); per
// k quad, the int8 exponents of the first pass. Values must be values of the operand format (the caller checks).
struct PairWords {
  alignas(64) std::uint32_t e[kLanes], m[kLanes], s[kLanes];
  alignas(64) std::uint32_t e4[kLanes / 2];
};
template <Fp8Layout Op, int Shift, bool SignA>
inline void pair_words(const float* x, std::size_t n, PairWords& w) {
  alignas(64) float buf[2 * kLanes] = {};
  std::memcpy(buf, x, std::min<std::size_t>(n, 2 * kLanes) * sizeof(float));
  Lanes e[2], m[2], s[2];
  for (int h = 0; h < 2; ++h) {
    ULanes u;
    std::memcpy(&u, buf + h * kLanes, sizeof u);
    const Lanes zero = (u & binary32::kMagnitudeMask) == 0;
    const Lanes field = lanes_cast<Lanes>((u >> kM32) & binary32::kFieldMax) - binary32::kBias;
    const Lanes top = lanes_cast<Lanes>(((u >> (kM32 - Op.mant_bits)) & ((1u << Op.mant_bits) - 1)) | (1u << Op.mant_bits));
    const Lanes sh = lanes_min(lanes_max(Op.min_exp - field, Lanes{}), Lanes{} + 31);
    m[h] = zero ? Lanes{} : top >> sh;
    e[h] = zero ? Lanes{} + kZeroExp : lanes_max(field, Lanes{} + Op.min_exp);
    s[h] = (lanes_cast<Lanes>(u) < 0) & (m[h] != 0);  // fp8_parts_from_bits' m < 0
    // The first pass's exponents (a zero operand's is kZeroExp8), four k to a 32-bit word.
    const Lanes e8 = m[h] != 0 ? e[h] : Lanes{} + kZeroExp8;
    using Bytes = std::int8_t __attribute__((vector_size(16)));
    const Bytes b8 = __builtin_convertvector(e8, Bytes);
    std::memcpy(w.e4 + h * 4, &b8, sizeof b8);
  }
  auto pairs = [](const Lanes (&v)[2], int shift, std::uint32_t* out) {
    const ULanes lo = lanes_cast<ULanes>(__builtin_shufflevector(v[0], v[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
    const ULanes hi = lanes_cast<ULanes>(__builtin_shufflevector(v[0], v[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
    const ULanes word = ((lo << shift) & 0xFFFFu) | (hi << (16 + shift));
    std::memcpy(out, &word, sizeof word);
  };
  pairs(e, 0, w.e);
  pairs(m, Shift, w.m);
  // The sign words, such that A's ^ B's is the product's sign as +-1 (one vpxor in the kernel):
  // A's 1 or -1 (s | 1), B's 0 or -2 (s & -2): 1 ^ 0 = 1, 1 ^ -2 = -1, -1 ^ 0 = -1, -1 ^ -2 = 1.
  const Lanes s_word[2] = {SignA ? (s[0] | 1) : (s[0] & -2), SignA ? (s[1] | 1) : (s[1] & -2)};
  pairs(s_word, 0, w.s);
}

template <Fp8Layout Op>
PairedOperands pair_operands(const GemmOperand& a, const GemmOperand& b, std::size_t groups) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, K2 = (K + 1) / 2, K4 = (K + 3) / 4;
  const std::size_t row_blocks = (M + kRowsPerTask - 1) / kRowsPerTask;
  PairedOperands o{K2,
                   K4,
                   PooledVector<std::int32_t>(row_blocks * K2 * kPairStride, 0),
                   PooledVector<std::int8_t>(row_blocks * K4 * kRowsPerTask * 4, static_cast<std::int8_t>(kZeroExp8)),
                   PooledVector<std::int16_t>(groups * K2 * 2 * kLanes, static_cast<std::int16_t>(kZeroExp)),
                   PooledVector<std::int16_t>(groups * K2 * 2 * kLanes, 0),
                   PooledVector<std::int16_t>(groups * K2 * 2 * kLanes, 0),
                   PooledVector<std::int8_t>(groups * K4 * 4 * kLanes, static_cast<std::int8_t>(kZeroExp8))};
  constexpr std::size_t kChunk = 2 * kLanes;  // k per pair_words
  // Decoded 32 k at a time in vector lanes, and written a row block (of A) or column group (of B)
  // and a chunk of k at a time, so that the layout's cache lines of that chunk stay in L1 while
  // every row fills its words (one row at a time, each k pair's words land in another line).
  parallel_for(row_blocks, 4, [&](std::size_t b0, std::size_t b1) {
    PairWords w;
    for (std::size_t blk = b0; blk < b1; ++blk) {
      const std::size_t rows = std::min(kRowsPerTask, M - blk * kRowsPerTask);
      for (std::size_t c = 0; c < K; c += kChunk) {
        const std::size_t n = std::min(kChunk, K - c), nq = (n + 1) / 2, nu = (n + 3) / 4;
        for (std::size_t r = 0; r < rows; ++r) {
          pair_words<Op, 0, true>(a.row(blk * kRowsPerTask + r) + c, n, w);
          std::int32_t* to = o.a.data() + (blk * K2 + c / 2) * kPairStride + r * 3;
          for (std::size_t t = 0; t < nq; ++t) {
            to[t * kPairStride] = static_cast<std::int32_t>(w.e[t]);
            to[t * kPairStride + 1] = static_cast<std::int32_t>(w.m[t]);
            to[t * kPairStride + 2] = static_cast<std::int32_t>(w.s[t]);
          }
          std::int8_t* to4 = o.a4.data() + ((blk * K4 + c / 4) * kRowsPerTask + r) * 4;
          for (std::size_t t = 0; t < nu; ++t) std::memcpy(to4 + t * kRowsPerTask * 4, w.e4 + t, 4);
        }
      }
    }
  });
  parallel_for((N + kLanes - 1) / kLanes, 1, [&](std::size_t g0, std::size_t g1) {
    PairWords w;
    for (std::size_t jt = g0; jt < g1; ++jt) {
      const std::size_t lanes = std::min(kLanes, N - jt * kLanes);
      for (std::size_t c = 0; c < K; c += kChunk) {
        const std::size_t n = std::min(kChunk, K - c), nq = (n + 1) / 2, nu = (n + 3) / 4;
        const std::size_t at = (jt * K2 + c / 2) * 2 * kLanes;  // int16 index of pair c / 2, lane 0
        for (std::size_t l = 0; l < lanes; ++l) {
          pair_words<Op, product_shift(Op), false>(b.row(jt * kLanes + l) + c, n, w);
          for (std::size_t t = 0; t < nq; ++t) {
            const std::size_t to = at + (t * kLanes + l) * 2;
            std::memcpy(o.eb.data() + to, w.e + t, 4);
            std::memcpy(o.mb.data() + to, w.m + t, 4);
            std::memcpy(o.sb.data() + to, w.s + t, 4);
          }
          std::int8_t* to4 = o.eb4.data() + ((jt * K4 + c / 4) * kLanes + l) * 4;
          for (std::size_t t = 0; t < nu; ++t) std::memcpy(to4 + t * kLanes * 4, w.e4 + t, 4);
        }
      }
    }
  });
  return o;
}

// A partial sum between instructions, per lane, as the instruction left it: its exact sum S and
// its emax. The instruction's D (normalise()'s value) is |S| truncated to 14 significant bits, S's
// sign, times 2^(emax - 13); the next instruction truncates and aligns S in one go (see
// instruction_block), so that the one that computes S need not.
struct PartialSum {
  alignas(64) std::int32_t s[kLanes];
  alignas(64) std::int32_t emax[kLanes];
};
// The zero partial sum (C of a promotion block's first instruction; its emax is never used).
inline void clear_partial(PartialSum& p) {
  _mm512_store_si512(p.s, _mm512_setzero_si512());
  _mm512_store_si512(p.emax, _mm512_setzero_si512());
}

// |S| and its bits beyond 14 significant ones, bits = floor(log2 |S|) + 1 - 14 (negative when
// fewer; -14 for S = 0): D's float exponent is emax - 13 + floor(log2 |S|) = emax + bits.
struct SumBits {
  __m512i as, bits;
};
inline SumBits sum_bits(__m512i s) {
  const __m512i as = _mm512_abs_epi32(s);
  return {as, _mm512_sub_epi32(_mm512_set1_epi32(32 - kOutBits), _mm512_lzcnt_epi32(as))};
}

// The partial sum as the float D it stands for: |S| >> cut << cut (cut = max(bits, 0)), signed,
// times 2^(emax - 13), exact (14 significant bits). A non-zero S has emax >= 2 * min_exp - 13 (a
// non-zero product's exponent is >= 2 * min_exp, -12 or -28, a non-zero C's >= 2 * min_exp - 13),
// so 2^(emax - 13) is a normal float; the clamp only affects zero.
inline void partial_to_float(const PartialSum& p, float* out) {
  const __m512i s = _mm512_load_si512(p.s);
  const SumBits sb = sum_bits(s);
  const __m512i cut = _mm512_max_epi32(sb.bits, _mm512_setzero_si512());
  const __m512i kept = _mm512_sllv_epi32(_mm512_srlv_epi32(sb.as, cut), cut);
  const __m512i e2 = _mm512_max_epi32(_mm512_sub_epi32(_mm512_load_si512(p.emax), _mm512_set1_epi32(kFracBits)),
                                      _mm512_set1_epi32(binary32::kMinExponent));
  const __m512 pow2 = _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_add_epi32(e2, _mm512_set1_epi32(binary32::kBias)), binary32::kMantissaBits));
  const __m512i d = _mm512_mask_sub_epi32(kept, _mm512_cmplt_epi32_mask(s, _mm512_setzero_si512()), _mm512_setzero_si512(), kept);
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_cvtepi32_ps(d), pow2));
}

// Keeps a loaded vector in a register: without it the compiler folds the load into every use,
// and the loads, not the arithmetic, become the limit (each B vector serves R rows).
inline __m512i in_register(__m512i v) {
  asm("" : "+v"(v));
  return v;
}

// max(m, x) per int8 lane (_mm512_max_epi8) in m's own register, for the same reason.
inline __m512i max_epi8_in_place(__m512i m, __m512i x) {
  asm("vpmaxsb %1, %0, %0" : "+v"(m) : "v"(x));
  return m;
}
#ifdef __AVX512VNNI__
// s += t_lo * sg_lo + t_hi * sg_hi per int32 lane (_mm512_dpwssd_epi32) in s's own register:
// with the intrinsic GCC 12 kept each loop-carried sum in two registers, two copies per step.
inline __m512i dpwssd_in_place(__m512i s, __m512i t, __m512i sg) {
  asm("vpdpwssd %2, %1, %0" : "+v"(s) : "v"(t), "v"(sg));
  return s;
}
#endif

// One instruction (products k in [kc, kc + kn), kc even) for R rows of A against C groups of 16
// columns, each (row, group)'s D replacing its C in p[r][c]. Loads of B are shared by the rows
// and broadcasts of A by the groups.
template <Fp8Layout Op, int R, int C>
inline void instruction_block(const PairedA* a, const PairedB* b, std::size_t kc, std::size_t kn,
                              PartialSum (*p)[kGroupsPerTask]) {
  const std::size_t q0 = kc / 2, q1 = (kc + kn + 1) / 2, u0 = kc / 4, u1 = (kc + kn + 3) / 4;
  __m512i vmax[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) vmax[r][c] = _mm512_set1_epi8(-128);
  // Pass 1: the largest product exponent per lane and k mod 4 (int8, see PairedA).
  // u0 < u1 (kn >= 1): do loops here and in pass 2, so that GCC does not keep the maxima and the
  // sums in memory for a loop that runs no step.
  std::size_t u = u0;
  do {
    __m512i eb[C];
    for (int c = 0; c < C; ++c) eb[c] = in_register(_mm512_loadu_si512(b[c].e4 + u * 4 * kLanes));
    for (int r = 0; r < R; ++r) {
      const __m512i ea = _mm512_set1_epi32(a[r].e4(u));
      for (int c = 0; c < C; ++c) vmax[r][c] = max_epi8_in_place(vmax[r][c], _mm512_add_epi8(ea, eb[c]));
    }
  } while (++u < u1);
  // The largest of each lane's four bytes (moved to the top byte by two shifts left, so that one
  // arithmetic shift sign-extends it), and C's exponent ce: the previous instruction's D's, emax0 +
  // bits (see PartialSum), kZeroC for zero. When no product is non-zero the bytes' largest is
  // -128..-49 (see PairedA), below every real product exponent (>= 2 * min_exp, -12 or -28) and
  // every non-zero C's (ce >= 2 * min_exp - 13, -25 or -41): then emax is ce, or that value if C is
  // zero too, where nothing is shifted by it but zeros (every |product| and C's term is 0, and the
  // sum is 0): the same D. C = kept * 2^(emax0 + cut - 13) (kept = |S0| >> cut, cut = max(bits, 0))
  // aligned to 2^(emax - 13) and truncated, with sh = emax - emax0 >= bits (emax >= ce), is |S0| >>
  // sh when sh >= 0: then sh >= cut, and the cut bits go anyway, so that D's truncation to 14 bits
  // never needs doing here (32 or more gives 0 in vpsrlvd, like the model's cut-off); when sh < 0,
  // bits < 0 and nothing was cut: |S0| << -sh (< 2^14). In one: (|S0| >> m) << (m - sh), m =
  // max(sh, 0).
  // Each lane's low 16 bits in both halves (the pair's two int16 lanes): bytes 0, 1, 0, 1 of each dword.
  const __m512i dup16 = _mm512_set4_epi32(0x0D0C0D0C, 0x09080908, 0x05040504, 0x01000100);
  __m512i e2[R][C], s[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const __m512i s0 = _mm512_load_si512(p[r][c].s), emax0 = _mm512_load_si512(p[r][c].emax);
      const SumBits c0 = sum_bits(s0);
      const __m512i ce = _mm512_mask_mov_epi32(_mm512_add_epi32(emax0, c0.bits), _mm512_testn_epi32_mask(c0.as, c0.as),
                                               _mm512_set1_epi32(kZeroC));
      __m512i m = _mm512_max_epi8(vmax[r][c], _mm512_slli_epi32(vmax[r][c], 16));
      m = _mm512_max_epi8(m, _mm512_slli_epi32(m, 8));
      const __m512i emax = _mm512_max_epi32(_mm512_srai_epi32(m, 24), ce);
      _mm512_store_si512(p[r][c].emax, emax);  // D's (PartialSum), stored now: not held through pass 2
      e2[r][c] = _mm512_shuffle_epi8(emax, dup16);
      const __m512i sh = _mm512_sub_epi32(emax, emax0);
      const __m512i right = _mm512_max_epi32(sh, _mm512_setzero_si512());
      const __m512i tc = _mm512_sllv_epi32(_mm512_srlv_epi32(c0.as, right), _mm512_sub_epi32(right, sh));
      s[r][c] = _mm512_mask_sub_epi32(tc, _mm512_cmplt_epi32_mask(s0, _mm512_setzero_si512()), _mm512_setzero_si512(), tc);
    }
  // Pass 2: |product| << product_shift shifted right by its distance to the largest exponent (a
  // count of 16 or more gives 0 in vpsrlvw, and shifted |products| < 2^15); the product's sign as +-1 is
  // A's sign ^ B's (see PairedA), one vpxor with no operand overwritten (the (sa ^ sb) | 1 of
  // sign masks, a vpternlog, overwrote one and GCC copied it every step); vpmaddwd applies it and
  // adds the pair into the int32 sum.
  std::size_t q = q0;
  do {  // q0 < q1
    const std::size_t at = q * 2 * kLanes;
    __m512i eb[C], mb[C], sb[C];
    for (int c = 0; c < C; ++c) {
      eb[c] = in_register(_mm512_loadu_si512(b[c].e + at));
      mb[c] = in_register(_mm512_loadu_si512(b[c].m + at));
      sb[c] = in_register(_mm512_loadu_si512(b[c].s + at));
    }
    for (int r = 0; r < R; ++r) {
      const __m512i ea = _mm512_set1_epi32(a[r].e(q)), ma = _mm512_set1_epi32(a[r].m(q)), sa = _mm512_set1_epi32(a[r].s(q));
      for (int c = 0; c < C; ++c) {
        const __m512i d = _mm512_sub_epi16(e2[r][c], _mm512_add_epi16(ea, eb[c]));
        const __m512i t = _mm512_srlv_epi16(_mm512_mullo_epi16(ma, mb[c]), d);
        const __m512i sg = _mm512_xor_si512(sa, sb[c]);
#ifdef __AVX512VNNI__
        s[r][c] = dpwssd_in_place(s[r][c], t, sg);  // vpmaddwd and the add in one (not saturating)
#else
        s[r][c] = _mm512_add_epi32(s[r][c], _mm512_madd_epi16(t, sg));
#endif
      }
    }
  } while (++q < q1);
  // D: S as it is (PartialSum); the next instruction or partial_to_float truncates it.
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm512_store_si512(p[r][c].s, s[r][c]);
}

using Operands = PairedOperands;
template <Fp8Layout Op>
inline Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups) {
  return pair_operands<Op>(a, b, groups);
}

// A task's `rows` rows of A (from i0) and `groups` column groups of B (from jt), with their
// operand pointers, looked up once per task (per instruction they were ~15% of the kernel's time:
// a division per row, and a 32-byte load of B's pointers just after their four 8-byte stores,
// too soon to be forwarded).
struct Task {
  std::size_t i0, rows, jt, groups;
  PairedA a[kRowsPerTask];
  PairedB b[kGroupsPerTask];
  Task(const Operands& o, std::size_t i0_, std::size_t rows_, std::size_t jt_, std::size_t groups_)
      : i0(i0_), rows(rows_), jt(jt_), groups(groups_) {
    for (std::size_t r = 0; r < rows; ++r) a[r] = o.row(i0 + r);
    for (std::size_t c = 0; c < groups; ++c) b[c] = o.group(jt + c);
  }
};

// One instruction for a task's rows of A against its column groups.
template <Fp8Layout Op>
inline void instruction(const Operands& o, const Task& task, std::size_t kc, std::size_t kn,
                        PartialSum (*p)[kGroupsPerTask]) {
  const PairedA* a = task.a;
  const PairedB* b = task.b;
  const std::size_t i0 = task.i0, rows = task.rows, groups = task.groups;
  // A's words and exponent bytes of the instruction kPrefetchAhead on, for the whole row block,
  // into L1: a task reads its rows of A once, from L3 or memory (~1.3 KB an instruction).
  if (const std::size_t q0 = kc / 2 + kPrefetchAhead * kInstructionK / 2; q0 < o.pairs) {
    const std::size_t blk = i0 / kRowsPerTask, q1 = std::min(o.pairs, q0 + kInstructionK / 2);
    const auto* w = reinterpret_cast<const char*>(o.a.data() + (blk * o.pairs + q0) * kPairStride);
    const auto* w_end = reinterpret_cast<const char*>(o.a.data() + (blk * o.pairs + q1) * kPairStride);
    for (; w < w_end; w += 64) _mm_prefetch(w, _MM_HINT_T0);
    const std::size_t u0 = q0 / 2, u1 = std::min(o.quads, u0 + kInstructionK / 4);
    const auto* w4 = reinterpret_cast<const char*>(o.a4.data() + (blk * o.quads + u0) * kRowsPerTask * 4);
    const auto* w4_end = reinterpret_cast<const char*>(o.a4.data() + (blk * o.quads + u1) * kRowsPerTask * 4);
    for (; w4 < w4_end; w4 += 64) _mm_prefetch(w4, _MM_HINT_T0);
  }
  std::size_t r = 0;
  // 3 rows x 2 groups: 6 sums, 6 exponent vectors, 6 B vectors and 3 A broadcasts fit the 32
  // registers (4 rows measured slower).
  if (groups == 2) {
    for (; r + 3 <= rows; r += 3) instruction_block<Op, 3, 2>(a + r, b, kc, kn, p + r);
    for (; r + 2 <= rows; r += 2) instruction_block<Op, 2, 2>(a + r, b, kc, kn, p + r);
    if (r < rows) instruction_block<Op, 1, 2>(a + r, b, kc, kn, p + r);
  } else {
    for (; r + 3 <= rows; r += 3) instruction_block<Op, 3, 1>(a + r, b, kc, kn, p + r);
    for (; r + 2 <= rows; r += 2) instruction_block<Op, 2, 1>(a + r, b, kc, kn, p + r);
    if (r < rows) instruction_block<Op, 1, 1>(a + r, b, kc, kn, p + r);
  }
}
#else
// Portable and AVX2 path: the portable layout (gemm/hopper_fp8_tile.hpp).

// Operands. A's values per (block of kRowsPerTask rows, k): the block's kRowsPerTask values, so
// that a task reads A as one stream (its rows, K floats apart, would share L1 sets: 4 KiB apart
// at K = 1024); B's per (column group, k), 16 lanes, 0 past N. The exponent bytes as pass 1 reads
// them (kExpBias8).
struct Operands {
  std::size_t K, quads;
  PooledVector<float> a, b;  // reused between calls (common/buffer_pool.hpp)
  PooledVector<std::uint8_t> a4, b4;
};

template <Fp8Layout Op>
inline std::uint8_t exponent_byte(float v) {
  const E4m3Parts p = fp8_parts_from_bits<Op>(v);
  return p.m == 0 ? 0 : static_cast<std::uint8_t>(p.e + kExpBias8);
}

// Row r (K values x) of a row block of A (W = kRowsPerTask) or column group of B (W = kLanes):
// value k at f[k * W + r], its exponent byte at e4[((k / 4) * W + r) * 4 + k % 4]. exponent_byte
// lane-wise, kW k at a time (a multiple of 4: a vector's bytes are whole quads; a zero's is 0,
// every other value's clamped exponent + kExpBias8), the tail one k at a time.
template <Fp8Layout Op, std::size_t W>
void pack_row(const float* x, std::size_t r, std::size_t K, float* f, std::uint8_t* e4) {
  using Bytes = std::uint8_t __attribute__((vector_size(kW)));
  static_assert(kW % 4 == 0);
  std::size_t k = 0;
  for (; k + kW <= K; k += kW) {
    const VU mag = load<VU>(x + k) & binary32::kMagnitudeMask;
    const VI e = lanes_max(lanes_cast<VI>(mag >> kM32) - binary32::kBias, VI{} + Op.min_exp);
    const Bytes eb = __builtin_convertvector(mag == 0 ? VI{} : e + kExpBias8, Bytes);
    for (std::size_t q = 0; q < kW / 4; ++q) std::memcpy(e4 + ((k / 4 + q) * W + r) * 4, reinterpret_cast<const char*>(&eb) + 4 * q, 4);
    for (std::size_t j = 0; j < kW; ++j) f[(k + j) * W + r] = x[k + j];
  }
  for (; k < K; ++k) {
    f[k * W + r] = x[k];
    e4[((k / 4) * W + r) * 4 + k % 4] = exponent_byte<Op>(x[k]);
  }
}

template <Fp8Layout Op>
Operands prepare(const GemmOperand& a, const GemmOperand& b, std::size_t groups) {
  constexpr std::size_t TM = kRowsPerTask;
  const std::size_t M = a.rows, N = b.rows, K = a.cols, K4 = (K + 3) / 4;
  const std::size_t row_blocks = (M + TM - 1) / TM;
  Operands o{K,
             K4,
             PooledVector<float>(row_blocks * K * TM, 0.0f),
             PooledVector<float>(groups * K * kLanes, 0.0f),
             PooledVector<std::uint8_t>(row_blocks * K4 * TM * 4, 0),
             PooledVector<std::uint8_t>(groups * K4 * 4 * kLanes, 0)};
  parallel_for(row_blocks, 4, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t blk = b0; blk < b1; ++blk)
      for (std::size_t i = blk * TM; i < std::min(M, (blk + 1) * TM); ++i)
        pack_row<Op, TM>(a.row(i), i % TM, K, o.a.data() + blk * K * TM, o.a4.data() + blk * K4 * TM * 4);
  });
  parallel_for((N + kLanes - 1) / kLanes, 1, [&](std::size_t g0, std::size_t g1) {
    for (std::size_t jt = g0; jt < g1; ++jt)
      for (std::size_t j = jt * kLanes; j < std::min(N, (jt + 1) * kLanes); ++j)
        pack_row<Op, kLanes>(b.row(j), j % kLanes, K, o.b.data() + jt * K * kLanes, o.b4.data() + jt * K4 * kLanes * 4);
  });
  return o;
}

// A partial sum between instructions, per lane (the AVX-512 path keeps its sum S and emax
// instead, see PartialSum there): the instruction's D = kept * 2^(pe - 13), |kept| < 2^14,
// stored as kept14 = kept << 14, pe14 = pe - 14 and ce, D's exponent as a float (kZeroC for
// zero), so that the next instruction takes no float apart and this one builds none.
struct PartialSum {
  alignas(32) std::int32_t kept14[kLanes];
  alignas(32) std::int32_t pe14[kLanes];
  alignas(32) std::int32_t ce[kLanes];
};
inline void clear_partial(PartialSum& p) {  // the zero partial sum (C of a promotion block's first instruction)
  std::fill_n(p.kept14, kLanes, 0);
  std::fill_n(p.pe14, kLanes, 0);
  std::fill_n(p.ce, kLanes, kZeroC);
}
// The partial sum as the float D it stands for (exact: 14 significant bits; a non-zero sum has
// pe >= 2 * min_exp, so 2^(pe - 27) is a normal float; the clamp only affects zero).
inline void partial_to_float(const PartialSum& p, float* out) {
  for (std::size_t v = 0; v < kV; ++v) {
    const VI e2 = lanes_max(load<VI>(p.pe14 + v * kW) - kFracBits, VI{} + binary32::kMinExponent);
    const VF d = __builtin_convertvector(load<VI>(p.kept14 + v * kW), VF) * lanes_cast<VF>((e2 + binary32::kBias) << kM32);
    std::memcpy(out + v * kW, &d, sizeof d);
  }
}
// x >> n per lane, 0 for n outside [0, 31] (vpsrlvd with AVX2; the clamp elsewhere: unsigned min).
inline VU shift_right(const VU& x, const VI& n) {
#if defined(__AVX2__)
  return lanes_cast<VU>(_mm256_srlv_epi32(lanes_cast<__m256i>(x), lanes_cast<__m256i>(n)));
#else
  return x >> lanes_min(lanes_cast<VU>(n), VU{} + 31);
#endif
}
// x with y's sign: -x where y < 0 (vpsignd with AVX2; x = 0 where y = 0 there, callers pass x = 0 then).
inline VI with_sign(const VI& x, const VI& y) {
#if defined(__AVX2__)
  return lanes_cast<VI>(_mm256_sign_epi32(lanes_cast<__m256i>(x), lanes_cast<__m256i>(y)));
#else
  return y < 0 ? -x : x;
#endif
}

// One instruction (products k in [kc, kc + kn), kc a multiple of 4) for R rows of A from i (all
// in one row block) against column group jt, each row's D replacing its C in *d[r].
// Loads of B are shared by the rows and broadcasts of A by the vectors; every step is lane-wise.
template <Fp8Layout Op, std::size_t R>
inline void instruction_block(const Operands& o, std::size_t i, std::size_t jt, std::size_t kc, std::size_t kn,
                              PartialSum* const* d) {
  constexpr int kBias = binary32::kBias;
  const std::size_t K = o.K, u0 = kc / 4, u1 = (kc + kn + 3) / 4;
  constexpr std::size_t TM = kRowsPerTask;
  const std::size_t blk = i / TM;
  const float* x[R];  // row r's value k is x[r][k * TM]
  const std::uint8_t* x4[R];  // row r's exponent bytes of quad u are x4[r] + u * TM * 4
  for (std::size_t r = 0; r < R; ++r) {
    x[r] = o.a.data() + blk * K * TM + (i + r) % TM;
    x4[r] = o.a4.data() + (blk * o.quads * TM + (i + r) % TM) * 4;
  }
  const float* y = o.b.data() + jt * K * kLanes;
  const std::uint8_t* y4 = o.b4.data() + jt * o.quads * 4 * kLanes;
  VI e[R][kV];
  largest_exponent_sums<R>(x4, y4, u0, u1, e);
  // Per lane: emax, the largest product exponent (below 2 * min_exp when no product is
  // non-zero: then none counts) and C's exponent ce; C, the previous D, truncated onto
  // 2^(emax - 13): |kept14| >> (emax - pe14) (see PartialSum; the count is >= 1 when C != 0, as in
  // the AVX-512 path, and a zero C gives 0 for any count), signed, starts the sum; scale =
  // 2^(13 - emax) as a float (a normal one: emax <= 128, the clamp at -100 matters only when every
  // product is zero).
  VI emax[R][kV], s[R][kV];
  VF scale[R][kV];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t v = 0; v < kV; ++v) {
      const VI kept14 = load<VI>(d[r]->kept14 + v * kW);
      emax[r][v] = lanes_max(e[r][v] < 2 * Op.min_exp ? VI{} + kZeroExp : e[r][v], load<VI>(d[r]->ce + v * kW));
      const VU tc = shift_right(lanes_cast<VU>(kept14 < 0 ? -kept14 : kept14), emax[r][v] - load<VI>(d[r]->pe14 + v * kW));
      s[r][v] = with_sign(lanes_cast<VI>(tc), kept14);
      scale[r][v] = lanes_cast<VF>((kFracBits - lanes_max(emax[r][v], VI{} - 100) + kBias) << kM32);
    }
  // Pass 2: hopper_e4m3_dot_add's terms, |product| aligned to 2^(emax - 13) with its magnitude
  // truncated, the product's sign.
  add_aligned_products<R>(x, y, kc, kc + kn, scale, s);
  // D: |S| truncated to 14 significant bits, S's sign, kept as PartialSum. |S| < 2^21 (32 terms
  // < 2^15, C's < 2^14), so its bit length nb is read exactly from its float's exponent (as | 1:
  // nb = 1 for S = 0, where nothing is cut and ce is kZeroC); D's float exponent is
  // emax - 13 + nb - 1.
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t v = 0; v < kV; ++v) {
      const VI sv = s[r][v];
      const VI as = sv < 0 ? -sv : sv;
      const VI nb = (lanes_cast<VI>(__builtin_convertvector(as | 1, VF)) >> kM32) - (kBias - 1);
      const VI cut = lanes_max(nb - kOutBits, VI{});
      const VI kept14 = with_sign((as >> cut) << 14, sv);
      const VI pe14 = emax[r][v] - 14 + cut;
      const VI ce = as == 0 ? VI{} + kZeroC : emax[r][v] + nb - 14;
      std::memcpy(d[r]->kept14 + v * kW, &kept14, sizeof kept14);
      std::memcpy(d[r]->pe14 + v * kW, &pe14, sizeof pe14);
      std::memcpy(d[r]->ce + v * kW, &ce, sizeof ce);
    }
}

// A task's `rows` rows of A (from i0) and `groups` column groups of B (from jt).
struct Task {
  std::size_t i0, rows, jt, groups;
  Task(const Operands&, std::size_t i0_, std::size_t rows_, std::size_t jt_, std::size_t groups_)
      : i0(i0_), rows(rows_), jt(jt_), groups(groups_) {}
};

// One instruction for a task's rows of A against its column groups, per group in row blocks.
template <Fp8Layout Op>
inline void instruction(const Operands& o, const Task& task, std::size_t kc, std::size_t kn,
                        PartialSum (*p)[kGroupsPerTask]) {
  const std::size_t i0 = task.i0, rows = task.rows, jt = task.jt, groups = task.groups;
  for (std::size_t c = 0; c < groups; ++c)
    in_row_blocks(rows, [&]<std::size_t R>(std::size_t r) {
      PartialSum* d[R];
      for (std::size_t q = 0; q < R; ++q) d[q] = &p[r + q][c];
      instruction_block<Op, R>(o, i0 + r, jt + c, kc, kn, d);
    });
}
#endif

}  // namespace

float hopper_e4m3_dot_add(const float* a, const float* b, std::size_t n, float c) {
  int pe[kInstructionK], pm[kInstructionK];
  const Fp32Parts cp = fp32_parts(c);
  int emax = cp.e;
  for (std::size_t k = 0; k < n; ++k) {
    const E4m3Parts x = e4m3_parts(a[k]), y = e4m3_parts(b[k]);
    pe[k] = x.e + y.e;  // product exponent: not renormalised, significand product in (0, 4)
    pm[k] = x.m * y.m;  // value = pm * 2^(pe - 6)
    if (pm[k] != 0) emax = std::max(emax, pe[k]);
  }
  // Every term aligned to 2^(emax - 13), truncating its magnitude (not a sign-filling shift).
  std::int64_t sum = 0;
  if (cp.m) {
    const int sh = emax - cp.e + (23 - kFracBits);  // C's lowest bit is 2^(e - 23)
    const std::int64_t t = sh >= 32 ? 0 : (cp.m >> sh);
    sum += cp.negative ? -t : t;
  }
  for (std::size_t k = 0; k < n; ++k) {
    if (pm[k] == 0) continue;
    const int d = emax - pe[k];  // product's lowest bit is 2^(pe - 6) = 2^(emax - 13) * 2^(7 - d)
    const std::int64_t apm = std::abs(pm[k]);
    const std::int64_t t = d >= 40 ? 0 : ((apm << 7) >> d);
    sum += pm[k] < 0 ? -t : t;
  }
  return normalise(static_cast<std::int32_t>(sum), emax);
}

namespace {

// Batches of single instructions (fp8lab.dot): 16 instructions at a time, one per lane, so that
// the largest exponent, the aligned sum and the normalisation of D are lane-wise as in the GEMM
// kernel, and nothing is reduced within a vector one instruction at a time.
using FLanes = float __attribute__((vector_size(64)));

// Lane i of the result is op over the 16 lanes of v[i]: four rounds, each halving the lanes that
// hold one instruction and pairing vectors up (15 ops and 30 two-source shuffles for 16
// reductions). The shuffles keep the instructions in order: after round r, vector j holds
// instructions 2^r j .. 2^r (j + 1) - 1, 16 / 2^r lanes each.
enum class LaneOp { Max, Add };
template <LaneOp O>
inline Lanes lane_op(const Lanes& x, const Lanes& y) {
  if constexpr (O == LaneOp::Max) return lanes_max(x, y);
  return x + y;
}
template <LaneOp O>
inline Lanes reduce_each(const Lanes (&v)[kLanes]) {
  constexpr auto op = lane_op<O>;
  Lanes w[8], x[4], y[2];
  for (int j = 0; j < 8; ++j)
    w[j] = op(__builtin_shufflevector(v[2 * j], v[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
              __builtin_shufflevector(v[2 * j], v[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  for (int j = 0; j < 4; ++j)
    x[j] = op(__builtin_shufflevector(w[2 * j], w[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
              __builtin_shufflevector(w[2 * j], w[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31));
  for (int j = 0; j < 2; ++j)
    y[j] = op(__builtin_shufflevector(x[2 * j], x[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29),
              __builtin_shufflevector(x[2 * j], x[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31));
  return op(__builtin_shufflevector(y[0], y[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            __builtin_shufflevector(y[0], y[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
}

// Largest exponent of an instruction that leaves the vector path, and of one without a non-zero
// product (far outside the sums of two biased fields, 0..540, and apart after the reduction).
constexpr int kLeave = 1 << 20;
constexpr int kNoProduct = -(1 << 20);

// 16 values of one operand (float bits u): each one's exponent field clamped at the format's least
// normal exponent (the model's operand exponent, biased by 127; zero's is never used); `leave` gets
// -1 in each lane that the vector path must not take: NaN, Inf, and any value that is not a value
// of the format. The test is sound, not complete (a lane it passes is a value of the format:
// non-zero, between the least subnormal and max_finite, no bits below the format's quantum); the
// caller settles what it flags with the general test (formats/representable).
template <Fp8Layout Op>
inline Lanes operand_field(const ULanes& u, Lanes& leave) {
  constexpr int kMinField = Op.min_exp + binary32::kBias, kKeep = 32 - (kM32 - Op.mant_bits);
  constexpr std::uint32_t kLeast = static_cast<std::uint32_t>(kMinField - Op.mant_bits) << kM32;  // 2^(emin - m)
  const ULanes mag = u & binary32::kMagnitudeMask;
  const Lanes field = lanes_cast<Lanes>(mag >> kM32);
  // The bits below the quantum, 2^(max(e, emin) - m), moved to the top (kKeep - (emin - e) of
  // them stay below for a subnormal of the format; the clamp only matters out of range).
  const Lanes keep = lanes_max(lanes_min(field - kMinField + kKeep, Lanes{} + kKeep), Lanes{});
  const Lanes low = lanes_cast<Lanes>(u << lanes_cast<ULanes>(keep));
  const Lanes in_range = (mag - kLeast) <= (Op.max_finite_bits - kLeast);  // unsigned: zero wraps above
  leave |= ~((mag == 0) | (in_range & (low == 0)));
  return lanes_max(field, Lanes{} + kMinField);
}

// Instructions i < 16 of a block (a, b: 32 values each; c: 16) into out; a bit per instruction
// that left the vector path (NaN or Inf anywhere, or an operand the quick test flags), its out
// unspecified. The model of hopper_e4m3_dot_add, lane-wise: a product of two values of the format
// is exact in FP32, so its aligned, truncated term is trunc(p * 2^(13 - emax)), |term| < 2^15
// (|p| < 2^(pe + 2), pe <= emax); emax is the largest product exponent pe = ea + eb (the operands'
// exponents, clamped at emin: not the product's own) and C's.
template <Fp8Layout Op>
inline std::uint32_t dot_block(const float* a, const float* b, const float* c, float* out) {
  constexpr std::size_t K = kInstructionK, H = K / kLanes;
  static_assert(K == H * kLanes);
  FLanes prod[kLanes][H];
  Lanes em[kLanes];
  for (std::size_t i = 0; i < kLanes; ++i) {
    Lanes e = Lanes{} + kNoProduct, leave{};
    for (std::size_t h = 0; h < H; ++h) {
      ULanes ua, ub;
      std::memcpy(&ua, a + i * K + h * kLanes, sizeof ua);
      std::memcpy(&ub, b + i * K + h * kLanes, sizeof ub);
      const Lanes pe = operand_field<Op>(ua, leave) + operand_field<Op>(ub, leave);
      prod[i][h] = lanes_cast<FLanes>(ua) * lanes_cast<FLanes>(ub);
      e = lanes_max(e, prod[i][h] != 0 ? pe : Lanes{} + kNoProduct);  // zero products do not count
    }
    em[i] = leave != 0 ? Lanes{} + kLeave : e;
    for (std::size_t h = 0; h < H; ++h) prod[i][h] = leave != 0 ? FLanes{} : prod[i][h];  // NaN, Inf, non-values
  }
  const Lanes emax_p = reduce_each<LaneOp::Max>(em);
  // C as fp32_parts: significand cm, exponent ce (kZeroC for zero), sign.
  ULanes uc;
  std::memcpy(&uc, c, sizeof uc);
  constexpr int kFieldMax = binary32::kFieldMax, kBias = binary32::kBias;
  const Lanes cfield = lanes_cast<Lanes>((uc >> kM32) & binary32::kFieldMax);
  const Lanes cm = lanes_cast<Lanes>(uc & binary32::kFractionMask) | ((cfield != 0) & (1 << kM32));
  const Lanes ce = cm == 0 ? Lanes{} + kZeroC : lanes_max(cfield, Lanes{} + 1) - kBias;
  const Lanes leave = (emax_p >= kLeave) | (cfield == kFieldMax);
  // Left lanes get a harmless emax (their results are discarded).
  const Lanes emax = leave != 0 ? Lanes{} : lanes_max(emax_p - 2 * kBias, ce);
  // 2^(13 - emax): a normal float (emax >= -100 when any product is non-zero; below, every p is
  // 0); 0 for a left instruction, whose products are then all 0 (no float-to-int overflow).
  const Lanes scale_field = leave != 0 ? Lanes{} : kFracBits - lanes_max(emax, Lanes{} - 100) + kBias;
  const FLanes scale = lanes_cast<FLanes>(scale_field << kM32);
  Lanes terms[kLanes];
  for (std::size_t i = 0; i < kLanes; ++i) {
    const FLanes s = FLanes{} + scale[i];
    Lanes t{};
    for (std::size_t h = 0; h < H; ++h) t += __builtin_convertvector(prod[i][h] * s, Lanes);  // exact; truncates
    terms[i] = t;
  }
  Lanes s = reduce_each<LaneOp::Add>(terms);
  // C aligned to 2^(emax - 13), magnitude truncated (its lowest bit is 2^(ce - 23); emax >= ce).
  const Lanes sh = lanes_min(lanes_max(emax - ce + (kM32 - kFracBits), Lanes{}), Lanes{} + 31);
  const Lanes tc = lanes_cast<Lanes>(lanes_cast<ULanes>(cm) >> lanes_cast<ULanes>(sh));
  s += lanes_cast<Lanes>(uc) < 0 ? -tc : tc;
  // D: |S| truncated to 14 significant bits (normalise()), times 2^(emax - 13). |S| < 2^21, so its
  // bit length is read exactly from its float's exponent. The power of two is applied in two
  // normal factors (a C near 2^-126 puts it below FP32's normal range); each product is exact.
  const Lanes as = s < 0 ? -s : s;
  const Lanes nb = (lanes_cast<Lanes>(__builtin_convertvector(as | 1, FLanes)) >> kM32) - (kBias - 1);
  const Lanes cut = lanes_max(nb - kOutBits, Lanes{});
  const Lanes kept = as >> cut;
  const Lanes e2 = emax - kFracBits + cut;
  const Lanes e_hi = lanes_max(e2, Lanes{} + binary32::kMinExponent);
  const Lanes e_lo = lanes_max(e2, Lanes{} + binary32::kMinExponent - kFracBits) - e_hi;
  const FLanes d = __builtin_convertvector(s < 0 ? -kept : kept, FLanes) * lanes_cast<FLanes>((e_hi + kBias) << kM32) *
                   lanes_cast<FLanes>((e_lo + kBias) << kM32);
  std::memcpy(out, &d, sizeof d);
  std::uint32_t left = 0;
  for (std::size_t l = 0; l < kLanes; ++l) left |= static_cast<std::uint32_t>(leave[l] != 0) << l;
  return left;
}

template <Fp8Layout Op>
std::size_t dot_batch(const float* a, const float* b, const float* c, std::size_t n, float* out, std::uint32_t* left) {
  constexpr std::size_t K = kInstructionK;
  std::size_t count = 0;
  auto note = [&](std::uint32_t bits, std::size_t i0) {
    for (; bits; bits &= bits - 1) left[count++] = static_cast<std::uint32_t>(i0 + std::countr_zero(bits));
  };
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) note(dot_block<Op>(a + i * K, b + i * K, c + i, out + i), i);
  if (i < n) {  // the tail, zero-padded to a block
    alignas(64) float ta[kLanes * K] = {}, tb[kLanes * K] = {}, tc[kLanes] = {}, to[kLanes];
    const std::size_t r = n - i;
    std::memcpy(ta, a + i * K, r * K * sizeof(float));
    std::memcpy(tb, b + i * K, r * K * sizeof(float));
    std::memcpy(tc, c + i, r * sizeof(float));
    note(dot_block<Op>(ta, tb, tc, to) & ((1u << r) - 1u), i);
    std::memcpy(out + i, to, r * sizeof(float));
  }
  return count;
}

}  // namespace

std::size_t hopper_fp8_dot_batch(const float* a, const float* b, const float* c, std::size_t n, Fp8Operands operands,
                                 float* out, std::uint32_t* left) {
  return operands == Fp8Operands::E5m2 ? dot_batch<kE5m2Layout>(a, b, c, n, out, left)
                                       : dot_batch<kE4m3Layout>(a, b, c, n, out, left);
}

namespace {

template <Fp8Layout Op>
std::vector<float> accumulate(const GemmOperand& a, const GemmOperand& b, std::size_t promote_every, Combine combine) {
  constexpr std::size_t L = kLanes, TM = kRowsPerTask, TG = kGroupsPerTask;
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const std::size_t NC = promote_every == 0 ? std::max<std::size_t>(K, 1) : promote_every;
  const std::size_t JT = (N + L - 1) / L, KB = (K + NC - 1) / NC;
  const Operands o = prepare<Op>(a, b, JT);
  const std::vector<float> a_scales = block_scales(a, KB, NC), b_scales = block_scales(b, KB, NC);
  // B's scales per (column group, promotion block) as 16 lanes (0 in padding columns): the combine
  // below reads one aligned run of 16 per group instead of gathering 16 strided scalars (its
  // compiled loop was ~100 scalar instructions per row, group and promotion block).
  std::vector<float> b_lanes(JT * KB * L, 0.0f);
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t blk = 0; blk < KB; ++blk) b_lanes[((j / L) * KB + blk) * L + j % L] = b_scales[j * KB + blk];
  // Each task: TM rows of A against TG groups of 16 columns of B, instruction by instruction for
  // all of them in turn, so that B's slice of one instruction is read from L1 by every row; the
  // partial sums and FP32 accumulators wait in small arrays.
  std::vector<float> out(M * N);
  const std::size_t IT = (M + TM - 1) / TM, JS = (JT + TG - 1) / TG;
  parallel_for(IT * JS, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t jt = (t / IT) * TG, i0 = (t % IT) * TM;
      const std::size_t rows = std::min(TM, M - i0), groups = std::min(TG, JT - jt);
      const Task task(o, i0, rows, jt, groups);
      alignas(64) float acc[TM][TG][L] = {};
      PartialSum p[TM][TG];
      for (std::size_t kb = 0; kb < K; kb += NC) {
        const std::size_t ke = std::min(K, kb + NC), blk = kb / NC;
        for (auto& row : p)
          for (PartialSum& g : row) clear_partial(g);
        for (std::size_t kc = kb; kc < ke; kc += kInstructionK)
          instruction<Op>(o, task, kc, std::min<std::size_t>(kInstructionK, ke - kc), p);
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t c = 0; c < groups; ++c) {
            const float sa = a_scales[(i0 + r) * KB + blk];
            const float* sb = b_lanes.data() + ((jt + c) * KB + blk) * L;
            float* acc_rc = acc[r][c];
            alignas(64) float p_rc[L];
            partial_to_float(p[r][c], p_rc);
            // One loop per order so that each vectorises (combine_partial's switch would not).
            switch (combine) {
              case Combine::DeepGemm:
                for (std::size_t l = 0; l < L; ++l) acc_rc[l] = combine_partial(Combine::DeepGemm, p_rc[l], sa, sb[l], acc_rc[l]);
                break;
              case Combine::Triton:
                for (std::size_t l = 0; l < L; ++l) acc_rc[l] = combine_partial(Combine::Triton, p_rc[l], sa, sb[l], acc_rc[l]);
                break;
              case Combine::Cublas:
                for (std::size_t l = 0; l < L; ++l) acc_rc[l] = combine_partial(Combine::Cublas, p_rc[l], sa, sb[l], acc_rc[l]);
                break;
            }
          }
      }
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < groups; ++c)
          for (std::size_t l = 0; l < L && (jt + c) * L + l < N; ++l) out[(i0 + r) * N + (jt + c) * L + l] = acc[r][c][l];
    }
  });
  return out;
}

}  // namespace

bool hopper_fp8_kernel_models(const TensorCoreModel& m, Fp8Operands operands) {
  const Fp8Layout op = operands == Fp8Operands::E5m2 ? kE5m2Layout : kE4m3Layout;
  const Format& f = format_by_name(m.input_format);
  return m.k == kInstructionK && m.block == kInstructionK && m.alignment_frac_bits == kFracBits &&
         m.output_precision == kOutBits && m.output_rounding == Rounding::TowardZero && !m.exact_sum &&
         !m.c_after_products && m.scale_block == 0 && m.accumulator == AccumulatorFormat::Fp32 &&
         m.input_min_exponent == op.min_exp && m.input_mantissa_bits == op.mant_bits &&
         f.min_normal_exponent() == op.min_exp && f.mantissa_bits == op.mant_bits &&
         lanes_cast<std::uint32_t>(static_cast<float>(f.max_finite())) == op.max_finite_bits;
}

std::vector<float> hopper_fp8_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, std::size_t promote_every,
                                              Combine combine, Fp8Operands operands) {
  return operands == Fp8Operands::E5m2 ? accumulate<kE5m2Layout>(a, b, promote_every, combine)
                                       : accumulate<kE4m3Layout>(a, b, promote_every, combine);
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(float, hopper_e4m3_dot_add, (const float* a, const float* b, std::size_t n, float c), (a, b, n, c))
FP8LAB_DISPATCH_ENTRY(std::size_t, hopper_fp8_dot_batch,
                      (const float* a, const float* b, const float* c, std::size_t n, Fp8Operands operands, float* out,
                       std::uint32_t* left),
                      (a, b, c, n, operands, out, left))
FP8LAB_DISPATCH_ENTRY(std::vector<float>, hopper_fp8_gemm_accumulate,
                      (const GemmOperand& a, const GemmOperand& b, std::size_t promote_every, Combine combine,
                       Fp8Operands operands),
                      (a, b, promote_every, combine, operands))
FP8LAB_DISPATCH_ENTRY(bool, hopper_fp8_kernel_models, (const TensorCoreModel& model, Fp8Operands operands),
                      (model, operands))

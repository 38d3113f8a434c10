// The fused tensor-core presets' blocked kernel (gemm/tc_lanes_kernel.hpp says what it computes and
// why it is exact). Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp):
// GCC vector extensions, so one source serves every variant; the variants differ in registers,
// never in the integers and doubles they compute.
#include "gemm/tc_lanes_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <cstdlib>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/format.hpp"
#include "formats/row_constants.hpp"
#include "gemm/combine.hpp"

#if defined(__AVX512F__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_* in the masked intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

// The vectors below are internal (anonymous namespace, inlined), so the compilers' note that
// passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// 16 output columns per group, handled as two halves of 8 binary64 lanes (the products and sums)
// and 16 int32 lanes (the exponents).
using D8 = double __attribute__((vector_size(64)));
using L8 = std::int64_t __attribute__((vector_size(64)));
using U8 = std::uint64_t __attribute__((vector_size(64)));
using I8 = std::int32_t __attribute__((vector_size(32)));
using F8 = float __attribute__((vector_size(32)));
using I16 = std::int32_t __attribute__((vector_size(64)));
using U16 = std::uint32_t __attribute__((vector_size(64)));
using F16 = float __attribute__((vector_size(64)));
constexpr std::size_t kLanes = 16;
// The binary64 lanes (products, sums, steps 4-5) go by kHalves pieces of kHalf lanes: native
// vectors with AVX2 (4 doubles; GCC lowered 64-byte double and int64 vectors through the stack and
// general registers), 8 otherwise.
#if defined(__AVX2__) && !defined(__AVX512F__)
constexpr std::size_t kHalves = 4;
#else
constexpr std::size_t kHalves = 2;
#endif
constexpr std::size_t kHalf = kLanes / kHalves;
using DH = double __attribute__((vector_size(kHalf * 8)));
using LH = std::int64_t __attribute__((vector_size(kHalf * 8)));
using UH = std::uint64_t __attribute__((vector_size(kHalf * 8)));
using IH = std::int32_t __attribute__((vector_size(kHalf * 4)));
using FH = float __attribute__((vector_size(kHalf * 4)));

// Register tile: rows of A x column groups of B. With AVX-512, 3 x 2 keeps the 12 scale vectors,
// 12 partial sums, 4 B vectors and the A broadcast in the 32 registers; with 16 registers, 2 x 1.
// The binary32 products run on the widest native vector: 16 lanes with AVX-512, else two pieces of
// 8 (GCC lowered 64-byte int32 sums on AVX2 through the stack and general registers).
#if defined(__AVX512F__)
constexpr std::size_t kTileRows = 3, kTileGroups = 2;
using FW = F16;
using IW = I16;
using UW = U16;
#else
constexpr std::size_t kTileRows = 2, kTileGroups = 1;
using FW = F8;
using IW = I8;
using UW = std::uint32_t __attribute__((vector_size(32)));
#endif
constexpr std::size_t kPieces = sizeof(F16) / sizeof(FW), kPieceLanes = kLanes / kPieces;

// The alignment exponent of a zero operand (and of a zero or infinite C): so low that a sum with it
// stays below every real one (>= 2 * -126 - 1) and below kNoTop, and two of them fit an int32.
constexpr int kZeroExp = -(1 << 20);
// Where a block without any term puts its largest exponent: every value is then 0, and 2^(F - top)
// and 2^(top - F) stay normal doubles.
constexpr int kNoTop = -600;
// Binary32 products (16 lanes a vector, twice the binary64 ones): exact when both operands have at
// most 12 significant bits and every non-zero operand lies in [2^-kNarrow, 2^(kNarrow + 1)): a
// non-zero product is then a normal float in [2^-100, 2^102), and so is 2^(F - top) once top is
// clamped at -2 kNarrow (a block whose top is lower has no non-zero product, so its product terms
// are 0 whatever the scale). A scaled product below 2^-126 may be rounded, but it is below 1: its
// term is 0 either way. Always so for FP16 and FP8; for BF16 and TF32 when the operands are.
constexpr int kNarrow = 50;
constexpr int kNarrowMantissa = 11;

constexpr int kM32 = binary32::kMantissaBits;
// IEEE binary16, the FP16 accumulator (accum's fp16 row): least normal 2^-14, 10 fraction bits.
constexpr int kFp16Emin = -14, kFp16Emax = 15, kFp16Mantissa = 10, kFp16MinQuantum = kFp16Emin - kFp16Mantissa;
constexpr int kBias64 = 1023, kM64 = 52;

// The preset's parameters the kernel reads (tc_lanes_kernel_models says which rows qualify).
struct Params {
  std::size_t k, block;  // products per instruction and per fused block
  std::size_t chunk;     // products per int32 partial sum: chunk * 2^(F + 2) <= 2^31
  int frac, precision;   // F, and the significant bits D keeps
  int emin_a, emin_b;    // operand exponents clamp here (step 1)
  bool fp16;             // FP16 accumulator: C aligns at >= -14, D rounded to nearest even onto FP16
  int c_emin;            // C's alignment exponent clamps here (FP32: -126, FP16: -14)
  bool int_finish;       // fused_block_int applies: a block is one chunk (and, FP16, |S| < 2^24), or
                         // two (split) whose second sum plus C's term fits int32 and |S| < 2^32
  std::size_t split;     // fused_block_int: products in the first int32 chunk (block when one)
  bool s_fits;           // one chunk, and |S| = |sum + C's term| <= block T + 2^(F + 1) stays below 2^31
  bool lane_sums;        // int_finish's condition in every variant (the lane-state chains' sums)
};

Params params_of(const TensorCoreModel& m) {
  const auto block = static_cast<std::size_t>(m.block);
  const std::size_t chunk = std::min<std::size_t>(block, std::size_t{1} << (29 - m.alignment_frac_bits));
  const bool fp16 = m.accumulator == AccumulatorFormat::Fp16;
  // |S| <= block (2^(F + 2) - 1) + 2^(F + 1) - 1 < 2^24: an FP16 accumulator's finish converts |S|
  // to binary32 exactly (finish_avx512).
  const bool small = (2 * block + 1) << (m.alignment_frac_bits + 1) <= std::size_t{1} << 24;
  // Two chunks (an FP32 accumulator): every |term| <= T = (largest significand of A) (of B) 2^F, the
  // first chunk as long as its sum stays below 2^31, the second's sum plus C's term (< 2^(F + 1))
  // below 2^31 too, and |S| < 2^32 (Blackwell tcgen05 FP8: F = 25, blocks of 32: 18 + 14 for E4M3).
  auto largest_significand = [](const char* name) {
    return 2.0 - std::ldexp(1.0, -format_by_name(name).mantissa_bits);
  };
  const double T = largest_significand(m.input_format) * largest_significand(b_input_format(m)) *
                   std::ldexp(1.0, m.alignment_frac_bits);
  const double lim = 0x1p31 - 1, c_term = std::ldexp(1.0, m.alignment_frac_bits + 1);
  const auto first = std::min<std::size_t>(block, static_cast<std::size_t>(lim / T));
  // fused_block_int in the AVX-512 variant only: with AVX2 and portable code GCC's lowering of its
  // 64-byte int32 lanes made the kernel 2-3x slower than fused_block's binary64 finish
  // (FP8LAB_CPU=avx2, 1024^3, 1 thread: hopper_bf16 0.92 -> 2.17 s), so those variants keep fused_block.
#if defined(__AVX512F__)
  constexpr bool kIntLanes = true;
#else
  constexpr bool kIntLanes = false;
#endif
  const bool one = block <= chunk && (!fp16 || small);
  const bool two = !fp16 && block > chunk && first >= 1 &&
                   static_cast<double>(block - first) * T + c_term <= lim && static_cast<double>(block) * T + c_term < 0x1p32;
  return {static_cast<std::size_t>(m.k), block, chunk, m.alignment_frac_bits, m.output_precision, m.input_min_exponent,
          b_input_min_exponent(m), fp16, fp16 ? kFp16Emin : binary32::kMinExponent, kIntLanes && (one || two),
          one ? block : first, one && static_cast<double>(block) * T + c_term <= lim, one || two};
}

// Step 1: a finite operand's alignment exponent, its FP32 exponent (subnormals at -126) clamped
// below at the input format's minimum; kZeroExp for zero, whose products take no part.
inline std::int32_t align_exponent(float v, int emin) {
  const std::uint32_t u = lanes_cast<std::uint32_t>(v);
  if ((u & binary32::kMagnitudeMask) == 0) return kZeroExp;
  return std::max(binary32::exponent_of_bits(u), emin);
}

template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline I8 half(const I16& v, std::size_t h) {
  return h == 0 ? __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
                : __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
}
// Half h of a group's 16 int32 lanes held as native pieces (alignment_tops).
inline IH half(const IW (&v)[kPieces], std::size_t h) {
#if defined(__AVX512F__)
  return half(v[0], h);
#elif defined(__AVX2__)
  const I8& x = v[h / 2];
  return h % 2 == 0 ? __builtin_shufflevector(x, x, 0, 1, 2, 3) : __builtin_shufflevector(x, x, 4, 5, 6, 7);
#else
  return v[h];
#endif
}
inline LH max(const LH& x, const LH& y) { return x > y ? x : y; }
inline LH min(const LH& x, const LH& y) { return x < y ? x : y; }
// 2^e for e in [-1022, 1023], from its bits.
inline DH pow2(const LH& e) { return lanes_cast<DH>((e + kBias64) << kM64); }

// Step 5: sum * 2^q (sum an integer below 2^53, q >= kNoTop - 28), truncated to `precision`
// significant bits and onto FP32's grid (subnormals onto multiples of 2^-149; truncation twice is
// truncation once to the coarser grid), infinite from 2^128 (the double-to-float conversion's
// overflow, as truncation leaves nothing between FP32's largest finite value and 2^128); a zero
// result is +0 whatever the sum's sign (accum/tensor_core.hpp).
inline FH normalise(const DH& sum, const LH& q, int precision) {
  const UH bits = lanes_cast<UH>(sum * pow2(q));  // exact: at most 37 bits, a normal double
  const UH sign = bits & (std::uint64_t{1} << 63), mag = bits ^ sign;
  const LH e = lanes_cast<LH>(mag >> kM64) - kBias64;  // mag's exponent; a zero's is -1023
  // Bits kept: those from 2^max(e - precision + 1, -149) up; the double's last bit is 2^(e - 52).
  // The selections as masks (comparisons' all-ones lanes): GCC lowered the 64-bit ?: selections of
  // unsigned lanes to scalar cmov chains on AVX2.
  const LH clear = max(LH{} + (kM64 + 1 - precision), binary32::kMinQuantum + kM64 - e);
  const UH below = lanes_cast<UH>(clear > kM64);  // nothing kept
  const UH kept = mag & (~UH{} << lanes_cast<UH>(min(clear, LH{} + 63))) & ~below;
  const UH nonzero = ~lanes_cast<UH>(lanes_cast<LH>(kept) == 0);
  return __builtin_convertvector(lanes_cast<DH>(kept | (sign & nonzero)), FH);
}

// Whether every element of x is zero or has its FP32 exponent in [-kNarrow, kNarrow].
bool narrow(const GemmOperand& x) {
  const std::uint32_t lo = static_cast<std::uint32_t>(binary32::kBias - kNarrow) << kM32,
                      hi = static_cast<std::uint32_t>(binary32::kBias + kNarrow + 1) << kM32;
  std::uint32_t bad = 0;
  for (const float v : x.elements) {
    const std::uint32_t mag = lanes_cast<std::uint32_t>(v) & binary32::kMagnitudeMask;
    bad |= static_cast<std::uint32_t>(mag != 0 && (mag < lo || mag >= hi));
  }
  return bad == 0;
}

// The products' lane type for these operands (see kNarrow): float when exact, else double.
bool float_products(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model) {
  if (model.alignment_frac_bits + 2 * kNarrow > binary32::kMaxExponent) return false;  // 2^(F - top) normal
  for (const char* name : {model.input_format, b_input_format(model)}) {
    const Format& f = format_by_name(name);
    if (f.mantissa_bits > kNarrowMantissa) return false;
  }
  auto in_range = [](const char* name) {
    const Format& f = format_by_name(name);
    return f.max_exponent() <= kNarrow && f.min_normal_exponent() - f.mantissa_bits >= -kNarrow;
  };
  return (in_range(model.input_format) || narrow(a)) && (in_range(b_input_format(model)) || narrow(b));
}

// The FP16 accumulator's step 5 (accum's compose_fp16): sum * 2^q rounded once to nearest even onto
// FP16's grid (quantum 2^max(e - 10, -24) for a value in [2^e, 2^(e+1))), by adding and subtracting
// 2^52 quanta, which leaves the rounded value in the double's last bit (-ffp-contract=off and no
// fast-math keep both operations); infinite from 2^16 after rounding; a zero result is +0.
inline FH normalise_fp16(const DH& sum, const LH& q) {
  const UH bits = lanes_cast<UH>(sum * pow2(q));
  const UH sign = bits & (std::uint64_t{1} << 63), mag = bits ^ sign;
  const LH e = lanes_cast<LH>(mag >> kM64) - kBias64;
  const DH big = pow2(max(e - kFp16Mantissa, LH{} + kFp16MinQuantum) + kM64);
  const DH r = (lanes_cast<DH>(mag) + big) - big;
  const UH over = lanes_cast<UH>(r >= 0x1p16);  // masks, as in normalise
  const UH kept = (lanes_cast<UH>(DH{} + __builtin_huge_val()) & over) | (lanes_cast<UH>(r) & ~over);
  const UH nonzero = ~lanes_cast<UH>(lanes_cast<LH>(kept) == 0);
  return __builtin_convertvector(lanes_cast<DH>(kept | (sign & nonzero)), FH);
}

// Operands packed for the tile, zeros past the ends and up to whole instructions along K: A per
// block of kTileRows rows as K x kTileRows, B per group of 16 rows as K x 16; each element's value
// as a T (the products' exact type) and its alignment exponent.
template <class T>
struct Panels {
  std::size_t K = 0, row_blocks = 0, groups = 0;
  std::vector<T> av, bv;
  std::vector<std::int32_t> ae, be;
};

template <class T>
Panels<T> pack(const GemmOperand& a, const GemmOperand& b, const Params& m) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  Panels<T> p;
  p.K = (K + m.k - 1) / m.k * m.k;
  p.row_blocks = (M + R - 1) / R;
  p.groups = ((N + kLanes - 1) / kLanes + G - 1) / G * G;
  p.av.assign(p.row_blocks * p.K * R, T{});
  p.ae.assign(p.av.size(), kZeroExp);
  p.bv.assign(p.groups * p.K * kLanes, T{});
  p.be.assign(p.bv.size(), kZeroExp);
  // Element k of row i of x goes to at(i, k) of its panel.
  auto fill = [K](const GemmOperand& x, int emin, std::vector<T>& v, std::vector<std::int32_t>& e, auto at) {
    parallel_for(x.rows, 64, [&](std::size_t r0, std::size_t r1) {
      for (std::size_t i = r0; i < r1; ++i)
        for (std::size_t k = 0; k < K; ++k) {
          v[at(i, k)] = x.row(i)[k];
          e[at(i, k)] = align_exponent(x.row(i)[k], emin);
        }
    });
  };
  fill(a, m.emin_a, p.av, p.ae, [&](std::size_t i, std::size_t k) { return ((i / R) * p.K + k) * R + i % R; });
  fill(b, m.emin_b, p.bv, p.be,
       [&](std::size_t j, std::size_t k) { return ((j / kLanes) * p.K + k) * kLanes + j % kLanes; });
  return p;
}

using Tile = float[kTileRows][kTileGroups][kLanes];

// The operands of one fused block of products from k0 for a tile (rows block ib, column groups
// from g0): values and alignment exponents of A (per k, kTileRows side by side) and of each B group.
template <class T>
struct BlockOperands {
  const T* av;
  const std::int32_t* ae;
  const T* bv[kTileGroups];
  const std::int32_t* be[kTileGroups];
};
template <class T>
BlockOperands<T> block_operands(const Panels<T>& p, std::size_t ib, std::size_t g0, std::size_t k0) {
  BlockOperands<T> o{p.av.data() + (ib * p.K + k0) * kTileRows, p.ae.data() + (ib * p.K + k0) * kTileRows, {}, {}};
  for (std::size_t g = 0; g < kTileGroups; ++g) {
    o.bv[g] = p.bv.data() + ((g0 + g) * p.K + k0) * kLanes;
    o.be[g] = p.be.data() + ((g0 + g) * p.K + k0) * kLanes;
  }
  return o;
}

// Steps 1-2 of a block of n products, for fused_block and fused_block_int alike: each lane's largest
// alignment exponent, C's first (accum's c_alignment_exponent; FP32: subnormals at -126), then
// the products'. In native vectors (kPieces of kPieceLanes lanes a group): on AVX2 GCC lowered
// 64-byte int32 maxima through the stack, general registers and vpinsrq (FP8LAB_CPU=avx2 512^3:
// most of the kernel's time).
template <class T>
inline void alignment_tops(const BlockOperands<T>& o, std::size_t n, const Params& m, const Tile& d,
                           IW (&top)[kTileRows][kTileGroups][kPieces]) {
  constexpr std::size_t R = kTileRows, G = kTileGroups, P = kPieces, L = kPieceLanes;
  const std::int32_t* ae = o.ae;
  const std::int32_t* const* be = o.be;
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t h = 0; h < P; ++h) {
        const UW mag = load<UW>(d[r][g] + h * L) & binary32::kMagnitudeMask;
        const IW field = lanes_cast<IW>(mag >> kM32);
        const IW x = (field > 1 ? field : IW{} + 1) - binary32::kBias;
        const IW e = x > m.c_emin ? x : IW{} + m.c_emin;
        top[r][g][h] = (mag == 0) | (field == static_cast<int>(binary32::kFieldMax)) ? IW{} + kZeroExp : e;
      }
  for (std::size_t k = 0; k < n; ++k) {
    IW eb[G][P];
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t h = 0; h < P; ++h) eb[g][h] = load<IW>(be[g] + k * kLanes + h * L);
    for (std::size_t r = 0; r < R; ++r) {
      const std::int32_t ea = ae[k * R + r];
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < P; ++h) {
          const IW pe = ea + eb[g][h];
          top[r][g][h] = top[r][g][h] > pe ? top[r][g][h] : pe;
        }
    }
  }
}

// One fused block of n products from k0 for the whole tile: D replaces C in d (accum's one_block
// with C inside the block). C is finite or infinite (a D that overflowed); an infinite C is the
// result, as non_finite_result gives with finite operands.
template <class T>
void fused_block(const Panels<T>& p, std::size_t ib, std::size_t g0, std::size_t k0, std::size_t n, const Params& m,
                 Tile& d) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const BlockOperands<T> o = block_operands(p, ib, g0, k0);
  const T* av = o.av;
  const T* const* bv = o.bv;
  IW top[R][G][kPieces];
  alignment_tops(o, n, m, d, top);
  // Step 3: each term times 2^(F - top), exact, truncated by the conversion to int32; the chunks'
  // int32 sums added in binary64. 2^(F - top) in binary64 (C's term; the binary64 products):
  auto scale = [&](std::size_t r, std::size_t g, std::size_t h) {
    return pow2(m.frac - max(__builtin_convertvector(half(top[r][g], h), LH), LH{} + kNoTop));
  };
  // The chunks' sums in binary64, set by the first chunk (n >= 1): zero-initialised arrays here
  // were cleared with rep stos per block on AVX2.
  DH sum[R][G][kHalves];
  auto add_chunk = [&sum](std::size_t c0, std::size_t r, std::size_t g, std::size_t h, const DH& v) {
    if (c0 == 0)
      sum[r][g][h] = v;
    else
      sum[r][g][h] += v;
  };
  if constexpr (std::is_same_v<T, double>) {
    DH s[R][G][kHalves];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < kHalves; ++h) s[r][g][h] = scale(r, g, h);
    for (std::size_t c0 = 0; c0 < n; c0 += m.chunk) {
      IH part[R][G][kHalves] = {};
      const std::size_t c1 = std::min(n, c0 + m.chunk);
      for (std::size_t k = c0; k < c1; ++k) {
        DH b[G][kHalves];
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < kHalves; ++h) b[g][h] = load<DH>(bv[g] + k * kLanes + h * kHalf);
        for (std::size_t r = 0; r < R; ++r) {
          const double x = av[k * R + r];
          for (std::size_t g = 0; g < G; ++g)
            for (std::size_t h = 0; h < kHalves; ++h) part[r][g][h] += __builtin_convertvector(x * b[g][h] * s[r][g][h], IH);
        }
      }
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < kHalves; ++h) add_chunk(c0, r, g, h, __builtin_convertvector(part[r][g][h], DH));
    }
  } else {  // binary32 products (kNarrow), kPieces native vectors per group
    FW sf[R][G][kPieces];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < kPieces; ++h) {
          const IW t = top[r][g][h] > -2 * kNarrow ? top[r][g][h] : IW{} - 2 * kNarrow;
          sf[r][g][h] = lanes_cast<FW>((m.frac - t + binary32::kBias) << kM32);
        }
    for (std::size_t c0 = 0; c0 < n; c0 += m.chunk) {
      // The chunk's int32 sums, set by its first product (as sum above).
      IW part[R][G][kPieces];
      const std::size_t c1 = std::min(n, c0 + m.chunk);
      auto terms = [&](std::size_t k, auto add) {
        FW b[G][kPieces];
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < kPieces; ++h) b[g][h] = load<FW>(bv[g] + k * kLanes + h * kPieceLanes);
        for (std::size_t r = 0; r < R; ++r) {
          const float x = av[k * R + r];
          for (std::size_t g = 0; g < G; ++g)
            for (std::size_t h = 0; h < kPieces; ++h) add(part[r][g][h], __builtin_convertvector(x * b[g][h] * sf[r][g][h], IW));
        }
      };
      terms(c0, [](IW& s, const IW& t) { s = t; });
      for (std::size_t k = c0 + 1; k < c1; ++k) terms(k, [](IW& s, const IW& t) { s += t; });
      // (Halves of the native pieces: through a buffer, GCC moved the AVX2 sums through the stack
      // and general registers.)
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < kHalves; ++h) add_chunk(c0, r, g, h, __builtin_convertvector(half(part[r][g], h), DH));
    }
  }
  // C's term (|C| 2^(F - top) < 2^(F + 1): an int32), then steps 4-5.
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t h = 0; h < kHalves; ++h) {
        const FH c = load<FH>(d[r][g] + h * kHalf);
        const IH inf = (lanes_cast<IH>(c) & static_cast<std::int32_t>(binary32::kMagnitudeMask)) ==
                       static_cast<std::int32_t>(binary32::kExponentMask);
        const DH cd = __builtin_convertvector(inf ? FH{} : c, DH);
        const DH tc = __builtin_convertvector(__builtin_convertvector(cd * scale(r, g, h), IH), DH);
        const LH q = max(__builtin_convertvector(half(top[r][g], h), LH), LH{} + kNoTop) - m.frac;
        const FH v = m.fp16 ? normalise_fp16(sum[r][g][h] + tc, q) : normalise(sum[r][g][h] + tc, q, m.precision);
        const FH out = inf ? c : v;
        std::memcpy(d[r][g] + h * kHalf, &out, sizeof out);
      }
}

#if defined(__AVX512F__)
// fused_block_int's C term, S and steps 4-5 (an FP32 accumulator, or an FP16 one below), with
// AVX-512's rounding overrides: C 2^(F - top) by vscalefps toward zero (exact, or below 1 where it rounds), truncated
// to an integer; |S| to binary32 toward zero (its 24 leading bits), masked to `precision` bits, then
// scaled by 2^q toward zero (the subnormal grid's truncation; truncating twice onto nested grids is
// truncating once onto the coarser); 2^128 and up (vscalefps gives FLT_MAX toward zero) infinite.
// The same bits as the integer lanes (test_gemm_tc_lanes runs both on every claimed preset).
inline void finish_avx512(const I16& top, const I16& sum, const I16& sum2, int frac, int precision, bool fp16, float* d) {
  constexpr int kRz = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
  const __m512i t = lanes_cast<__m512i>(top), sm = lanes_cast<__m512i>(sum);
  const __m512 c = _mm512_loadu_ps(d);
  const __m512i cb = _mm512_castps_si512(c);
  const __mmask16 inf = _mm512_cmpeq_epi32_mask(_mm512_and_si512(cb, _mm512_set1_epi32(binary32::kMagnitudeMask)),
                                                _mm512_set1_epi32(binary32::kExponentMask));
  const __m512 cs = _mm512_scalef_round_ps(c, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(frac), t)), kRz);
  const __m512i tc = _mm512_add_epi32(_mm512_maskz_cvttps_epi32(static_cast<__mmask16>(~inf), cs),
                                      lanes_cast<__m512i>(sum2));
  const __m512i w = _mm512_add_epi32(sm, tc);
  // S's sign: the majority of the addends' and the wrapped sum's sign bits (fused_block_int).
  const __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_ternarylogic_epi32(sm, tc, w, 0xE8), _mm512_setzero_si512());
  const __m512i mag = _mm512_mask_sub_epi32(w, neg, _mm512_setzero_si512(), w);
  const __m512i q = _mm512_sub_epi32(_mm512_max_epi32(t, _mm512_set1_epi32(kNoTop)), _mm512_set1_epi32(frac));
  if (fp16) {
    // FP16 accumulator (|S| < 2^24: params_of): |S| 2^q exact in binary32 (or, toward
    // zero, below 2^-126 or saturated at FLT_MAX: either way the same FP16 value, 0 or infinite),
    // then vcvtps2ph's one rounding to nearest even onto FP16's grid, infinite from 2^16.
    const __m512 v = _mm512_scalef_round_ps(_mm512_cvtepi32_ps(mag), _mm512_cvtepi32_ps(q), kRz);
    __m512i rb = _mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    rb = _mm512_mask_or_epi32(rb, neg & _mm512_test_epi32_mask(rb, rb), rb, _mm512_set1_epi32(binary32::kSignMask));
    _mm512_storeu_ps(d, _mm512_mask_mov_ps(_mm512_castsi512_ps(rb), inf, c));
    return;
  }
  __m512 v = _mm512_cvt_roundepu32_ps(mag, kRz);
  if (precision < binary32::kPrecision)
    v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v),
                                             _mm512_set1_epi32(~((1 << (binary32::kPrecision - precision)) - 1))));
  __m512 r = _mm512_scalef_round_ps(v, _mm512_cvtepi32_ps(q), kRz);
  // v's exponent + q >= 128: the biased field + q > 254.
  const __m512i ve = _mm512_add_epi32(_mm512_srli_epi32(_mm512_castps_si512(v), kM32), q);
  r = _mm512_mask_mov_ps(r, _mm512_cmpgt_epi32_mask(ve, _mm512_set1_epi32(2 * binary32::kBias)),
                         _mm512_castsi512_ps(_mm512_set1_epi32(binary32::kExponentMask)));
  __m512i rb = _mm512_castps_si512(r);
  rb = _mm512_mask_or_epi32(rb, neg & _mm512_test_epi32_mask(rb, rb), rb, _mm512_set1_epi32(binary32::kSignMask));
  _mm512_storeu_ps(d, _mm512_mask_mov_ps(_mm512_castsi512_ps(rb), inf, c));
}

// One fused block as fused_block computes it (AVX-512 variant, Params::int_finish), with the
// block's products summed in one int32 chunk (n <= m.chunk, so that sum < 2^31) or two
// (Params::split), and C's term, S and steps 4-5 in 16 int32 lanes (finish_avx512): S = sum +
// term exact as a sign and a 32-bit magnitude (two int32 addends: when their signs agree S has it
// and |S| < 2^32 is their wrapped sum's magnitude; when they differ S fits int32). Same integers
// as fused_block: the bits cannot change (test_gemm_tc_lanes, every variant).
template <class T>
void fused_block_int(const Panels<T>& p, std::size_t ib, std::size_t g0, std::size_t k0, std::size_t n,
                     const Params& m, Tile& d) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const BlockOperands<T> o = block_operands(p, ib, g0, k0);
  const T* av = o.av;
  const T* const* bv = o.bv;
  IW top[R][G][kPieces];
  alignment_tops(o, n, m, d, top);
  // Step 3: the truncated terms' int32 sums per lane, k below m.split and from it (Params::split).
  I16 sum[2][R][G];
  if constexpr (std::is_same_v<T, double>) {
    D8 s[R][G][2];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < 2; ++h)
          s[r][g][h] = pow2(m.frac - max(__builtin_convertvector(half(top[r][g], h), L8), L8{} + kNoTop));
    for (std::size_t c = 0; c < 2; ++c) {
    I8 part[R][G][2] = {};
    for (std::size_t k = c ? m.split : 0; k < (c ? n : std::min(n, m.split)); ++k) {
      D8 b[G][2];
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < 2; ++h) b[g][h] = load<D8>(bv[g] + k * kLanes + h * kHalf);
      for (std::size_t r = 0; r < R; ++r) {
        const double x = av[k * R + r];
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < 2; ++h) part[r][g][h] += __builtin_convertvector(x * b[g][h] * s[r][g][h], I8);
      }
    }
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        sum[c][r][g] = __builtin_shufflevector(part[r][g][0], part[r][g][1], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                               13, 14, 15);
    }
  } else {
    FW sf[R][G][kPieces];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < kPieces; ++h) {
          const IW t = top[r][g][h] > -2 * kNarrow ? top[r][g][h] : IW{} - 2 * kNarrow;
          sf[r][g][h] = lanes_cast<FW>((m.frac - t + binary32::kBias) << kM32);
        }
    for (std::size_t c = 0; c < 2; ++c) {
    IW part[R][G][kPieces] = {};
    for (std::size_t k = c ? m.split : 0; k < (c ? n : std::min(n, m.split)); ++k) {
      FW b[G][kPieces];
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t h = 0; h < kPieces; ++h) b[g][h] = load<FW>(bv[g] + k * kLanes + h * kPieceLanes);
      for (std::size_t r = 0; r < R; ++r) {
        const float x = av[k * R + r];
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t h = 0; h < kPieces; ++h) part[r][g][h] += __builtin_convertvector(x * b[g][h] * sf[r][g][h], IW);
      }
    }
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        if constexpr (kPieces == 1) {
          std::memcpy(&sum[c][r][g], &part[r][g][0], sizeof sum[c][r][g]);
        } else {
          sum[c][r][g] = __builtin_shufflevector(part[r][g][0], part[r][g][1], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                 12, 13, 14, 15);
        }
      }
    }
  }
  // C's term, S and steps 4-5.
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g)
      finish_avx512(top[r][g][0], sum[0][r][g], sum[1][r][g], m.frac, m.precision, m.fp16, d[r][g]);
}
#endif  // __AVX512F__

// The promotion step for 16 lanes, in `O`'s order (one loop per order, so that each vectorises).
template <Combine O>
void combine_lanes(const float* partial, float sa, const float* sb, float* acc) {
  for (std::size_t l = 0; l < kLanes; ++l) acc[l] = combine_partial(O, partial[l], sa, sb[l], acc[l]);
}

// The tasks: each a tile of kTileRows rows and kTileGroups column groups, every promotion interval
// of its chain in turn.
template <class T, class Chain>
void run(const Panels<T>& p, const GemmOperand& a, const GemmOperand& b, const Params& m, std::size_t NC,
         Combine combine, std::vector<float>& out, Chain chain) {
  constexpr std::size_t R = kTileRows, G = kTileGroups;
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const std::size_t IB = p.row_blocks, GB = p.groups / G;
  // The scales of every row of A and column of B (0 past the ends) per promotion interval, looked
  // up once (GemmOperand::scale divides by the tile sizes).
  const std::size_t KB = (K + NC - 1) / NC;
  std::vector<float> sa_all(IB * R * KB, 0.0f), sb_all(p.groups * kLanes * KB, 0.0f);
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t kb = 0; kb < KB; ++kb) sa_all[kb * IB * R + i] = a.scale(i, kb * NC);
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t kb = 0; kb < KB; ++kb) sb_all[kb * p.groups * kLanes + j] = b.scale(j, kb * NC);
  // Tasks walk the rows for one slice of B columns, so that slice stays in cache across them.
  parallel_for(IB * GB, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t ib = t % IB, g0 = (t / IB) * G;
      alignas(64) float acc[R][G][kLanes] = {};
      alignas(64) Tile d;
      for (std::size_t kb = 0; kb < K; kb += NC) {
        // The chain of one promotion interval: its instructions (the last one zero-padded) as
        // their fused blocks in sequence, from C = 0.
        const std::size_t ke = std::min(K, kb + NC), kend = (ke + m.k - 1) / m.k * m.k;
        chain(ib, g0, kb, kend, d);
        for (std::size_t r = 0; r < R; ++r) {
          const float sa = sa_all[(kb / NC) * IB * R + ib * R + r];
          for (std::size_t g = 0; g < G; ++g) {
            const float* sb = sb_all.data() + ((kb / NC) * p.groups + g0 + g) * kLanes;
            switch (combine) {
              case Combine::DeepGemm: combine_lanes<Combine::DeepGemm>(d[r][g], sa, sb, acc[r][g]); break;
              case Combine::Triton: combine_lanes<Combine::Triton>(d[r][g], sa, sb, acc[r][g]); break;
              case Combine::Cublas: combine_lanes<Combine::Cublas>(d[r][g], sa, sb, acc[r][g]); break;
            }
          }
        }
      }
      for (std::size_t r = 0; r < R && ib * R + r < M; ++r)
        for (std::size_t g = 0; g < G; ++g) {
          const std::size_t j0 = (g0 + g) * kLanes;
          if (j0 + kLanes <= N) {  // a whole group: one copy (the lane loop's stores were scalar)
            std::memcpy(out.data() + (ib * R + r) * N + j0, acc[r][g], sizeof acc[r][g]);
            continue;
          }
          for (std::size_t l = 0; l < kLanes && j0 + l < N; ++l) out[(ib * R + r) * N + j0 + l] = acc[r][g][l];
        }
    }
  });
}

// One promotion interval's chain for a tile as its fused blocks in sequence, from C = 0, through
// d (fused_block_int in the AVX-512 variant where Params::int_finish, else fused_block).
template <class T>
auto blocks_chain(const Panels<T>& p, const Params& m) {
  return [&p, &m](std::size_t ib, std::size_t g0, std::size_t kb, std::size_t kend, Tile& d) {
    std::memset(d, 0, sizeof d);
#if defined(__AVX512F__)
    if (m.int_finish) {
      for (std::size_t kc = kb; kc < kend; kc += m.block) fused_block_int(p, ib, g0, kc, m.block, m, d);
      return;
    }
#endif
    for (std::size_t kc = kb; kc < kend; kc += m.block) fused_block(p, ib, g0, kc, m.block, m, d);
  };
}

// The panels' alignment exponents 4 / W k to an int32 word, W bytes each (k in order from the low
// bytes; A: per row block, k group and row; B: per column group, k group and lane), so that one
// vpaddw / vpaddsb and one vpmaxsw / vpmaxsb take the largest exponent of 2 or 4 k at once. A zero
// operand's exponent is kZeroExp16 (W = 2: two sum to -2^15 exactly) or -128 (W = 1, saturating
// sums): its sums stay below every real sum and every C's exponent (lane_state_width).
constexpr int kZeroExp16 = -(1 << 14);
struct ExponentWords {
  std::vector<std::int32_t> a, b;
};
template <int W>
std::vector<std::int32_t> exponent_words(const std::vector<std::int32_t>& e, std::size_t K, std::size_t width) {
  constexpr std::size_t P = 4 / W;
  // (W = 1: with operands of the input formats any sentinel up to -39 gives the same bits, as every
  // product and every D is a multiple of the formats' smallest product quantum, 2^-48 for FP16;
  // TcLanesKernel.ZeroOperandsBesideExtremes fails from -38. -128 keeps lane_state_width's margin.)
  constexpr int lowest = W == 2 ? kZeroExp16 : -128;
  constexpr std::uint32_t mask = W == 2 ? 0xFFFFu : 0xFFu;
  std::vector<std::int32_t> out(e.size() / P);
  parallel_for(e.size() / (K * width), 16, [&](std::size_t b0, std::size_t b1) {
    for (std::size_t blk = b0; blk < b1; ++blk)
      for (std::size_t k = 0; k < K; k += P)
        for (std::size_t w = 0; w < width; ++w) {
          std::uint32_t word = 0;
          for (std::size_t j = 0; j < P; ++j)
            word |= (static_cast<std::uint32_t>(std::max(e[(blk * K + k + j) * width + w], lowest)) & mask) << (8 * W * j);
          out[((blk * K + k) / P) * width + w] = static_cast<std::int32_t>(word);
        }
  });
  return out;
}

#if defined(__AVX512F__)
// Steps 1-2 of the lane-state chains for the block of N k from kc: per lane of the tile, the
// products' largest alignment exponent as int32 (ExponentWords: P = 4 / W k per word, W bytes an
// exponent; a word's P maxima reduced at the end). Inlined into both chains, so the k loop stays
// unrolled with its maxima in registers.
template <std::size_t N, int W>
[[gnu::always_inline]] inline void block_tops(const Panels<float>& p, const ExponentWords& x, std::size_t ib,
                                              std::size_t g0, std::size_t kc, __m512i (&tops)[kTileRows][kTileGroups]) {
  constexpr std::size_t R = kTileRows, G = kTileGroups, P = 4 / W;
  __m512i top[R][G];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) top[r][g] = W == 2 ? _mm512_set1_epi16(-0x8000) : _mm512_set1_epi8(-0x80);
  const std::int32_t* ae = x.a.data() + (ib * p.K + kc) / P * R;
  const std::int32_t* be[G];
  for (std::size_t g = 0; g < G; ++g) be[g] = x.b.data() + ((g0 + g) * p.K + kc) / P * kLanes;
#pragma GCC unroll 16
  for (std::size_t k = 0; k < N / P; ++k) {
    __m512i eb[G];
    for (std::size_t g = 0; g < G; ++g) eb[g] = _mm512_loadu_si512(be[g] + k * kLanes);
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i ea = _mm512_set1_epi32(ae[k * R + r]);
      for (std::size_t g = 0; g < G; ++g) {
        if constexpr (W == 2)
          top[r][g] = _mm512_max_epi16(top[r][g], _mm512_add_epi16(ea, eb[g]));
        else
          top[r][g] = _mm512_max_epi8(top[r][g], _mm512_adds_epi8(ea, eb[g]));
        asm("" : "+v"(top[r][g]));
      }
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) {
      __m512i t = top[r][g];
      if constexpr (W == 2) {
        t = _mm512_srai_epi32(_mm512_max_epi16(t, _mm512_rol_epi32(t, 16)), 16);
      } else {
        t = _mm512_max_epi8(t, _mm512_slli_epi32(t, 16));
        t = _mm512_srai_epi32(_mm512_max_epi8(t, _mm512_slli_epi32(t, 8)), 24);
      }
      tops[r][g] = t;
    }
}

// The FP16 accumulator's lane-state chain (AVX-512, binary32 products): the blocks of
// fused_block_int with their shape known at compile time (block N, one int32 chunk with |S| <
// 2^24: params_of, W bytes an exponent), the k loops unrolled, D kept in registers as the float of
// its FP16 value. C's alignment exponent: vgetexpps's, at least -14 (FP16 subnormals) when C is
// non-zero; -inf for +0. e = F - top as in float_state_chain, C's term vscalefps(C, e) truncated,
// D = S times 2^(top - F) (exact in binary32, or below 2^-126 where it rounds: 0 in FP16 either
// way), rounded once to nearest even onto FP16's grid by vcvtps2ph (infinite from 2^16 after
// rounding) and back. (A negative S rounded to zero leaves -0, where the model has +0: as C its
// term is 0 either way, and the combine adds it to an accumulator that starts at +0, so no output
// can tell.) An infinite C stays the
// result (non_finite_result): its lanes keep C. (Against the previous chain, C's exponent from its
// bits and finish_avx512 per block: 1024^3, 1 thread, CPU time 7-10% less.)
template <std::size_t N, int W>
void fp16_state_chain(const Panels<float>& p, const ExponentWords& x, const Params& m, std::size_t ib, std::size_t g0,
                      std::size_t kb, std::size_t kend, Tile& d) {
  constexpr std::size_t R = kTileRows, G = kTileGroups, P = 4 / W;
  static_assert(N % P == 0);
  const __m512 frac = _mm512_set1_ps(static_cast<float>(m.frac)), one = _mm512_set1_ps(1.0f);
  const __m512 sf_cap = _mm512_set1_ps(static_cast<float>(m.frac + 2 * kNarrow));
  const __m512 c_emin = _mm512_set1_ps(static_cast<float>(m.c_emin)), zero = _mm512_setzero_ps();
  __m512 dv[R][G];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) dv[r][g] = zero;
  for (std::size_t kc = kb; kc < kend; kc += N) {
    const BlockOperands<float> o = block_operands(p, ib, g0, kc);
    // Steps 1-2: the products' largest exponent per lane, P k at a time (ExponentWords), then C's.
    __m512i tops[R][G];
    block_tops<N, W>(p, x, ib, g0, kc, tops);
    __m512 e[R][G], sf[R][G];
    __m512i s1[R][G];
    __mmask16 inf[R][G];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const __m512i t = tops[r][g];
        const __m512 c = dv[r][g];
        inf[r][g] = _mm512_fpclass_ps_mask(c, 0x18);  // +-Inf
        const __m512 gc = _mm512_getexp_ps(c);
        const __m512 ce = _mm512_mask_max_ps(gc, _mm512_cmpneq_ps_mask(c, zero), gc, c_emin);
        e[r][g] = _mm512_sub_ps(frac, _mm512_max_ps(_mm512_cvtepi32_ps(t), ce));
        sf[r][g] = _mm512_scalef_ps(one, _mm512_min_ps(e[r][g], sf_cap));
        s1[r][g] = _mm512_cvttps_epi32(_mm512_scalef_ps(c, e[r][g]));
      }
    // Step 3 (unrolled: in a loop GCC copied every sum from register to register each k).
#pragma GCC unroll 32
    for (std::size_t k = 0; k < N; ++k) {
      __m512 b[G];
      for (std::size_t g = 0; g < G; ++g) b[g] = _mm512_loadu_ps(o.bv[g] + k * kLanes);
      for (std::size_t r = 0; r < R; ++r) {
        const __m512 xa = _mm512_set1_ps(o.av[k * R + r]);
        for (std::size_t g = 0; g < G; ++g) {
          const __m512i t = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_mul_ps(xa, b[g]), sf[r][g]));
          s1[r][g] = _mm512_add_epi32(s1[r][g], t);
          asm("" : "+v"(s1[r][g]));  // one chain per sum: GCC summed the unrolled terms as a tree, through the stack
        }
      }
    }
    // Steps 4-5.
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const __m512 v = _mm512_scalef_round_ps(_mm512_cvtepi32_ps(s1[r][g]), _mm512_sub_ps(zero, e[r][g]),
                                                _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m512 h = _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        dv[r][g] = _mm512_mask_mov_ps(h, inf[r][g], dv[r][g]);
      }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) _mm512_storeu_ps(d[r][g], dv[r][g]);
}

// The FP32 accumulator's lane-state chain (AVX-512, binary32 products): the blocks of
// fused_block_int with their shape known at compile time (block N, S products in the first int32
// chunk, W bytes an exponent), the k loops unrolled, and D kept in registers as a float between
// blocks. D's alignment exponent is vgetexpps's (-inf for +0; every non-zero D is normal,
// lane_state_applies), the block's top the larger of it and the products' (as floats, exact), and
// e = F - top. Each term is the product times 2^e (2^min(e, F + 2 kNarrow): a larger e means a
// top below every non-zero product's, all products zero) truncated by vcvttps2dq, as
// fused_block_int's; C's term is vscalefps(D, e) truncated the same way: exact scaling (|C| 2^e <
// 2^(F + 1); a result below 2^-126 that rounds is below 1, its term 0 either way). D from S: with
// Fits (one chunk, |S| < 2^31: Params::s_fits) S converted toward zero (vcvtdq2ps RZ: its 24
// leading bits, sign kept), else S as a sign and a 32-bit magnitude (finish_avx512) and vcvtudq2ps
// RZ; masked to `precision` bits, times 2^(top - F) (exact: D is normal and finite). A zero S
// gives +0. (Against the previous integer lane state, D = Ks 2^(ce - F) taken apart and put
// together with shifts and lzcnt: 1024^3, 1 thread, CPU time: ada_tf32 -11%, ampere_fp16 -10%,
// ada_fp8 -6%, blocks of 16 and 32 unchanged.)
template <std::size_t N, std::size_t S, int W, bool Fits>
void float_state_chain(const Panels<float>& p, const ExponentWords& x, const Params& m, std::size_t ib,
                       std::size_t g0, std::size_t kb, std::size_t kend, Tile& d) {
  constexpr std::size_t R = kTileRows, G = kTileGroups, P = 4 / W;
  static_assert(N % P == 0 && (!Fits || S == N));
  constexpr int kRz = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
  const __m512i zero = _mm512_setzero_si512();
  const __m512 frac = _mm512_set1_ps(static_cast<float>(m.frac)), one = _mm512_set1_ps(1.0f);
  const __m512 sf_cap = _mm512_set1_ps(static_cast<float>(m.frac + 2 * kNarrow));
  const __m512i keep = _mm512_set1_epi32(static_cast<std::int32_t>(~((std::uint32_t{1} << (binary32::kPrecision - m.precision)) - 1)));
  __m512 dv[R][G];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) dv[r][g] = _mm512_setzero_ps();
  for (std::size_t kc = kb; kc < kend; kc += N) {
    const BlockOperands<float> o = block_operands(p, ib, g0, kc);
    __m512i tops[R][G];
    block_tops<N, W>(p, x, ib, g0, kc, tops);
    // e = F - max(products' top, D's exponent), and C's term: the sums' start.
    __m512 e[R][G], sf[R][G];
    __m512i s1[R][G], s2[R][G];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const __m512i t = tops[r][g];
        e[r][g] = _mm512_sub_ps(frac, _mm512_max_ps(_mm512_cvtepi32_ps(t), _mm512_getexp_ps(dv[r][g])));
        sf[r][g] = _mm512_scalef_ps(one, _mm512_min_ps(e[r][g], sf_cap));
        const __m512i tc = _mm512_cvttps_epi32(_mm512_scalef_ps(dv[r][g], e[r][g]));
        if constexpr (Fits) {
          s1[r][g] = tc;
        } else {  // the products below S in s1, the others and C's term in s2
          s1[r][g] = zero;
          s2[r][g] = tc;
        }
      }
#pragma GCC unroll 32
    for (std::size_t k = 0; k < N; ++k) {
      __m512 b[G];
      for (std::size_t g = 0; g < G; ++g) b[g] = _mm512_loadu_ps(o.bv[g] + k * kLanes);
      for (std::size_t r = 0; r < R; ++r) {
        const __m512 xa = _mm512_set1_ps(o.av[k * R + r]);
        for (std::size_t g = 0; g < G; ++g) {
          const __m512i t = _mm512_cvttps_epi32(_mm512_mul_ps(_mm512_mul_ps(xa, b[g]), sf[r][g]));
          __m512i& sum = k < S ? s1[r][g] : s2[r][g];
          sum = _mm512_add_epi32(sum, t);
          asm("" : "+v"(sum));  // one chain per sum (fp16_state_chain)
        }
      }
    }
    // Steps 4-5: D = S truncated to `precision` bits, times 2^(top - F).
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g) {
        const __m512 q = _mm512_sub_ps(_mm512_setzero_ps(), e[r][g]);
        __m512 v;
        if constexpr (Fits) {
          v = _mm512_cvt_roundepi32_ps(s1[r][g], kRz);
        } else {
          const __m512i w = _mm512_add_epi32(s1[r][g], s2[r][g]);
          const __mmask16 neg = _mm512_movepi32_mask(_mm512_ternarylogic_epi32(s1[r][g], s2[r][g], w, 0xE8));
          const __m512i mag = _mm512_mask_sub_epi32(w, neg, zero, w);
          v = _mm512_cvt_roundepu32_ps(mag, kRz);
          v = _mm512_castsi512_ps(_mm512_mask_or_epi32(_mm512_castps_si512(v), neg, _mm512_castps_si512(v),
                                                       _mm512_set1_epi32(binary32::kSignMask)));
        }
        if (m.precision < binary32::kPrecision) v = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), keep));
        dv[r][g] = _mm512_scalef_ps(v, q);
      }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g) _mm512_storeu_ps(d[r][g], dv[r][g]);
}

#endif  // __AVX512F__

// Whether the lane-state chains (fp16_state_chain, float_state_chain) compute this model's blocks
// (with binary32 products): fused_block_int's sums (Params::int_finish); an FP16 accumulator, or an
// FP32 one with F >= precision - 1 (which the integer lane state these chains replaced needed;
// every FP32 preset row has it) and every non-zero D normal: D is at least 2^(top - F) for a top of some
// non-zero operands' exponents (>= their minimum, and >= -kNarrow with binary32 products), so that
// minimum - F >= -126 suffices; and finite: |D| is below the interval's |products| summed,
// < K 2^(2 kNarrow + 2) <= 2^128 for K < 2^26.
bool lane_state_applies(const Params& m, std::size_t K) {
  return m.lane_sums && K > 0 && K < (std::size_t{1} << 26) &&
         (m.fp16 || (m.frac >= m.precision - 1 &&
                     std::max(m.emin_a, -kNarrow) + std::max(m.emin_b, -kNarrow) - m.frac >= binary32::kMinExponent));
}

template <std::size_t N, std::size_t S, int W, bool Fp16>
struct Shape {
  static constexpr std::size_t n = N, s = S;
  static constexpr int w = W;
  static constexpr bool fp16 = Fp16;
};

// go(Shape<n, s, W, Fp16>{}) for each (block n, split s) of the preset rows (blocks of 32 with an
// FP32 accumulator only); false (nothing done) for other shapes. The lane-state chains of both
// sections instantiate exactly these.
template <int W, bool Fp16, class Go>
bool for_preset_shape(std::size_t n, std::size_t s, Go go) {
  if (n == 4 && s == 4) return go(Shape<4, 4, W, Fp16>{});
  if (n == 8 && s == 8) return go(Shape<8, 8, W, Fp16>{});
  if (n == 16 && s == 16) return go(Shape<16, 16, W, Fp16>{});
  if constexpr (!Fp16) {
    if (n == 32 && s == 32) return go(Shape<32, 32, W, Fp16>{});
    if (n == 32 && s == 18) return go(Shape<32, 18, W, Fp16>{});
    if (n == 32 && s == 20) return go(Shape<32, 20, W, Fp16>{});
  }
  return false;
}

#if !defined(__AVX512F__)
// The lane-state chains without AVX-512 (the portable variant: SSE2 here, NEON on aarch64; AVX2):
// fp16_state_chain's and float_state_chain's arithmetic in float and int32 lanes of native vectors
// only (kGenLanes lanes; GCC vector extensions, no intrinsics), where fused_block's binary64
// finish (int64 lanes, 64-byte vectors) went through scalar code. Per block of N products (N even,
// exponents 2 k a word as int16, ExponentWords<2>):
// - top: the products' largest alignment exponent (int16 adds and maxima) and D's, its FP32
//   exponent field - 127 (D is 0, a normal float, or with an FP16 accumulator possibly infinite;
//   FP16: at least -14), put in both halves of an int16 pair, one more maximum, then the word's
//   two halves reduced to int32;
// - e = F - top; each term the product times 2^min(e, F + 2 kNarrow) (a float built from its
//   exponent field), truncated by the float-to-int32 conversion; C's term D 2^e by adding e to D's
//   exponent field (exact; a result below 2^-126 is below 1: term 0), truncated the same way;
// - FP32: S converted toward zero (its 24 leading bits): one chunk (Params::s_fits), S's nearest
//   float and the one toward zero where that is farther from zero than S (S - f in int32); two,
//   |S| as a 32-bit magnitude (the sign the majority of the addends' and the wrapped sum's, as
//   finish_avx512), f = |S|'s nearest float from its exact halves (|S| >> 8) 2^8 and |S| & 255,
//   and the float below f where f > |S| (|S| - f computed exactly: hf - f by Sterbenz, small
//   integers after); masked to
//   `precision` bits, its sign set, then times 2^(top - F) by adding top - F to its exponent field
//   (D is 0 or a normal float: lane_state_applies); a zero S gives +0;
// - FP16: |S| < 2^24 exact as a float, times 2^(top - F) (clamped to [-126, 127]: lower, the value
//   is below 2^-102, 0 in FP16 either way), rounded once to nearest even onto FP16's grid by adding
//   and subtracting 2^23 quanta (quantum 2^clamp(e - 10, -24, 5): values from 2^16 become infinite
//   either way), infinite from 2^16, sign set unless zero; an infinite C stays the result.
#if defined(__AVX2__)
constexpr std::size_t kGenBytes = 32;
#else
constexpr std::size_t kGenBytes = 16;
#endif
using GF = float __attribute__((vector_size(kGenBytes)));
using GI = std::int32_t __attribute__((vector_size(kGenBytes)));
using GU = std::uint32_t __attribute__((vector_size(kGenBytes)));
using GS = std::int16_t __attribute__((vector_size(kGenBytes)));
constexpr std::size_t kGenLanes = kGenBytes / 4, kGenVecs = kLanes / kGenLanes;

template <class V>
inline V vmax(const V& x, const V& y) { return x > y ? x : y; }
// The two int16 halves of each int32 word swapped.
#if defined(__AVX2__)
#define FP8LAB_TC_SWAP16 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14
#else
#define FP8LAB_TC_SWAP16 1, 0, 3, 2, 5, 4, 7, 6
#endif
template <class V>
inline V vmin(const V& x, const V& y) { return x < y ? x : y; }

template <std::size_t N, std::size_t S, bool Fits, bool Fp16>
void generic_state_chain(const Panels<float>& p, const ExponentWords& x, const Params& m, std::size_t ib,
                         std::size_t g0, std::size_t kb, std::size_t kend, Tile& d) {
  constexpr std::size_t R = kTileRows, G = kTileGroups, V = kGenVecs, L = kGenLanes;
  static_assert(N % 2 == 0 && (!Fits || S == N));
  constexpr std::int32_t kBias = binary32::kBias;
  const GI cap = GI{} + (m.frac + 2 * kNarrow);
  const GU keep = GU{} + ~((std::uint32_t{1} << (binary32::kPrecision - m.precision)) - 1);
  const GU sign_bit = GU{} + binary32::kSignMask;
  GF dv[R][G][V];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t v = 0; v < V; ++v) dv[r][g][v] = GF{};
  for (std::size_t kc = kb; kc < kend; kc += N) {
    const BlockOperands<float> o = block_operands(p, ib, g0, kc);
    // Steps 1-2: the products' largest exponent, 2 k a word.
    GS t16[R][G][V];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t v = 0; v < V; ++v) t16[r][g][v] = GS{} + static_cast<std::int16_t>(-0x8000);
    const std::int32_t* ae = x.a.data() + (ib * p.K + kc) / 2 * R;
    const std::int32_t* be[G];
    for (std::size_t g = 0; g < G; ++g) be[g] = x.b.data() + ((g0 + g) * p.K + kc) / 2 * kLanes;
#pragma GCC unroll 16
    for (std::size_t k = 0; k < N / 2; ++k) {
      GS eb[G][V];
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t v = 0; v < V; ++v) eb[g][v] = load<GS>(be[g] + k * kLanes + v * L);
      for (std::size_t r = 0; r < R; ++r) {
        const GS ea = lanes_cast<GS>(GI{} + ae[k * R + r]);
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t v = 0; v < V; ++v) t16[r][g][v] = vmax(t16[r][g][v], ea + eb[g][v]);
      }
    }
    // D's exponent, e, the scales and C's term: the sums' start.
    GI e[R][G][V], s1[R][G][V], s2[R][G][V];
    GF sf[R][G][V];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t v = 0; v < V; ++v) {
          const GI cb = lanes_cast<GI>(dv[r][g][v]);
          const GI field = (cb >> kM32) & 0xFF;
          // (An FP32 D is never infinite: lane_state_applies.)
          const GI live = Fp16 ? (field != 0) & (field != static_cast<std::int32_t>(binary32::kFieldMax)) : field != 0;
          GI ce = field - kBias;
          // D's exponent in both halves of its word, so that one int16 maximum takes it with the
          // products' two: FP32, a zero D gives -127, below every non-zero product's top (>= -2
          // kNarrow) and harmless when every product is zero (S = 0); FP16, 0 and infinite below all.
          if constexpr (Fp16) ce = live != 0 ? vmax(ce, GI{} + m.c_emin) : GI{} - 0x8000;
          const GS w = vmax(t16[r][g][v], lanes_cast<GS>((ce & 0xFFFF) | (ce << 16)));
          const GI top = lanes_cast<GI>(vmax(w, __builtin_shufflevector(w, w, FP8LAB_TC_SWAP16))) >> 16;
          e[r][g][v] = m.frac - top;
          sf[r][g][v] = lanes_cast<GF>((vmin(e[r][g][v], cap) + kBias) << kM32);
          const GU eu = lanes_cast<GU>(e[r][g][v]);
          const GF cs = lanes_cast<GF>(lanes_cast<GU>(cb) + (eu << kM32));
          const GI tc = __builtin_convertvector(cs, GI) & (live & (field + e[r][g][v] > 0));
          if constexpr (Fits) {
            s1[r][g][v] = tc;
          } else {
            s1[r][g][v] = GI{};
            s2[r][g][v] = tc;
          }
        }
    // Step 3.
#pragma GCC unroll 32
    for (std::size_t k = 0; k < N; ++k) {
      GF b[G][V];
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t v = 0; v < V; ++v) b[g][v] = load<GF>(o.bv[g] + k * kLanes + v * L);
      for (std::size_t r = 0; r < R; ++r) {
        const GF xa = GF{} + o.av[k * R + r];
        for (std::size_t g = 0; g < G; ++g)
          for (std::size_t v = 0; v < V; ++v) {
            const GI t = __builtin_convertvector(xa * b[g][v] * sf[r][g][v], GI);
            GI& sum = k < S ? s1[r][g][v] : s2[r][g][v];
            sum += t;
          }
      }
    }
    // Steps 4-5.
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < G; ++g)
        for (std::size_t v = 0; v < V; ++v) {
          const GI q = GI{} - e[r][g][v];
          if constexpr (Fp16) {
            const GI sgn = s1[r][g][v] >> 31;
            const GF mag = __builtin_convertvector((s1[r][g][v] ^ sgn) - sgn, GF);  // exact: |S| < 2^24
            const GF y = mag * lanes_cast<GF>((vmin(vmax(q, GI{} - 126), GI{} + 127) + kBias) << kM32);
            const GI ey = (lanes_cast<GI>(y) >> kM32) - kBias;
            const GI quantum = vmin(vmax(ey - kFp16Mantissa, GI{} + kFp16MinQuantum), GI{} + (kFp16Emax - kFp16Mantissa));
            const GF big = lanes_cast<GF>((quantum + (kM32 + kBias)) << kM32);
            const GF rounded = (y + big) - big;
            const GU over = lanes_cast<GU>(rounded >= 0x1p16f);
            GU rb = (over & binary32::kExponentMask) | (lanes_cast<GU>(rounded) & ~over);
            rb |= sign_bit & lanes_cast<GU>(sgn) & lanes_cast<GU>(rb != 0);
            const GI cb = lanes_cast<GI>(dv[r][g][v]);
            const GU inf = lanes_cast<GU>((cb & static_cast<std::int32_t>(binary32::kMagnitudeMask)) ==
                                          static_cast<std::int32_t>(binary32::kExponentMask));
            dv[r][g][v] = lanes_cast<GF>((lanes_cast<GU>(cb) & inf) | (rb & ~inf));
          } else if constexpr (Fits) {
            // |S| < 2^31 in int32: f = S's nearest float, but at most 2^31 - 128 (the largest float
            // below 2^31: S's truncation where S rounds up to 2^31), S - f exact in int32, and the
            // float one step toward zero (its bits - 1) where f lies farther from zero than S.
            const GI sum = s1[r][g][v];
            const GF f = vmin(__builtin_convertvector(sum, GF), GF{} + 0x1.fffffep30f);
            const GI diff = sum - __builtin_convertvector(f, GI);
            const GI toward = ((diff ^ sum) >> 31) & (diff != 0);
            const GU vb = lanes_cast<GU>(lanes_cast<GI>(f) + toward) & keep;
            dv[r][g][v] = lanes_cast<GF>((vb + (lanes_cast<GU>(q) << kM32)) & ~lanes_cast<GU>(sum == 0));
          } else {
            const GU a1 = lanes_cast<GU>(s1[r][g][v]), a2 = lanes_cast<GU>(s2[r][g][v]);
            const GU w = a1 + a2;
            const GU neg = lanes_cast<GU>(lanes_cast<GI>((a1 & a2) | (a1 & w) | (a2 & w)) >> 31);
            const GU mag = (w ^ neg) - neg;
            const GF hf = __builtin_convertvector(lanes_cast<GI>(mag >> 8), GF) * 256.0f;
            const GF lf = __builtin_convertvector(lanes_cast<GI>(mag & 0xFF), GF);
            const GF f = hf + lf;  // |S| to nearest
            const GF below = (hf - f) + lf;  // |S| - f, exact
            GU vb = lanes_cast<GU>(f) + lanes_cast<GU>(below < 0.0f);
            vb = (vb & keep) | (neg & sign_bit);
            dv[r][g][v] = lanes_cast<GF>((vb + (lanes_cast<GU>(q) << kM32)) & ~lanes_cast<GU>(mag == 0));
          }
        }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t v = 0; v < V; ++v) std::memcpy(d[r][g] + v * L, &dv[r][g][v], sizeof dv[r][g][v]);
}

// run() with generic_state_chain for the block shapes of the preset rows; false (nothing done) for others.
bool run_generic_state(const Panels<float>& p, const GemmOperand& a, const GemmOperand& b, const Params& m,
                       std::size_t NC, Combine combine, std::vector<float>& out) {
  const std::size_t n = m.block, s = m.split;
  if (n % 2 != 0) return false;
  const ExponentWords x{exponent_words<2>(p.ae, p.K, kTileRows), exponent_words<2>(p.be, p.K, kLanes)};
  auto go = [&](auto shape) {
    using Sh = decltype(shape);
    run(p, a, b, m, NC, combine, out,
        [&p, &x, &m](std::size_t ib, std::size_t g0, std::size_t kb, std::size_t kend, Tile& d) {
          if constexpr (Sh::fp16)
            generic_state_chain<Sh::n, Sh::n, true, true>(p, x, m, ib, g0, kb, kend, d);
          else if (m.s_fits)
            generic_state_chain<Sh::n, Sh::n, true, false>(p, x, m, ib, g0, kb, kend, d);
          else
            generic_state_chain<Sh::n, Sh::s, false, false>(p, x, m, ib, g0, kb, kend, d);
        });
    return true;
  };
  return m.fp16 ? for_preset_shape<2, true>(n, s, go) : for_preset_shape<2, false>(n, s, go);
}
#undef FP8LAB_TC_SWAP16
#endif  // !__AVX512F__

#if defined(__AVX512F__)
// The smallest and largest alignment exponent of the non-zero elements of a panel (packed
// alignment exponents; zeros and padding are kZeroExp); {0, 0} when there is none.
std::pair<int, int> exponent_range(const std::vector<std::int32_t>& e) {
  constexpr std::int32_t kMax = std::numeric_limits<std::int32_t>::max();
  std::int32_t lo = kMax, hi = kZeroExp;
  std::mutex merge;  // min and max: the result does not depend on the chunks' order
  parallel_for(e.size(), std::size_t{1} << 16, [&](std::size_t i0, std::size_t i1) {
    std::int32_t l = kMax, h = kZeroExp;
    for (std::size_t i = i0; i < i1; ++i) {
      l = std::min(l, e[i] == kZeroExp ? kMax : e[i]);
      h = std::max(h, e[i]);
    }
    const std::lock_guard<std::mutex> lock(merge);
    lo = std::min(lo, l);
    hi = std::max(hi, h);
  });
  return hi == kZeroExp ? std::pair<int, int>{0, 0} : std::pair<int, int>{lo, hi};
}

// The exponent width for the lane-state chains: 1 byte (4 k a word) when every operand's alignment
// exponent lies in [lo, hi] (its panel's, exponent_range: the operands' own range, often much
// narrower than the format's) with lo >= -63 and hi_a + hi_b <= 127, so that real sums are in
// int8 range, and a saturated zero operand's sum (<= -128 + hi) stays below every real sum
// (>= lo_a + lo_b) and every C's exponent (FP32: a non-zero D's, >= lo_a + lo_b - F, as D is at
// least 2^(top - F) for the top of a block with a non-zero product; FP16: >= -14); else 2 (int16,
// 2 k a word: zero's sums <= -2^14 + 2 kNarrow... far below).
int lane_state_width(const Params& m, const Panels<float>& p) {
  const auto [lo_a, hi_a] = exponent_range(p.ae);
  const auto [lo_b, hi_b] = exponent_range(p.be);
  const int c_low = m.fp16 ? m.c_emin : lo_a + lo_b - m.frac;
  const bool bytes = lo_a >= -63 && lo_b >= -63 && hi_a + hi_b <= 127 &&
                     -128 + std::max(hi_a, hi_b) < std::min(lo_a + lo_b, c_low);
  return bytes ? 1 : 2;
}

// run() with the lane-state chains for the block shapes of the preset rows; false (nothing done) for others.
bool run_lane_state(const Panels<float>& p, const GemmOperand& a, const GemmOperand& b, const Params& m,
                    std::size_t NC, Combine combine, std::vector<float>& out) {
  const std::size_t n = m.block, s = m.split;
  const int w = lane_state_width(m, p);
  if (n % (4 / w) != 0) return false;
  const ExponentWords x = w == 1 ? ExponentWords{exponent_words<1>(p.ae, p.K, kTileRows), exponent_words<1>(p.be, p.K, kLanes)}
                                 : ExponentWords{exponent_words<2>(p.ae, p.K, kTileRows), exponent_words<2>(p.be, p.K, kLanes)};
  auto go = [&](auto shape) {
    using Sh = decltype(shape);
    run(p, a, b, m, NC, combine, out,
        [&p, &x, &m](std::size_t ib, std::size_t g0, std::size_t kb, std::size_t kend, Tile& d) {
          if constexpr (Sh::fp16)
            fp16_state_chain<Sh::n, Sh::w>(p, x, m, ib, g0, kb, kend, d);
          else if (m.s_fits)  // (s_fits: one chunk)
            float_state_chain<Sh::n, Sh::n, Sh::w, true>(p, x, m, ib, g0, kb, kend, d);
          else
            float_state_chain<Sh::n, Sh::s, Sh::w, false>(p, x, m, ib, g0, kb, kend, d);
        });
    return true;
  };
  // Each (block, split) of the preset rows, for either width and accumulator.
  if (m.fp16) return w == 1 ? for_preset_shape<1, true>(n, s, go) : for_preset_shape<2, true>(n, s, go);
  return w == 1 ? for_preset_shape<1, false>(n, s, go) : for_preset_shape<2, false>(n, s, go);
}
#endif  // __AVX512F__

}  // namespace

std::vector<float> tc_lanes_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                            std::size_t promote_every, Combine combine) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const Params m = params_of(model);
  if (promote_every % m.k != 0) {
    // Formatted without std::string: its inline members would be emitted here as weak symbols
    // compiled for this variant's instruction set (tools/check_isa_symbols.sh).
    char what[160];
    std::snprintf(what, sizeof what, "promote_every: %zu is not a multiple of the instruction K = %zu", promote_every,
                  m.k);
    throw std::invalid_argument(what);
  }
  std::vector<float> out(M * N);
  if (M == 0 || N == 0) return out;
  const std::size_t NC = promote_every == 0 ? std::max<std::size_t>(K, 1) : promote_every;
  if (float_products(a, b, model)) {
    const Panels<float> p = pack<float>(a, b, m);
#if defined(__AVX512F__)
    if (lane_state_applies(m, K) && run_lane_state(p, a, b, m, NC, combine, out)) return out;
#else
    if (lane_state_applies(m, K) && run_generic_state(p, a, b, m, NC, combine, out)) return out;
#endif
    run(p, a, b, m, NC, combine, out, blocks_chain(p, m));
  } else {
    const Panels<double> p = pack<double>(a, b, m);
    run(p, a, b, m, NC, combine, out, blocks_chain(p, m));
  }
  return out;
}

bool tc_lanes_kernel_models(const TensorCoreModel& m) {
  return m.form == DotForm::Fused && m.scale_block == 0 && m.zero_term_exponent == kNoZeroTerm && !m.exact_sum &&
         !m.c_after_products &&
         ((m.accumulator == AccumulatorFormat::Fp32 && m.output_rounding == Rounding::TowardZero) ||
          (m.accumulator == AccumulatorFormat::Fp16 && m.output_rounding == Rounding::NearestEven)) &&
         m.output_precision >= 1 &&
         m.output_precision <= binary32::kPrecision && m.alignment_frac_bits >= 0 && m.alignment_frac_bits <= 28 &&
         m.block >= 1 && m.k >= m.block && m.k % m.block == 0 && m.input_min_exponent >= binary32::kMinExponent &&
         b_input_min_exponent(m) >= binary32::kMinExponent && m.input_min_exponent <= binary32::kMaxExponent &&
         b_input_min_exponent(m) <= binary32::kMaxExponent;
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(std::vector<float>, tc_lanes_gemm_accumulate,
                      (const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                       std::size_t promote_every, Combine combine),
                      (a, b, model, promote_every, combine))
FP8LAB_DISPATCH_ENTRY(bool, tc_lanes_kernel_models, (const TensorCoreModel& model), (model))

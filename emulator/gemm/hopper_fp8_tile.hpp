// What the Hopper FP8 GEMM kernel (gemm/hopper_fp8_kernel.cpp, the values) and its bound kernel
// (gemm/bound_kernel.cpp, the values and their error bound) share: the task's tile, the exponents
// given to zeros, and, in builds without AVX-512 BW/CD, the portable layout's lanes and the two
// passes of an instruction that both take. Included only by dispatched sources (common/isa.hpp):
// everything here is internal to the including variant.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "common/isa.hpp"

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

constexpr std::size_t kLanes = 16;         // output columns per vector group
constexpr std::size_t kRowsPerTask = 6;    // rows of A per task
constexpr std::size_t kGroupsPerTask = 2;  // column groups of 16 per task
// Exponents of a zero operand and of a zero C: low enough never to be the largest (a real
// product's is >= 2 * min_exp >= -28; an FP32 C's >= -126), and every difference fits int16.
constexpr int kZeroExp = -200;
constexpr int kZeroC = -400;

// Lane-wise max and min written as vector conditionals, which GCC and Clang lower to vpmaxsd /
// vpminsd: a bitwise blend here made the per-k max a 4-instruction loop-carried chain.
template <class V>
inline V lanes_max(const V& x, const V& y) { return x > y ? x : y; }
template <class V>
inline V lanes_min(const V& x, const V& y) { return x < y ? x : y; }

#if !(defined(__AVX512BW__) && defined(__AVX512CD__))
// The portable layout: one machine register of int32 / float lanes per vector (8 with AVX2, a
// ymm; 4 otherwise, an xmm), so that every sum of the per-k loops stays in a register (vectors
// wider than the registers made GCC keep them on the stack: 47b2097, and before).
#if defined(__AVX2__)
constexpr std::size_t kW = 8;
constexpr std::size_t kBlockRows = 3;  // rows of A per block: 3 x 2 vectors of sums and scales, 2 of B, 16 ymm in pass 2
#else
constexpr std::size_t kW = 4;
constexpr std::size_t kBlockRows = 1;  // 4 vectors of sums and scales, 14 xmm in pass 2
#endif
constexpr std::size_t kV = kLanes / kW;  // vectors per column group
using VI = std::int32_t __attribute__((vector_size(kW * sizeof(std::int32_t))));
using VU = std::uint32_t __attribute__((vector_size(kW * sizeof(std::int32_t))));
using VF = float __attribute__((vector_size(kW * sizeof(float))));
using VB = std::uint8_t __attribute__((vector_size(kW * sizeof(std::int32_t))));
template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V, class T>
inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}
template <std::size_t... I>
inline VF splat(float x, std::index_sequence<I...>) {  // x in every lane: one broadcast (VF{} + x adds 0.0f first)
  return VF{((void)I, x)...};
}

// The first pass reads exponents alone, four k per 32-bit word as uint8 biased by kExpBias8
// (exponents are -6..8 in E4M3, -14..15 in E5M2; a zero operand or a k past K is 0, so that a
// product with a zero operand sums to at most 79, below every real product's 100 or more, and
// nothing wraps): A per (row block, quad) one word per row, B per (column group, quad) 16 lanes.
constexpr int kExpBias8 = 64;

// Pass 1 of an instruction over the quads [u0, u1) for R rows of A (row r's words at x4[r] + u *
// kRowsPerTask * 4) against a column group (y4): per lane, the largest exponent sum of a product,
// unbiased (below 2 * min_exp when every product has a zero operand).
template <std::size_t R>
inline void largest_exponent_sums(const std::uint8_t* const (&x4)[R], const std::uint8_t* y4, std::size_t u0,
                                  std::size_t u1, VI (&e)[R][kV]) {
  VB m4[R][kV] = {};  // per lane and k mod 4
  for (std::size_t u = u0; u < u1; ++u) {
    VB eb[kV];
    for (std::size_t v = 0; v < kV; ++v) eb[v] = load<VB>(y4 + (u * kLanes + v * kW) * 4);
    for (std::size_t r = 0; r < R; ++r) {
      const VB ea = lanes_cast<VB>(VU{} + load<std::uint32_t>(x4[r] + u * kRowsPerTask * 4));
      for (std::size_t v = 0; v < kV; ++v) m4[r][v] = lanes_max(m4[r][v], ea + eb[v]);
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t v = 0; v < kV; ++v) {
      VU w = lanes_cast<VU>(m4[r][v]);
      w = lanes_cast<VU>(lanes_max(lanes_cast<VB>(w), lanes_cast<VB>(w >> 16)));
      w = lanes_cast<VU>(lanes_max(lanes_cast<VB>(w), lanes_cast<VB>(w >> 8)));
      e[r][v] = lanes_cast<VI>(w & 0xFFu) - 2 * kExpBias8;
    }
}

// Pass 2 over k in [k0, k1): each product (exact in FP32: two values of the format) times its
// lane's scale 2^(F - emax) (exact, or below 1 when it leaves the normal range), truncated toward
// zero by the conversion, added to s. Row r's value k is x[r][k * kRowsPerTask], B's lanes y + k *
// kLanes.
template <std::size_t R>
inline void add_aligned_products(const float* const (&x)[R], const float* y, std::size_t k0, std::size_t k1,
                                 const VF (&scale)[R][kV], VI (&s)[R][kV]) {
  for (std::size_t k = k0; k < k1; ++k) {
    VF yv[kV];
    for (std::size_t v = 0; v < kV; ++v) yv[v] = load<VF>(y + k * kLanes + v * kW);
    for (std::size_t r = 0; r < R; ++r) {
      const VF xv = splat(x[r][k * kRowsPerTask], std::make_index_sequence<kW>{});
      for (std::size_t v = 0; v < kV; ++v) s[r][v] += __builtin_convertvector((xv * yv[v]) * scale[r][v], VI);
    }
  }
}

// block.template operator()<R>(r) over `rows` rows: blocks of kBlockRows, then of 2 (AVX2), then
// one at a time.
template <class Block>
inline void in_row_blocks(std::size_t rows, Block&& block) {
  std::size_t r = 0;
  for (; r + kBlockRows <= rows; r += kBlockRows) block.template operator()<kBlockRows>(r);
  if constexpr (kBlockRows > 2)
    for (; r + 2 <= rows; r += 2) block.template operator()<2>(r);
  for (; r < rows; ++r) block.template operator()<1>(r);
}
#endif

}  // namespace
}  // namespace fp8lab::FP8LAB_ISA_NS

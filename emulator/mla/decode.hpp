// Decode (one query token per sequence) against the paged latent cache, with split-KV
// flash-decoding, and its exact reference and certified bound.
//
// Stated algorithm (the "kernel" this emulator pins; FP32 unless said otherwise):
//  q: [batch, heads, kv_lora + rope] (the absorbed query), used as given.
//  Split: sequence b of L tokens has nb = ceil(L / page) blocks; with S = spec.num_splits, each
//    split takes bps = ceil(nb / S) consecutive blocks (split j: blocks [j*bps, min(nb, (j+1)*bps)));
//    splits with no block are empty and skipped.
//  Within a split, blocks in order; for each block (a tile of its <= page valid tokens):
//    s_t = fl(dot(q, k_t) * scale) (numerics.hpp dot order over kv_lora + rope);
//    m' = max(m, max_t s_t); alpha = exp(fl(m - m')) (0 when m = -inf);
//    l = fl(l * alpha); acc[c] = fl(acc[c] * alpha);
//    for t in the tile in order: p = exp(fl(s_t - m')); l = fl(l + p);
//      acc[c] = fl(acc[c] + fl(P(p) * v_t[c])) where P rounds to spec.decode_p; m = m'.
//  Combine, splits in order: M = max m_j; w_j = exp(fl(m_j - M)); L = sum fl(l_j * w_j);
//    N[c] = sum fl(acc_j[c] * w_j); out = bf16(fl(N[c] / L)); lse = fl(M + log(L)).
//  exp is correctly rounded FP32 (common/pinned_math.hpp), log too (numerics.hpp): no libm.
//  Slots past a sequence's length are never read, so their contents (NaN, garbage) cannot matter.
//  L = 0: out = 0, lse = +inf (FlashMLA's convention).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "checks/verdict.hpp"
#include "mla/mla_spec.hpp"
#include "mla/paged_cache.hpp"

namespace fp8lab::mla {

struct DecodeResult {
  std::vector<std::uint16_t> out_bf16;  // [batch, heads, kv_lora] BF16 bit patterns
  std::vector<float> out;               // the same values as floats
  std::vector<float> lse;               // [batch, heads], natural log
};

// q is [batch, heads, kv_lora + rope]. Throws std::invalid_argument (naming the argument) on
// shape, index or non-finite q problems.
DecodeResult decode(const float* q, std::size_t heads, const PagedCache& cache, const MlaSpec& spec);

// The exact attention of the same inputs (q as given, the cache's dequantised values, the given
// scale): float64 with a pinned exp, plus, per element, the certified bound on |decode - exact|
// for spec (its split count, p format). The bound holds for any summation order, truncating or
// nearest FP32 steps and an exp within 2^-21, so it also judges real kernels (decode.cpp).
// Whom the bound is for: this emulator's decode exactly as stated (tight), or any kernel of the
// same algorithm (any summation order, truncating FP32 steps, exp within 2^-21; see decode.cpp).
enum class BoundScope : std::uint8_t { ThisEmulator, AnyKernel };

struct DecodeReference {
  std::vector<double> out;        // [batch, heads, kv_lora]
  std::vector<double> lse;        // [batch, heads]; +inf for empty sequences
  std::vector<double> out_bound;  // same shapes
  std::vector<double> lse_bound;
};
DecodeReference decode_reference(const float* q, std::size_t heads, const PagedCache& cache, const MlaSpec& spec,
                                 double softmax_scale, BoundScope scope = BoundScope::AnyKernel);

// decode result vs reference: out and lse in one verdict each.
struct DecodeVerdicts {
  Verdict out, lse;
  double max_out_ratio = 0, max_lse_ratio = 0;  // observed / bound
};
DecodeVerdicts check_decode(const DecodeResult& got, const DecodeReference& ref, std::size_t batch,
                            std::size_t heads, const MlaSpec& spec);

}  // namespace fp8lab::mla

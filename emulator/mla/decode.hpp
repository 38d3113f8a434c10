// Decode (s_q >= 1 query tokens per sequence) against the paged latent cache, with split-KV
// flash-decoding, and its exact reference and certified bound.
//
// Stated algorithm (the "kernel" this emulator pins; FP32 unless said otherwise):
//  q: [batch, s_q, heads, kv_lora + rope] (the absorbed query; FlashMLA's flash_mla_with_kvcache
//    q [b, s_q, h_q, d]), used as given. The 1-query API is s_q = 1 with q [batch, heads, d].
//    Rows of one sequence are packed query-major, row = i * heads + h (FlashMLA dense_decode.h
//    views q as [b, s_q, h_k=1, h_q, d], transposes to [b, s_q * h_q, 1, d]: q_seq_per_hk).
//  Visible keys: with causal, query i (0-based) of sequence b (length L_b = seqlens[b]) sees keys
//    [0, L_b - s_q + i], i.e. V_{b,i} = max(0, L_b - s_q + 1 + i) keys: FlashMLA
//    sm90/decode/dense/splitkv_mla.cuh get_mask_len = s_q - 1 - s_q_idx with
//    s_q_idx = row / q_head_per_hk, right border seqlen_k - mask_len; its tests' reference
//    (tests/test_flash_mla_dense_decoding.py) masks with tril(diagonal = s_k - s_q). Without
//    causal every query sees all L_b keys. (FlashMLA turns causal off for s_q = 1: the same.)
//    Default here causal = true (MTP drafts need the mask); flash_mla_with_kvcache defaults to
//    causal=False, so pass it explicitly when mirroring a FlashMLA call. FlashMLA's FP8 cache is
//    served by its sparse kernel, which rejects causal; the emulator masks either cache format
//    the same way (the mask does not depend on how a row is stored).
//    The cache holds L_b tokens, the last s_q of them being the queries' own (MTP drafts).
//  Split: from the sequence's FULL length, whatever the mask or s_q (FlashMLA's
//    get_decoding_sched_meta splits by seqlens_k alone; the kernel then clamps each split's end
//    block to the causal border): sequence b has nb = ceil(L_b / page) blocks; with
//    S = spec.num_splits, each split takes bps = ceil(nb / S) consecutive blocks (split j: blocks
//    [j*bps, min(nb, (j+1)*bps))); splits with no block are empty and skipped. (FlashMLA
//    balances blocks over SM parts by a payload; the equal-block split is this emulator's pinned
//    choice. What carries over: boundaries depend on seqlens_k and the split count only.)
//  Within a split, blocks in order; for each block and each (query i, head h) row, the tile is the
//    block's tokens that the query sees (masked keys contribute nothing: skipping them is
//    bit-identical to FlashMLA's -inf score, p = 0; a tile with no visible token leaves the
//    row's state untouched):
//    s_t = fl(dot(q, k_t) * scale) (numerics.hpp dot order over kv_lora + rope);
//    m' = max(m, max_t s_t); alpha = exp(fl(m - m')) (0 when m = -inf);
//    l = fl(l * alpha); acc[c] = fl(acc[c] * alpha);
//    for t in the tile in order: p = exp(fl(s_t - m')); l = fl(l + p);
//      acc[c] = fl(acc[c] + fl(P(p) * v_t[c])) where P rounds to spec.decode_p; m = m'.
//  Combine per row, over the splits holding a key the row's query sees, in order (the others
//    have lse_accum = -inf in FlashMLA, weight 0): M = max m_j; w_j = exp(fl(m_j - M));
//    L = sum fl(l_j * w_j); N[c] = sum fl(acc_j[c] * w_j); out = bf16(fl(N[c] / L));
//    lse = fl(M + log(L)).
//  exp is correctly rounded FP32 (common/pinned_math.hpp), log too (numerics.hpp): no libm.
//  Slots past a sequence's length are never read, so their contents (NaN, garbage) cannot matter;
//    keys a causal query does not see never reach its row. (Difference, read from FlashMLA's
//    code, not run: there a masked key inside seqlen_k still enters P.V with p = 0, so a NaN in
//    such a row would give 0 * NaN = NaN; only rows past seqlen_k are zeroed (fill_oob_V). With
//    finite rows - the drafts' real latents - both give the same bits.)
//  A query that sees no key (L_b = 0, or causal with L_b < s_q - i): out = 0, lse = +inf
//    (FlashMLA's convention: its reference sets "lonely" queries' out to 0 and lse to +inf).
//  Consequence used by the tests: with num_splits = 1, causal query i is bit-identical to a
//    1-query decode of the same cache with seqlen V_{b,i}; with several splits only where V_{b,i}'s
//    own plan would cut its blocks as L_b's does (the boundaries come from L_b); otherwise it is
//    within the certified bound of the exact reference.
//  Output layout as FlashMLA's: out [batch, s_q, heads, kv_lora], lse [batch, heads, s_q].
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "checks/verdict.hpp"
#include "mla/mla_spec.hpp"
#include "mla/paged_cache.hpp"

namespace fp8lab::mla {

struct DecodeResult {
  std::vector<std::uint16_t> out_bf16;  // [batch, s_q, heads, kv_lora] BF16 bit patterns
  std::vector<float> out;               // the same values as floats
  std::vector<float> lse;               // [batch, heads, s_q], natural log
};

// q is [batch, heads, kv_lora + rope] (one query per sequence). Throws std::invalid_argument
// (naming the argument) on shape, index or non-finite q problems.
DecodeResult decode(const float* q, std::size_t heads, const PagedCache& cache, const MlaSpec& spec);
// q is [batch, s_q, heads, kv_lora + rope]; s_q = 0 throws (naming s_q). s_q = 1 is the call above.
DecodeResult decode(const float* q, std::size_t s_q, std::size_t heads, const PagedCache& cache, const MlaSpec& spec,
                    bool causal = true);

// The exact attention of the same inputs (q as given, the cache's dequantised values, the given
// scale): float64 with a pinned exp, plus, per element, the certified bound on |decode - exact|
// for spec (its split count, p format). The bound holds for any summation order, truncating or
// nearest FP32 steps and an exp within 2^-21, so it also judges real kernels (decode.cpp).
// Whom the bound is for: this emulator's decode exactly as stated (tight), or any kernel of the
// same algorithm (any summation order, truncating FP32 steps, exp within 2^-21; see decode.cpp).
enum class BoundScope : std::uint8_t { ThisEmulator, AnyKernel };

struct DecodeReference {
  std::vector<double> out;        // [batch, s_q, heads, kv_lora]
  std::vector<double> lse;        // [batch, heads, s_q]; +inf for queries that see no key
  std::vector<double> out_bound;  // same shapes (0 where the query sees no key)
  std::vector<double> lse_bound;
};
DecodeReference decode_reference(const float* q, std::size_t heads, const PagedCache& cache, const MlaSpec& spec,
                                 double softmax_scale, BoundScope scope = BoundScope::AnyKernel);
// s_q queries: each query's exact attention over its own visible keys V_{b,i}, and its bound with
// its own length and the split plan of the full length (the kernel's), as stated at the top.
DecodeReference decode_reference(const float* q, std::size_t s_q, std::size_t heads, const PagedCache& cache,
                                 const MlaSpec& spec, double softmax_scale, bool causal = true,
                                 BoundScope scope = BoundScope::AnyKernel);

// decode result vs reference: out and lse in one verdict each.
struct DecodeVerdicts {
  Verdict out, lse;
  double max_out_ratio = 0, max_lse_ratio = 0;  // observed / bound
};
DecodeVerdicts check_decode(const DecodeResult& got, const DecodeReference& ref, std::size_t batch,
                            std::size_t heads, const MlaSpec& spec);
// s_q queries (shapes above). Both throw std::invalid_argument when got/ref sizes do not match.
DecodeVerdicts check_decode(const DecodeResult& got, const DecodeReference& ref, std::size_t batch, std::size_t s_q,
                            std::size_t heads, const MlaSpec& spec);

}  // namespace fp8lab::mla

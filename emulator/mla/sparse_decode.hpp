// Sparse MLA decode (DeepSeek-V3.2's DSA): each query attends to the cached tokens an indexer
// selected, read from one of FlashMLA's FP8 sparse KV layouts (sparse_kv_layout.hpp). Semantics
// of FlashMLA's flash_mla_with_kvcache with `indices` (flash_mla/flash_mla_interface.py,
// tests/ref.py ref_sparse_attn_decode, csrc/sm90/decode/sparse_fp8/splitkv_mla.cuh,
// csrc/smxx/decode/combine/combine.cu):
//  q [batch, s_q, heads, d_qk]; indices [batch, s_q, topk] int32 token indices into the cache
//    (block * page + slot, FlashMLA's indices_in_kvcache); -1 = invalid (skipped).
//  topk_length [batch] (optional): only the first topk_length[b] indices of each of sequence b's
//    queries count; later entries are ignored whatever they hold (FlashMLA sets them to -1 before
//    reading: "to prevent IMA when we have invalid (e.g. INT_MAX) topk indexes outside
//    topk_length"). FlashMLA's interface takes it per batch element (shape [b]), not per query.
//  attn_sink [heads] (optional): out = out * 1/(1 + exp(sink - lse)) = N / (L + exp(sink - M));
//    the returned lse is the one without the sink; -inf = no sink, +inf makes out 0.
//  out [batch, s_q, heads, d_v] (BF16 values), lse [batch, heads, s_q] (natural log).
//  A query with no counted valid index: out 0, lse +inf (ref.py "lonely" queries; the kernel's
//    rL == 0 ? INFINITY), with or without a sink.
//  V is the first d_v = 512 values of the dequantised row (V32: the latent; MODEL1: the row).
//  Invalid slots are never read: NaN or garbage in them, or in tokens no counted index names,
//  cannot reach the output (FlashMLA zeroes invalid slots' K and V and masks their scores).
// Stated algorithm (the arithmetic pinned here, FP32 unless said otherwise): per (sequence, query),
// its counted index slots are cut into tiles of 64 (FlashMLA's TOPK_BLOCK_SIZE); with
// S = num_splits, each split takes ceil(tiles / S) consecutive tiles; within a split, tile after
// tile, each head's row folds in the tile's valid slots in order with attention_tile.hpp's
// mla_absorb_tile_heads (scores fl(dot * scale) in numerics.hpp's order, FP32 online softmax, P rounded to
// decode_p - BF16, as the kernel's (bf16)cur_rP); the splits are combined with combine_splits,
// the sink joining the denominator. K/V rows are the cache's dequantised values in the chosen
// order (SM90 by default). Split boundaries follow the counted length alone, like FlashMLA's
// scheduler (which balances by payload; the equal split is this emulator's pinned choice).
// The exact reference (float64, pinned exp) and its certified bound per element: attention_row's
// row bound over the row's valid selected tokens, widened for the sink (sparse_decode.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "mla/decode.hpp"
#include "mla/mla_spec.hpp"
#include "mla/sparse_kv_layout.hpp"

namespace fp8lab::mla {

// FlashMLA's TOPK_BLOCK_SIZE (sm90 sparse_fp8 config; get_meta's block_size_topk = 64).
inline constexpr std::size_t kSparseTopkBlock = 64;

struct SparseDecodeSpec {
  SparseKvLayout layout = SparseKvLayout::V32Fp8Sparse;
  std::size_t page = 64;       // page_block_size of the cache
  double softmax_scale = 0;    // > 0; FlashMLA's default is d_qk^-0.5 (the caller passes it)
  int num_splits = 1;
  MatmulFormat decode_p = MatmulFormat::Bf16;  // P before P.V (FlashMLA: BF16)
  DequantOrder dequant = DequantOrder::Sm90;
};

struct SparseDecodeInputs {
  const float* q = nullptr;  // [batch, s_q, heads, d_qk]
  std::size_t batch = 0, s_q = 0, heads = 0;
  const std::uint8_t* kv = nullptr;  // blocks * block_bytes(page) bytes
  std::size_t blocks = 0;
  const std::int32_t* indices = nullptr;  // [batch, s_q, topk]
  std::size_t topk = 0;
  const std::int32_t* topk_length = nullptr;  // [batch] or null
  const float* attn_sink = nullptr;           // [heads] or null
};

// Checks every argument (std::invalid_argument naming it): shapes, q finite, topk <= the cache's
// blocks * page tokens, topk_length in [0, topk], counted indices -1 or in [0, blocks * page), a
// sink that is not NaN, selected tokens whose dequantised values are finite (a NaN scale or an
// E4M3 NaN in a token a query attends to is an error, not a silent NaN).
void validate_sparse_decode(const SparseDecodeInputs& in, const SparseDecodeSpec& spec);

DecodeResult sparse_decode(const SparseDecodeInputs& in, const SparseDecodeSpec& spec);
DecodeReference sparse_decode_reference(const SparseDecodeInputs& in, const SparseDecodeSpec& spec,
                                        BoundScope scope = BoundScope::AnyKernel);

}  // namespace fp8lab::mla

// The paged latent cache as FlashMLA lays it out: [blocks, page, 1, row] bytes, a block table
// [batch, max_blocks_per_seq] of block indices and per-sequence lengths.
//  BF16 row (576 x bf16, little-endian): latent c_KV (kv_lora) | k_pe (rope).
//  FP8 row (656 bytes for DeepSeek-V3; FlashMLA tests/quant.py, layout "V32_FP8Sparse"):
//    kv_lora x E4M3 | kv_lora/128 x FP32 scale | rope x BF16.
//  The latent part of an FP8 row is the BF16 latent quantised by the quantiser (quant/quantize.hpp)
//  with the rows below: 1 x kFp8CacheTile tiles of kFp8CacheFormat under the scale rule
//  kFp8CacheRule, whose row (quant/scale_rule.cpp) holds FlashMLA's arithmetic:
//  2^ceil(log2(max(amax/fmax, eps))) (_cast_scale_inv_to_ue8m0: eps clamps the scale, not amax),
//  element = format(x / scale), nearest even. ceil(log2) is taken exactly there; torch's float32
//  log2 can round to an integer when amax/fmax lies within ~2^-21 above a power of two and then
//  picks the scale one binade lower — a difference in the stored scale, never in validity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "mla/mla_spec.hpp"

namespace fp8lab::mla {

// The FP8 cache's quantisation, by table row (FlashMLA tests/quant.py quantize_k_cache, layout
// "V32_FP8Sparse"): element format, scale tile width along the latent, scale rule.
inline constexpr std::string_view kFp8CacheFormat = "e4m3";
inline constexpr std::size_t kFp8CacheTile = 128;
inline constexpr std::string_view kFp8CacheRule = "flashmla_cache";

struct PagedCache {
  std::size_t blocks = 0;
  std::size_t row_bytes = 0;               // cache_row_bytes(spec)
  std::vector<std::uint8_t> bytes;         // blocks * page * row_bytes, unless `view` is set
  // A cache held elsewhere (e.g. the caller's numpy array, read in place instead of copied per
  // call): blocks * page * row_bytes bytes that outlive every use of this PagedCache. When set,
  // `bytes` is empty and unused.
  const std::uint8_t* view = nullptr;
  const std::uint8_t* data() const { return view ? view : bytes.data(); }
  std::size_t batch = 0;
  std::size_t max_blocks_per_seq = 0;
  std::vector<std::int32_t> block_table;   // [batch, max_blocks_per_seq], unused entries -1
  std::vector<std::int32_t> seqlens;       // [batch]
};

// Builds a cache from tokens stored sequence after sequence: latent [sum(seqlens), kv_lora] and
// k_pe [sum(seqlens), rope] (values are rounded to BF16 first: the cache dtype). Sequence b gets
// ceil(seqlens[b] / page) blocks, numbered in order; `block_order`, if given, is a permutation of
// all block indices: logical block i is stored at physical block block_order[i] (the data moves
// with the table). Slots past a sequence's length are zero.
PagedCache build_cache(const float* latent, const float* k_pe, const std::vector<std::int32_t>& seqlens,
                       const MlaSpec& spec, const std::vector<std::int32_t>* block_order = nullptr);

// The FP32 values (kv_lora + rope) a kernel reads from one row: BF16 as is; FP8 e4m3 * scale
// (exact: a power-of-two times an E4M3 value fits BF16 for every scale this layout produces).
void read_row(const std::uint8_t* row, const MlaSpec& spec, float* out);

// Power-of-two scale of one latent tile from its amax: the kFp8CacheRule row's scale
// (compute_tile_scale) for kFp8CacheFormat (see the header comment).
float fp8_tile_scale(float amax);

// Checks a cache's shapes and indices against the spec (std::invalid_argument naming the argument).
void validate_cache(const PagedCache& cache, const MlaSpec& spec);

}  // namespace fp8lab::mla

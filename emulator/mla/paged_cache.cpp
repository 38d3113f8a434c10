#include "mla/paged_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "mla/cache_bytes.hpp"
#include "formats/encode.hpp"
#include "quant/quantize.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab::mla {

namespace {

// The quantised latents of `tokens` consecutive tokens: the kFp8CacheRule row applied by the
// quantiser to their BF16 values (the cache's dtype), one 1 x kFp8CacheTile tile per scale.
QTensor quantize_latents(const float* latent, std::size_t tokens, const MlaSpec& s) {
  std::vector<float> bf(tokens * s.kv_lora);
  for (std::size_t i = 0; i < bf.size(); ++i) bf[i] = round_to_bf16(latent[i]);
  return quantize(bf.data(), tokens, s.kv_lora, Tile{1, kFp8CacheTile}, kFp8CacheFormat,
                  scale_rule_by_name(kFp8CacheRule));
}

// One row: the latent (BF16, or token `t` of the quantised latents `q`) then k_pe in BF16.
void write_row(std::uint8_t* row, const float* lat, const float* kpe, const QTensor* q, std::size_t t,
               const MlaSpec& s) {
  const std::size_t C = s.kv_lora, R = s.rope;
  std::size_t rope_at = 2 * C;
  if (s.cache == CacheFormat::Bf16) {
    for (std::size_t i = 0; i < C; ++i) store_u16le(row + 2 * i, bf16_bits(lat[i]));
  } else {
    const std::size_t tiles = C / kFp8CacheTile;
    for (std::size_t i = 0; i < C; ++i) row[i] = static_cast<std::uint8_t>(q->bits[t * C + i]);
    for (std::size_t tile = 0; tile < tiles; ++tile) store_f32le(row + C + 4 * tile, q->scales[t * tiles + tile]);
    rope_at = C + 4 * tiles;
  }
  for (std::size_t i = 0; i < R; ++i) store_u16le(row + rope_at + 2 * i, bf16_bits(kpe[i]));
}

}  // namespace

float fp8_tile_scale(float amax) {
  return compute_tile_scale(amax, scale_rule_by_name(kFp8CacheRule), format_by_name(kFp8CacheFormat)).dequant;
}

void read_row(const std::uint8_t* row, const MlaSpec& s, float* out) {
  const std::size_t C = s.kv_lora, R = s.rope;
  if (s.cache == CacheFormat::Bf16) {
    for (std::size_t i = 0; i < C + R; ++i) out[i] = from_bf16_bits(load_u16le(row + 2 * i));
    return;
  }
  static_assert(kFp8CacheFormat == "e4m3", "read_row decodes through e4m3_values()");
  const auto& table = e4m3_values();
  const std::size_t tiles = C / kFp8CacheTile;
  for (std::size_t tile = 0; tile < tiles; ++tile) {
    const float scale = load_f32le(row + C + 4 * tile);
    for (std::size_t i = tile * kFp8CacheTile; i < (tile + 1) * kFp8CacheTile; ++i) out[i] = table[row[i]] * scale;
  }
  const std::size_t rope_at = C + 4 * tiles;
  for (std::size_t i = 0; i < R; ++i) out[C + i] = from_bf16_bits(load_u16le(row + rope_at + 2 * i));
}

PagedCache build_cache(const float* latent, const float* k_pe, const std::vector<std::int32_t>& seqlens,
                       const MlaSpec& s, const std::vector<std::int32_t>* block_order) {
  s.validate();
  PagedCache c;
  c.row_bytes = cache_row_bytes(s);
  c.batch = seqlens.size();
  c.seqlens = seqlens;
  std::size_t total_blocks = 0;
  for (std::size_t b = 0; b < seqlens.size(); ++b) {
    if (seqlens[b] < 0)
      throw std::invalid_argument("seqlens: element " + std::to_string(b) + " is negative (" + std::to_string(seqlens[b]) + ")");
    const std::size_t nb = (static_cast<std::size_t>(seqlens[b]) + s.page - 1) / s.page;
    c.max_blocks_per_seq = std::max(c.max_blocks_per_seq, nb);
    total_blocks += nb;
  }
  c.blocks = total_blocks;
  if (block_order) {
    if (block_order->size() != total_blocks)
      throw std::invalid_argument("block_order: expected a permutation of " + std::to_string(total_blocks) +
                                  " block indices, got " + std::to_string(block_order->size()) + " entries");
    std::vector<bool> seen(total_blocks, false);
    for (auto v : *block_order) {
      if (v < 0 || static_cast<std::size_t>(v) >= total_blocks || seen[v])
        throw std::invalid_argument("block_order: not a permutation of 0.." + std::to_string(total_blocks - 1));
      seen[v] = true;
    }
  }
  c.bytes.assign(total_blocks * s.page * c.row_bytes, 0);
  c.block_table.assign(c.batch * c.max_blocks_per_seq, -1);
  std::size_t logical = 0, token = 0;
  for (std::size_t b = 0; b < c.batch; ++b) {
    const std::size_t L = seqlens[b];
    const std::size_t nb = (L + s.page - 1) / s.page;
    for (std::size_t k = 0; k < nb; ++k, ++logical) {
      const std::int32_t phys = block_order ? (*block_order)[logical] : static_cast<std::int32_t>(logical);
      c.block_table[b * c.max_blocks_per_seq + k] = phys;
      const std::size_t first = token + k * s.page, used = std::min<std::size_t>(s.page, L - k * s.page);
      QTensor q;  // this block's tokens, quantised together (the quantiser's tiles are per token)
      if (s.cache != CacheFormat::Bf16) q = quantize_latents(latent + first * s.kv_lora, used, s);
      for (std::size_t slot = 0; slot < used; ++slot) {
        std::uint8_t* row = &c.bytes[(static_cast<std::size_t>(phys) * s.page + slot) * c.row_bytes];
        write_row(row, latent + (first + slot) * s.kv_lora, k_pe + (first + slot) * s.rope, &q, slot, s);
      }
    }
    token += L;
  }
  return c;
}

void validate_cache(const PagedCache& c, const MlaSpec& s) {
  if (c.row_bytes != cache_row_bytes(s))
    throw std::invalid_argument("cache: rows of " + std::to_string(c.row_bytes) + " bytes, but spec (cache=" +
                                std::string(cache_format_name(s.cache)) + ") needs " + std::to_string(cache_row_bytes(s)));
  if (!c.view && c.bytes.size() != c.blocks * s.page * c.row_bytes)
    throw std::invalid_argument("cache: byte size does not match blocks x page x row bytes");
  if (c.seqlens.size() != c.batch) throw std::invalid_argument("seqlens: expected one length per sequence");
  if (c.block_table.size() != c.batch * c.max_blocks_per_seq)
    throw std::invalid_argument("block_table: expected shape [batch, max_blocks_per_seq]");
  for (std::size_t b = 0; b < c.batch; ++b) {
    const std::int64_t L = c.seqlens[b];
    if (L < 0) throw std::invalid_argument("seqlens: element " + std::to_string(b) + " is negative");
    const std::size_t nb = (static_cast<std::size_t>(L) + s.page - 1) / s.page;
    if (nb > c.max_blocks_per_seq)
      throw std::invalid_argument("seqlens: sequence " + std::to_string(b) + " has " + std::to_string(L) +
                                  " tokens, more than block_table's " + std::to_string(c.max_blocks_per_seq) +
                                  " blocks of " + std::to_string(s.page) + " hold");
    for (std::size_t k = 0; k < nb; ++k) {
      const std::int32_t p = c.block_table[b * c.max_blocks_per_seq + k];
      if (p < 0 || static_cast<std::size_t>(p) >= c.blocks)
        throw std::invalid_argument("block_table: entry [" + std::to_string(b) + ", " + std::to_string(k) + "] = " +
                                    std::to_string(p) + " is not a block index in [0, " + std::to_string(c.blocks) + ")");
    }
  }
}

}  // namespace fp8lab::mla

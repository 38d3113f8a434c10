#include "mla/paged_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/pinned_math.hpp"
#include "mla/cache_bytes.hpp"
#include "mla/numerics.hpp"
#include "formats/encode.hpp"

namespace fp8lab::mla {

namespace {

void write_row(std::uint8_t* row, const float* lat, const float* kpe, const MlaSpec& s) {
  const std::size_t C = s.kv_lora, R = s.rope;
  if (s.cache == CacheFormat::Bf16) {
    for (std::size_t i = 0; i < C; ++i) store_u16le(row + 2 * i, bf16_bits(lat[i]));
    for (std::size_t i = 0; i < R; ++i) store_u16le(row + 2 * (C + i), bf16_bits(kpe[i]));
    return;
  }
  const Format& e4m3 = format_by_name("e4m3");
  EncodeOptions opt;  // nearest even; no value exceeds 448 after the ceiling scale
  // A BF16 value divided by a power of two is again a BF16 value (the exponent range is float's),
  // so the cast is a lookup on the top 16 bits: the table holds encode() of every BF16 pattern.
  static const std::vector<std::uint8_t> from_bf16 = [] {
    std::vector<std::uint8_t> t(65536);
    const Format& f8 = format_by_name("e4m3");
    for (std::uint32_t b = 0; b < 65536; ++b) {
      const std::uint32_t u = b << 16;
      float x;
      std::memcpy(&x, &u, 4);
      t[b] = static_cast<std::uint8_t>(encode(static_cast<double>(x), f8, EncodeOptions{}));
    }
    return t;
  }();
  for (std::size_t tile = 0; tile < C / 128; ++tile) {
    float bf[128];
    float amax = 0;
    for (std::size_t i = 0; i < 128; ++i) {
      bf[i] = round_to_bf16(lat[tile * 128 + i]);
      amax = std::max(amax, std::fabs(bf[i]));
    }
    const float scale = fp8_tile_scale(amax);
    store_f32le(row + C + 4 * tile, scale);
    for (std::size_t i = 0; i < 128; ++i) {
      const float q = bf[i] / scale;  // exact: scale is a power of two (barring underflow)
      std::uint32_t u;
      std::memcpy(&u, &q, 4);
      row[tile * 128 + i] = (u & 0xFFFFu) == 0 ? from_bf16[u >> 16]
                                               : static_cast<std::uint8_t>(encode(static_cast<double>(q), e4m3, opt));
    }
  }
  const std::size_t rope_at = C + 4 * (C / 128);
  for (std::size_t i = 0; i < R; ++i) store_u16le(row + rope_at + 2 * i, bf16_bits(kpe[i]));
}

}  // namespace

float fp8_tile_scale(float amax) {
  float s = amax / 448.0f;
  s = std::max(s, 1e-4f);  // torch.clamp_min(scales_inv, 1e-4): the float32 nearest 1e-4
  int e = 0;
  const float m = std::frexp(s, &e);  // s = m * 2^e, m in [0.5, 1)
  // 2^ceil(log2 s): s itself when it is a power of two (m == 0.5), else the next power up.
  return m == 0.5f ? s : std::ldexp(1.0f, e);
}

void read_row(const std::uint8_t* row, const MlaSpec& s, float* out) {
  const std::size_t C = s.kv_lora, R = s.rope;
  if (s.cache == CacheFormat::Bf16) {
    for (std::size_t i = 0; i < C + R; ++i) out[i] = from_bf16_bits(load_u16le(row + 2 * i));
    return;
  }
  const auto& table = e4m3_values();
  for (std::size_t tile = 0; tile < C / 128; ++tile) {
    const float scale = load_f32le(row + C + 4 * tile);
    for (std::size_t i = 0; i < 128; ++i) out[tile * 128 + i] = table[row[tile * 128 + i]] * scale;
  }
  const std::size_t rope_at = C + 4 * (C / 128);
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
      for (std::size_t slot = 0; slot < static_cast<std::size_t>(s.page); ++slot) {
        const std::size_t pos = k * s.page + slot;
        if (pos >= L) break;
        std::uint8_t* row = &c.bytes[(static_cast<std::size_t>(phys) * s.page + slot) * c.row_bytes];
        write_row(row, latent + (token + pos) * s.kv_lora, k_pe + (token + pos) * s.rope, s);
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
  if (c.bytes.size() != c.blocks * s.page * c.row_bytes)
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

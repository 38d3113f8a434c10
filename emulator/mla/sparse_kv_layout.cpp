#include "mla/sparse_kv_layout.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "mla/cache_bytes.hpp"
#include "quant/quantize.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab::mla {

namespace {

// The two rows (sources in the header).
constexpr std::array<SparseKvLayoutInfo, 2> kLayouts{{
    {"v32_fp8_sparse", 576, 512, 64, 512, 128, 4, false, 4, true, 0, 656, "flashmla_cache"},
    {"model1_fp8_sparse", 512, 448, 64, 512, 64, 7, true, 8, false, 576, 584, "flashmla_cache_ue8m0"},
}};

std::size_t scale_size(const SparseKvLayoutInfo& L) { return L.ue8m0 ? 1 : 4; }
// Byte offsets of token `slot`'s parts inside its block.
std::size_t nope_at(const SparseKvLayoutInfo& L, std::size_t slot) { return slot * L.row_bytes(); }
std::size_t rope_at(const SparseKvLayoutInfo& L, std::size_t slot) {
  return slot * L.row_bytes() + L.d_nope + (L.scales_inline ? L.scale_slots * scale_size(L) : 0);
}
std::size_t scales_at(const SparseKvLayoutInfo& L, std::size_t page, std::size_t slot) {
  return L.scales_inline ? slot * L.row_bytes() + L.d_nope : page * L.row_bytes() + slot * L.scale_slots;
}

// UE8M0 byte -> its value 2^(b - 127) (exact in float: 2^-127 is a float subnormal); 0xFF is NaN.
float ue8m0_value(std::uint8_t b) {
  return b == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, static_cast<int>(b) - 127);
}

std::string idx3(std::size_t a, std::size_t b, std::size_t c) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + "]";
}

void check_fields(const SparseKvFields& f, const SparseKvLayoutInfo& L) {
  const std::size_t T = f.blocks * f.page;
  auto need = [](const char* what, std::size_t got, std::size_t want) {
    if (got != want)
      throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(want) + " elements, got " +
                                  std::to_string(got));
  };
  need("nope", f.nope.size(), T * L.d_nope);
  need("rope", f.rope.size(), T * L.d_rope);
  need(L.ue8m0 ? "scale_bytes" : "scales", L.ue8m0 ? f.scale_bytes.size() : f.scales.size(), T * L.tiles);
}

}  // namespace

std::size_t SparseKvLayoutInfo::row_bytes() const {
  return d_nope + 2 * d_rope + (scales_inline ? scale_slots * (ue8m0 ? 1 : 4) : 0);
}

std::size_t SparseKvLayoutInfo::block_bytes(std::size_t page) const {
  const std::size_t raw = page * (row_bytes() + (scales_inline ? 0 : scale_slots * (ue8m0 ? 1 : 4)));
  return block_align == 0 ? raw : (raw + block_align - 1) / block_align * block_align;
}

const SparseKvLayoutInfo& layout_info(SparseKvLayout l) { return kLayouts[static_cast<std::size_t>(l)]; }

SparseKvLayout sparse_kv_layout_by_name(std::string_view name) {
  if (name == "v32_fp8_sparse" || name == "v32") return SparseKvLayout::V32Fp8Sparse;
  if (name == "model1_fp8_sparse" || name == "model1") return SparseKvLayout::Model1Fp8Sparse;
  throw std::invalid_argument("layout: unknown sparse KV layout '" + std::string(name) +
                              "'; valid: v32_fp8_sparse (656 bytes/token), model1_fp8_sparse (584 bytes/token)");
}

DequantOrder dequant_order_by_name(std::string_view name) {
  if (name == "sm90") return DequantOrder::Sm90;
  if (name == "reference") return DequantOrder::TestsReference;
  throw std::invalid_argument("order: unknown dequantisation order '" + std::string(name) + "'; valid: sm90, reference");
}

SparseKvFields unpack_sparse_kv(const std::uint8_t* bytes, std::size_t blocks, std::size_t page, SparseKvLayout l) {
  const SparseKvLayoutInfo& L = layout_info(l);
  SparseKvFields f;
  f.blocks = blocks;
  f.page = page;
  const std::size_t T = blocks * page;
  f.nope.resize(T * L.d_nope);
  f.rope.resize(T * L.d_rope);
  (L.ue8m0 ? f.scale_bytes.resize(T * L.tiles) : f.scales.resize(T * L.tiles));
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint8_t* blk = bytes + b * L.block_bytes(page);
    for (std::size_t s = 0; s < page; ++s) {
      const std::size_t t = b * page + s;
      std::memcpy(&f.nope[t * L.d_nope], blk + nope_at(L, s), L.d_nope);
      for (std::size_t i = 0; i < L.d_rope; ++i) f.rope[t * L.d_rope + i] = load_u16le(blk + rope_at(L, s) + 2 * i);
      const std::uint8_t* sc = blk + scales_at(L, page, s);
      for (std::size_t i = 0; i < L.tiles; ++i) {
        if (L.ue8m0)
          f.scale_bytes[t * L.tiles + i] = sc[i];
        else
          f.scales[t * L.tiles + i] = load_f32le(sc + 4 * i);
      }
    }
  }
  return f;
}

std::vector<std::uint8_t> pack_sparse_kv(const SparseKvFields& f, SparseKvLayout l) {
  const SparseKvLayoutInfo& L = layout_info(l);
  check_fields(f, L);
  for (std::size_t t = 0; t < f.blocks * f.page; ++t)
    for (std::size_t i = 0; i < L.tiles; ++i) {
      const float v = L.ue8m0 ? ue8m0_value(f.scale_bytes[t * L.tiles + i]) : f.scales[t * L.tiles + i];
      if (!(std::isfinite(v) && v > 0))
        throw std::invalid_argument(std::string(L.ue8m0 ? "scale_bytes" : "scales") + ": element " +
                                    idx3(t / f.page, t % f.page, i) + " is " + std::to_string(v) +
                                    "; a scale must be positive and finite");
    }
  std::vector<std::uint8_t> out(f.blocks * L.block_bytes(f.page), 0);
  for (std::size_t b = 0; b < f.blocks; ++b) {
    std::uint8_t* blk = out.data() + b * L.block_bytes(f.page);
    for (std::size_t s = 0; s < f.page; ++s) {
      const std::size_t t = b * f.page + s;
      std::memcpy(blk + nope_at(L, s), &f.nope[t * L.d_nope], L.d_nope);
      for (std::size_t i = 0; i < L.d_rope; ++i) store_u16le(blk + rope_at(L, s) + 2 * i, f.rope[t * L.d_rope + i]);
      std::uint8_t* sc = blk + scales_at(L, f.page, s);
      for (std::size_t i = 0; i < L.tiles; ++i) {
        if (L.ue8m0)
          sc[i] = f.scale_bytes[t * L.tiles + i];
        else
          store_f32le(sc + 4 * i, f.scales[t * L.tiles + i]);
      }
    }
  }
  return out;
}

std::vector<std::uint8_t> quantize_sparse_kv(const float* values, std::size_t blocks, std::size_t page,
                                             SparseKvLayout l) {
  const SparseKvLayoutInfo& L = layout_info(l);
  const std::size_t T = blocks * page;
  std::vector<float> nope(T * L.d_nope);
  SparseKvFields f;
  f.blocks = blocks;
  f.page = page;
  f.rope.resize(T * L.d_rope);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t c = 0; c < L.d_qk; ++c) {
      const float x = values[t * L.d_qk + c];
      if (!std::isfinite(x))
        throw std::invalid_argument("values: element " + idx3(t / page, t % page, c) + " is " + std::to_string(x) +
                                    "; the cache quantiser takes finite values");
      if (c < L.d_nope)
        nope[t * L.d_nope + c] = round_to_bf16(x);  // the cache's input is BF16 (tests/quant.py)
      else
        f.rope[t * L.d_rope + (c - L.d_nope)] = bf16_bits(x);
    }
  const QTensor q = quantize(nope.data(), T, L.d_nope, Tile{1, L.tile}, "e4m3", scale_rule_by_name(L.scale_rule));
  f.nope.assign(q.bits.begin(), q.bits.end());
  if (L.ue8m0)
    f.scale_bytes = q.scale_bits_ue8m0;
  else
    f.scales = q.scales;
  return pack_sparse_kv(f, l);
}

void dequantize_sparse_kv_token(const std::uint8_t* bytes, std::size_t page, SparseKvLayout l, std::size_t block,
                                std::size_t slot, DequantOrder order, float* out) {
  const SparseKvLayoutInfo& L = layout_info(l);
  const auto& e4m3 = e4m3_values();
  const std::uint8_t* blk = bytes + block * L.block_bytes(page);
  const std::uint8_t* nope = blk + nope_at(L, slot);
  const std::uint8_t* sc = blk + scales_at(L, page, slot);
  for (std::size_t i = 0; i < L.tiles; ++i) {
    const float s = L.ue8m0 ? ue8m0_value(sc[i]) : load_f32le(sc + 4 * i);
    // SM90: the scale enters as BF16 and the product is a BF16 multiply (one rounding of the exact
    // product: an E4M3 significand times a BF16 one fits FP32); the tests' V32 reference multiplies
    // by the FP32 scale and rounds once.
    const float sm = order == DequantOrder::Sm90 ? round_to_bf16(s) : s;
    for (std::size_t c = 0; c < L.tile; ++c) out[i * L.tile + c] = round_to_bf16(e4m3[nope[i * L.tile + c]] * sm);
  }
  const std::uint8_t* rope = blk + rope_at(L, slot);
  for (std::size_t i = 0; i < L.d_rope; ++i) out[L.d_nope + i] = from_bf16_bits(load_u16le(rope + 2 * i));
}

std::vector<float> dequantize_sparse_kv(const std::uint8_t* bytes, std::size_t blocks, std::size_t page,
                                        SparseKvLayout l, DequantOrder order) {
  const SparseKvLayoutInfo& L = layout_info(l);
  std::vector<float> out(blocks * page * L.d_qk);
  for (std::size_t b = 0; b < blocks; ++b)
    for (std::size_t s = 0; s < page; ++s) dequantize_sparse_kv_token(bytes, page, l, b, s, order, &out[(b * page + s) * L.d_qk]);
  return out;
}

}  // namespace fp8lab::mla

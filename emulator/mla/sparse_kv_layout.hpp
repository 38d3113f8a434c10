// FlashMLA's two FP8 KV-cache layouts for sparse attention, as byte layouts (pack / unpack of the
// fields), quantisers (values -> bytes) and dequantisers (bytes -> the BF16 values a kernel
// attends to). Sources: FlashMLA tests/quant.py (FP8KVCacheLayout, quantize_k_cache,
// dequantize_k_cache), flash_mla/flash_mla_interface.py (the V3.2 layout comment),
// csrc/api/sparse_decode.h (bytes per token) and csrc/sm90/decode/sparse_fp8/splitkv_mla.cuh +
// components/dequant.h (how the SM90 kernel reads them).
//
//  V32_FP8Sparse (DeepSeek-V3.2; d_qk 576, d_v 512): 656 bytes per token, token after token:
//    512 x E4M3 latent | 4 x FP32 scale (one per 128 channels) | 64 x BF16 RoPE.
//    A block of `page` tokens is page * 656 bytes.
//  MODEL1_FP8Sparse (d_qk 512 = 448 nope + 64 rope, d_v 512 = the whole row): 584 bytes per token,
//    but per block: page x (448 x E4M3 | 64 x BF16 RoPE) = page x 576 bytes, then page x 8 bytes of
//    scales (7 x UE8M0, one per 64 channels, + 1 pad byte), then zero padding to a multiple of 576
//    bytes (tests/quant.py size_per_block_padded; the kernel addresses scales at
//    block + page * 576 + slot * 8).
// Token index idx (FlashMLA's indices_in_kvcache) = block * page + slot.
//
// Quantisation (both): values are BF16; per tile s = 2^ceil(log2(max(amax / 448, 1e-4))), element
// E4M3(x / s) (torch cast) - the scale rules "flashmla_cache" (FP32 storage) and
// "flashmla_cache_ue8m0" (UE8M0 storage) of quant/scale_rule.cpp.
// Dequantisation, SM90 kernel (dequant.h cvt_fp8x8_bf16x8): the E4M3 element to FP32, to BF16
// (exact), times the scale as BF16 ((bf16)scales_float for V32; __nv_cvt_e8m0x2_to_bf162raw for
// MODEL1) in BF16: bf16(e * bf16(s)). tests/quant.py's V32 reference multiplies in FP32 and rounds
// once, bf16(e * s): the same bits whenever s is a power of two (every scale the quantiser makes),
// different for a foreign FP32 scale with more than 8 significant bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace fp8lab::mla {

enum class SparseKvLayout : std::uint8_t { V32Fp8Sparse, Model1Fp8Sparse };

// One layout as data.
struct SparseKvLayoutInfo {
  std::string_view name;        // "v32_fp8_sparse", "model1_fp8_sparse"
  std::size_t d_qk, d_nope, d_rope, d_v;
  std::size_t tile, tiles;      // channels per scale, scales per token
  bool ue8m0;                   // scales as UE8M0 bytes (else FP32)
  std::size_t scale_slots;      // scale slots per token (MODEL1: 7 + 1 pad)
  bool scales_inline;           // scales inside the token's row (V32) or after the block's rows
  std::size_t block_align;      // block size rounded up to a multiple of this (0: none)
  std::size_t bytes_per_token;  // FlashMLA's nominal figure (sparse_decode.h)
  std::string_view scale_rule;  // quant/scale_rule.cpp row
  std::size_t row_bytes() const;                // bytes of one token's nope + (inline scales) + rope
  std::size_t block_bytes(std::size_t page) const;
};
const SparseKvLayoutInfo& layout_info(SparseKvLayout l);
// "v32_fp8_sparse" (or "v32"), "model1_fp8_sparse" (or "model1"); others throw naming `layout`.
SparseKvLayout sparse_kv_layout_by_name(std::string_view name);

// The fields of a cache of `blocks` blocks of `page` tokens, token-major.
struct SparseKvFields {
  std::size_t blocks = 0, page = 0;
  std::vector<std::uint8_t> nope;         // [blocks, page, d_nope] E4M3 bit patterns
  std::vector<float> scales;              // [blocks, page, tiles] (V32: the stored FP32 scale)
  std::vector<std::uint8_t> scale_bytes;  // [blocks, page, tiles] (MODEL1: the UE8M0 bytes)
  std::vector<std::uint16_t> rope;        // [blocks, page, d_rope] BF16 bit patterns
};

// Reads the fields; pad bytes are ignored, any bit pattern is accepted (FlashMLA's tests fill
// unused slots with NaN). `bytes` holds blocks * block_bytes(page) bytes.
SparseKvFields unpack_sparse_kv(const std::uint8_t* bytes, std::size_t blocks, std::size_t page, SparseKvLayout l);
// Writes the fields, pad bytes 0. Scales must be positive and finite (a UE8M0 byte 0xFF is NaN):
// otherwise std::invalid_argument names scales / scale_bytes and the element. pack(unpack(b)) == b
// for every cache whose scales are valid and whose pad bytes are 0.
std::vector<std::uint8_t> pack_sparse_kv(const SparseKvFields& f, SparseKvLayout l);

// values [blocks, page, d_qk] (rounded to BF16 first: the cache's input dtype) -> bytes. Non-finite
// values throw std::invalid_argument naming `values` and the element. quantize(dequantize(b)) keeps
// the values but not always the bytes: a tile whose largest element rounded to 224 (amax / s in
// (224, 232]) re-quantises with s / 2 and elements twice as large; the byte round trip is
// pack(unpack(b)) == b.
std::vector<std::uint8_t> quantize_sparse_kv(const float* values, std::size_t blocks, std::size_t page,
                                             SparseKvLayout l);

enum class DequantOrder : std::uint8_t {
  Sm90,           // bf16(e * bf16(s)): the SM90 sparse decode kernel
  TestsReference, // tests/quant.py dequantize_k_cache: V32 bf16(e * s) in FP32; MODEL1 as Sm90
};
DequantOrder dequant_order_by_name(std::string_view name);  // "sm90", "reference"

// The d_qk values of token `slot` of block `block` (out: d_qk floats, BF16 values).
void dequantize_sparse_kv_token(const std::uint8_t* bytes, std::size_t page, SparseKvLayout l, std::size_t block,
                                std::size_t slot, DequantOrder order, float* out);
// Every token: [blocks, page, d_qk].
std::vector<float> dequantize_sparse_kv(const std::uint8_t* bytes, std::size_t blocks, std::size_t page,
                                        SparseKvLayout l, DequantOrder order);

}  // namespace fp8lab::mla

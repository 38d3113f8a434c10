// Quantised projection weights kept between calls (the FP8 projections' 128x128 E4M3 weights:
// forward.hpp's MatmulFormat::Fp8 projections and the FP8 wkv_b quantised from w.wkv_b), so a
// layer called again with the same weights does not quantise them again.
//
// Keyed by what the quantisation depends on: the values (a 64-bit fingerprint of every float's
// bits, recomputed at every call, so a write into the caller's array between calls - numpy's
// w["wo"][i, j] = v - is seen by the next call), the shape and the operand recipe (format, tile,
// full scale rule). Where the memory lives does not matter. The fingerprint is a chain of
// bijections per lane (state ^ word, times an odd constant, xor-shift) combined the same way, so a
// change of any one element always changes it; several changes give the same fingerprint with
// probability about 2^-64.
//
// Bounded: at most kWeightCacheEntries tensors and kWeightCacheBytes bytes (element patterns and
// scales), least recently used evicted first; a tensor larger than the byte limit is not kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "gemm/recipe.hpp"
#include "quant/qtensor.hpp"

namespace fp8lab::mla {

inline constexpr std::size_t kWeightCacheEntries = 16;
inline constexpr std::size_t kWeightCacheBytes = std::size_t{1} << 30;

// quantize_operand(w, rows, cols, op), from the cache when the same values, shape and recipe were
// quantised before. Throws as quantize_operand (nothing is cached then).
std::shared_ptr<const QTensor> quantized_weights(std::span<const float> w, std::size_t rows, std::size_t cols,
                                                 const OperandRecipe& op);

struct WeightCacheInfo {
  std::size_t entries = 0, bytes = 0;  // held now
  std::uint64_t hits = 0, misses = 0;  // since the process started
};
WeightCacheInfo weight_cache_info();
// Drops every entry (the counters stay).
void clear_weight_cache();

// The fingerprint above, of n floats' bit patterns (independent of the thread count).
std::uint64_t weights_fingerprint(const float* values, std::size_t n);

}  // namespace fp8lab::mla

// Block quantisation: float32 matrix -> QTensor (element bits + one scale per tile), and back.
//
// Tiles: Tile{r, c} cuts a rows x cols matrix into r x c tiles from the top-left; 0 means the whole
// dimension (per-tensor {0, 0}, per-row {1, 0}, 1x128 {1, 128}, 128x1 {128, 1}, 128x128, MX {1, 32}).
// Ragged edges behave as zero padding: an edge tile's amax is taken over its valid elements only
// (|0| never raises an amax, so padding with zeros, as DeepGEMM's per_token_cast_to_fp8 does,
// gives the same scale), and no padding is stored.
//
// Each element is quantised as its rule's source does it, in float32: q = apply_scale(x) (x / s,
// x * fl32(1/s) or x * m), then clamped to +-fmax if the rule says so, then cast to the element
// format with nearest-even and the rule's overflow behaviour (formats/encode.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "quant/qtensor.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab {

// Stochastic rounding of the scaled elements in place of the rule's cast: element i (row-major) is
// rounded by quant/stochastic.hpp's cvt.rs.satfinite model with random word rbits[i] (< 2^width), as
// NVIDIA's NVFP4 recipe rounds gradients; the scales are the rule's, computed as without it.
struct StochasticBits {
  const std::uint32_t* rbits;  // rows * cols words
  int width;
};

// x: rows * cols float32 values, row-major. Throws std::invalid_argument naming the argument for an
// unknown format, a null x with a non-empty shape, a rule that does not validate, or a tile the rule
// cannot take (e.g. an MX tile that does not hold 32 elements); with sr, for a width outside [1, 32]
// or a word with bits above it.
QTensor quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt,
                 const ScaleRule& rule, const StochasticBits* sr = nullptr);
// float64 input: every value must be a float32 value already (the rules compute in float32, and a
// silent rounding here would be a second, unmodelled cast); NaN is accepted. Otherwise
// std::invalid_argument names the first offending element.
QTensor quantize(const double* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt,
                 const ScaleRule& rule);

// Where quantize_into writes: rows * cols element patterns of bits_width bits (the format's storage
// width: uint8_t for 8-bit formats), row-major; one dequantisation multiplier per tile (the
// QTensor's `scales`, row-major over the tile grid) unless null; and for UE8M0 rules the scale
// bytes (its `scale_bits_ue8m0`), which such rules require. Nothing is allocated.
struct QuantizeOut {
  void* bits = nullptr;
  int bits_width = 8;
  float* scales = nullptr;
  std::uint8_t* scale_bytes = nullptr;
};
// quantize() into caller memory: the same bits and scales; returns the QTensor's global_scale (1
// but for two-level rules). Single-level rules take one fused pass per band of tiles (amax, scale,
// cast). A missing or wrong-width destination is std::invalid_argument naming `out`.
float quantize_into(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt,
                   const ScaleRule& rule, const QuantizeOut& out);

// The exact values element * scale (row-major), in double; NaN where a scale or element is NaN.
std::vector<double> dequantize(const QTensor& q);
// What a kernel computes before re-quantising: fl32(element * scale), row-major.
std::vector<float> dequantize_fp32(const QTensor& q);
// The same into out (rows * cols elements, written in parallel: a fresh buffer's pages are first
// touched by the threads that fill them). Throws as validate_qtensor(q, "q") before writing.
void dequantize_into(const QTensor& q, double* out);
void dequantize_fp32_into(const QTensor& q, float* out);

// Re-quantises q into another tiling with the same format and rule, as DeepSeek-V3 does for the
// backward pass (1x128 activations -> 128x1): dequantise to float32 (fl32(element * scale)), then
// quantise. Exact (dequantize(retile(q)) == dequantize(q)) when the scales are powers of two and
// no element leaves the format's normal range under its new scale; otherwise elements can round.
QTensor retile(const QTensor& q, Tile tile);

// Checks a QTensor built from parts (e.g. a GPU kernel's output): sizes, bit widths, format name,
// and (for UE8M0 storage) that scales == 2^(byte - 127). Throws std::invalid_argument naming `arg`.
void validate_qtensor(const QTensor& q, std::string_view arg = "q");

// The rule a QTensor names, or a clear error if it names none.
const ScaleRule& rule_of(const QTensor& q);

}  // namespace fp8lab

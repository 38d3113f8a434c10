// A block-quantised 2-D tensor: element bit patterns in some Format plus one scale per tile.
// The contract every producer (quant/) and consumer (gemm/, golden/, mla/) relies on:
//   value(r, c) = decode(bits[r * cols + c], format) * dequant_scale(r, c)
// whatever the scale rule: a rule that stores the quantisation multiplier (TransformerEngine's
// `scale`) keeps its inverse here too, so consumers never need to know the rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/encode.hpp"
#include "quant/element_bits.hpp"

namespace fp8lab {

// Tile shape in elements. 0 means "the whole dimension": per-tensor = {0, 0}, per-row = {1, 0}.
struct Tile {
  std::size_t rows = 1;
  std::size_t cols = 128;
  bool operator==(const Tile&) const = default;
};

struct QTensor {
  std::size_t rows = 0, cols = 0;
  std::string fmt = "e4m3";          // element format name (format_by_name)
  Tile tile;
  std::string rule;                  // scale rule name that produced it ("deepseek", "te", ...)
  // rows*cols element patterns, row-major, at the format's storage width (validate_qtensor checks
  // it): 1 byte per element for 8-bit formats. bits[i] reads a pattern as uint32 at any width.
  ElementBits bits;
  // Dequantisation multiplier per tile, row-major over the tile grid (tile_grid_rows() x
  // tile_grid_cols()); exactly the FP32 value the kernel multiplies by (for UE8M0 rules, 2^(e-127)).
  std::vector<float> scales;
  // For rules whose scale is stored as UE8M0: the raw exponent bytes (same layout as scales);
  // empty otherwise.
  std::vector<std::uint8_t> scale_bits_ue8m0;
  // The full rule as canonical JSON (ScaleRule::to_json), so a tensor quantised with a custom rule
  // can be re-tiled or re-checked without the name being in the table. May be empty for tensors
  // built by hand; then `rule` must be a named rule.
  std::string rule_spec;
  // A tensor-level dequantisation factor applied after the tile scale (NVFP4's S_dec = 1 / S_enc,
  // TransformerEngine's GEMM alpha); 1 for every single-level rule.
  float global_scale = 1.0f;
  // The tensor amax S_enc was computed from (two-level rules; 0 otherwise): TransformerEngine's NVFP4
  // GEMM forms its epilogue alpha from the two operands' amaxes, not from S_dec (gemm/block_scaled.hpp).
  float global_amax = 0.0f;

  const Format& format() const { return format_by_name(fmt); }
  std::size_t tile_rows_eff() const { return tile.rows == 0 ? rows : tile.rows; }
  std::size_t tile_cols_eff() const { return tile.cols == 0 ? cols : tile.cols; }
  std::size_t tile_grid_rows() const { return rows == 0 ? 0 : (rows + tile_rows_eff() - 1) / tile_rows_eff(); }
  std::size_t tile_grid_cols() const { return cols == 0 ? 0 : (cols + tile_cols_eff() - 1) / tile_cols_eff(); }
  float dequant_scale(std::size_t r, std::size_t c) const {
    return scales[(r / tile_rows_eff()) * tile_grid_cols() + c / tile_cols_eff()];
  }
  // The unscaled element value (exact).
  double element(std::size_t r, std::size_t c) const { return decode(bits[r * cols + c], format()); }
  // The dequantised value, computed exactly in double (element * scale is exact in double for
  // every element format of <= 24 significant bits and a float32 scale).
  // element * tile scale * global scale is exact in double too (<= 4 + 2 + 24 significant bits for NVFP4).
  double value(std::size_t r, std::size_t c) const {
    return element(r, c) * static_cast<double>(dequant_scale(r, c)) * static_cast<double>(global_scale);
  }
};

}  // namespace fp8lab

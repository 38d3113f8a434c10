// TransformerEngine's NVFP4 "4over6" block-scale choice (custom_recipes/reference_nvfp4.py
// _quantize_blockwise_4over6_reference, the default MAE error in the input domain): per tile, two
// candidate E4M3 scales — map-to-6 (the block amax lands on 6) and map-to-4 (1.5x larger, the
// amax lands on 4) — each quantise the block; the one with the smaller summed |error| wins.
#pragma once

#include <cstddef>
#include <vector>

#include "quant/scale_rule.hpp"

namespace fp8lab {

struct FourOverSixInput {
  const float* x;                      // rows x cols, row-major
  std::size_t rows, cols, tile_rows, tile_cols;
  const std::vector<float>* tile_amax;  // per tile, row-major over the tile grid
  float global_encode;                 // S_enc (nvfp4_global_encode with the rule's global_scale_max)
  float tensor_amax;                   // the global amax the error formula multiplies by
};

// Replaces each tile's scale in `ts` (row-major over the tile grid) by the chosen candidate.
void choose_four_over_six(const FourOverSixInput& in, const ScaleRule& rule, const Format& fmt,
                          std::vector<TileScale>& ts);

}  // namespace fp8lab

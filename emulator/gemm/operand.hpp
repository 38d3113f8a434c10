// A GEMM operand as the emulator consumes it: unscaled element values (exact in float, since every
// element format has <= 24 significant bits) and one FP32 dequantisation scale per tile. Built from
// a QTensor (any tiling) or from a plain float array (one tile, scale 1). Rows are along M (A) or
// N (B); columns along K — B is given N x K, DeepGEMM's NT layout.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/buffer_pool.hpp"
#include "quant/qtensor.hpp"

namespace fp8lab {

struct GemmOperand {
  std::size_t rows = 0, cols = 0;
  std::string fmt = "fp32";         // element format name ("fp32" for a plain float array)
  PooledVector<float> elements;     // rows * cols unscaled values, row-major (common/buffer_pool.hpp)
  std::size_t tile_rows = 1, tile_cols = 1;  // effective tile shape (>= 1)
  std::vector<float> scales;        // ceil(rows/tile_rows) x ceil(cols/tile_cols), row-major
  bool quantised = false;           // built from a QTensor
  // Two-level (NVFP4) tensors: value = element * tile scale * global_scale (S_dec); the tensor amax
  // S_enc came from and S_enc's numerator fl(global_scale_max * fmax) (2688 for NVFP4), which the
  // GEMM epilogue's alpha is formed from (gemm/block_scaled.hpp). global_numerator 0: one level.
  float global_scale = 1.0f;
  float global_amax = 0.0f;
  float global_numerator = 0.0f;
  bool two_level() const { return global_numerator != 0.0f; }

  std::size_t grid_cols() const { return cols == 0 ? 0 : (cols + tile_cols - 1) / tile_cols; }
  float scale(std::size_t r, std::size_t k) const { return scales[(r / tile_rows) * grid_cols() + k / tile_cols]; }
  const float* row(std::size_t r) const { return elements.data() + r * cols; }
};

// Validates and decodes `q` (named `arg` in errors): bits/scales sizes, known format, finite
// scales. NaN and Inf elements are kept (the GEMM's policy, gemm/non_finite.hpp, says what they
// give). Throws std::invalid_argument naming `arg`, the element and the problem.
GemmOperand operand_from_qtensor(const QTensor& q, std::string_view arg);
// A plain row-major rows x cols float array (scale 1); NaN and Inf kept as in operand_from_qtensor.
GemmOperand operand_from_floats(const float* values, std::size_t rows, std::size_t cols, std::string_view arg);
// The same, taking over `values` (rows * cols of them) without a copy.
GemmOperand operand_from_floats(PooledVector<float>&& values, std::size_t rows, std::size_t cols, std::string_view arg);

// True when, for every row, the scale is constant over each K-interval [j*len, (j+1)*len).
bool scales_constant_over(const GemmOperand& x, std::size_t len);

}  // namespace fp8lab

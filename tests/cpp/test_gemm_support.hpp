// Helpers shared by the gemm tests (tests/cpp/test_gemm*.cpp, property_tests/prop_gemm*.cpp):
// Gaussian matrices and a small block quantiser (DeepSeek's amax/fmax rule, written out here so
// the tests pin their inputs independently of quant/).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "accum/tensor_core.hpp"
#include "formats/encode.hpp"
#include "gemm/hopper_fp8_kernel.hpp"
#include "gemm/operand.hpp"
#include "quant/qtensor.hpp"


namespace fp8lab::testing {

inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, double sigma = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

// Block quantisation with scale = amax / fmax (DeepSeek's rule; pow2 rounds the scale up to a
// power of two), elements rounded to nearest even with saturation. fmax defaults to the format's
// largest finite value, capped at 448 so that wide formats (bf16, fp16) get FP8-like magnitudes
// instead of elements near their overflow threshold.
inline QTensor quantise(const std::vector<float>& x, std::size_t rows, std::size_t cols, Tile tile,
                        const std::string& fmt = "e4m3", bool pow2 = false) {
  QTensor q;
  q.rows = rows;
  q.cols = cols;
  q.fmt = fmt;
  q.tile = tile;
  q.rule = "test";
  const Format& f = format_by_name(fmt);
  q.scales.assign(q.tile_grid_rows() * q.tile_grid_cols(), 1.0f);
  q.bits = ElementBits(rows * cols, f.storage_bits());
  const std::size_t tr = q.tile_rows_eff(), tc = q.tile_cols_eff();
  for (std::size_t gr = 0; gr < q.tile_grid_rows(); ++gr)
    for (std::size_t gc = 0; gc < q.tile_grid_cols(); ++gc) {
      double amax = 0;
      for (std::size_t r = gr * tr; r < std::min(rows, (gr + 1) * tr); ++r)
        for (std::size_t c = gc * tc; c < std::min(cols, (gc + 1) * tc); ++c) amax = std::max(amax, std::fabs(double(x[r * cols + c])));
      float s = static_cast<float>(std::max(amax, 1e-4) / std::min(f.max_finite(), 448.0));
      if (pow2) s = static_cast<float>(std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(s)))));
      q.scales[gr * q.tile_grid_cols() + gc] = s;
      for (std::size_t r = gr * tr; r < std::min(rows, (gr + 1) * tr); ++r)
        for (std::size_t c = gc * tc; c < std::min(cols, (gc + 1) * tc); ++c)
          q.bits.set(r * cols + c, encode(static_cast<double>(x[r * cols + c]) / s, f));
    }
  return q;
}

inline GemmOperand quantised_gaussian(std::size_t rows, std::size_t cols, Tile tile, std::uint64_t seed,
                                      bool pow2 = false) {
  return operand_from_qtensor(quantise(gaussian(rows * cols, seed), rows, cols, tile, "e4m3", pow2), "x");
}

}  // namespace fp8lab::testing

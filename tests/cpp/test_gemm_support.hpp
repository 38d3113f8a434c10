// Helpers shared by the gemm tests (tests/cpp/test_gemm*.cpp, property_tests/prop_gemm*.cpp):
// Gaussian matrices, a small block quantiser (so the tests do not depend on quant/'s progress),
// and — only while accum/ has not landed its model — a stand-in for the tensor-core interface
// that routes the Hopper E4M3 preset to gemm's own scalar reference of the model.
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

#if !__has_include("accum/tensor_core_model.hpp")
#define FP8LAB_GEMM_TEST_STANDIN 1
namespace fp8lab {
struct TensorCoreModel {
  int id;
};
inline const TensorCoreModel kStandinE4m3{0}, kStandinE5m2{1};
const TensorCoreModel& tensor_core_by_name(std::string_view name) {
  if (name == "hopper_fp8") return kStandinE4m3;
  if (name == "hopper_fp8_e5m2") return kStandinE5m2;
  throw std::invalid_argument("instruction: unknown tensor-core preset '" + std::string(name) + "'");
}
std::vector<std::string> tensor_core_names() { return {"hopper_fp8", "hopper_fp8_e5m2"}; }
int tensor_core_k(const TensorCoreModel&) { return 32; }
float fused_dot_add(const float* a, const float* b, float c, const TensorCoreModel& m) {
  if (m.id != 0) throw std::logic_error("stand-in models only hopper_fp8");
  return hopper_e4m3_dot_add(a, b, 32, c);
}
}  // namespace fp8lab
#endif

namespace fp8lab::testing {

inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, double sigma = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng));
  return v;
}

// Block quantisation with scale = amax / fmax (DeepSeek's rule; pow2 rounds the scale up to a
// power of two), elements rounded to nearest even with saturation.
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
  q.bits.resize(rows * cols);
  const std::size_t tr = q.tile_rows_eff(), tc = q.tile_cols_eff();
  for (std::size_t gr = 0; gr < q.tile_grid_rows(); ++gr)
    for (std::size_t gc = 0; gc < q.tile_grid_cols(); ++gc) {
      double amax = 0;
      for (std::size_t r = gr * tr; r < std::min(rows, (gr + 1) * tr); ++r)
        for (std::size_t c = gc * tc; c < std::min(cols, (gc + 1) * tc); ++c) amax = std::max(amax, std::fabs(double(x[r * cols + c])));
      float s = static_cast<float>(std::max(amax, 1e-4) / f.max_finite());
      if (pow2) s = static_cast<float>(std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(s)))));
      q.scales[gr * q.tile_grid_cols() + gc] = s;
      for (std::size_t r = gr * tr; r < std::min(rows, (gr + 1) * tr); ++r)
        for (std::size_t c = gc * tc; c < std::min(cols, (gc + 1) * tc); ++c)
          q.bits[r * cols + c] = encode(static_cast<double>(x[r * cols + c]) / s, f);
    }
  return q;
}

inline GemmOperand quantised_gaussian(std::size_t rows, std::size_t cols, Tile tile, std::uint64_t seed,
                                      bool pow2 = false) {
  return operand_from_qtensor(quantise(gaussian(rows * cols, seed), rows, cols, tile, "e4m3", pow2), "x");
}

}  // namespace fp8lab::testing

// Benchmark: fp8lab's 1x128 `deepseek` quantiser on a 4096 x 7168 float32 matrix against a plain
// scalar baseline of the same rule written with formats' encode() per element (what the quantiser
// would cost without its precomputed encode plan), in the same run. Prints the ratio.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/parallel.hpp"
#include "quant/quantize.hpp"

int main(int argc, char** argv) {
  using namespace fp8lab;
  const std::size_t rows = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4096;
  const std::size_t cols = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 7168;
  std::vector<float> x(rows * cols);
  std::mt19937 g(1);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& v : x) v = n(g);
  const ScaleRule& rule = scale_rule_by_name("deepseek");
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto t0 = now();
  QTensor q = quantize(x.data(), rows, cols, Tile{1, 128}, "e4m3", rule);
  auto t1 = now();
  // Baseline: the same rule, one encode() call per element, single pass, no plan.
  const Format& f = format_by_name("e4m3");
  std::vector<std::uint32_t> bits(rows * cols);
  std::size_t mismatches = 0;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t t = 0; t < cols / 128; ++t) {
      const float* p = x.data() + r * cols + t * 128;
      float a = 0.0f;
      for (int i = 0; i < 128; ++i) a = amax_step(a, p[i], AmaxNan::Ignore);
      const TileScale s = compute_tile_scale(a, rule, f);
      for (int i = 0; i < 128; ++i) bits[r * cols + t * 128 + i] = encode(static_cast<double>(p[i] / s.apply), f);
    }
  auto t2 = now();
  for (std::size_t i = 0; i < bits.size(); ++i) mismatches += bits[i] != q.bits[i];
  const double a = std::chrono::duration<double>(t1 - t0).count(), b = std::chrono::duration<double>(t2 - t1).count();
  std::printf("quantize 1x128 deepseek e4m3 %zux%zu: fp8lab %.1f ms (%d threads), per-element encode() baseline %.1f ms; "
              "ratio %.2fx; mismatches %zu\n",
              rows, cols, a * 1e3, num_threads(), b * 1e3, b / a, mismatches);
  return mismatches == 0 ? 0 : 1;
}

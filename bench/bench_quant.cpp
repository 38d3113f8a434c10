// Benchmark: fp8lab's `deepseek` E4M3 quantiser on a 4096 x 7168 float32 matrix, in one run:
// * against the copy bound: a memcpy of the input into an existing buffer gives the bandwidth B;
//   quantisation reads 4 bytes and writes 1 per element plus 4 per tile, so it is bounded by
//   B / (5 + 4 / tile elements) elements per second (issue #15's quantize row: >= 0.5 of it), for
//   1x128 and 128x128 tiles, both for quantize() returning a QTensor (its own 1-byte-per-element
//   buffer) and for quantize_into() (caller memory), which must give the same bits;
// * 1x128 against a plain scalar baseline of the same rule written with formats' encode() per
//   element (what the quantiser would cost without its precomputed encode plan).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "bench_timing.hpp"
#include "common/parallel.hpp"
#include "quant/quantize.hpp"

int main(int argc, char** argv) {
  using namespace fp8lab;
  const std::size_t rows = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4096;
  const std::size_t cols = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 7168;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
  const std::size_t n = rows * cols;
  std::vector<float> x(n);
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(g);
  const ScaleRule& rule = scale_rule_by_name("deepseek");

  std::vector<float> copy(n);
  std::memcpy(copy.data(), x.data(), n * sizeof(float));  // touch the pages before timing
  const double t_copy = bench::best_seconds([&] { std::memcpy(copy.data(), x.data(), n * sizeof(float)); }, reps);
  const double bandwidth = 2.0 * n * sizeof(float) / t_copy;
  std::printf("quantize deepseek e4m3 %zux%zu, %d threads: memcpy %.2f GB/s (best of %d)\n", rows, cols, num_threads(),
              bandwidth / 1e9, reps);
  int failures = 0;
  for (const Tile tile : {Tile{1, 128}, Tile{128, 128}}) {
    const double bound = bandwidth / (5.0 + 4.0 / static_cast<double>(tile.rows * tile.cols));
    std::vector<std::uint8_t> bits(n);
    std::vector<float> scales(((rows + tile.rows - 1) / tile.rows) * ((cols + tile.cols - 1) / tile.cols));
    const QuantizeOut out{bits.data(), 8, scales.data(), nullptr};
    QTensor q;
    const double t_q = bench::best_seconds([&] { q = quantize(x.data(), rows, cols, tile, "e4m3", rule); }, reps);
    const double t_into = bench::best_seconds([&] { quantize_into(x.data(), rows, cols, tile, "e4m3", rule, out); }, reps);
    const bool same = q.bits.width_bits() == 8 && std::memcmp(q.bits.raw(), bits.data(), n) == 0 &&
                      std::memcmp(q.scales.data(), scales.data(), scales.size() * sizeof(float)) == 0;
    failures += !same;
    std::printf("  tile %zux%zu: bound %.2f G elem/s; QTensor and out= bits identical: %s\n", tile.rows, tile.cols,
                bound / 1e9, same ? "yes" : "NO");
    for (const auto& [label, t] : {std::pair{"quantize() -> QTensor", t_q}, std::pair{"quantize_into() (out=)", t_into}})
      std::printf("    %-24s %7.1f ms  %5.2f G elem/s  %4.2f of the bound\n", label, t * 1e3, n / t / 1e9, n / t / bound);
  }

  // Baseline: the same rule, one encode() call per element, single pass, no plan.
  const QTensor q = quantize(x.data(), rows, cols, Tile{1, 128}, "e4m3", rule);
  const double a = bench::best_seconds([&] { (void)quantize(x.data(), rows, cols, Tile{1, 128}, "e4m3", rule); }, 1);
  const Format& f = format_by_name("e4m3");
  std::vector<std::uint8_t> bits(n);
  const double b = bench::best_seconds([&] {
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t t = 0; t < cols / 128; ++t) {
        const float* p = x.data() + r * cols + t * 128;
        float amax = 0.0f;
        for (int i = 0; i < 128; ++i) amax = amax_step(amax, p[i], AmaxNan::Ignore);
        const TileScale s = compute_tile_scale(amax, rule, f);
        for (int i = 0; i < 128; ++i)
          bits[r * cols + t * 128 + i] = static_cast<std::uint8_t>(encode(static_cast<double>(p[i] / s.apply), f));
      }
  }, 1);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < n; ++i) mismatches += bits[i] != q.bits[i];
  std::printf("quantize 1x128: fp8lab %.1f ms, per-element encode() baseline %.1f ms; ratio %.2fx; mismatches %zu\n",
              a * 1e3, b * 1e3, b / a, mismatches);
  return mismatches == 0 && failures == 0 ? 0 : 1;
}

// Block-scaled tcgen05 GEMMs: the blocked fast path (gemm/block_scaled_kernel.hpp) against the
// instruction chain (GemmOptions::allow_fast_kernel = false) on the same operands in the same run,
// one row per recipe instruction (kind::mxf8f6f4 E4M3 with UE8M0 per 32: deepgemm_sm100_fp8 /
// mxfp8_te / mxfp8_torchao_rceil; kind::mxf4nvf4 E2M1 with UE4M3 per 16: nvfp4_te). Prints seconds,
// GFLOP/s-equivalent and the ratio; checks the two results are the same bits.
// Usage: bench_gemm_block_scaled [M N K]   (default 256 256 1024)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "bench_timing.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "gemm/gemm.hpp"

namespace {

using fp8lab::GemmOperand;

GemmOperand random_operand(const char* fmt, const char* scale_fmt, std::size_t rows, std::size_t cols,
                           std::size_t block, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 2.0);
  const fp8lab::Format& f = fp8lab::format_by_name(fmt);
  const fp8lab::Format& sf = fp8lab::format_by_name(scale_fmt);
  GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = fmt;
  x.quantised = true;
  x.tile_rows = 1;
  x.tile_cols = block;
  x.elements.resize(rows * cols);
  for (auto& v : x.elements) v = static_cast<float>(fp8lab::round_to_format(gauss(rng), f));
  x.scales.resize(rows * x.grid_cols());
  for (auto& s : x.scales) s = static_cast<float>(fp8lab::round_to_format(std::ldexp(1.0 + rng() % 100 / 100.0, -3), sf));
  return x;
}

using fp8lab::bench::best_seconds;

}  // namespace

int main(int argc, char** argv) {
  std::size_t M = 256, N = 256, K = 1024;
  if (argc == 4) {
    M = std::strtoull(argv[1], nullptr, 10);
    N = std::strtoull(argv[2], nullptr, 10);
    K = std::strtoull(argv[3], nullptr, 10);
  }
  struct Row {
    const char* recipe;
    const char* instruction;
    const char* fmt;
    const char* scale_fmt;
    std::size_t block;
  };
  const Row rows[] = {
      {"mxfp8_te / deepgemm_sm100_fp8", "blackwell_tcgen05_mxf8f6f4_f32_e4m3", "e4m3", "ue8m0", 32},
      {"nvfp4_te", "blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue4m3", "e2m1", "ue4m3", 16},
  };
  std::printf("block-scaled GEMM %zu x %zu x %zu, BF16 out\n", M, N, K);
  int bad = 0;
  for (const Row& r : rows) {
    const GemmOperand a = random_operand(r.fmt, r.scale_fmt, M, K, r.block, 1);
    const GemmOperand b = random_operand(r.fmt, r.scale_fmt, N, K, r.block, 2);
    fp8lab::GemmSpec spec;
    spec.accumulate = fp8lab::Accumulate::TensorCore;
    spec.instruction = r.instruction;
    fp8lab::GemmOptions slow;
    slow.allow_fast_kernel = false;
    std::vector<double> fast_d, slow_d;
    const double t_fast = best_seconds([&] { fast_d = fp8lab::gemm(a, b, spec); }, 3);
    const double t_slow = best_seconds([&] { slow_d = fp8lab::gemm(a, b, spec, nullptr, slow); }, 1);
    const bool same = std::memcmp(fast_d.data(), slow_d.data(), fast_d.size() * sizeof(double)) == 0;
    bad += same ? 0 : 1;
    const double flop = 2.0 * M * N * K;
    std::printf("  %-32s fast %8.3f s (%6.2f GFLOP/s-eq)  per instruction %8.3f s (%6.2f)  ratio %.2fx  bits %s\n",
                r.recipe, t_fast, flop / t_fast * 1e-9, t_slow, flop / t_slow * 1e-9, t_slow / t_fast,
                same ? "identical" : "DIFFER");
  }
  return bad;
}

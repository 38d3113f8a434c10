// Block-scaled tcgen05 GEMMs: the blocked fast path (gemm/block_scaled_kernel.hpp) against the
// instruction chain (GemmOptions::allow_fast_kernel = false) on the same operands in the same run,
// one row per recipe instruction (kind::mxf8f6f4 E4M3 with UE8M0 per 32: deepgemm_sm100_fp8 /
// mxfp8_te / mxfp8_torchao_rceil; kind::mxf4nvf4 E2M1 with UE4M3 per 16: nvfp4_te). Prints seconds,
// GFLOP/s-equivalent and the ratio, for each build of the kernel this CPU runs (portable, avx2,
// avx512: common/isa.hpp), and each recipe's best kernel against single-precision BLAS sgemm on the
// same shape in the same run; checks every result is the chain's bits.
// Usage: bench_gemm_block_scaled [M N K]   (default 256 256 1024)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "gemm/gemm.hpp"

#ifdef FP8LAB_HAVE_BLAS
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);
#endif

namespace {

using fp8lab::GemmOperand;
using fp8lab::Isa;

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
  std::printf("block-scaled GEMM %zu x %zu x %zu, BF16 out, threads=%d\n", M, N, K, fp8lab::num_threads());
  int bad = 0;
  const double flop = 2.0 * M * N * K;
  std::vector<double> t_fast_best(std::size(rows), 1e300);
  for (const Row& r : rows) {
    const GemmOperand a = random_operand(r.fmt, r.scale_fmt, M, K, r.block, 1);
    const GemmOperand b = random_operand(r.fmt, r.scale_fmt, N, K, r.block, 2);
    fp8lab::GemmSpec spec;
    spec.accumulate = fp8lab::Accumulate::TensorCore;
    spec.instruction = r.instruction;
    fp8lab::GemmOptions slow;
    slow.allow_fast_kernel = false;
    std::vector<double> fast_d, slow_d;
    const double t_slow = best_seconds([&] { slow_d = fp8lab::gemm(a, b, spec, nullptr, slow); }, 1);
    std::printf("  %s\n    per instruction (generic)  %8.3f s (%6.2f GFLOP/s-eq)\n", r.recipe, t_slow,
                flop / t_slow * 1e-9);
    for (const Isa isa : fp8lab::runnable_isas()) {  // each build of the kernel this CPU runs
      const fp8lab::ScopedIsa use(isa);
      const double t_fast = best_seconds([&] { fast_d = fp8lab::gemm(a, b, spec); }, 3);
      const bool same = std::memcmp(fast_d.data(), slow_d.data(), fast_d.size() * sizeof(double)) == 0;
      bad += same ? 0 : 1;
      t_fast_best[static_cast<std::size_t>(&r - rows)] = std::min(t_fast_best[static_cast<std::size_t>(&r - rows)], t_fast);
      std::printf("    kernel %-8s           %8.3f s (%6.2f GFLOP/s-eq)  generic / kernel %.2fx  bits %s\n",
                  std::string(fp8lab::isa_name(isa)).c_str(), t_fast, flop / t_fast * 1e-9, t_slow / t_fast,
                  same ? "identical" : "DIFFER");
    }
  }
#ifdef FP8LAB_HAVE_BLAS
  // After every emulated GEMM: OpenBLAS leaves its threads busy-waiting (bench_gemm.cpp).
  std::vector<float> fa(M * K), fb(N * K), fc(M * N);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (auto& v : fa) v = gauss(rng);
  for (auto& v : fb) v = gauss(rng);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  const float one = 1.0f, zero = 0.0f;
  const double t_blas = best_seconds([&] { sgemm_("T", "N", &n, &m, &k, &one, fb.data(), &k, fa.data(), &k, &zero, fc.data(), &n); }, 5);
  std::printf("  BLAS sgemm (same shape)      %8.3f s (%6.2f GFLOP/s)\n", t_blas, flop / t_blas * 1e-9);
  for (const Row& r : rows)
    std::printf("  ratio best kernel / sgemm, %-30s %.3fx\n", r.recipe,
                t_blas / t_fast_best[static_cast<std::size_t>(&r - rows)]);
#else
  std::printf("  BLAS not found at configure time: no sgemm baseline, no ratio\n");
#endif
  return bad;
}

// Emulated Hopper-FP8 GEMM with promotion (DeepGEMM recipe: 1x128 activation tiles, 128x128
// weight tiles, N_C = 128, fma(sa*sb, p, acc), BF16 output), and the same operands accumulated
// in FP32 (sequential, pairwise) and exactly, against single-precision BLAS sgemm on the same
// shape in the same run. Prints GFLOP/s-equivalent (2*M*N*K / time) and the ratio per mode (and
// BLAS dgemm against sgemm and the exact mode, whose kernel is a binary64 GEMM), and
// the certified bound's time against the GEMM's (promoted, one tensor-core chain, FP32 modes), and a
// small GEMM's time per call on 2 threads against 1, and the other tensor-core presets' kernel
// against their generic path and sgemm.
// Usage: bench_gemm [--quick | M N K | --bound M N K [reps] | --bound-reference M N K [reps] | --small |
//                    --tensor-cores [M N K] | --tensor-cores-kernel M N K | --exact M N K [reps]]   (--quick:
// smaller shapes, for smoke runs; --bound: only the bound against the GEMM (best of reps, 3 unless
// given, GEMM and bound alternating); --bound-reference: and
// against the per-element certificate; --small: only the small-GEMM threads row; --tensor-cores-kernel:
// the tc_lanes kernel's preset rows against sgemm, without the generic path)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_timing.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "gemm/bounds.hpp"
#include "gemm/gemm.hpp"

#ifdef FP8LAB_HAVE_BLAS
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);
extern "C" void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
                       const double* beta, double* c, const int* ldc);
#endif

namespace {

using fp8lab::GemmOperand;

// An operand with random elements of `fmt` (E4M3 unless named) and random positive scales on the
// given tile grid.
GemmOperand random_operand(std::size_t rows, std::size_t cols, std::size_t tile_rows, std::size_t tile_cols,
                           std::uint64_t seed, const char* fmt = "e4m3") {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 100.0);
  const fp8lab::Format& f = fp8lab::format_by_name(fmt);
  GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = fmt;
  x.quantised = true;
  x.tile_rows = tile_rows;
  x.tile_cols = tile_cols;
  x.elements.resize(rows * cols);
  for (auto& v : x.elements) v = static_cast<float>(fp8lab::round_to_format(gauss(rng), f));
  x.scales.resize(((rows + tile_rows - 1) / tile_rows) * x.grid_cols());
  for (auto& s : x.scales) s = static_cast<float>(std::ldexp(1.0 + (rng() % 1000) / 1000.0, -8));
  return x;
}

using fp8lab::bench::best_seconds;

struct Shape {
  std::size_t M, N, K;
  int reps;
};

// Every emulated GEMM is timed before any sgemm runs: OpenBLAS leaves its worker threads
// busy-waiting after a call, and on 2 cores they would steal time from the emulator's threads.
struct Mode {
  const char* name;
  fp8lab::Accumulate accumulate;
  const char* goal;  // the goal for the ratio, as text
};
// promoted: N_C = 128, deepgemm, hopper_fp8; every mode rounds to BF16.
const Mode kModes[] = {{"hopper_fp8 promoted", fp8lab::Accumulate::Promoted, ">= 0.25x"},
                       {"fp32 sequential", fp8lab::Accumulate::Fp32Sequential, ">= 0.25x"},
                       {"fp32 pairwise", fp8lab::Accumulate::Fp32Pairwise, "none set"},
                       {"exact", fp8lab::Accumulate::Exact, ">= 0.5x"}};
constexpr std::size_t kNumModes = sizeof kModes / sizeof kModes[0];

void run(const std::vector<Shape>& shapes) {
  std::vector<double> t_emu;
  for (const Shape& s : shapes) {
    const GemmOperand a = random_operand(s.M, s.K, 1, 128, 1), b = random_operand(s.N, s.K, 128, 128, 2);
    for (const Mode& mode : kModes) {
      fp8lab::GemmSpec spec;
      spec.accumulate = mode.accumulate;
      std::vector<double> d;
      t_emu.push_back(best_seconds([&] { d = fp8lab::gemm(a, b, spec); }, s.reps));
    }
  }
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const auto [M, N, K, reps] = shapes[i];
    const double flop = 2.0 * M * N * K;
    std::printf("shape M=%zu N=%zu K=%zu threads=%d\n", M, N, K, fp8lab::num_threads());
    for (std::size_t m = 0; m < kNumModes; ++m) {
      const double t = t_emu[i * kNumModes + m];
      std::printf("  emulated %-20s GEMM: %8.3f s  %8.2f GFLOP/s-equivalent\n", kModes[m].name, t, flop / t * 1e-9);
    }
#ifdef FP8LAB_HAVE_BLAS
    const GemmOperand a = random_operand(M, K, 1, 128, 1), b = random_operand(N, K, 128, 128, 2);
    std::vector<float> fa(M * K), fb(N * K), fc(M * N);
    for (std::size_t j = 0; j < fa.size(); ++j) fa[j] = a.elements[j];
    for (std::size_t j = 0; j < fb.size(); ++j) fb[j] = b.elements[j];
    const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
    const float one = 1.0f, zero = 0.0f;
    // Row-major D (M x N) = A (M x K) * B^T: column-major D^T (N x M) = B (as K x N col-major, transposed) ...
    // i.e. sgemm('T', 'N', N, M, K, B[k + j*K], A[k + i*K]).
    const double t_blas = best_seconds([&] { sgemm_("T", "N", &n, &m, &k, &one, fb.data(), &k, fa.data(), &k, &zero, fc.data(), &n); },
                                  reps + 1);
    std::printf("  BLAS sgemm (same shape):               %8.3f s  %8.2f GFLOP/s\n", t_blas, flop / t_blas * 1e-9);
    for (std::size_t m = 0; m < kNumModes; ++m)
      std::printf("  ratio emulated %-20s / sgemm: %.3fx (goal %s)\n", kModes[m].name, t_blas / t_emu[i * kNumModes + m],
                  kModes[m].goal);
    // The exact mode's binary64 reference: its kernel is a DGEMM (one binary64 FMA per product) plus
    // the exact scaling and rounding, so dgemm's time bounds it, and dgemm / sgemm bounds its ratio.
    std::size_t exact = 0;
    while (kModes[exact].accumulate != fp8lab::Accumulate::Exact) ++exact;
    std::vector<double> da(fa.begin(), fa.end()), db(fb.begin(), fb.end()), dc(M * N);
    const double done = 1.0, dzero = 0.0;
    const double t_dgemm = best_seconds(
        [&] { dgemm_("T", "N", &n, &m, &k, &done, db.data(), &k, da.data(), &k, &dzero, dc.data(), &n); }, reps + 1);
    std::printf("  BLAS dgemm (same shape):               %8.3f s  %8.2f GFLOP/s: dgemm / sgemm %.3fx, exact / dgemm %.3fx\n",
                t_dgemm, flop / t_dgemm * 1e-9, t_blas / t_dgemm, t_dgemm / t_emu[i * kNumModes + exact]);
#else
    std::printf("  BLAS not found at configure time: no sgemm baseline, no ratio\n");
#endif
  }
}

// The exact mode alone against sgemm and dgemm (best of `reps` each; every exact run first, for the
// reason above): for tuning its kernel without the other modes' minutes.
void run_exact(std::size_t M, std::size_t N, std::size_t K, int reps) {
  const GemmOperand a = random_operand(M, K, 1, 128, 1), b = random_operand(N, K, 128, 128, 2);
  fp8lab::GemmSpec spec;
  spec.accumulate = fp8lab::Accumulate::Exact;
  std::vector<double> d;
  const double t = best_seconds([&] { d = fp8lab::gemm(a, b, spec); }, reps);
  const double flop = 2.0 * M * N * K;
  std::printf("shape M=%zu N=%zu K=%zu threads=%d\n  emulated exact GEMM: %8.3f s  %8.2f GFLOP/s-equivalent\n", M, N, K,
              fp8lab::num_threads(), t, flop / t * 1e-9);
#ifdef FP8LAB_HAVE_BLAS
  std::vector<float> fa(a.elements.begin(), a.elements.end()), fb(b.elements.begin(), b.elements.end()), fc(M * N);
  std::vector<double> da(fa.begin(), fa.end()), db(fb.begin(), fb.end()), dc(M * N);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  const float one = 1.0f, zero = 0.0f;
  const double done = 1.0, dzero = 0.0;
  const double t_s = best_seconds([&] { sgemm_("T", "N", &n, &m, &k, &one, fb.data(), &k, fa.data(), &k, &zero, fc.data(), &n); }, reps);
  const double t_d = best_seconds(
      [&] { dgemm_("T", "N", &n, &m, &k, &done, db.data(), &k, da.data(), &k, &dzero, dc.data(), &n); }, reps);
  std::printf("  sgemm %8.3f s, dgemm %8.3f s: exact / sgemm %.3fx, exact / dgemm %.3fx, dgemm / sgemm %.3fx\n", t_s, t_d,
              t_s / t, t_d / t, t_s / t_d);
#endif
}

// gemm_error_bound against gemm on the same operands and spec, in the same run (best of `reps`
// each): promoted hopper_fp8 (the default), one tensor-core chain (per-row / per-tensor scales),
// and the FP32 modes. The goal is a bound at most 2x the GEMM's time. With `reference`,
// also the per-element certificate (GemmOptions{false}, the path before the blocked kernels).
void run_bound(std::size_t M, std::size_t N, std::size_t K, int reps, bool reference = false) {
  using fp8lab::Accumulate;
  std::printf("shape M=%zu N=%zu K=%zu threads=%d\n", M, N, K, fp8lab::num_threads());
  for (const Accumulate acc : {Accumulate::Promoted, Accumulate::TensorCore, Accumulate::Fp32Sequential,
                               Accumulate::Fp32Pairwise}) {
    const bool chain = acc == Accumulate::TensorCore;
    const GemmOperand a = random_operand(M, K, 1, chain ? K : 128, 1),
                      b = random_operand(N, K, chain ? N : 128, chain ? K : 128, 2);
    fp8lab::GemmSpec spec;
    spec.accumulate = acc;
    std::vector<double> d;
    // The two alternate, each the best of `reps`: on a shared machine both see the same spells of load.
    double t_gemm = 1e300, t_bound = 1e300;
    for (int r = 0; r < reps; ++r) {
      t_gemm = std::min(t_gemm, best_seconds([&] { d = fp8lab::gemm(a, b, spec); }, 1));
      t_bound = std::min(t_bound, best_seconds([&] { d = fp8lab::gemm_error_bound(a, b, spec); }, 1));
    }
    std::printf("  %-14s gemm %.3f s, gemm_error_bound %.3f s: bound / gemm = %.2fx (goal <= 2x)\n",
                std::string(fp8lab::accumulate_name(acc)).c_str(), t_gemm, t_bound, t_bound / t_gemm);
    if (reference) {
      const double t_ref = best_seconds([&] { d = fp8lab::gemm_error_bound(a, b, spec, nullptr, {false}); }, 1);
      std::printf("  %-14s per-element bound %.3f s = %.1fx gemm (the blocked one is %.1fx faster)\n", "",
                  t_ref, t_ref / t_gemm, t_ref / t_bound);
    }
  }
}

// A small GEMM (64x64x128, promoted hopper_fp8) called many times, on 1 and on 2 threads in the
// same run: the parallel loops' fixed cost per call (issue 15: with a thread started per call,
// small inputs were slower on 2 threads than on 1). Goal: 2 threads no slower than 1.
void run_small_threads() {
  const GemmOperand a = random_operand(64, 128, 1, 128, 1), b = random_operand(64, 128, 128, 128, 2);
  const fp8lab::GemmSpec spec;
  // Short blocks of calls, 1 and 2 threads alternating, the best block of each: on a shared
  // machine the two see the same load.
  constexpr int kCalls = 20, kBlocks = 60;
  std::vector<double> d;
  double t[2] = {1e300, 1e300};
  for (int block = 0; block < kBlocks; ++block)
    for (int threads = 1; threads <= 2; ++threads) {
      fp8lab::set_num_threads(threads);
      t[threads - 1] = std::min(t[threads - 1], best_seconds([&] { for (int c = 0; c < kCalls; ++c) d = fp8lab::gemm(a, b, spec); }, 1) / kCalls);
    }
  // What the parallel loops did per 2-thread call (a load-independent figure of their fixed cost).
  fp8lab::set_num_threads(2);
  const fp8lab::ParallelCounts c0 = fp8lab::parallel_counts();
  for (int c = 0; c < kCalls; ++c) d = fp8lab::gemm(a, b, spec);
  const fp8lab::ParallelCounts c1 = fp8lab::parallel_counts();
  fp8lab::set_num_threads(0);
  std::printf("shape M=64 N=64 K=128, best of %d blocks of %d calls\n", kBlocks, kCalls);
  std::printf("  gemm per call: 1 thread %.1f us, 2 threads %.1f us: 2 threads / 1 thread = %.2fx (goal <= 1x)\n", t[0] * 1e6,
              t[1] * 1e6, t[1] / t[0]);
  const auto per_call = [&](std::uint64_t x0, std::uint64_t x1) { return static_cast<double>(x1 - x0) / kCalls; };
  std::printf("  per 2-thread call: %.1f parallel loops, %.2f fork/joins, %.2f worker wake-ups, %.2f joins slept\n",
              per_call(c0.calls, c1.calls), per_call(c0.jobs, c1.jobs), per_call(c0.wakes, c1.wakes),
              per_call(c0.join_sleeps, c1.join_sleeps));
}

// The fused presets' blocked kernel (gemm/tc_lanes_kernel: BF16/FP16/TF32 and the other FP8
// rows) against the generic path it replaces (GemmOptions{false}: fused_dot_add per output and
// instruction) and BLAS sgemm, in the same run: promoted every 128, DeepGEMM's tiles and combine,
// BF16 output. The generic path runs once (it is the slow one).
void run_tensor_cores(std::size_t M, std::size_t N, std::size_t K, int reps, bool generic) {
  std::printf("shape M=%zu N=%zu K=%zu threads=%d (tensor-core presets, promoted N_C=128)\n", M, N, K,
              fp8lab::num_threads());
  struct Row {
    const char* preset;
    const char* fmt;
    double t_kernel, t_generic;
  };
  std::vector<Row> rows{{"hopper_bf16", "bf16", 0, 0}, {"ampere_fp16", "fp16", 0, 0}, {"blackwell_tf32", "e8m10", 0, 0},
                        {"ada_fp8", "e4m3", 0, 0}};
  if (!generic)  // the kernel's other rows, too (each row shape of the kernel: block 16 / 8 / 32, F 24 / 25 / 13)
    rows.insert(rows.end(), {{"hopper_fp16", "fp16", 0, 0}, {"ampere_bf16", "bf16", 0, 0}, {"ada_tf32", "e8m10", 0, 0},
                             {"ada_fp8_f16", "e4m3", 0, 0}, {"blackwell_fp8", "e4m3", 0, 0}});
  for (Row& r : rows) {
    const GemmOperand a = random_operand(M, K, 1, 128, 1, r.fmt), b = random_operand(N, K, 128, 128, 2, r.fmt);
    fp8lab::GemmSpec spec;
    spec.instruction = r.preset;
    std::vector<double> d;
    r.t_kernel = best_seconds([&] { d = fp8lab::gemm(a, b, spec); }, reps);
    if (generic) r.t_generic = best_seconds([&] { d = fp8lab::gemm(a, b, spec, nullptr, {false}); }, 1);
  }
  const double flop = 2.0 * M * N * K;
#ifdef FP8LAB_HAVE_BLAS
  const GemmOperand a = random_operand(M, K, 1, 128, 1, "bf16"), b = random_operand(N, K, 128, 128, 2, "bf16");
  std::vector<float> fc(M * N);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  const float one = 1.0f, zero = 0.0f;
  const double t_blas = best_seconds(
      [&] { sgemm_("T", "N", &n, &m, &k, &one, b.elements.data(), &k, a.elements.data(), &k, &zero, fc.data(), &n); },
      reps + 1);
  std::printf("  BLAS sgemm (same shape):                %8.3f s  %8.2f GFLOP/s\n", t_blas, flop / t_blas * 1e-9);
#endif
  for (const Row& r : rows) {
    std::printf("  %-16s kernel %8.3f s  %7.2f GFLOP/s-equivalent", r.preset, r.t_kernel, flop / r.t_kernel * 1e-9);
    if (generic) std::printf(", generic %8.3f s: kernel %.1fx faster", r.t_generic, r.t_generic / r.t_kernel);
#ifdef FP8LAB_HAVE_BLAS
    std::printf(", %.3fx sgemm", t_blas / r.t_kernel);
#endif
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && std::strcmp(argv[1], "--small") == 0) {  // the small-GEMM threads row alone
    run_small_threads();
    return 0;
  }
  if ((argc == 5 || argc == 6) && std::strncmp(argv[1], "--bound", 7) == 0) {  // the bound's ratio alone
    run_bound(std::stoul(argv[2]), std::stoul(argv[3]), std::stoul(argv[4]), argc == 6 ? std::stoi(argv[5]) : 3,
              std::strcmp(argv[1], "--bound-reference") == 0);
    return 0;
  }
  if ((argc == 5 || argc == 6) && std::strcmp(argv[1], "--exact") == 0) {  // --exact M N K [reps]: the exact row alone
    run_exact(std::stoul(argv[2]), std::stoul(argv[3]), std::stoul(argv[4]), argc == 6 ? std::stoi(argv[5]) : 3);
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "--tensor-cores") == 0) {  // --tensor-cores [M N K]: the presets' rows
    const std::size_t M = argc == 5 ? std::stoul(argv[2]) : 512, N = argc == 5 ? std::stoul(argv[3]) : 512,
                      K = argc == 5 ? std::stoul(argv[4]) : 512;
    run_tensor_cores(M, N, K, 3, true);
    return 0;
  }
  if (argc == 5 && std::strcmp(argv[1], "--tensor-cores-kernel") == 0) {  // the kernel's rows alone, no generic path
    run_tensor_cores(std::stoul(argv[2]), std::stoul(argv[3]), std::stoul(argv[4]), 3, false);
    return 0;
  }
  if (argc == 4) {  // bench_gemm M N K: one shape, 3 repetitions
    run({{std::stoul(argv[1]), std::stoul(argv[2]), std::stoul(argv[3]), 3}});
    return 0;
  }
  if (quick) {
    run({{256, 256, 1024, 1}});
    run_bound(64, 64, 512, 1, true);
    run_tensor_cores(128, 128, 256, 1, true);
    run_small_threads();
    return 0;
  }
  run({{2048, 2048, 2048, 5}, {2048, 7168, 2048, 3}});  // the second: DeepSeek-V3 shape (hidden 7168)
  run_bound(512, 1024, 2048, 3);  // the shape (45 s per bound before the blocked kernel)
  run_bound(1024, 1024, 1024, 3);
  run_tensor_cores(512, 512, 512, 3, true);
  run_tensor_cores(1024, 1024, 1024, 3, false);  // the generic path would take minutes
  run_small_threads();
  return 0;
}

// The GEMM gives the same bits on 1, 2 and 3 threads, on small and ragged shapes (M, N not
// multiples of the kernel's tile, K not a multiple of the instruction or promotion block) with
// hostile values (zeros, subnormals, max finite, exact ties, NaN), for every kernel
// variant this CPU runs and several accumulation modes. Calls come back to back (the pool's
// workers still polling for work) and after a pause (asleep, woken by the call), so both ways a
// worker joins a job are exercised; the work split between the threads differs from call to
// call, the chunks and so the bits must not.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/gemm.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {
namespace {

// E4M3 values: zeros of both signs, the smallest subnormal, max finite, values whose products
// tie in the alignment, a run of ordinary ones; NaN at two places when `specials` (E4M3 has no
// Inf: the instruction refuses it).
std::vector<float> hostile(std::size_t rows, std::size_t cols, unsigned salt, bool specials) {
  static const float kValues[] = {0.0f, -0.0f, 0x1p-9f, -0x1p-9f, 448.0f, -448.0f, 1.125f, -1.125f,
                                  0x1.8p-7f, 3.0f, -0.5f, 0x1.ep3f, 240.0f, -0x1p-6f, 1.0f, 0.0f};
  std::vector<float> x(rows * cols);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = kValues[(i * 2654435761u + salt * 40503u) >> 7 & 15];
  if (specials && x.size() > 11) {
    x[x.size() / 3] = -std::numeric_limits<float>::quiet_NaN();
    x[x.size() - 2] = std::numeric_limits<float>::quiet_NaN();
  }
  return x;
}

bool same_bits(const std::vector<double>& x, const std::vector<double>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

struct Shape {
  std::size_t M, N, K;
};

TEST(GemmThreads, SameBitsOnOneTwoAndThreeThreads) {
  const Shape shapes[] = {{1, 1, 1}, {2, 3, 17}, {7, 5, 129}, {6, 32, 128}, {13, 35, 300}, {64, 64, 128}, {65, 47, 257}};
  struct Mode {
    Accumulate accumulate;
    Combine combine;
    OutputFormat out;
  };
  const Mode modes[] = {{Accumulate::Promoted, Combine::DeepGemm, OutputFormat::Bf16},
                        {Accumulate::Promoted, Combine::Triton, OutputFormat::Fp32},
                        {Accumulate::TensorCore, Combine::DeepGemm, OutputFormat::Fp32},
                        {Accumulate::Fp32Sequential, Combine::DeepGemm, OutputFormat::Fp32},
                        {Accumulate::Exact, Combine::DeepGemm, OutputFormat::Fp32}};
  const std::uint64_t jobs_before = parallel_counts().jobs;
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    for (const Shape& s : shapes)
      for (const bool specials : {false, true}) {
        const GemmOperand a = operand_from_floats(hostile(s.M, s.K, 1, specials).data(), s.M, s.K, "a");
        const GemmOperand b = operand_from_floats(hostile(s.N, s.K, 2, specials).data(), s.N, s.K, "b");
        for (const Mode& m : modes) {
          if (specials && m.accumulate == Accumulate::TensorCore) continue;  // the long generic path: once is enough
          GemmSpec spec;
          spec.accumulate = m.accumulate;
          spec.combine = m.combine;
          spec.out = m.out;
          set_num_threads(1);
          const std::vector<double> want = gemm(a, b, spec);
          for (const int threads : {2, 3, 1, 2}) {
            set_num_threads(threads);
            for (int call = 0; call < 3; ++call) {
              if (call == 2) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // workers asleep
              ASSERT_TRUE(same_bits(gemm(a, b, spec), want))
                  << isa_name(isa) << " " << s.M << "x" << s.N << "x" << s.K << " specials " << specials << " mode "
                  << accumulate_name(m.accumulate) << " threads " << threads << " call " << call;
            }
          }
        }
      }
  }
  set_num_threads(0);
  // Some of these calls had work enough to be handed to the pool (the small ones run on the
  // caller alone, and compare trivially).
  EXPECT_GT(parallel_counts().jobs, jobs_before);
}

}  // namespace
}  // namespace fp8lab

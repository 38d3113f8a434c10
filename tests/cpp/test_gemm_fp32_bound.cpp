// The FP32 modes' certified bound from the value kernel's own sums (gemm/bounds.hpp, "FP32
// accumulation"; gemm/fp32_kernel.hpp fp32_gemm_accumulate_sums): it covers |D - exact| (exact
// from gemm_exact) on hostile operands, the blocked kernel gives the per-element certificate's
// doubles on every kernel variant, it is never below the product-by-product binary64 replay it
// replaced (fp32_replayed_error_bound) and at most 1 + (2K + 2) * 2^-24 (+ rounding) above it, and the
// fallbacks (a binary32 sum overflowing while the value is finite; K > 2^20) give the replay's
// bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/bounds.hpp"
#include "gemm/exact.hpp"
#include "gemm/gemm.hpp"
#include "test_gemm_support.hpp"

namespace fp8lab {
namespace {

using testing::gaussian;

constexpr Accumulate kModes[] = {Accumulate::Fp32Sequential, Accumulate::Fp32Pairwise};

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// Row r of a hostile M x K (or N x K) operand: `kind` picks the pattern.
std::vector<float> hostile(std::size_t rows, std::size_t K, std::uint64_t seed, bool is_b) {
  std::vector<float> v = gaussian(rows * K, seed);
  for (std::size_t r = 0; r < rows; ++r) {
    float* x = v.data() + r * K;
    switch ((r + (is_b ? 3 : 0)) % 9) {
      case 0: break;  // Gaussian
      case 1:         // near the largest finite value, alternating signs: huge products that cancel
        for (std::size_t k = 0; k < K; ++k) x[k] = (k % 2 ? -1.0f : 1.0f) * (is_b ? 1.5f : FLT_MAX / 2);
        break;
      case 2:  // subnormal products (both operands ~2^-70)
        for (std::size_t k = 0; k < K; ++k) x[k] = std::ldexp(x[k], -70);
        break;
      case 3:  // exact ties of the sum, cancelling pairs
        for (std::size_t k = 0; k < K; ++k) x[k] = (k % 2 ? -1.0f : 1.0f) * (1.0f + 0x1p-23f * static_cast<float>(k % 5));
        break;
      case 4: std::fill(x, x + K, 0.0f); break;
      case 5:  // a wide exponent range
        for (std::size_t k = 0; k < K; ++k) x[k] = std::ldexp(x[k], static_cast<int>(k * 7 % 61) - 30);
        break;
      case 6:  // the negation of the previous row's Gaussian twin: cancellation across rows of B
        for (std::size_t k = 0; k < K; ++k) x[k] = -v[(r >= 1 ? r - 1 : r) * K + k];
        break;
      case 7:  // large, all positive: sums that grow
        for (std::size_t k = 0; k < K; ++k) x[k] = std::ldexp(std::fabs(x[k]), 50);
        break;
      case 8:  // products straddling the binary32 underflow threshold
        for (std::size_t k = 0; k < K; ++k) x[k] = std::ldexp(x[k], -60 - static_cast<int>(k % 9));
        break;
    }
  }
  return v;
}

// Tiles of 64 columns with scales spread over 2^-20 .. 2^20.
GemmOperand scaled(const std::vector<float>& v, std::size_t rows, std::size_t K, std::uint64_t salt) {
  GemmOperand op = operand_from_floats(v.data(), rows, K, "x");
  op.tile_rows = 1;
  op.tile_cols = 64;
  op.scales.resize(rows * op.grid_cols());
  for (std::size_t t = 0; t < op.scales.size(); ++t)
    op.scales[t] = std::ldexp(0.75f + static_cast<float>((t * 7919 + salt) % 97) / 97.0f,
                              static_cast<int>((t * 31 + salt) % 41) - 20);
  return op;
}

TEST(Fp32SumsBound, CoversTheExactErrorAndIsBitIdenticalOnEveryVariant) {
  const std::size_t M = 9, N = 19;
  for (std::size_t K : {1, 2, 3, 7, 129, 4096}) {
    const auto x = hostile(M, K, 100 + K, false), y = hostile(N, K, 200 + K, true);
    auto c = gaussian(M * N, 300 + K, 8.0);
    c[1] = FLT_MAX;  // C at the largest finite value
    for (bool with_scales : {false, true}) {
      const GemmOperand a = with_scales ? scaled(x, M, K, 1) : operand_from_floats(x.data(), M, K, "a");
      const GemmOperand b = with_scales ? scaled(y, N, K, 2) : operand_from_floats(y.data(), N, K, "b");
      for (Accumulate acc : kModes)
        for (OutputFormat out : {OutputFormat::Fp32, OutputFormat::Bf16})
          for (const float* cp : {static_cast<const float*>(nullptr), static_cast<const float*>(c.data())}) {
            GemmSpec s;
            s.accumulate = acc;
            s.out = out;
            const auto ref = gemm_error_bound(a, b, s, cp, {false});
            for (const Isa isa : runnable_isas()) {
              const ScopedIsa use(isa);
              for (int threads : {1, 3}) {
                set_num_threads(threads);
                const auto fast = gemm_error_bound(a, b, s, cp, {true});
                for (std::size_t e = 0; e < ref.size(); ++e)
                  ASSERT_EQ(bits(fast[e]), bits(ref[e]))
                      << isa_name(isa) << " K " << K << " " << accumulate_name(acc) << " element " << e;
              }
              set_num_threads(0);
            }
            const auto d = gemm(a, b, s, cp);
            const auto exact = gemm_exact(a, b, cp, OutputFormat::Fp64);
            const auto old = fp32_replayed_error_bound(a, b, s, cp);
            for (std::size_t e = 0; e < d.size(); ++e) {
              ASSERT_EQ(std::isfinite(d[e]), std::isfinite(ref[e])) << "K " << K << " element " << e;
              if (!std::isfinite(d[e])) continue;
              ASSERT_LE(std::fabs(d[e] - exact[e]), ref[e])
                  << "K " << K << " " << accumulate_name(acc) << " scales " << with_scales << " element " << e
                  << " (" << e / N << ", " << e % N << ")";
              ASSERT_GE(ref[e], old[e] * (1 - 0x1p-40)) << "K " << K << " element " << e;
            }
          }
    }
  }
}

// new / old over Gaussian and quantised-like data: never below 1 (up to binary64 rounding) and at
// most 1 + (2K + 2) * 2^-24 + 2^-30 above; the figures are printed for the record.
TEST(Fp32SumsBound, TightnessAgainstTheBinary64Replay) {
  const std::size_t M = 3, N = 17;
  for (Accumulate acc : kModes) {
    std::vector<double> all;
    for (std::size_t K : {1, 2, 3, 7, 64, 129, 1000, 4096, 8192}) {
      std::vector<double> ratios;
      for (std::uint64_t seed = 0; seed < 3; ++seed) {
        auto x = gaussian(M * K, 7 * K + seed), y = gaussian(N * K, 11 * K + seed, 0.01);
        if (seed == 1)  // all positive: the sums grow and nothing cancels
          for (auto* v : {&x, &y})
            for (float& t : *v) t = std::fabs(t);
        if (seed == 2)  // coarse values (FP8-like: 4 significant bits)
          for (auto* v : {&x, &y})
            for (float& t : *v) t = static_cast<float>(std::ldexp(std::round(std::ldexp(t, 3)), -3));
        const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
        GemmSpec s;
        s.accumulate = acc;
        const auto now = gemm_error_bound(a, b, s), old = fp32_replayed_error_bound(a, b, s);
        for (std::size_t e = 0; e < now.size(); ++e) {
          if (old[e] == 0) {
            ASSERT_EQ(now[e], 0.0);
            continue;
          }
          const double r = now[e] / old[e];
          ratios.push_back(r);
          ASSERT_GE(r, 1 - 0x1p-40) << accumulate_name(acc) << " K " << K << " element " << e;
          ASSERT_LE(r, 1 + static_cast<double>(2 * K + 2) * 0x1p-24 + 0x1p-30) << accumulate_name(acc) << " K " << K;
        }
      }
      std::sort(ratios.begin(), ratios.end());
      std::printf("%s K=%zu new/old - 1: min %.2e median %.2e max %.2e\n", std::string(accumulate_name(acc)).c_str(), K,
                  ratios.front() - 1, ratios[ratios.size() / 2] - 1, ratios.back() - 1);
      all.insert(all.end(), ratios.begin(), ratios.end());
    }
    std::sort(all.begin(), all.end());
    std::printf("%s all K new/old - 1: min %.2e median %.2e max %.2e\n", std::string(accumulate_name(acc)).c_str(),
                all.front() - 1, all[all.size() / 2] - 1, all.back() - 1);
    EXPECT_LE(all.back(), 1.001);
  }
}

// A binary32 sum of the bound overflowing while the value is finite: the replay's bound, the same
// on every path; an infinite value: an infinite bound.
TEST(Fp32SumsBound, OverflowingSumsFallBackToTheReplay) {
  const std::size_t K = 4;
  // Row 0 of A: 2e38, then zeros: the sum of |s| (sequential: every s_k; pairwise: the nodes
  // 2e38 and the root) overflows. Row 1: 3e38 -+ 3e38 against row 0 of B: the sum of |p_k|
  // overflows, the value is 0; against row 1 the value is Inf. Row 2: an ordinary row.
  const std::vector<float> x = {2e38f, 0, 0, 0, 3e38f, 3e38f, 0, 0, 1, 2, 3, 4};
  const std::vector<float> y = {1, -1, 1, 1, 1, 1, 1, 1};
  const GemmOperand a = operand_from_floats(x.data(), 3, K, "a"), b = operand_from_floats(y.data(), 2, K, "b");
  for (Accumulate acc : kModes)
    for (OutputFormat out : {OutputFormat::Fp32, OutputFormat::Bf16}) {
      GemmSpec s;
      s.accumulate = acc;
      s.out = out;
      const auto old = fp32_replayed_error_bound(a, b, s);
      const auto ref = gemm_error_bound(a, b, s, nullptr, {false});
      const auto d = gemm(a, b, s);
      const auto exact = gemm_exact(a, b, nullptr, OutputFormat::Fp64);
      for (const Isa isa : runnable_isas()) {
        const ScopedIsa use(isa);
        const auto fast = gemm_error_bound(a, b, s, nullptr, {true});
        for (std::size_t e = 0; e < ref.size(); ++e) ASSERT_EQ(bits(fast[e]), bits(ref[e])) << isa_name(isa) << " " << e;
      }
      for (std::size_t e : {0, 1, 2}) {  // the fallback
        ASSERT_TRUE(std::isfinite(d[e])) << e;
        EXPECT_EQ(bits(ref[e]), bits(old[e])) << accumulate_name(acc) << " element " << e;
        EXPECT_TRUE(std::isfinite(ref[e])) << e;
        EXPECT_LE(std::fabs(d[e] - exact[e]), ref[e]) << e;
      }
      EXPECT_FALSE(std::isfinite(d[3]));
      EXPECT_TRUE(std::isinf(ref[3]));
      for (std::size_t e : {4, 5}) {  // the sums' formula: a different (slightly larger) double
        EXPECT_GE(ref[e], old[e]);
        EXPECT_NE(bits(ref[e]), bits(old[e]));
        EXPECT_LE(std::fabs(d[e] - exact[e]), ref[e]);
      }
    }
}

// K beyond 2^20: the sums' formula is not used (the replay's bound, on every path); at 2^20 it is.
TEST(Fp32SumsBound, LongChainsBeyondTwoToTheTwentyTakeTheReplay) {
  for (std::size_t K : {std::size_t{1} << 20, (std::size_t{1} << 20) + 1}) {
    const auto x = gaussian(K, 5), y = gaussian(K, 6);
    const GemmOperand a = operand_from_floats(x.data(), 1, K, "a"), b = operand_from_floats(y.data(), 1, K, "b");
    GemmSpec s;
    s.accumulate = Accumulate::Fp32Sequential;
    const auto old = fp32_replayed_error_bound(a, b, s);
    const auto ref = gemm_error_bound(a, b, s, nullptr, {false});
    const auto fast = gemm_error_bound(a, b, s, nullptr, {true});
    EXPECT_EQ(bits(fast[0]), bits(ref[0]));
    if (K > (std::size_t{1} << 20))
      EXPECT_EQ(bits(ref[0]), bits(old[0]));
    else
      EXPECT_GT(ref[0], old[0]);
  }
}

}  // namespace
}  // namespace fp8lab

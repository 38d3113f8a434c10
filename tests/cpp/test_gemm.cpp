// GEMM emulation: the exact reference against Boost.Multiprecision, the Hopper E4M3 model against
// the published single-instruction probes, bit-identity of the fast kernel with accum's
// fused_dot_add, the paper's K = 4096 observation, certified bounds, and argument errors.
#include <gtest/gtest.h>

#include <bit>
#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>
#include <cstdio>
#include <random>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/bounds.hpp"
#include "gemm/dot_batch.hpp"
#include "gemm/exact.hpp"
#include "gemm/gemm.hpp"
#include "gemm/kulisch.hpp"
#include "gemm/metrics.hpp"
#include "test_gemm_support.hpp"

namespace fp8lab {
namespace {

using boost::multiprecision::cpp_int;
using testing::gaussian;
using testing::quantise;
using testing::quantised_gaussian;

// ---- an independent exact oracle: cpp_int over 2^-700, rounded by hand ----------------------
constexpr int kOracleLsb = -700;

cpp_int oracle_term(double x) {  // x exactly, in units of 2^-700 (x must be a multiple)
  if (x == 0) return 0;
  int e;
  const double f = std::frexp(std::fabs(x), &e);  // |x| = f * 2^e
  const auto m = static_cast<std::int64_t>(std::ldexp(f, 53));
  cpp_int v = m;
  v <<= (e - 53 - kOracleLsb);
  return x < 0 ? cpp_int(-v) : v;
}

// Product of two doubles exactly (each a multiple of 2^-350).
cpp_int oracle_product(double x, double y) {
  if (x == 0 || y == 0) return 0;
  int ex, ey;
  const double fx = std::frexp(std::fabs(x), &ex), fy = std::frexp(std::fabs(y), &ey);
  cpp_int v = cpp_int(static_cast<std::int64_t>(std::ldexp(fx, 53))) * static_cast<std::int64_t>(std::ldexp(fy, 53));
  v <<= (ex + ey - 106 - kOracleLsb);
  return ((x < 0) != (y < 0)) ? cpp_int(-v) : v;
}

// Round v * 2^-700 to nearest even with `prec` bits (no underflow in these tests).
double oracle_round(const cpp_int& v, int prec) {
  if (v == 0) return 0.0;
  cpp_int mag = v < 0 ? cpp_int(-v) : v;
  const int msb = static_cast<int>(boost::multiprecision::msb(mag));
  const int drop = msb + 1 - prec;
  if (drop <= 0) return (v < 0 ? -1.0 : 1.0) * std::ldexp(mag.convert_to<double>(), kOracleLsb);
  cpp_int q = mag >> drop;
  const cpp_int rem = mag - (q << drop);
  const cpp_int half = cpp_int(1) << (drop - 1);
  if (rem > half || (rem == half && boost::multiprecision::bit_test(q, 0))) ++q;
  const double r = std::ldexp(q.convert_to<double>(), drop + kOracleLsb);
  return v < 0 ? -r : r;
}

TEST(Kulisch, CancellationAndTiesHandWorked) {
  KulischAccumulator k;
  k.add(static_cast<__int128>(1), 100);
  k.add(static_cast<__int128>(1), -500);
  k.add(static_cast<__int128>(-1), 100);
  EXPECT_EQ(k.to_double(), 0x1p-500);
  k.clear();
  // 1 + 2^-24 is a tie between 1 and 1 + 2^-23 in binary32: even wins (1).
  k.add(1.0f);
  k.add(static_cast<__int128>(1), -24);
  EXPECT_EQ(k.round(24, -126, 127), 1.0);
  // A sticky bit far below breaks the tie upward.
  k.add(static_cast<__int128>(1), -590);
  EXPECT_EQ(k.round(24, -126, 127), 0x1.000002p0);
  k.clear();
  k.add(-3.0f);
  EXPECT_EQ(k.round(8, -126, 127), -3.0);
  // Beyond bf16's largest finite value (0x1.fep127), halfway to 2^128: rounds to Inf.
  k.clear();
  k.add(static_cast<__int128>(0x1ff), 119);
  EXPECT_TRUE(std::isinf(k.round(8, -126, 127)));
  // Gradual underflow: 3 * 2^-150 rounds to 2^-148 in binary32 (tie 1.5 ULP -> even 2).
  k.clear();
  k.add(static_cast<__int128>(3), -150);
  EXPECT_EQ(k.round(24, -126, 127), 0x1p-148);
}

TEST(Kulisch, RandomSumsMatchCppInt) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    KulischAccumulator k;
    cpp_int oracle = 0;
    for (int t = 0; t < 50; ++t) {
      const auto m = static_cast<std::int64_t>(rng() >> 12) - (std::int64_t{1} << 51);
      const int e = static_cast<int>(rng() % 200) - 100 - (trial % 3) * 100;
      k.add(static_cast<__int128>(m), e);
      oracle += oracle_term(std::ldexp(static_cast<double>(m), e));  // exact: |m| < 2^52, e in [-300, 99]
    }
    EXPECT_EQ(k.to_double(), oracle_round(oracle, 53)) << trial;
    const double r24 = oracle_round(oracle, 24);
    if (std::fabs(r24) < 0x1p128) EXPECT_EQ(k.round(24, -126, 127), r24) << trial;
    else EXPECT_TRUE(std::isinf(k.round(24, -126, 127))) << trial;  // beyond binary32: overflow
  }
}

// Exact GEMM against cpp_int, over scale tilings, wide (fp32) inputs and C.
void expect_exact_matches_oracle(const GemmOperand& a, const GemmOperand& b, const float* c) {
  const auto d = gemm_exact(a, b, c, OutputFormat::Fp64);
  const auto d32 = gemm_exact(a, b, c, OutputFormat::Fp32);
  for (std::size_t i = 0; i < a.rows; ++i)
    for (std::size_t j = 0; j < b.rows; ++j) {
      cpp_int s = c ? oracle_term(c[i * b.rows + j]) : cpp_int(0);
      for (std::size_t k = 0; k < a.cols; ++k)
        s += oracle_product(double(a.row(i)[k]) * a.scale(i, k), double(b.row(j)[k]) * b.scale(j, k));
      ASSERT_EQ(d[i * b.rows + j], oracle_round(s, 53)) << i << "," << j;
      ASSERT_EQ(d32[i * b.rows + j], oracle_round(s, 24)) << i << "," << j;
    }
}

TEST(GemmExact, QuantisedTilingsMatchCppInt) {
  const std::size_t M = 5, N = 7, K = 300;
  for (Tile ta : {Tile{1, 128}, Tile{0, 0}, Tile{1, 0}, Tile{128, 128}})
    for (Tile tb : {Tile{128, 128}, Tile{1, 128}, Tile{1, 0}}) {
      auto a = operand_from_qtensor(quantise(gaussian(M * K, 1, 3.0), M, K, ta), "a");
      auto b = operand_from_qtensor(quantise(gaussian(N * K, 2, 0.01), N, K, tb), "b");
      expect_exact_matches_oracle(a, b, nullptr);
    }
}

TEST(GemmExact, WideFloatInputsAndCMatchCppInt) {
  // Exponent spans beyond 62 bits force the per-term Kulisch path.
  const std::size_t M = 4, N = 3, K = 40;
  auto x = gaussian(M * K, 3), y = gaussian(N * K, 4);
  for (std::size_t i = 0; i < x.size(); i += 3) x[i] = std::ldexp(x[i], static_cast<int>(i % 200) - 100);
  for (std::size_t i = 0; i < y.size(); i += 5) y[i] = std::ldexp(y[i], -static_cast<int>(i % 120));
  const auto c = gaussian(M * N, 5, 1e6);
  expect_exact_matches_oracle(operand_from_floats(x.data(), M, K, "a"), operand_from_floats(y.data(), N, K, "b"),
                              c.data());
}

// ---- the tensor-core model ---------------------------------------------------------------
// REFERENCE.md "Tensor cores": single-instruction probes whose predicted outputs separate the
// model's features (E4M3, FP32 D, unlisted lanes 0).
float probe(std::vector<float> a, std::vector<float> b, float c = 0.0f) {
  a.resize(32, 0.0f);
  b.resize(32, 0.0f);
  return hopper_e4m3_dot_add(a.data(), b.data(), 32, c);
}
std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

TEST(HopperE4m3Model, PublishedProbes) {
  EXPECT_EQ(bits(probe({1, 0x1p-7f}, {1, 0x1p-7f})), 0x3F800000u);
  EXPECT_EQ(bits(probe({1, 0x1p-6f}, {1, 0x1p-7f})), 0x3F800400u);
  EXPECT_EQ(bits(probe({1, -0x1p-7f}, {1, 0x1p-7f})), 0x3F800000u);
  EXPECT_EQ(bits(probe({1, 1, 0x1p-6f}, {1, 1, 0x1p-7f})), 0x40000000u);
  EXPECT_EQ(bits(probe({0}, {0}, std::bit_cast<float>(0x3F800008u))), 0x3F800000u);
  EXPECT_EQ(probe({1}, {1}, 16384.0f), 16384.0f);
  EXPECT_EQ(probe({1, -1, 0x1p-6f}, {1, 1, 0x1p-7f}), 0x1p-13f);
}

TEST(HopperE4m3Model, AccumFusedDotAddAgreesWithGemmReference) {
  // gemm's scalar reference of the model (which the vector kernel follows) against accum's
  // implementation, on random E4M3 instructions with random FP32 C.
  const TensorCoreModel& m = tensor_core_by_name("hopper_fp8");
  std::mt19937_64 rng(11);
  const Format& f = format_by_name("e4m3");
  for (int t = 0; t < 20000; ++t) {
    float a[32], b[32];
    for (int k = 0; k < 32; ++k) {
      std::uint32_t ba = rng() & 0xFF, bb = rng() & 0xFF;
      if ((ba & 0x7F) == 0x7F) ba &= 0xFE;  // not NaN
      if ((bb & 0x7F) == 0x7F) bb &= 0xFE;
      a[k] = static_cast<float>(decode(ba, f));
      b[k] = static_cast<float>(decode(bb, f));
      if (rng() % 4 == 0) a[k] = 0;
    }
    float c = 0;
    if (t % 2) c = std::ldexp(static_cast<float>(static_cast<std::int32_t>(rng() % 2000001) - 1000000), static_cast<int>(rng() % 40) - 30);
    if (t % 7 == 3) c = std::bit_cast<float>(static_cast<std::uint32_t>(rng()) & 0x807FFFFFu);  // ±subnormal or ±0
    if (t % 11 == 5) c = std::bit_cast<float>((static_cast<std::uint32_t>(rng()) & 0x8FFFFFFFu) | 0x40000000u);  // huge
    if (t % 13 == 7) for (int k = 0; k < 32; ++k) a[k] = 0;  // C alone
    ASSERT_EQ(bits(fused_dot_add(a, b, c, m)), bits(hopper_e4m3_dot_add(a, b, 32, c))) << t;
  }
}

// ---- whole GEMMs -------------------------------------------------------------------------
GemmSpec spec_of(Accumulate acc, Combine comb = Combine::DeepGemm, OutputFormat out = OutputFormat::Fp32,
                 int nc = 128) {
  GemmSpec s;
  s.accumulate = acc;
  s.combine = comb;
  s.out = out;
  s.promote_every = nc;
  return s;
}

TEST(HopperFp8Kernel, BitIdenticalToFusedDotAddChains) {
  // Random and adversarial operands (huge dynamic range, cancellation, zeros, subnormals), ragged
  // K and N, every combine order, promoted and not, E4M3 and E5M2 operands. M = 9, 10, 11 and
  // N = 37 reach every row and column blocking of the vector kernel (rows in threes, twos and
  // ones; column groups of 16 in pairs and alone). Every kernel variant this CPU runs (common/isa.hpp).
  for (const Isa isa : runnable_isas()) {
  const ScopedIsa use(isa);
  for (const auto& [fmt, instruction] : {std::pair{"e4m3", "hopper_fp8"}, std::pair{"e5m2", "hopper_fp8_e5m2"}})
  for (const std::size_t M : {9, 10, 11}) {
  const std::size_t N = 37, K = 333;
  auto x = gaussian(M * K, 21), y = gaussian(N * K, 22);
  for (std::size_t i = 0; i < x.size(); i += 7) x[i] = std::ldexp(x[i], static_cast<int>(i % 19) - 9);
  for (std::size_t i = 0; i < y.size(); i += 11) y[i] = 0;
  for (std::size_t k = 0; k < K; ++k) y[K + k] = -y[k];   // row 1 of B cancels row 0
  for (std::size_t k = 0; k < K; ++k) x[2 * K + k] = static_cast<float>(k % 3 == 0 ? 0x1p-9 : 0x1.cp8);  // subnormal + max
  // Every product at the largest exponent: the aligned sums need all their bits (|S| near 2^20
  // units of the alignment grid), and each instruction's D, entering the next as C, is as wide.
  for (std::size_t k = 0; k < K; ++k) x[3 * K + k] = static_cast<float>(k % 5 == 0 ? -0x1.ep7 : 0x1.cp8);
  for (std::size_t k = 0; k < K; ++k) y[2 * K + k] = static_cast<float>(k % 7 == 0 ? 0x1.ep7 : 0x1.cp8);
  // Whole instructions of elements about 2^22 below their tile's largest (448, in the next
  // instruction): E5M2's smallest normals and subnormals (E4M3 zeros), whose products then set
  // the instruction's alignment themselves.
  for (std::size_t k = 0; k < K; ++k)
    x[4 * K + k] = static_cast<float>((k / 32) % 2 ? 0x1.cp8 : (k % 3 ? 0x1.4p-14 : -0x1.8p-15));
  // B's 128-wide K tiles at different magnitudes, so that its block scales differ along K (with
  // the row of 448s above every tile's scale would be the same, and a kernel reading the wrong
  // K block's scale of B would pass).
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t k = 0; k < K; ++k) y[j * K + k] *= k < 128 ? 1.0f : k < 256 ? 0x1.8p5f : 0x1.4p-6f;
  for (Tile tile : {Tile{1, 128}, Tile{1, 0}}) {
    auto a = operand_from_qtensor(quantise(x, M, K, tile, fmt), "a");
    auto b = operand_from_qtensor(quantise(y, N, K, tile == Tile{1, 0} ? Tile{0, 0} : Tile{128, 128}, fmt), "b");
    for (Combine comb : {Combine::DeepGemm, Combine::Triton, Combine::Cublas})
      for (Accumulate acc : {Accumulate::Promoted, Accumulate::TensorCore}) {
        if (acc == Accumulate::TensorCore && tile == Tile{1, 128}) continue;
        for (int nc : {128, 32, 256}) {
          if (nc == 256 && tile == Tile{1, 128}) continue;  // would cross a scale tile
          GemmSpec s = spec_of(acc, comb, OutputFormat::Fp32, nc);
          s.instruction = instruction;
          const auto fast = gemm(a, b, s, nullptr, {true});
          const auto slow = gemm(a, b, s, nullptr, {false});
          for (std::size_t e = 0; e < fast.size(); ++e)
            ASSERT_EQ(std::bit_cast<std::uint64_t>(fast[e]), std::bit_cast<std::uint64_t>(slow[e]))
                << isa_name(isa) << " " << fmt << " M " << M << " element " << e << " nc " << nc
                << " combine " << combine_name(comb);
        }
      }
  }
  }
  }
}

// Equal bits, or both NaN (a NaN's payload is not part of the model: gemm/non_finite.hpp).
void expect_same_values(const std::vector<double>& fast, const std::vector<double>& slow, const std::string& what) {
  ASSERT_EQ(fast.size(), slow.size()) << what;
  for (std::size_t e = 0; e < fast.size(); ++e) {
    if (std::isnan(fast[e]) && std::isnan(slow[e])) continue;
    ASSERT_EQ(std::bit_cast<std::uint64_t>(fast[e]), std::bit_cast<std::uint64_t>(slow[e])) << what << " element " << e;
  }
}

// Every pattern of the operand format as an operand element (both zeros, every subnormal, max
// finite; NaN and, for E5M2, Inf in one row of A and one of B only, so that the other outputs stay
// on the vector kernel), odd K ending inside the kernel's 32-k decoding chunk, M and N off the
// kernel's blocks: the kernel (its operand decoding included) against fused_dot_add chains, in
// every kernel variant this CPU runs.
TEST(HopperFp8Kernel, EveryOperandPatternAsTheGenericPath) {
  for (const auto& [fmt, instruction] : {std::pair{"e4m3", "hopper_fp8"}, std::pair{"e5m2", "hopper_fp8_e5m2"}}) {
    const Format& f = format_by_name(fmt);
    std::vector<float> all, finite;
    for (std::uint32_t p = 0; p < 256; ++p) {
      all.push_back(static_cast<float>(decode(p, f)));
      if (std::isfinite(all.back())) finite.push_back(all.back());
    }
    const std::size_t M = 8, N = 21, K = 301, nf = finite.size();
    std::vector<float> x(M * K), y(N * K);
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t k = 0; k < K; ++k) x[i * K + k] = i == M - 1 ? all[(k * 5) % 256] : finite[(i * K + k) % nf];
    for (std::size_t j = 0; j < N; ++j)
      for (std::size_t k = 0; k < K; ++k) y[j * K + k] = j == 5 ? all[(k * 3 + 1) % 256] : finite[(j * 37 + k * 3) % nf];
    const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      for (Accumulate acc : {Accumulate::Promoted, Accumulate::TensorCore}) {
        GemmSpec s = spec_of(acc);
        s.instruction = instruction;
        expect_same_values(gemm(a, b, s, nullptr, {true}), gemm(a, b, s, nullptr, {false}),
                           std::string(isa_name(isa)) + " " + fmt + " " + std::string(accumulate_name(acc)));
      }
    }
  }
}

TEST(Fp32Kernel, BitIdenticalToPerElementLoops) {
  // Every row blocking (M = 1..13 against blocks of 2 or 6 rows), ragged column groups (N = 1,
  // 17, 33, 40 against pairs of 16), K = 0, 1, 2, 3 (the pairwise tree's leaves), 333 and 1000
  // (a deeper tree), wide dynamic range with cancellation, NaN and Inf in A, B and C, 1 and 3
  // threads, every kernel variant this CPU runs (common/isa.hpp).
  for (const Isa isa : runnable_isas())
  for (const bool pairwise : {false, true})
    for (const std::size_t K : {0, 1, 2, 3, 333, 1000})
      for (const std::size_t N : {1, 17, 33, 40})
        for (std::size_t M = 1; M <= 13; M += (K > 3 ? 3 : 1)) {
          auto x = gaussian(M * K, 31 + K, 1e3), y = gaussian(N * K, 32 + N);
          for (std::size_t i = 0; i < x.size(); i += 5) x[i] = std::ldexp(x[i], static_cast<int>(i % 41) - 20);
          if (N > 1) for (std::size_t k = 0; k < K; ++k) y[K + k] = -y[k];  // cancelling columns
          if (M > 2 && K > 2) {
            x[K + 1] = INFINITY;
            x[2 * K + 2] = NAN;
            y[K - 1] = -INFINITY;
          }
          const auto a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
          const auto c = gaussian(M * N, 33);
          GemmSpec s;
          s.accumulate = pairwise ? Accumulate::Fp32Pairwise : Accumulate::Fp32Sequential;
          s.out = OutputFormat::Fp32;
          const std::string what = std::string(pairwise ? "pairwise" : "sequential") + " M " + std::to_string(M) +
                                   " N " + std::to_string(N) + " K " + std::to_string(K);
          set_num_threads(M % 2 ? 1 : 3);
          const ScopedIsa use(isa);
          const auto fast = gemm(a, b, s, c.data(), {true});
          set_num_threads(0);
          expect_same_values(fast, gemm(a, b, s, c.data(), {false}), what);
        }
  // Quantised operands: the scales are applied per tile (1x128 and 128x128) before the products.
  const std::size_t M = 7, N = 35, K = 300;
  const auto a = quantised_gaussian(M, K, Tile{1, 128}, 34), b = quantised_gaussian(N, K, Tile{128, 128}, 35);
  for (const Accumulate acc : {Accumulate::Fp32Sequential, Accumulate::Fp32Pairwise}) {
    GemmSpec s;
    s.accumulate = acc;
    expect_same_values(gemm(a, b, s, nullptr, {true}), gemm(a, b, s, nullptr, {false}), "quantised");
  }
}

// The integer exact kernel against the general (Kulisch) path: FP8/FP4 operands (E5M2 is too
// wide for it: the fallback must give the same bits too), every
// tiling, arbitrary and power-of-two scales, scales 2^+-100 apart within a row (the per-output
// integer spills into the Kulisch accumulator) or 2^+-9 (the checked __int128, not the vector
// fold), exact cancellation, the largest and smallest magnitudes, C tiny or huge, each output
// format, and K beyond one binary64 chunk (2^17 for E4M3).
std::vector<double> exact_both_ways(const GemmOperand& a, const GemmOperand& b, const float* c, OutputFormat out,
                                    const std::string& what) {
  const auto fast = gemm_exact(a, b, c, out);
  const auto slow = gemm_exact(a, b, c, out, false);
  for (std::size_t e = 0; e < fast.size(); ++e)
    EXPECT_EQ(std::bit_cast<std::uint64_t>(fast[e]), std::bit_cast<std::uint64_t>(slow[e])) << what << " element " << e;
  return fast;
}

TEST(ExactKernel, BitIdenticalToTheKulischPath) {
  for (const Isa isa : runnable_isas())  // every kernel variant this CPU runs (common/isa.hpp)
  for (const auto& [fa, fb] : {std::pair{"e4m3", "e4m3"}, std::pair{"e2m1", "e4m3"}, std::pair{"e2m1", "e2m1"}, std::pair{"e5m2", "e5m2"}})
    for (const std::size_t M : {1, 7, 13})
      for (const std::size_t N : {1, 17, 40})
        for (const bool pow2 : {false, true}) {
          const std::size_t K = 300;
          auto x = gaussian(M * K, 41 + M), y = gaussian(N * K, 42 + N, 1e-3);
          for (std::size_t i = 0; i < x.size(); i += 3) x[i] = std::ldexp(x[i], static_cast<int>(i % 17) - 8);
          if (N > 1) for (std::size_t k = 0; k < K; ++k) y[K + k] = -y[k];  // exact zeros
          auto a = operand_from_qtensor(quantise(x, M, K, Tile{1, 128}, fa, pow2), "a");
          auto b = operand_from_qtensor(quantise(y, N, K, N > 1 ? Tile{128, 128} : Tile{0, 0}, fb, pow2), "b");
          if (M > 1) {
            for (std::size_t q = 0; q < a.grid_cols(); ++q) a.scales[a.grid_cols() + q] *= std::ldexp(1.0f, q % 2 ? 100 : -100);
            for (std::size_t q = 0; q < a.grid_cols(); ++q) a.scales[3 * a.grid_cols() + q] *= std::ldexp(1.0f, q % 2 ? 9 : -9);
            a.scales[2 * a.grid_cols()] = 0.0f;                // a zero scale
            a.scales[2 * a.grid_cols() + 1] = 0x1.8p-140f;    // a subnormal scale
          }
          auto c = gaussian(M * N, 43);
          c[0] = 1e-30f;
          c[c.size() - 1] = -3e30f;
          const ScopedIsa use(isa);
          const std::string what = std::string(fa) + " x " + fb + " M " + std::to_string(M) + " N " + std::to_string(N);
          for (const OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32, OutputFormat::Fp64}) {
            exact_both_ways(a, b, c.data(), out, what);
            exact_both_ways(a, b, nullptr, out, what);
          }
        }
  // Largest and smallest E4M3 magnitudes, each output's sum using all 53 bits of a chunk.
  const std::size_t M = 2, N = 3, K = (std::size_t{1} << 17) + 300;
  std::vector<float> x(M * K), y(N * K);
  for (std::size_t k = 0; k < K; ++k) {
    x[k] = 448.0f;
    x[K + k] = k % 2 ? 0x1p-9f : -448.0f;
    y[k] = 448.0f;
    y[K + k] = k % 3 ? -448.0f : 0x1p-9f;
    y[2 * K + k] = k < K / 2 ? 448.0f : -448.0f;
  }
  auto a = operand_from_qtensor(quantise(x, M, K, Tile{0, 0}), "a");
  auto b = operand_from_qtensor(quantise(y, N, K, Tile{0, 0}), "b");
  a.scales[0] = 1.0f;
  b.scales[0] = 3.0f;
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    const auto d = exact_both_ways(a, b, nullptr, OutputFormat::Fp64, "K large " + std::string(isa_name(isa)));
    EXPECT_EQ(d[0], 448.0 * 448.0 * 3.0 * static_cast<double>(K));  // exact: below 2^53
    EXPECT_EQ(d[2], 0.0);                                             // exact cancellation
  }
  expect_exact_matches_oracle(a, b, nullptr);
}

// exact_kernel.cpp's vector fold and its limits: per row of A and per 128 x 128 tile of B, scales
// spread over a given number of binades across 24 chunks of 128 (K = 3072), so that the tile's
// span (A's + B's) is 0, 11 (the fold's limit: its int64 sums flushed every 2 chunks) or 12 and 13
// (the checked per-output path); at moderate (2^-8), tiny (2^-120, one subnormal scale) and huge
// (2^100) scale magnitudes; against the Kulisch path bit for bit in every kernel variant, and
// against cpp_int at each magnitude with the span at the limit.
// The register tile's edges (exact_kernel.cpp: with AVX-512, 6 rows x 4 vectors of 8 columns, k in
// passes of 64 inside chunks of 128; 6 x 2 vectors elsewhere; row blocks per task from K): partial
// row blocks and column slices in both dimensions, K = 1 and K around the pass and chunk lengths,
// more row blocks than one task holds (K = 4100: 4 blocks a task; 129 rows at K = 200: 16), every
// kernel variant, against the Kulisch path.
TEST(ExactKernel, TileEdgesMatchTheKulischPath) {
  struct Shape {
    std::size_t M, N, K;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 33, 1}, Shape{6, 32, 64}, Shape{5, 31, 63}, Shape{13, 65, 65},
                        Shape{12, 64, 127}, Shape{19, 9, 129}, Shape{25, 96, 300}, Shape{97, 40, 130},
                        Shape{129, 129, 200}, Shape{30, 70, 4100}, Shape{1, 129, 257}}) {
    const auto a = quantised_gaussian(s.M, s.K, Tile{1, 128}, 71 + s.M), b = quantised_gaussian(s.N, s.K, Tile{128, 128}, 72 + s.N);
    const auto c = gaussian(s.M * s.N, 73);
    const std::string what = std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K);
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      exact_both_ways(a, b, c.data(), OutputFormat::Bf16, what + " " + std::string(isa_name(isa)));
      exact_both_ways(a, b, nullptr, OutputFormat::Fp64, what + " " + std::string(isa_name(isa)));
    }
  }
}

// The vector fold's outputs at the ends of the output formats (exact_kernel.cpp's finish_vector,
// AVX-512, C absent): every scale of an operand in one binade (the vector fold), 2^-80 .. 2^66 with
// 24-bit significands, so that BF16 / FP32 outputs overflow to +-Inf, fall in the subnormals or to
// +-0 (E2M1 with K = 3: sums of a few bits, within 64 bits of the quantum, negative ones rounding
// to -0), and FP64 ones stay normal; partial tiles; every kernel variant against the Kulisch path.
TEST(ExactKernel, VectorFinishAtTheFormatsEnds) {
  const std::size_t M = 7, N = 40;
  for (const auto& [fmt, K] : {std::pair{"e4m3", std::size_t{200}}, std::pair{"e2m1", std::size_t{3}}})
  for (const int ea : {-80, -75, -70, -40, 60, 62, 66})
    for (const int eb : {-80, -66, 0, 66}) {
      auto a = operand_from_qtensor(quantise(gaussian(M * K, 81), M, K, Tile{1, 128}, fmt), "a");
      auto b = operand_from_qtensor(quantise(gaussian(N * K, 82), N, K, Tile{128, 128}, fmt), "b");
      for (std::size_t i = 0; i < a.scales.size(); ++i)
        a.scales[i] = static_cast<float>(std::ldexp(1.0 + static_cast<double>((i * 37) % 1000) / 1000.0, ea));
      for (std::size_t i = 0; i < b.scales.size(); ++i)
        b.scales[i] = static_cast<float>(std::ldexp(1.0 + static_cast<double>((i * 53) % 1000) / 1000.0, eb));
      const std::string what = std::string(fmt) + " scales 2^" + std::to_string(ea) + " x 2^" + std::to_string(eb);
      for (const Isa isa : runnable_isas()) {
        const ScopedIsa use(isa);
        for (const OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32, OutputFormat::Fp64})
          exact_both_ways(a, b, nullptr, out, what + " " + std::string(isa_name(isa)));
      }
    }
}

TEST(ExactKernel, ScaleSpansAroundTheVectorFoldsLimitMatchCppInt) {
  const std::size_t M = 6, N = 16, K = 128 * 24;
  for (const int base : {-8, -120, 100})
    for (const auto& [span_a, span_b] : {std::pair{0, 0}, std::pair{6, 5}, std::pair{11, 0}, std::pair{6, 6}, std::pair{0, 13}}) {
      auto a = quantised_gaussian(M, K, Tile{1, 128}, 61), b = quantised_gaussian(N, K, Tile{128, 128}, 62);
      const std::size_t C = K / 128;
      ASSERT_EQ(a.scales.size(), M * C);
      ASSERT_EQ(b.scales.size(), C);
      for (std::size_t i = 0; i < M; ++i)
        for (std::size_t q = 0; q < C; ++q)
          a.scales[i * C + q] = static_cast<float>(
              std::ldexp(1.0 + static_cast<double>((i * 7 + q * 13) % 97) / 97.0, base + static_cast<int>((q + i) % (span_a + 1))));
      for (std::size_t q = 0; q < C; ++q)
        b.scales[q] = static_cast<float>(std::ldexp(1.0 + static_cast<double>((q * 29) % 89) / 89.0,
                                                    base + static_cast<int>((q * 5) % (span_b + 1))));
      if (base < -100) a.scales[1] = 0x1.8p-140f;  // a subnormal scale
      const std::string what = "base " + std::to_string(base) + " spans " + std::to_string(span_a) + " + " +
                               std::to_string(span_b);
      for (const Isa isa : runnable_isas()) {
        const ScopedIsa use(isa);
        for (const OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32, OutputFormat::Fp64})
          exact_both_ways(a, b, nullptr, out, what + " " + std::string(isa_name(isa)));
      }
      if (span_a + span_b != 11) continue;
      const auto d = gemm_exact(a, b, nullptr, OutputFormat::Fp64);
      for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
          cpp_int sum = 0;
          for (std::size_t k = 0; k < K; ++k)
            sum += oracle_product(double(a.row(i)[k]) * a.scale(i, k), double(b.row(j)[k]) * b.scale(j, k));
          ASSERT_EQ(d[i * N + j], oracle_round(sum, 53)) << what << " " << i << "," << j;
        }
    }
}

// The fold's int64 sums at their bound: chunks of 2^17 products 448 x 448 (chunk sums S just below
// 2^53, the binary64 limit for E4M3), five chunks whose A scales sit 0, 11, 11, 11, 11 binades
// above the smallest: each flush window (2 chunks at span 11) holds two terms near 2^62 (a longer
// window would overflow), in every kernel variant; the value from cpp_int.
TEST(ExactKernel, FoldSumsAtTheirBoundMatchCppInt) {
  const std::size_t C = 5, L = std::size_t{1} << 17, K = C * L;
  const std::vector<float> ones(K, 448.0f);
  auto a = operand_from_qtensor(quantise(ones, 1, K, Tile{1, L}), "a");
  auto b = operand_from_qtensor(quantise(ones, 1, K, Tile{1, L}), "b");
  ASSERT_EQ(a.scales.size(), C);
  const float sb = 0x1.fffffep0f;  // the largest significand: ma * mb near 2^48
  cpp_int sum = 0;
  for (std::size_t q = 0; q < C; ++q) {
    a.scales[q] = std::ldexp(0x1.fffffcp0f, q == 0 ? 0 : 11);
    b.scales[q] = sb;
    sum += oracle_product(448.0 * a.scales[q], 448.0 * sb) * L;
  }
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    const auto d = exact_both_ways(a, b, nullptr, OutputFormat::Fp64, "bound " + std::string(isa_name(isa)));
    EXPECT_EQ(d[0], oracle_round(sum, 53)) << isa_name(isa);
  }
}

// The kernel's rounding of a sum wider than 64 bits (exact_kernel.cpp's round_fast keeps the top 64
// bits and a sticky bit): 2^t + 2^(t - p) + 2^(t - p - g) (FP64: t = p = 53, g = 20; BF16: t = p = 8,
// g = 60) is half a unit above 2^t plus a bit that lies below the top 64 bits of the output's
// integer sum, so it rounds up to 2^t + 2^(t - p + 1); dropping that bit would make it a tie
// (rounded to even, down to 2^t). One product of the smallest subnormals (2^-9 x 2^-9) per chunk,
// the chunks' A scales 2^18 times those powers (within the __int128 sum: no spill to Kulisch);
// every kernel variant, against the Kulisch path.
TEST(ExactKernel, RoundsOnceAboveSixtyFourBits) {
  const std::size_t K = 3 * 128;
  for (const auto& [out, t, g] : {std::tuple{OutputFormat::Fp64, 53, 20}, std::tuple{OutputFormat::Bf16, 8, 60}}) {
    const int p = t;
    std::vector<float> x(2 * K, 0.0f), y(2 * K, 0.0f);
    auto a = operand_from_qtensor(quantise(x, 2, K, Tile{1, 128}), "a");
    auto b = operand_from_qtensor(quantise(y, 2, K, Tile{1, 128}), "b");
    for (std::size_t q = 0; q < 3; ++q) {
      a.elements[q * 128] = b.elements[q * 128] = 0x1p-9f;
      b.scales[q] = 1.0f;
      a.scales[q] = std::ldexp(1.0f, 18 + (q == 0 ? t : q == 1 ? t - p : t - p - g));
    }
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      const auto d = exact_both_ways(a, b, nullptr, out, "above 64 bits " + std::string(isa_name(isa)));
      EXPECT_EQ(d[0], std::ldexp(1.0, t) + std::ldexp(1.0, t - p + 1)) << isa_name(isa) << " t " << t;
    }
  }
}

// Batched single instructions (fp8lab.dot) on the vector kernel against accum's fused_dot_add one
// by one: E4M3 and E5M2 operands with zeros, subnormals, the largest values, cancellation,
// C = +-0, tiny, huge and random, and NaN / Inf in operands and C; a preset the kernel does not
// cover goes to fused_dot_add; 1 and 3 threads give the same bits; every kernel variant this CPU
// runs (common/isa.hpp).
TEST(DotBatch, BitIdenticalToFusedDotAdd) {
  for (const Isa isa : runnable_isas())
  for (const char* instruction : {"hopper_fp8", "hopper_fp8_e5m2", "hopper_bf16"}) {
    const ScopedIsa use(isa);
    const TensorCoreModel& model = tensor_core_by_name(instruction);
    const Format& fmt = format_by_name(model.input_format);
    const std::size_t k = static_cast<std::size_t>(model.k), batch = 3000;
    std::mt19937_64 rng(51);
    std::vector<float> a(batch * k), b(batch * k), c(batch);
    for (std::size_t i = 0; i < batch; ++i) {
      const int spread = static_cast<int>(i % 40) - 20;  // per instruction: 2^-20 .. 2^19 magnitudes
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t e = i * k + j;
        std::normal_distribution<double> g(0.0, 1.0);
        a[e] = static_cast<float>(round_to_format(std::ldexp(g(rng), static_cast<int>(rng() % 24) - 12 + spread / 4), fmt));
        b[e] = static_cast<float>(round_to_format(std::ldexp(g(rng), static_cast<int>(rng() % 24) - 12), fmt));
        if (rng() % 7 == 0) a[e] = 0.0f;
        if (i % 5 == 1) b[e] = j % 2 ? b[e - 1] : b[e];  // pairs
        if (i % 5 == 1 && j % 2) a[e] = -a[e - 1];          // ... that cancel exactly
        if (i % 11 == 3) a[e] = static_cast<float>(fmt.max_finite()) * (j % 3 ? 1.0f : -1.0f);
        if (i % 13 == 4) b[e] = static_cast<float>(fmt.min_positive()) * static_cast<float>(1 + j % 3);
      }
      const float choices[] = {0.0f, -0.0f, 0x1p-120f, -3e30f, static_cast<float>(std::ldexp(1.0 + (rng() % 100) / 100.0, spread))};
      c[i] = choices[i % 5];
    }
    if (fmt.has_inf()) a[7 * k + 3] = INFINITY, b[8 * k + 1] = -INFINITY, a[9 * k] = INFINITY, b[9 * k] = 0.0f;
    a[10 * k + 5] = NAN;
    c[11] = NAN;
    c[12] = -INFINITY;
    std::vector<float> want(batch), fast(batch), fast3(batch);
    for (std::size_t i = 0; i < batch; ++i) want[i] = fused_dot_add(a.data() + i * k, b.data() + i * k, c[i], model);
    set_num_threads(1);
    fused_dot_add_batch(a.data(), b.data(), c.data(), batch, model, fast.data());
    set_num_threads(3);
    fused_dot_add_batch(a.data(), b.data(), c.data(), batch, model, fast3.data());
    set_num_threads(0);
    for (std::size_t i = 0; i < batch; ++i) {
      if (std::isnan(want[i])) {
        EXPECT_TRUE(std::isnan(fast[i]) && std::isnan(fast3[i])) << instruction << " " << i;
        continue;
      }
      ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[i]), std::bit_cast<std::uint32_t>(want[i])) << instruction << " " << i;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(fast3[i]), std::bit_cast<std::uint32_t>(want[i])) << instruction << " " << i;
    }
  }
}

// Two measures of a K = 4096 GEMM's error on Gaussian inputs: elementwise, the max of
// |D - X| / |X| over outputs with |X| >= 10% of RMS(X) (the relative error of a near-cancelled
// output measures the cancellation, not the accumulator); normwise, max |D - X| / RMS(X).
struct PaperErrors {
  double max_rel, mean_rel, normwise;
};
PaperErrors paper_errors(const GemmSpec& spec, std::size_t K) {
  const std::size_t M = 32, N = 32;
  auto a = quantised_gaussian(M, K, Tile{1, 128}, 100 + K);
  auto b = quantised_gaussian(N, K, Tile{128, 128}, 200 + K);
  if (spec.accumulate == Accumulate::TensorCore) {  // per-row / per-tensor scales
    a = quantised_gaussian(M, K, Tile{1, 0}, 100 + K);
    b = quantised_gaussian(N, K, Tile{0, 0}, 200 + K);
  }
  const auto d = gemm(a, b, spec);
  const auto x = gemm_exact(a, b, nullptr, OutputFormat::Fp64);
  double rms = 0;
  for (double v : x) rms += v * v;
  rms = std::sqrt(rms / x.size());
  PaperErrors p{0, 0, 0};
  std::size_t n = 0;
  for (std::size_t e = 0; e < d.size(); ++e) {
    p.normwise = std::max(p.normwise, std::fabs(d[e] - x[e]) / rms);
    if (std::fabs(x[e]) >= 0.1 * rms) {
      const double r = std::fabs(d[e] - x[e]) / std::fabs(x[e]);
      p.max_rel = std::max(p.max_rel, r);
      p.mean_rel += r;
      ++n;
    }
  }
  p.mean_rel /= n;
  return p;
}

TEST(PaperObservation, FourteenBitAccumulationAtK4096AndPromotion) {
  // DeepSeek-V3 §3.3.2: ~14 retained bits give a max relative error of nearly 2% at K = 4096;
  // promotion every 128 elements fixes it. Without promotion each of the 128 chained wgmmas
  // truncates the running sum to 14 bits (2^-14..2^-13 relative, always toward zero, so the
  // losses add up: 128 * ~2^-15 ~ 0.4% of the running sum) and aligns every new product to the
  // running sum's exponent. With N_C = 128 only 4 instructions chain, and the per-block errors
  // have random signs: the floor left is the alignment truncation inside each instruction, which
  // promotion does not remove. Expected magnitudes: elementwise max ~2% (band [0.5%, 5%]),
  // normwise ~1% (band [0.2%, 3%]); promotion cuts the normwise error >= 10x (~sqrt(32) from
  // the random signs times the 4/128 shorter chain, partly offset by the alignment floor). The
  // elementwise max falls less (~6x): near-cancelled outputs keep the alignment floor.
  const PaperErrors tc = paper_errors(spec_of(Accumulate::TensorCore), 4096);
  const PaperErrors pr = paper_errors(spec_of(Accumulate::Promoted), 4096);
  std::printf("K=4096 tensorcore: max rel %.4g mean rel %.4g normwise %.4g\n", tc.max_rel, tc.mean_rel, tc.normwise);
  std::printf("K=4096 promoted N_C=128: max rel %.4g mean rel %.4g normwise %.4g (normwise ratio %.1f)\n",
              pr.max_rel, pr.mean_rel, pr.normwise, tc.normwise / pr.normwise);
  EXPECT_GE(tc.max_rel, 5e-3);
  EXPECT_LE(tc.max_rel, 5e-2);
  EXPECT_GE(tc.normwise, 2e-3);
  EXPECT_LE(tc.normwise, 3e-2);
  EXPECT_GE(tc.normwise / pr.normwise, 10.0);
  EXPECT_GE(tc.mean_rel / pr.mean_rel, 4.0);
}

TEST(PaperObservation, TensorCoreErrorGrowsWithK) {
  const double e512 = paper_errors(spec_of(Accumulate::TensorCore), 512).mean_rel;
  const double e4096 = paper_errors(spec_of(Accumulate::TensorCore), 4096).mean_rel;
  EXPECT_GT(e4096, 2.0 * e512);
}

// ---- certified bounds --------------------------------------------------------------------
TEST(Bounds, NeverExceededAndNotVacuous) {
  const std::size_t M = 16, N = 16, K = 1024;
  const auto c = gaussian(M * N, 9);
  for (Accumulate acc : {Accumulate::Promoted, Accumulate::TensorCore, Accumulate::Fp32Sequential,
                         Accumulate::Fp32Pairwise, Accumulate::Exact})
    for (OutputFormat out : {OutputFormat::Fp32, OutputFormat::Bf16}) {
      const bool rowwise = acc == Accumulate::TensorCore;
      auto a = quantised_gaussian(M, K, rowwise ? Tile{1, 0} : Tile{1, 128}, 31);
      auto b = quantised_gaussian(N, K, rowwise ? Tile{0, 0} : Tile{128, 128}, 32);
      const GemmSpec s = spec_of(acc, Combine::DeepGemm, out);
      const auto d = gemm(a, b, s, c.data());
      const auto x = gemm_exact(a, b, c.data(), OutputFormat::Fp64);
      const auto bound = gemm_error_bound(a, b, s, c.data());
      const GemmMetrics m = gemm_metrics(d.data(), x.data(), d.size(), out, bound.data());
      std::printf("%-14s %-5s max err/bound %.3f mean %.3f max rel %.3g\n", std::string(accumulate_name(acc)).c_str(),
                  std::string(output_format_name(out)).c_str(), m.max_bound_ratio, m.mean_bound_ratio, m.max_rel_error);
      EXPECT_EQ(m.violations, 0u) << accumulate_name(acc);
      // Not vacuous: on Gaussian inputs the worst element reaches >= 1/10 of its bound. FP32
      // sums with FP32 output are the exception: a worst-case bound adds every rounding while
      // the actual errors random-walk, ~sqrt(K) apart (K = 1024: ~1/20 observed).
      const bool fp32_sum = (acc == Accumulate::Fp32Sequential || acc == Accumulate::Fp32Pairwise) &&
                            out == OutputFormat::Fp32;
      EXPECT_GE(m.max_bound_ratio, fp32_sum ? 0.02 : 0.1) << accumulate_name(acc);
    }
}

// ---- output rounding, metrics --------------------------------------------------------------
TEST(Output, Bf16RoundingMatchesFormatsEncode) {
  std::mt19937 rng(3);
  const Format& bf = format_by_name("bf16");
  EncodeOptions inf_overflow;
  inf_overflow.overflow = Overflow::InfOrNan;
  for (int t = 0; t < 200000; ++t) {
    std::uint32_t b = rng();
    if (t % 3 == 0) b = (b & 0xFFFF0000u) | 0x8000u;  // exact ties
    const float x = std::bit_cast<float>(b);
    if (std::isnan(x)) continue;
    ASSERT_EQ(round_to_bf16(x), static_cast<float>(round_to_format(x, bf, inf_overflow))) << std::hex << b;
  }
}

TEST(Metrics, HandWorkedValues) {
  const double r[] = {1.0, 2.0 + 0x1p-22, 0.0, -4.0};
  const double x[] = {1.0, 2.0, 0.0, -3.0};
  const GemmMetrics m = gemm_metrics(r, x, 4, OutputFormat::Fp32);
  EXPECT_EQ(m.nonzero_exact, 3u);
  EXPECT_DOUBLE_EQ(m.max_rel_error, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.mean_rel_error, (0x1p-23 + 1.0 / 3.0) / 3.0);
  EXPECT_EQ(m.ulp_histogram[0], 2u);   // two identical
  EXPECT_EQ(m.ulp_histogram[1], 1u);   // 2 + 2^-22 vs 2: one binary32 ULP of [2, 4)
  EXPECT_EQ(m.ulp_histogram[22], 1u);  // -4 vs -3: 2^21 ULPs of [2, 4) counted in [4, 8)'s ULP 2^-21
  // calc_diff = 1 - 2*sum(xy)/sum(x^2+y^2) by hand.
  const double sxy = 1 + (2 + 0x1p-22) * 2 + 12, sq = 2 + (2 + 0x1p-22) * (2 + 0x1p-22) + 4 + 25;
  EXPECT_DOUBLE_EQ(m.calc_diff, 1 - 2 * sxy / sq);
}

// ---- argument errors --------------------------------------------------------------------
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Errors, NameTheArgumentAndProblem) {
  auto a = quantised_gaussian(4, 256, Tile{1, 128}, 1);
  auto b = quantised_gaussian(4, 256, Tile{128, 128}, 2);
  auto b_short = quantised_gaussian(4, 128, Tile{128, 128}, 2);
  EXPECT_NE(error_of([&] { gemm(a, b_short, GemmSpec{}); }).find("b: has K = 128"), std::string::npos);
  GemmSpec s;
  s.promote_every = 100;
  EXPECT_NE(error_of([&] { gemm(a, b, s); }).find("promote_every: 100"), std::string::npos);
  s.promote_every = 256;
  EXPECT_NE(error_of([&] { gemm(a, b, s); }).find("a: its scales"), std::string::npos);
  s = GemmSpec{};
  s.accumulate = Accumulate::TensorCore;
  EXPECT_NE(error_of([&] { gemm(a, b, s); }).find("accumulate='tensorcore'"), std::string::npos);
  const std::vector<float> f = {1.0f, 0.1f};
  auto fa = operand_from_floats(f.data(), 1, 2, "a");
  EXPECT_NE(error_of([&] { gemm(fa, fa, GemmSpec{}); }).find("a: element [0, 1] = 0.100000001 is not an e4m3"),
            std::string::npos);
  // NaN and Inf operands and C follow the NaN/Inf policy (test_gemm_non_finite), except where the
  // instruction's format cannot hold them.
  std::vector<float> inf_a(32, 1.0f);
  inf_a[1] = INFINITY;
  auto ia = operand_from_floats(inf_a.data(), 1, 32, "a");
  EXPECT_NE(error_of([&] { gemm(ia, ia, GemmSpec{}); }).find("a: element [0, 1] = inf is not an e4m3 value"),
            std::string::npos);
  s = GemmSpec{};
  s.instruction = "hopper_bf16";
  EXPECT_NE(error_of([&] { gemm(fa, fa, s); }).find("a: element [0, 1] = 0.100000001 is not a bf16 value"),
            std::string::npos)
      << error_of([&] { gemm(fa, fa, s); });
  s = GemmSpec{};
  s.instruction = "volta_fp8";
  EXPECT_NE(error_of([&] { gemm(a, b, s); }), "");
  EXPECT_NE(error_of([] { accumulate_by_name("kahan"); }).find("accumulate: unknown value 'kahan'"), std::string::npos);
  EXPECT_NE(error_of([] { combine_by_name("x"); }).find("deepgemm, triton, cublas"), std::string::npos);
  QTensor q = testing::quantise(gaussian(8, 1), 2, 4, Tile{1, 128});
  q.scales.pop_back();
  EXPECT_NE(error_of([&] { operand_from_qtensor(q, "a"); }).find("a: QTensor holds 1 scales"), std::string::npos);
}

}  // namespace
}  // namespace fp8lab

// The GEMM's NaN/Inf policy (gemm/non_finite.hpp) through every accumulation mode, both output
// formats, the vector kernel and the generic instruction path: NaN in any product -> NaN; Inf x 0
// -> NaN; +Inf and -Inf in one dot product (one instruction, or two promotion intervals) -> NaN;
// an Inf otherwise propagates with its sign; C is one more term. Outputs without a non-finite
// term are the bits of the same GEMM on the finite parts. (mmasim, the independent model, is run
// on the same cases by tests/python/test_gemm_non_finite.py.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gemm/gemm.hpp"
#include "gemm/non_finite.hpp"

namespace fp8lab {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Case {
  std::size_t M = 6, N = 5, K = 256;
  std::vector<float> a, b, c;
};

// E5M2 values (every small integer up to 4 and their halves are), with the non-finite pattern:
//   A row 0: NaN at k = 3                      -> D[0, :] NaN
//   A row 1: +Inf at k = 5; B[0, 5] = 0        -> D[1, 0] NaN (Inf x 0); D[1, j] = +/-Inf by B's sign
//   A row 2: +Inf at k = 7 and k = 200; B[1, 7] > 0, B[1, 200] < 0 -> D[2, 1] NaN (two intervals)
//   A row 3: +Inf at k = 9 and k = 10 with opposite B signs in column 2 -> D[3, 2] NaN (one instruction)
//   rows 4, 5: finite (C carries NaN at [4, 0], +Inf at [4, 1], -Inf at [5, 3] against finite sums)
Case make_case() {
  Case t;
  t.a.resize(t.M * t.K);
  t.b.resize(t.N * t.K);
  for (std::size_t i = 0; i < t.a.size(); ++i) t.a[i] = static_cast<float>(static_cast<int>(i * 7 % 9) - 4) * 0.5f;
  for (std::size_t i = 0; i < t.b.size(); ++i) t.b[i] = static_cast<float>(static_cast<int>(i * 5 % 7) - 3) * 0.5f;
  auto A = [&](std::size_t i, std::size_t k) -> float& { return t.a[i * t.K + k]; };
  auto B = [&](std::size_t j, std::size_t k) -> float& { return t.b[j * t.K + k]; };
  A(0, 3) = kNan;
  A(1, 5) = kInf;
  B(0, 5) = 0.0f;
  B(1, 5) = 1.0f;
  B(2, 5) = -1.0f;
  B(3, 5) = 2.0f;
  B(4, 5) = -0.5f;
  A(2, 7) = kInf;
  A(2, 200) = kInf;
  B(1, 7) = 1.0f;
  B(1, 200) = -1.0f;
  A(3, 9) = kInf;
  A(3, 10) = kInf;
  B(2, 9) = 1.0f;
  B(2, 10) = -1.5f;
  t.c.assign(t.M * t.N, 0.25f);
  t.c[4 * t.N + 0] = kNan;
  t.c[4 * t.N + 1] = kInf;
  t.c[5 * t.N + 3] = -kInf;
  return t;
}

struct Mode {
  const char* name;
  Accumulate accumulate;
  bool fast;
};

class GemmNonFinite : public ::testing::TestWithParam<std::tuple<Mode, OutputFormat>> {};

TEST_P(GemmNonFinite, PolicyHoldsAndFiniteOutputsAreUntouched) {
  const auto [mode, out] = GetParam();
  const Case t = make_case();
  const GemmOperand a = operand_from_floats(t.a.data(), t.M, t.K, "a"), b = operand_from_floats(t.b.data(), t.N, t.K, "b");
  GemmSpec spec;
  spec.accumulate = mode.accumulate;
  spec.instruction = "hopper_fp8_e5m2";
  spec.out = out;
  GemmOptions opt;
  opt.allow_fast_kernel = mode.fast;
  const std::vector<double> d = gemm(a, b, spec, t.c.data(), opt);
  const std::vector<double> fin = gemm(finite_part(a), finite_part(b), spec, t.c.data(), opt);
  auto D = [&](std::size_t i, std::size_t j) { return d[i * t.N + j]; };
  for (std::size_t j = 0; j < t.N; ++j) EXPECT_TRUE(std::isnan(D(0, j))) << j;
  EXPECT_TRUE(std::isnan(D(1, 0)));  // Inf x 0
  EXPECT_EQ(D(1, 1), kInf);
  EXPECT_EQ(D(1, 2), -kInf);
  EXPECT_EQ(D(1, 3), kInf);
  EXPECT_EQ(D(1, 4), -kInf);
  EXPECT_TRUE(std::isnan(D(2, 1)));  // +Inf in one promotion interval, -Inf in another
  EXPECT_TRUE(std::isnan(D(3, 2)));  // +Inf and -Inf in one instruction
  EXPECT_TRUE(std::isnan(D(4, 0)));  // NaN C
  EXPECT_EQ(D(4, 1), kInf);          // +Inf C over a finite sum
  EXPECT_EQ(D(5, 3), -kInf);
  // Every output without a non-finite term (rows 4 and 5 but C's three): the finite GEMM's bits.
  for (std::size_t i = 4; i < t.M; ++i)
    for (std::size_t j = 0; j < t.N; ++j) {
      if ((i == 4 && j < 2) || (i == 5 && j == 3)) continue;
      EXPECT_TRUE(std::isfinite(D(i, j))) << i << ", " << j;
      EXPECT_EQ(D(i, j), fin[i * t.N + j]) << i << ", " << j;
    }
}

const Mode kModes[] = {{"exact", Accumulate::Exact, true},          {"fp32", Accumulate::Fp32Sequential, true},
                       {"fp32_pairwise", Accumulate::Fp32Pairwise, true}, {"tensorcore_fast", Accumulate::TensorCore, true},
                       {"tensorcore_generic", Accumulate::TensorCore, false}, {"promoted_fast", Accumulate::Promoted, true},
                       {"promoted_generic", Accumulate::Promoted, false}};

INSTANTIATE_TEST_SUITE_P(AllModes, GemmNonFinite,
                         ::testing::Combine(::testing::ValuesIn(kModes), ::testing::Values(OutputFormat::Bf16, OutputFormat::Fp32)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::string(output_format_name(std::get<1>(info.param)));
                         });

// The vector kernel and the instruction-by-instruction path agree on random operands sprinkled
// with NaN and Inf (E5M2) and NaN (E4M3): same bits where finite, same class where not.
TEST(GemmNonFinite, FastKernelAgreesWithTheGenericPathOnRandomSpecials) {
  for (const char* instruction : {"hopper_fp8", "hopper_fp8_e5m2"}) {
    const bool e5m2 = std::string(instruction) == "hopper_fp8_e5m2";
    const std::size_t M = 9, N = 21, K = 300;
    std::vector<float> a(M * K), b(N * K);
    std::uint32_t r = 12345;
    auto next = [&] { return r = r * 1664525u + 1013904223u; };
    auto finite = [&] { return static_cast<float>(static_cast<int>((next() >> 8) % 17) - 8) * 0.25f; };
    for (float& v : a) v = finite();
    for (float& v : b) v = finite();
    // A few specials in rows 1, 4, 7 of A and columns 2, 3, 17 of B, at random k.
    auto special = [&] {
      const std::uint32_t x = next() >> 8;
      return (!e5m2 || x % 3 == 0) ? kNan : ((x & 1) ? kInf : -kInf);
    };
    for (const std::size_t i : {1u, 4u, 7u}) a[i * K + (next() >> 8) % K] = special();
    for (const std::size_t j : {2u, 3u, 17u}) b[j * K + (next() >> 8) % K] = special();
    for (const std::size_t j : {3u}) b[j * K + (next() >> 8) % K] = special();
    const GemmOperand ga = operand_from_floats(a.data(), M, K, "a"), gb = operand_from_floats(b.data(), N, K, "b");
    for (const Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted}) {
      GemmSpec spec;
      spec.accumulate = acc;
      spec.instruction = instruction;
      spec.out = OutputFormat::Fp32;
      GemmOptions slow;
      slow.allow_fast_kernel = false;
      const std::vector<double> f = gemm(ga, gb, spec), g = gemm(ga, gb, spec, nullptr, slow);
      std::size_t nans = 0;
      for (std::size_t e = 0; e < M * N; ++e) {
        nans += std::isnan(g[e]);
        if (std::isnan(g[e])) EXPECT_TRUE(std::isnan(f[e])) << instruction << " " << e;
        else EXPECT_EQ(f[e], g[e]) << instruction << " " << e;
      }
      EXPECT_GT(nans, 0u);
      EXPECT_LT(nans, M * N);
    }
  }
}

TEST(GemmNonFinite, AFormatWithoutInfCannotHoldOne) {
  std::vector<float> a(32, 1.0f);
  a[4] = kInf;
  const GemmOperand ga = operand_from_floats(a.data(), 1, 32, "a");
  GemmSpec spec;  // hopper_fp8: E4M3 operands, which have NaN but no Inf
  try {
    gemm(ga, ga, spec);
    FAIL() << "an Inf E4M3 operand was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("a: element [0, 4] = inf is not an e4m3 value"), std::string::npos) << e.what();
  }
  a[4] = kNan;  // E4M3 does hold NaN (S.1111.111)
  const std::vector<float> ones(32, 1.0f);
  const std::vector<double> d = gemm(operand_from_floats(a.data(), 1, 32, "a"), operand_from_floats(ones.data(), 1, 32, "b"), spec);
  EXPECT_TRUE(std::isnan(d[0]));
}

}  // namespace
}  // namespace fp8lab

// Laws of the tensor-core model that hold for every preset (or every truncating one), checked on
// generated instructions: agreement with the independent big-integer formulation, exactness on
// the alignment grid, sign symmetry, permutation invariance inside a fused block, and what zero
// products do to C.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../tests/cpp/test_accum_oracle.hpp"
#include "accum/tensor_core.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace fp8lab {
namespace {

using testing::bits;
using testing::from_bits;

// Canonical preset names (aliases left out).
std::vector<std::string> canonical_presets(bool truncating_only) {
  std::vector<std::string> out;
  for (const std::string& n : tensor_core_names()) {
    const TensorCoreModel& m = tensor_core_by_name(n);
    if (n != m.name || m.scale_block != 0 || m.accumulator != AccumulatorFormat::Fp32 || m.form != DotForm::Fused) continue;
    if (truncating_only && (m.exact_sum || m.c_after_products)) continue;
    out.push_back(n);
  }
  return out;
}

// A finite value of `f`, from a random bit pattern (subnormals and the top binade included).
rc::Gen<float> genInput(const Format& f) {
  return rc::gen::map(rc::gen::suchThat(rc::gen::inRange<std::uint32_t>(0, 1u << f.total_bits()),
                                        [&f](std::uint32_t p) { return !is_nan_bits(p, f) && !is_inf_bits(p, f); }),
                      [&f](std::uint32_t p) { return static_cast<float>(decode(p, f)); });
}

// A finite FP32 value for C, often 0, near the products' range or anywhere.
rc::Gen<float> genAccumulator() {
  return rc::gen::oneOf(rc::gen::just(0.0f),
                        rc::gen::map(rc::gen::pair(rc::gen::inRange(-20, 21), rc::gen::inRange(-(1 << 24), 1 << 24)),
                                     [](std::pair<int, int> p) { return std::ldexp(static_cast<float>(p.second), p.first - 24); }),
                        rc::gen::map(rc::gen::arbitrary<std::uint32_t>(), [](std::uint32_t u) {
                          const float x = from_bits(u);
                          return std::isfinite(x) ? x : 1.0f;
                        }));
}

struct Instr {
  std::vector<float> a, b;
  float c;
};

Instr genInstr(const TensorCoreModel& m, bool with_c = true) {
  const Format& f = format_by_name(m.input_format);
  Instr in;
  in.a = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(m.k), genInput(f));
  in.b = *rc::gen::container<std::vector<float>>(static_cast<std::size_t>(m.k), genInput(f));
  in.c = with_c ? *genAccumulator() : 0.0f;
  return in;
}

RC_GTEST_PROP(TensorCore, FusedDotAddEqualsTheBigIntegerFormulation, ()) {
  const auto name = *rc::gen::elementOf(canonical_presets(false));
  const TensorCoreModel& m = tensor_core_by_name(name);
  const Instr in = genInstr(m);
  const float got = fused_dot_add(in.a.data(), in.b.data(), in.c, m);
  const float want = m.exact_sum ? testing::oracle_exact_then_c(in.a.data(), in.b.data(), in.c, m)
                                 : testing::oracle_truncating(in.a.data(), in.b.data(), in.c, m);
  RC_ASSERT(bits(got) == bits(want));
}

RC_GTEST_PROP(TensorCore, NegatingEveryTermNegatesTheResult, ()) {
  // Truncation of magnitudes and nearest-even rounding are both symmetric about zero.
  const auto name = *rc::gen::elementOf(canonical_presets(false));
  const TensorCoreModel& m = tensor_core_by_name(name);
  Instr in = genInstr(m);
  const std::uint32_t d = bits(fused_dot_add(in.a.data(), in.b.data(), in.c, m));
  for (auto& x : in.a) x = -x;
  const std::uint32_t e = bits(fused_dot_add(in.a.data(), in.b.data(), -in.c, m));
  if ((d & 0x7FFFFFFFu) == 0) {
    // Every zero result is +0 (exact cancellation and underflow alike).
    RC_ASSERT(d == 0u);
    RC_ASSERT(e == 0u);
  } else {
    RC_ASSERT(e == (d ^ 0x80000000u));
  }
}

RC_GTEST_PROP(TensorCore, ProductsPermuteFreelyInsideAFusedBlock, ()) {
  const auto name = *rc::gen::elementOf(canonical_presets(false));
  const TensorCoreModel& m = tensor_core_by_name(name);
  Instr in = genInstr(m);
  const float d = fused_dot_add(in.a.data(), in.b.data(), in.c, m);
  std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
  std::vector<int> perm(static_cast<std::size_t>(m.k));
  for (int blk = 0; blk < m.k; blk += m.block) {
    for (int i = 0; i < m.block; ++i) perm[static_cast<std::size_t>(blk + i)] = blk + i;
    std::shuffle(perm.begin() + blk, perm.begin() + blk + m.block, rng);
  }
  std::vector<float> pa(in.a.size()), pb(in.b.size());
  for (std::size_t i = 0; i < perm.size(); ++i) {
    pa[i] = in.a[static_cast<std::size_t>(perm[i])];
    pb[i] = in.b[static_cast<std::size_t>(perm[i])];
  }
  RC_ASSERT(bits(fused_dot_add(pa.data(), pb.data(), in.c, m)) == bits(d));
}

RC_GTEST_PROP(TensorCore, ZeroProductsLeaveCTruncatedToTheAlignmentGrid, ()) {
  // With every product zero, C is the only term: it keeps alignment_frac_bits fractional bits
  // below its own exponent (FP32 subnormals: below 2^-126), then output_precision significant
  // bits. For Hopper/Ada FP8 (13 and 14) both mean: the low 10 FP32 mantissa bits are cleared,
  // normal or subnormal. For F >= 23 C passes unchanged.
  const auto name = *rc::gen::elementOf(canonical_presets(true));
  const TensorCoreModel& m = tensor_core_by_name(name);
  const float c = *genAccumulator();
  const std::vector<float> zeros(static_cast<std::size_t>(m.k), 0.0f);
  const std::uint32_t d = bits(fused_dot_add(zeros.data(), zeros.data(), c, m));
  const int dropped = std::max(0, 23 - std::min(m.alignment_frac_bits, m.output_precision - 1));
  std::uint32_t want = bits(c) & ~((1u << dropped) - 1u);
  if ((want & 0x7FFFFFFFu) == 0) want = 0;  // an all-zero sum is +0
  RC_ASSERT(d == want);
}

RC_GTEST_PROP(TensorCore, ExactWhenEveryTermLiesOnTheAlignmentGrid, ()) {
  // Hopper FP8: when every product and C are multiples of 2^(E-13) (E the largest alignment
  // exponent) nothing is truncated in alignment, so the result is the exact sum truncated to
  // 14 significant bits. Inputs: E4M3 values with exponents in [-2, 2] and few lanes, which
  // keeps the terms on the grid often; the condition is checked exactly (doubles hold these
  // sums exactly: < 2^30 units).
  const TensorCoreModel& m = tensor_core_by_name("hopper_fp8");
  const Format& f = format_by_name("e4m3");
  const auto gen_small = rc::gen::map(rc::gen::pair(rc::gen::inRange(-2, 3), rc::gen::inRange(-15, 16)),
                                      [](std::pair<int, int> p) { return std::ldexp(p.second / 8.0f, p.first); });
  const int lanes = *rc::gen::inRange(1, 6);
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  for (int i = 0; i < lanes; ++i) {
    a[static_cast<std::size_t>(i)] = *gen_small;
    b[static_cast<std::size_t>(i)] = *gen_small;
    RC_PRE(round_to_format(a[static_cast<std::size_t>(i)], f) == a[static_cast<std::size_t>(i)]);
    RC_PRE(round_to_format(b[static_cast<std::size_t>(i)], f) == b[static_cast<std::size_t>(i)]);
  }
  int top = -1000;
  double exact = 0;
  for (int i = 0; i < lanes; ++i) {
    const double x = a[static_cast<std::size_t>(i)], y = b[static_cast<std::size_t>(i)];
    if (x == 0 || y == 0) continue;
    top = std::max(top, std::max(testing::ilog2(x), -6) + std::max(testing::ilog2(y), -6));
    exact += x * y;
  }
  RC_PRE(top > -1000);
  const double grid = std::ldexp(1.0, top - 13);
  for (int i = 0; i < lanes; ++i) {
    const double p = static_cast<double>(a[static_cast<std::size_t>(i)]) * b[static_cast<std::size_t>(i)];
    RC_PRE(std::fmod(p, grid) == 0.0);
  }
  RC_CLASSIFY(exact == 0, "cancels to zero");
  double want = 0;
  if (exact != 0) {
    const int e = testing::ilog2(exact);
    const double ulp = std::ldexp(1.0, e - 13);  // 14 significant bits
    want = std::trunc(exact / ulp) * ulp;
  }
  RC_ASSERT(bits(fused_dot_add(a.data(), b.data(), 0.0f, m)) == bits(static_cast<float>(want)));
}

RC_GTEST_PROP(TensorCore, BlockScalesActAsPowersOfTwoOnTheProducts, ()) {
  // MX presets with C = 0: a common scale 2^s on all products scales the result by 2^s exactly,
  // as long as nothing reaches FP32's subnormal or overflow range.
  const TensorCoreModel& mx = tensor_core_by_name(*rc::gen::elementOf(std::vector<std::string>{"blackwell_mxfp8", "blackwell_mxfp8_e5m2"}));
  const Instr in = genInstr(mx, false);
  const int sa = *rc::gen::inRange(-20, 21), sb = *rc::gen::inRange(-20, 21), zero = 0;
  const float base = fused_dot_add_block_scaled(in.a.data(), in.b.data(), &zero, &zero, 0.0f, mx);
  RC_PRE(base == 0.0f || std::fabs(base) > 0x1p-80f);
  const float scaled = fused_dot_add_block_scaled(in.a.data(), in.b.data(), &sa, &sb, 0.0f, mx);
  RC_ASSERT(bits(scaled) == bits(std::ldexp(base, sa + sb)));
}

}  // namespace
}  // namespace fp8lab

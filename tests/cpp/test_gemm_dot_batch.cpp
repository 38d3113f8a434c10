// fp8lab.dot's batch (gemm/dot_batch) against its oracle, accum's fused_dot_add one instruction
// at a time: every unscaled preset, every instruction-set variant this CPU runs, 1 and 3 threads,
// batches that are not multiples of the kernel's 16 lanes or of a chunk, and the special C
// values (subnormal, near FP32's range ends) where the vector kernel's scaling is delicate. Then
// the checked form's answer against formats/representable, and the Hopper kernel's quick operand
// test: sound (never passes a non-value) and complete on finite values (every value of the
// format stays on the vector path).
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "formats/representable.hpp"
#include "gemm/dot_batch.hpp"
#include "gemm/hopper_fp8_kernel.hpp"

namespace fp8lab {
namespace {

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

struct Batch {
  std::size_t k, n;
  std::vector<float> a, b, c;
};

// n instructions of `model` with values of its input format: wide exponent spreads, zeros,
// exactly cancelling pairs, extremes of the format, and C from the awkward end of FP32 (or
// FP16 for an FP16 accumulator).
Batch random_batch(const TensorCoreModel& model, std::size_t n, std::uint64_t seed) {
  const Format& fmt = format_by_name(model.input_format);
  const Format& acc = format_by_name(model.accumulator == AccumulatorFormat::Fp16 ? "fp16" : "fp32");
  const auto k = static_cast<std::size_t>(model.k);
  Batch t{k, n, std::vector<float>(n * k), std::vector<float>(n * k), std::vector<float>(n)};
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  auto value = [&](int e) { return static_cast<float>(round_to_format(std::ldexp(g(rng), e), fmt)); };
  for (std::size_t i = 0; i < n; ++i) {
    const int spread = static_cast<int>(i % 40) - 20;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t e = i * k + j;
      t.a[e] = value(static_cast<int>(rng() % 24) - 12 + spread / 4);
      t.b[e] = value(static_cast<int>(rng() % 24) - 12);
      if (rng() % 7 == 0) t.a[e] = 0.0f;
      if (i % 5 == 1 && j % 2) t.b[e] = t.b[e - 1], t.a[e] = -t.a[e - 1];  // pairs that cancel exactly
      if (i % 11 == 3) t.a[e] = static_cast<float>(fmt.max_finite()) * (j % 3 ? 1.0f : -1.0f);
      if (i % 13 == 4) t.b[e] = static_cast<float>(fmt.min_positive()) * static_cast<float>(1 + j % 3);
      if (i % 17 == 6) t.a[e] = 0.0f;  // no non-zero product: C alone
    }
    const double choices[] = {0.0,
                              -0.0,
                              0x1p-126,
                              -0x1.fffffep-127,  // FP32 subnormal
                              0x1.234p-140,
                              -0x1.7ffffep-120,
                              FLT_MAX,
                              -0x1.000002p127,
                              -3e30,
                              std::ldexp(1.0 + static_cast<double>(rng() % 100) / 100.0, spread),
                              std::ldexp(g(rng), static_cast<int>(rng() % 40) - 20)};
    t.c[i] = static_cast<float>(round_to_format(choices[i % std::size(choices)], acc));
  }
  return t;
}

void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      ASSERT_TRUE(std::isnan(got[i])) << what << " instruction " << i;
      continue;
    }
    ASSERT_EQ(bits(got[i]), bits(want[i])) << what << " instruction " << i << ": " << got[i] << " vs " << want[i];
  }
}

TEST(DotBatch, EveryPresetEveryVariantMatchesTheInstructionModel) {
  for (const TensorCoreModel& model : tensor_core_presets()) {
    if (model.scale_block != 0) continue;  // block-scaled: fp8lab.dot's per-instruction path
    const bool hopper = hopper_fp8_operands(model).has_value();
    Batch t = random_batch(model, hopper ? 2600 : 301, 77);
    const Format& fmt = format_by_name(model.input_format);
    if (fmt.has_nan()) t.a[10 * t.k + 5] = NAN, t.c[11] = NAN;
    if (fmt.has_inf()) t.a[7 * t.k + 3] = INFINITY, t.b[8 * t.k + 1] = -INFINITY, t.a[9 * t.k] = INFINITY, t.b[9 * t.k] = 0;
    t.c[12] = -INFINITY;
    std::vector<float> want(t.n);
    for (std::size_t i = 0; i < t.n; ++i) want[i] = fused_dot_add(&t.a[i * t.k], &t.b[i * t.k], t.c[i], model);
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      for (const int threads : {1, 3}) {
        set_num_threads(threads);
        const std::string what = std::string(model.name) + " " + std::string(isa_name(isa)) + " threads " + std::to_string(threads);
        for (const std::size_t n : {t.n, std::size_t{1}, std::size_t{37}}) {  // tails shorter than a block
          std::vector<float> got(n, 42.0f);
          fused_dot_add_batch(t.a.data(), t.b.data(), t.c.data(), n, model, got.data());
          expect_same(got, std::vector<float>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(n)), what);
        }
        std::vector<float> got(t.n);
        const DotBatchCheck check = fused_dot_add_batch_checked(t.a.data(), t.b.data(), t.c.data(), t.n, model, got.data());
        EXPECT_EQ(check.a, t.n * t.k) << what;
        EXPECT_EQ(check.b, t.n * t.k) << what;
        expect_same(got, want, what + " checked");
      }
      set_num_threads(0);
    }
  }
}

TEST(DotBatch, CheckedNamesTheFirstOffenderOfEachOperand) {
  for (const char* name : {"hopper_fp8", "hopper_fp8_e5m2", "hopper_bf16"}) {
    const TensorCoreModel& model = tensor_core_by_name(name);
    const RepresentableTest test(format_by_name(model.input_format));
    Batch t = random_batch(model, 3000, 5);
    const std::size_t none = t.n * t.k;
    std::vector<float> out(t.n);
    // Offenders: a value between two of the format's, an infinity (a value of E5M2 only), a
    // float32 subnormal, one beyond max_finite; planted in different chunks, several per operand.
    const float between = std::nextafter(1.0f, 2.0f), huge = 1e30f, sub = 0x1p-140f;
    t.a[2100 * t.k + 31] = between;
    t.a[2900 * t.k] = sub;
    t.b[1500 * t.k + 3] = huge;
    t.b[40 * t.k + 17] = INFINITY;
    std::size_t want_a = test.first_bad(t.a.data(), none), want_b = test.first_bad(t.b.data(), none);
    ASSERT_NE(want_a, none);
    ASSERT_NE(want_b, none);
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      for (const int threads : {1, 2}) {
        set_num_threads(threads);
        const DotBatchCheck check = fused_dot_add_batch_checked(t.a.data(), t.b.data(), t.c.data(), t.n, model, out.data());
        EXPECT_EQ(check.a, want_a) << name << " " << isa_name(isa);
        EXPECT_EQ(check.b, want_b) << name << " " << isa_name(isa);
      }
      set_num_threads(0);
    }
  }
}

// Candidates: every sign and exponent field with each of the top 7 fraction bits' patterns,
// alone and with one lower bit set, plus random bit patterns.
std::vector<float> candidates() {
  std::vector<float> out;
  for (std::uint32_t sign = 0; sign < 2; ++sign)
    for (std::uint32_t field = 0; field < 256; ++field)
      for (std::uint32_t top = 0; top < 128; ++top)
        for (int low = -1; low < 16; low += 3) {
          std::uint32_t u = (sign << 31) | (field << 23) | (top << 16);
          if (low >= 0) u |= 1u << low;
          out.push_back(std::bit_cast<float>(u));
        }
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) out.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  return out;
}

TEST(DotBatch, HopperKernelOperandTestIsSoundAndComplete) {
  const std::vector<float> xs = candidates();
  for (const char* name : {"hopper_fp8", "hopper_fp8_e5m2"}) {
    const TensorCoreModel& model = tensor_core_by_name(name);
    const Fp8Operands operands = *hopper_fp8_operands(model);
    const RepresentableTest test(format_by_name(model.input_format));
    const std::size_t k = 32, n = xs.size();
    // Instruction i holds candidate i in a's slot i % 32 (then in b's, below); every other
    // element is 1, and C is 0.
    std::vector<float> a(n * k, 1.0f), b(n * k, 1.0f), c(n, 0.0f), out(n);
    for (std::size_t i = 0; i < n; ++i) a[i * k + i % k] = xs[i];
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      for (const bool in_b : {false, true}) {
        std::vector<std::uint32_t> left(n);
        const std::size_t count = in_b ? hopper_fp8_dot_batch(b.data(), a.data(), c.data(), n, operands, out.data(), left.data())
                                       : hopper_fp8_dot_batch(a.data(), b.data(), c.data(), n, operands, out.data(), left.data());
        std::vector<bool> is_left(n);
        for (std::size_t j = 0; j < count; ++j) is_left[left[j]] = true;
        std::size_t passed_bad = 0, left_good = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const bool value = test(xs[i]), finite = std::isfinite(xs[i]);
          passed_bad += !value && !is_left[i];
          left_good += value && finite && is_left[i];
          if (!value && !is_left[i]) ADD_FAILURE() << name << " " << isa_name(isa) << ": passed " << std::hexfloat << xs[i];
          if (passed_bad > 5) break;
        }
        EXPECT_EQ(passed_bad, 0u) << name << " " << isa_name(isa);
        EXPECT_EQ(left_good, 0u) << name << " " << isa_name(isa) << " (values of the format sent off the vector path)";
      }
    }
  }
}

}  // namespace
}  // namespace fp8lab

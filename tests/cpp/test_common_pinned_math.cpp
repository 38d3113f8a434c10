// Pinned exp/sigmoid against an independent oracle: Boost.Multiprecision at 256 bits, and a
// correct-rounding check that does not round at all — the returned float f is correct iff the exact
// value lies strictly between the midpoints from f to its two float neighbours.
// CI samples the sigmoid-relevant range [-104, 89] with a stride plus a few dense windows;
// FP8LAB_PINNED_STRIDE=1 (or any smaller stride) makes the sweep denser (hours at stride 1).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <boost/multiprecision/cpp_bin_float.hpp>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"

namespace {

using Big = boost::multiprecision::number<boost::multiprecision::cpp_bin_float<256, boost::multiprecision::digit_base_2>>;

Big exact_exp(float x) { return exp(Big(x)); }
Big exact_sigmoid(float x) { return Big(1) / (Big(1) + exp(-Big(x))); }

// Is f the round-to-nearest float of the positive exact value v? (No ties occur for these
// functions away from x = 0, so strict comparisons are the whole condition.)
bool is_correctly_rounded(float f, const Big& v) {
  if (std::isnan(f) || f < 0) return false;
  if (std::isinf(f)) {
    // Overflow: v >= FLT_MAX + ulp/2 = 2^128 - 2^103.
    return v >= ldexp(Big(1), 128) - ldexp(Big(1), 103);
  }
  const float up = std::nextafter(f, std::numeric_limits<float>::infinity());
  const Big mid_up = std::isinf(up) ? ldexp(Big(1), 128) - ldexp(Big(1), 103) : (Big(f) + Big(up)) / 2;
  if (!(v < mid_up)) return false;
  if (f == 0.0f) return v < ldexp(Big(1), -150);
  const float dn = std::nextafter(f, 0.0f);
  const Big mid_dn = (Big(f) + Big(dn)) / 2;
  return v > mid_dn;
}

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }
float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }

std::uint32_t stride_from_env(std::uint32_t fallback) {
  if (const char* s = std::getenv("FP8LAB_PINNED_STRIDE")) {
    const long v = std::atol(s);
    if (v >= 1) return static_cast<std::uint32_t>(v);
  }
  return fallback;
}

// Every float in [lo, hi] (same sign, |lo| <= |hi|) whose bit pattern is first + j*stride.
std::vector<float> strided(float lo, float hi, std::uint32_t stride) {
  std::vector<float> out;
  for (std::uint64_t u = bits(lo); u <= bits(hi); u += stride) out.push_back(from_bits(static_cast<std::uint32_t>(u)));
  return out;
}

// Every float whose bit pattern lies within `half` patterns of x's.
std::vector<float> window(float x, std::uint32_t half) {
  std::vector<float> out;
  for (std::uint32_t u = bits(x) - half; u <= bits(x) + half; ++u) out.push_back(from_bits(u));
  return out;
}

// The inputs both sweeps use: a prime stride over [-104, 89] (both signs), plus dense windows at
// the places where a rounding or range decision changes: around 0, the subnormal boundary of exp
// (x ~ -87.34), the underflow-to-zero edge (-103.97), overflow (88.72), and sigmoid's rounding
// to 1 (17.33).
std::vector<float> sample_inputs() {
  const std::uint32_t stride = stride_from_env(12007);
  std::vector<float> xs = strided(0.0f, 89.0f, stride);
  const std::vector<float> neg = strided(-0.0f, -104.0f, stride);
  xs.insert(xs.end(), neg.begin(), neg.end());
  for (float c : {1e-30f, 1.0f, -1.0f, -87.3365f, -103.972f, 88.7228f, 17.3287f, -17.3287f}) {
    const std::vector<float> w = window(c, 1024);
    xs.insert(xs.end(), w.begin(), w.end());
  }
  return xs;
}

struct SweepResult {
  std::size_t checked = 0;
  std::size_t wrong = 0;
  float first_wrong_x = 0, first_wrong_got = 0;
};

template <class Fn, class Exact>
SweepResult sweep(const std::vector<float>& xs, Fn fn, Exact exact) {
  // Parallel over fixed chunks; each chunk records its own result and they are merged in order.
  const std::size_t grain = 512;
  const std::size_t chunks = (xs.size() + grain - 1) / grain;
  std::vector<SweepResult> parts(chunks);
  fp8lab::parallel_for(xs.size(), grain, [&](std::size_t b, std::size_t e) {
    SweepResult& r = parts[b / grain];
    for (std::size_t i = b; i < e; ++i) {
      const float got = fn(xs[i]);
      ++r.checked;
      if (!is_correctly_rounded(got, exact(xs[i]))) {
        if (r.wrong++ == 0) {
          r.first_wrong_x = xs[i];
          r.first_wrong_got = got;
        }
      }
    }
  });
  SweepResult all;
  for (const SweepResult& p : parts) {
    if (p.wrong && !all.wrong) {
      all.first_wrong_x = p.first_wrong_x;
      all.first_wrong_got = p.first_wrong_got;
    }
    all.checked += p.checked;
    all.wrong += p.wrong;
  }
  return all;
}

std::string hex(float x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(x));
  return buf;
}

TEST(PinnedMath, ExpIsCorrectlyRoundedOverTheSample) {
  const std::vector<float> xs = sample_inputs();
  const SweepResult r = sweep(xs, fp8lab::exp_f32, exact_exp);
  EXPECT_GT(r.checked, 60000u);
  EXPECT_EQ(r.wrong, 0u) << "first: exp_f32(" << hex(r.first_wrong_x) << ") = " << hex(r.first_wrong_got);
}

TEST(PinnedMath, SigmoidIsCorrectlyRoundedOverTheSample) {
  const std::vector<float> xs = sample_inputs();
  const SweepResult r = sweep(xs, fp8lab::sigmoid_f32, exact_sigmoid);
  EXPECT_GT(r.checked, 60000u);
  EXPECT_EQ(r.wrong, 0u) << "first: sigmoid_f32(" << hex(r.first_wrong_x) << ") = " << hex(r.first_wrong_got);
}

// The fallback path alone, on a smaller sample, must also be correctly rounded (it is rarely
// taken by the fast functions, so it is verified directly).
TEST(PinnedMath, MultiprecisionPathsAreCorrectlyRounded) {
  std::vector<float> xs = strided(0.0f, 89.0f, 1000003);
  const std::vector<float> neg = strided(-0.0f, -104.0f, 1000003);
  xs.insert(xs.end(), neg.begin(), neg.end());
  xs.erase(xs.begin());  // exp(0) is special-cased in exp_f32; keep the generic path here
  EXPECT_EQ(sweep(xs, fp8lab::detail::exp_f32_multiprecision, exact_exp).wrong, 0u);
  EXPECT_EQ(sweep(xs, fp8lab::detail::sigmoid_f32_multiprecision, exact_sigmoid).wrong, 0u);
}

// Hand-worked values: e = 2.718281828459045235..., whose nearest float is 0x1.5bf0a8p+1
// (= 2.71828174591064453125; the next float up, 2.7182819843..., is farther away).
TEST(PinnedMath, KnownValues) {
  EXPECT_EQ(fp8lab::exp_f32(1.0f), 0x1.5bf0a8p+1f);
  EXPECT_EQ(fp8lab::exp_f32(0.0f), 1.0f);
  EXPECT_EQ(fp8lab::exp_f32(-0.0f), 1.0f);
  EXPECT_EQ(fp8lab::sigmoid_f32(0.0f), 0.5f);
  EXPECT_EQ(fp8lab::sigmoid_f32(-0.0f), 0.5f);
  // Range edges: exp(88.72283935546875) = 3.40282e38 * 1.0000002 overflows; the float below
  // (88.7228317...) gives FLT_MAX-ish finite.
  EXPECT_TRUE(std::isinf(fp8lab::exp_f32(0x1.62e430p+6f)));
  EXPECT_TRUE(std::isfinite(fp8lab::exp_f32(0x1.62e42ep+6f)));
  EXPECT_EQ(fp8lab::exp_f32(-200.0f), 0.0f);
  EXPECT_EQ(fp8lab::exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isinf(fp8lab::exp_f32(std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(fp8lab::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(fp8lab::sigmoid_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(fp8lab::sigmoid_f32(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(fp8lab::sigmoid_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(fp8lab::sigmoid_f32(1000.0f), 1.0f);
  // sigmoid(20) = 1 - 2.06e-9: within half an ulp below 1 (2^-25 = 2.98e-8), so exactly 1.
  EXPECT_EQ(fp8lab::sigmoid_f32(20.0f), 1.0f);
  // sigmoid(16) = 1 - 1.125e-7 lies between 1 - 2^-23 (1.19e-7) and 1 - 2^-24: nearer 1 - 2^-24?
  // 1 - 2^-23 = 0.99999988079, 1 - 2^-24 = 0.99999994039, exact 0.99999988746: nearest 1 - 2^-23.
  EXPECT_EQ(fp8lab::sigmoid_f32(16.0f), 1.0f - 0x1p-23f);
}

TEST(PinnedMath, RoundToBf16) {
  using fp8lab::round_to_bf16;
  EXPECT_EQ(round_to_bf16(1.0f), 1.0f);
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f), 1.0f);                       // tie, to even (down)
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 1.0f + 0x1p-6f);   // tie, to even (up)
  EXPECT_EQ(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);  // above the tie
  EXPECT_EQ(round_to_bf16(-1.0f - 0x1p-8f - 0x1p-20f), -1.0f - 0x1p-7f);
  EXPECT_TRUE(std::isinf(round_to_bf16(std::numeric_limits<float>::max())));  // 0x1.fffffep127 -> 2^128
  EXPECT_EQ(round_to_bf16(0x1.fe0000p127f), 0x1.fe0000p127f);               // bf16's largest finite
  EXPECT_EQ(round_to_bf16(0x1p-149f), 0x1p-149f * 0.0f);                    // below bf16's smallest subnormal/2
  EXPECT_EQ(round_to_bf16(0x1p-133f), 0x1p-133f);                           // bf16's smallest subnormal
  EXPECT_TRUE(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
}

// sigmoid_bf16 = bf16(f32(sigmoid)): checked against the exact sigmoid rounded twice by the
// midpoint test (first to float, then that float's nearest bf16 via the exact midpoints).
TEST(PinnedMath, SigmoidBf16IsTheTorchDoubleRounding) {
  // Every bf16 value in [-20, 20]: these are the inputs a bf16 gate sees.
  std::size_t checked = 0;
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float x = from_bits(h << 16);
    if (!(std::fabs(x) <= 20.0f)) continue;
    const float f32 = fp8lab::sigmoid_f32(x);
    ASSERT_TRUE(is_correctly_rounded(f32, exact_sigmoid(x))) << hex(x);
    const float got = fp8lab::sigmoid_bf16(x);
    // got must be a bf16 value and the nearest bf16 to f32 (ties to even mantissa).
    ASSERT_EQ(bits(got) & 0xFFFFu, 0u);
    const float up = from_bits(bits(got) + 0x10000u), dn = from_bits(bits(got) - 0x10000u);
    const double d = std::fabs(static_cast<double>(f32) - got);
    ASSERT_LE(d, std::fabs(static_cast<double>(f32) - up)) << hex(x);
    ASSERT_LE(d, std::fabs(static_cast<double>(f32) - dn)) << hex(x);
    ++checked;
  }
  EXPECT_GT(checked, 30000u);
}

TEST(PinnedMath, ExpF64PinnedRelativeError) {
  // Sample across the normal range; relative error below 2^-50 against the 256-bit exp.
  double worst = 0;
  for (int i = -7080; i <= 7080; i += 7) {
    const double x = i / 10.0 + 0.0123456789 * (i % 13);
    const double got = fp8lab::exp_f64_pinned(x);
    const Big ex = exp(Big(x));
    const double rel = static_cast<double>(abs((Big(got) - ex) / ex));
    worst = std::max(worst, rel);
  }
  EXPECT_LT(worst, 0x1p-50);
  EXPECT_EQ(fp8lab::exp_f64_pinned(0.0), 1.0);
  EXPECT_TRUE(std::isinf(fp8lab::exp_f64_pinned(710.0)));
  EXPECT_EQ(fp8lab::exp_f64_pinned(-746.0), 0.0);
  EXPECT_TRUE(std::isnan(fp8lab::exp_f64_pinned(std::nan(""))));
  // Deep double subnormals stay close in absolute terms (one subnormal ulp is 2^-1074).
  const double tiny = fp8lab::exp_f64_pinned(-740.0);
  const double tiny_exact = static_cast<double>(exp(Big(-740.0)));
  EXPECT_LE(std::fabs(tiny - tiny_exact), 0x1p-1073);
}

// Determinism: the same bits whatever the thread count (the functions are pure; this guards the
// fallback counter and any future table against shared state).
TEST(PinnedMath, ThreadCountIndependent) {
  std::vector<float> xs = strided(-0.0f, -30.0f, 9973);
  std::vector<float> a(xs.size()), b(xs.size());
  fp8lab::set_num_threads(1);
  fp8lab::parallel_for(xs.size(), 100, [&](std::size_t s, std::size_t e) {
    for (std::size_t i = s; i < e; ++i) a[i] = fp8lab::sigmoid_f32(xs[i]);
  });
  fp8lab::set_num_threads(4);
  fp8lab::parallel_for(xs.size(), 100, [&](std::size_t s, std::size_t e) {
    for (std::size_t i = s; i < e; ++i) b[i] = fp8lab::sigmoid_f32(xs[i]);
  });
  fp8lab::set_num_threads(0);
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(bits(a[i]), bits(b[i]));
}

}  // namespace

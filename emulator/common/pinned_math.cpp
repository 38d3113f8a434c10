#include "common/pinned_math.hpp"
#include "common/pinned_exp.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include <boost/multiprecision/cpp_bin_float.hpp>

namespace fp8lab {

namespace {

using namespace FP8LAB_ISA_NS;  // the exp kernel of common/pinned_exp.hpp (isa_portable here)

std::atomic<std::uint64_t> fallbacks{0};

using boost::multiprecision::cpp_bin_float;
using boost::multiprecision::number;
// 200 bits: far more than the hardest float32 cases of exp need (the worst cases of expf are
// known to need under 2^-60 relative accuracy to decide the rounding).
using Big = number<cpp_bin_float<200, boost::multiprecision::digit_base_2>>;

// A positive multiprecision value rounded to float32, nearest even, by hand: scale so the float's
// last kept bit is the units digit, compare the remainder with one half.
float round_big_to_float(const Big& v) {
  if (v <= 0) return 0.0f;
  int e = 0;
  Big m = frexp(v, &e);  // v = m * 2^e, m in [0.5, 1): the leading bit has weight 2^(e-1)
  (void)m;
  const int lead = e - 1;
  if (lead > std::numeric_limits<float>::max_exponent - 1) return std::numeric_limits<float>::infinity();
  // The weight of the last kept bit: float's precision below the leading bit, or the subnormal
  // quantum (min normal exponent -126 minus 23 fraction bits).
  constexpr int kMinExp = std::numeric_limits<float>::min_exponent - 1, kFrac = std::numeric_limits<float>::digits - 1;
  const int quantum = (lead < kMinExp ? kMinExp : lead) - kFrac;
  const Big scaled = ldexp(v, -quantum);
  Big fl = floor(scaled);
  const Big frac = scaled - fl;
  const double n = static_cast<double>(fl);  // < 2^24: exact
  double rounded = n;
  if (frac > Big(0.5) || (frac == Big(0.5) && std::fmod(n, 2.0) != 0.0)) rounded = n + 1.0;
  // rounded * 2^quantum is exact in double (quantum >= -149); the cast is exact or overflows to inf
  // exactly when the rounded value is 2^128.
  return static_cast<float>(std::ldexp(rounded, quantum));
}

float exp_f32_fallback(float x) {
  fallbacks.fetch_add(1, std::memory_order_relaxed);
  return round_big_to_float(exp(Big(x)));
}

float sigmoid_f32_fallback(float x) {
  fallbacks.fetch_add(1, std::memory_order_relaxed);
  const Big one(1);
  return round_big_to_float(one / (one + exp(Big(-static_cast<double>(x)))));
}

}  // namespace

float exp_f32(float x) {
  if (std::isnan(x)) return std::numeric_limits<float>::quiet_NaN();
  // exp(89) > FLT_MAX; exp(-104) < 2^-150 (half the smallest subnormal), which rounds to +0.
  if (x > 89.0f) return std::numeric_limits<float>::infinity();
  if (x < -104.0f) return 0.0f;
  if (x == 0.0f) return 1.0f;
  const double y = exp_core(static_cast<double>(x));
  float out;
  if (float_rounding_certain(y, out)) return out;
  return exp_f32_fallback(x);
}

double exp_f64_pinned(double x) {
  if (std::isnan(x)) return std::numeric_limits<double>::quiet_NaN();
  if (x > 709.8) return std::numeric_limits<double>::infinity();  // exp(709.79) > DBL_MAX
  if (x < -745.2) return 0.0;  // exp(-745.2) < 2^-1075, half the smallest subnormal
  return exp_core(x);
}

float sigmoid_f32(float x) {
  if (std::isnan(x)) return std::numeric_limits<float>::quiet_NaN();
  if (x == 0.0f) return 0.5f;
  // sigmoid(x) < exp(x) < 2^-150 below -104: rounds to +0. Above 40, 1 - sigmoid(x) < exp(-40)
  // < 2^-57, far inside the last half-ulp below 1 (2^-25): rounds to 1.
  if (x < -104.0f) return 0.0f;
  if (x > 40.0f) return 1.0f;
  const double y = sigmoid_double(x);
  float out;
  if (float_rounding_certain(y, out)) return out;
  return sigmoid_f32_fallback(x);
}

float sigmoid_bf16(float x) { return round_to_bf16(sigmoid_f32(x)); }

void sigmoid_f32_array(const float* x, std::size_t n, float* out) {
  constexpr std::size_t kChunk = 1024;
  std::uint8_t unsure[kChunk];
  for (std::size_t c0 = 0; c0 < n; c0 += kChunk) {
    const std::size_t len = std::min(kChunk, n - c0);
    sigmoid_f32_lanes(x + c0, len, out + c0, unsure);
    // Flags read 8 at a time: almost every lane is settled (the unsure ones are special inputs and
    // rare uncertain roundings), so a word of zeros skips 8 of them with one test instead of 8.
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) {
      std::uint64_t any;
      std::memcpy(&any, unsure + i, sizeof any);
      if (any == 0) continue;
      for (std::size_t j = i; j < i + 8; ++j)
        if (unsure[j]) out[c0 + j] = sigmoid_f32(x[c0 + j]);
    }
    for (; i < len; ++i)
      if (unsure[i]) out[c0 + i] = sigmoid_f32(x[c0 + i]);
  }
}

std::uint64_t pinned_math_fallback_count() { return fallbacks.load(std::memory_order_relaxed); }

namespace detail {
float exp_f32_multiprecision(float x) { return exp_f32_fallback(x); }
float sigmoid_f32_multiprecision(float x) { return sigmoid_f32_fallback(x); }
}  // namespace detail

}  // namespace fp8lab

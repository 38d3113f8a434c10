#include "common/pinned_math.hpp"

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <boost/multiprecision/cpp_bin_float.hpp>

namespace fp8lab {

namespace {

std::atomic<std::uint64_t> fallbacks{0};

// 2^k for k in [-1022, 1023], built from its bits (exact; no libm).
inline double pow2(int k) { return std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52); }

// Cody–Waite split of ln 2: LN2_HI has 32 significant bits (so k * LN2_HI is exact for |k| < 2^21),
// LN2_LO = ln 2 - LN2_HI rounded to double. Values: ln 2 = 0x1.62e42fefa39ef35793c7673007e6p-1.
constexpr double LN2_HI = 0x1.62e42fefp-1;
constexpr double LN2_LO = 0x1.473de6af278edp-34;
constexpr double INV_LN2 = 0x1.71547652b82fep+0;
// Adding and subtracting 1.5 * 2^52 rounds a double of magnitude < 2^51 to the nearest integer
// (ties to even) using only IEEE addition in the default rounding mode.
constexpr double ROUND_MAGIC = 0x1.8p52;

// Taylor coefficients 1/n!, n = 0..13, each the double nearest to the rational (written out so the
// values do not depend on compile-time evaluation order). For |r| <= ln2/2 the truncation error
// |r|^14/14! < 2^-57.
constexpr double C[14] = {
    1.0,                      // 1/0!
    1.0,                      // 1/1!
    0x1p-1,                   // 1/2!
    0x1.5555555555555p-3,     // 1/3!
    0x1.5555555555555p-5,     // 1/4!
    0x1.1111111111111p-7,     // 1/5!
    0x1.6c16c16c16c17p-10,    // 1/6!
    0x1.a01a01a01a01ap-13,    // 1/7!
    0x1.a01a01a01a01ap-16,    // 1/8!
    0x1.71de3a556c734p-19,    // 1/9!
    0x1.27e4fb7789f5cp-22,    // 1/10!
    0x1.ae64567f544e4p-26,    // 1/11!
    0x1.1eed8eff8d898p-29,    // 1/12!
    0x1.6124613a86d09p-33,    // 1/13!
};

// exp(r) for |r| <= ~0.35 by Horner with explicit fma: about 2^-52 relative error.
inline double exp_poly(double r) {
  double p = C[13];
  for (int i = 12; i >= 0; --i) p = std::fma(p, r, C[i]);
  return p;
}

// exp(x) for finite |x| <= 745.2 (caller guarantees), relative error < 2^-50 while the result is a
// normal double. x = k ln2 + r with k = nearest integer to x/ln2; x - k*LN2_HI is exact (Sterbenz:
// for k != 0, x and k*LN2_HI are within a factor of two; both products are exact as |k| <= 1075).
inline double exp_core(double x) {
  const double kd = (x * INV_LN2 + ROUND_MAGIC) - ROUND_MAGIC;
  const int k = static_cast<int>(kd);
  const double r = (x - kd * LN2_HI) - kd * LN2_LO;
  const double p = exp_poly(r);
  // Scale in two exact steps so that 2^k never leaves the normal range of the factor; only the last
  // multiplication can round (when the result is subnormal).
  if (k > 1023) return p * pow2(1023) * pow2(k - 1023);
  if (k < -1022) return p * pow2(-1022) * pow2(k + 1022);
  return p * pow2(k);
}

// Ziv margin: the double evaluations below have relative error < 2^-49; if both ends of
// [y(1 - 2^-46), y(1 + 2^-46)] round to the same float, so does the true value. (The products
// y * MARGIN are themselves rounded, by far less than the margin's slack.)
constexpr double MARGIN = 0x1p-46;

inline bool float_rounding_certain(double y, float& out) {
  const float lo = static_cast<float>(y - y * MARGIN);
  const float hi = static_cast<float>(y + y * MARGIN);
  out = static_cast<float>(y);
  return lo == hi;
}

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
  const double e = exp_core(-static_cast<double>(x));
  const double y = 1.0 / (1.0 + e);
  float out;
  if (float_rounding_certain(y, out)) return out;
  return sigmoid_f32_fallback(x);
}

float sigmoid_bf16(float x) { return round_to_bf16(sigmoid_f32(x)); }

std::uint64_t pinned_math_fallback_count() { return fallbacks.load(std::memory_order_relaxed); }

namespace detail {
float exp_f32_multiprecision(float x) { return exp_f32_fallback(x); }
float sigmoid_f32_multiprecision(float x) { return sigmoid_f32_fallback(x); }
}  // namespace detail

}  // namespace fp8lab

#include "mla/numerics.hpp"

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <cstdint>
#include <cstring>
#include <limits>

namespace fp8lab::mla {

namespace {

// ln(x) for x > 0 finite, in double with + - * / only: x = 2^e * m with m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(z), z = (m - 1)/(m + 1), |z| < 0.1716, summed to z^41 (the next term is below
// 2^-60 relative). ln 2 is split in two parts so e * ln2_hi is exact. Error a few double ulps.
double log_f64_series(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // exact: m in [0.5, 1)
  if (m < 0.70710678118654752) {
    m *= 2.0;
    e -= 1;
  }
  const double z = (m - 1.0) / (m + 1.0);
  const double z2 = z * z;
  double term = z, sum = 0.0;
  double terms[21];
  for (int k = 0; k < 21; ++k) {
    terms[k] = term / static_cast<double>(2 * k + 1);
    term *= z2;
  }
  for (int k = 20; k >= 0; --k) sum += terms[k];  // smallest first
  constexpr double ln2_hi = 0x1.62e42fefa3800p-1;  // ln 2 with the low 11 bits cleared (e * hi exact for |e| < 2^11)
  constexpr double ln2_lo = 0x1.ef35793c76730p-45;
  return static_cast<double>(e) * ln2_hi + (static_cast<double>(e) * ln2_lo + 2.0 * sum);
}

}  // namespace

float log_f32(float x) {
  if (std::isnan(x) || x < 0) return std::numeric_limits<float>::quiet_NaN();
  if (x == 0) return -std::numeric_limits<float>::infinity();
  if (std::isinf(x)) return x;
  if (x == 1.0f) return 0.0f;  // the only float with an exactly representable log
  const double d = log_f64_series(static_cast<double>(x));
  const float f = static_cast<float>(d);
  // Ziv's test: the double is within ~2^-50 relative of ln x; if that interval does not contain a
  // float rounding boundary (a midpoint between f and a neighbour), f is the correctly rounded
  // value. Otherwise settle it with 100-bit arithmetic (Boost.Multiprecision).
  const double err = std::fabs(d) * 0x1p-48 + 0x1p-1070;
  const double lo = static_cast<double>(std::nextafter(f, -INFINITY)), hi = static_cast<double>(std::nextafter(f, INFINITY));
  const double mid_lo = 0.5 * (lo + static_cast<double>(f)), mid_hi = 0.5 * (hi + static_cast<double>(f));
  if (d - err > mid_lo && d + err < mid_hi) return f;
  using big = boost::multiprecision::number<boost::multiprecision::cpp_bin_float<100>>;
  const big exact = boost::multiprecision::log(big(static_cast<double>(x)));
  // Round the 100-bit value to float: to double first could double-round, so compare with the
  // midpoints exactly.
  const float cand = static_cast<float>(static_cast<double>(exact));
  const big c(static_cast<double>(cand));
  const big up(static_cast<double>(std::nextafter(cand, INFINITY)));
  const big dn(static_cast<double>(std::nextafter(cand, -INFINITY)));
  if (exact > (c + up) / 2) return std::nextafter(cand, INFINITY);
  if (exact < (c + dn) / 2) return std::nextafter(cand, -INFINITY);
  return cand;
}

}  // namespace fp8lab::mla

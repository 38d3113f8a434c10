#include "gemm/non_finite.hpp"

#include <cmath>
#include <limits>

namespace fp8lab {

NonFiniteRows non_finite_rows(const GemmOperand& x) {
  NonFiniteRows r;
  r.row.assign(x.rows, 0);
  for (std::size_t i = 0; i < x.rows; ++i) {
    const float* v = x.row(i);
    bool bad = false;
    for (std::size_t k = 0; k < x.cols; ++k) bad |= !std::isfinite(v[k]);
    r.row[i] = bad;
    r.any |= bad;
  }
  return r;
}

std::optional<double> non_finite_dot(const GemmOperand& a, const GemmOperand& b, std::size_t i, std::size_t j,
                                     const float* c) {
  bool nan = false, pos = false, neg = false;
  auto term = [&](double t) {
    if (std::isnan(t)) nan = true;
    else if (std::isinf(t)) (t > 0 ? pos : neg) = true;
  };
  const float *x = a.row(i), *y = b.row(j);
  for (std::size_t k = 0; k < a.cols; ++k) {
    if (std::isfinite(x[k]) && std::isfinite(y[k])) continue;
    // The scales are finite, so they matter only as zeros (Inf x 0) and signs.
    term((static_cast<double>(x[k]) * a.scale(i, k)) * (static_cast<double>(y[k]) * b.scale(j, k)));
  }
  if (c) term(c[i * b.rows + j]);
  if (nan || (pos && neg)) return std::numeric_limits<double>::quiet_NaN();
  if (pos || neg) return pos ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  return std::nullopt;
}

GemmOperand finite_part(const GemmOperand& x) {
  GemmOperand y = x;
  for (float& v : y.elements)
    if (!std::isfinite(v)) v = 0.0f;
  return y;
}

}  // namespace fp8lab

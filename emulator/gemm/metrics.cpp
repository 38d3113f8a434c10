#include "gemm/metrics.hpp"

#include <algorithm>
#include <cmath>

#include "checks/verdict.hpp"

namespace fp8lab {

std::vector<std::string> ulp_bucket_labels() {
  std::vector<std::string> l = {"0", "<=1"};
  for (int b = 2; b < kUlpBuckets - 1; ++b) l.push_back("<=2^" + std::to_string(b - 1));
  l.push_back(">2^" + std::to_string(kUlpBuckets - 3));
  return l;
}

GemmMetrics gemm_metrics(const double* r, const double* x, std::size_t n, OutputFormat out, const double* bound) {
  GemmMetrics m;
  m.count = n;
  m.has_bound = bound != nullptr;
  m.ulp_histogram.assign(kUlpBuckets, 0);
  double sum_rel = 0, sxy = 0, sxx_yy = 0, sum_ratio = 0, sum_err2 = 0, sum_x2 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double err = std::fabs(r[i] - x[i]);
    m.nan_results += std::isnan(r[i]);
    m.inf_results += std::isinf(r[i]);
    if (!std::isfinite(r[i]) && std::isfinite(x[i])) {
      // std::max drops a NaN operand, so a wrong NaN is counted here instead of compared.
      ++m.nonfinite_where_exact_finite;
      m.max_abs_error = m.max_rel_error = HUGE_VAL;
      sum_err2 = HUGE_VAL;
    } else if (std::isfinite(err)) {
      m.max_abs_error = std::max(m.max_abs_error, err);
      sum_err2 += err * err;
      sum_x2 += x[i] * x[i];
    }
    if (x[i] != 0 && std::isfinite(err)) {
      ++m.nonzero_exact;
      const double rel = err / std::fabs(x[i]);
      m.max_rel_error = std::max(m.max_rel_error, rel);
      sum_rel += rel;
    } else if (x[i] != 0) {
      ++m.nonzero_exact;
    }
    sxy += r[i] * x[i];
    sxx_yy += r[i] * r[i] + x[i] * x[i];
    const double u = ulp_distance(r[i], x[i], output_precision(out) - 1, output_min_exponent(out));
    m.max_ulp = std::max(m.max_ulp, u);
    int b;
    if (u == 0) b = 0;
    else if (!(u <= std::ldexp(1.0, kUlpBuckets - 3))) b = kUlpBuckets - 1;
    else b = u <= 1 ? 1 : 1 + std::ilogb(u) + (u > std::ldexp(1.0, std::ilogb(u)) ? 1 : 0);
    ++m.ulp_histogram[static_cast<std::size_t>(b)];
    if (bound) {
      const double ratio = bound[i] > 0 ? err / bound[i] : (err == 0 ? 0.0 : HUGE_VAL);
      if (std::isfinite(bound[i]) || err == 0) {
        m.max_bound_ratio = std::max(m.max_bound_ratio, ratio);
        sum_ratio += ratio;
      }
      if (!(err <= bound[i])) ++m.violations;
    }
  }
  m.mean_rel_error = m.nonfinite_where_exact_finite ? HUGE_VAL
                     : m.nonzero_exact ? sum_rel / static_cast<double>(m.nonzero_exact) : 0.0;
  m.normwise_rel_error = sum_err2 == 0 ? 0.0 : sum_x2 == 0 ? HUGE_VAL : std::sqrt(sum_err2 / sum_x2);
  m.calc_diff = sxx_yy == 0 ? 0.0 : 1.0 - 2.0 * sxy / sxx_yy;
  m.mean_bound_ratio = bound && n ? sum_ratio / static_cast<double>(n) : 0.0;
  return m;
}

}  // namespace fp8lab

// How far an emulated GEMM result is from the exact one: the numbers a report prints.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "gemm/gemm_spec.hpp"

namespace fp8lab {

struct GemmMetrics {
  std::size_t count = 0;
  std::size_t nonzero_exact = 0;   // elements whose exact value is non-zero (the relative errors' domain)
  // Results that are NaN or ±Inf where the exact value is finite (each makes the errors below
  // infinite: a NaN never hides as a zero error), and NaN/Inf results in all.
  std::size_t nonfinite_where_exact_finite = 0;
  std::size_t nan_results = 0, inf_results = 0;
  double max_rel_error = 0;        // max |r - x| / |x| over x != 0 (+inf when a result is non-finite there)
  // The report's headline metric: ||r - x||_2 / ||x||_2 over all elements, in binary64 (0 when
  // both are all zero; +inf when a result is non-finite where the exact value is finite).
  double normwise_rel_error = 0;
  double mean_rel_error = 0;       // mean of the same
  double max_abs_error = 0;        // +inf when a result is non-finite where the exact value is finite
  // DeepGEMM's calc_diff (deep_gemm/testing/numeric.py): 1 - 2*sum(x*y) / sum(x*x + y*y), in
  // binary64; 0 when both are all zero (where DeepGEMM's would be 0/0).
  double calc_diff = 0;
  double max_ulp = 0;              // in ULPs of the output format at the exact value
  // ulp_histogram[0]: 0 ULP; [1]: (0, 1]; [b]: (2^(b-2), 2^(b-1)] for b >= 2; last: larger or
  // non-finite.
  std::vector<std::size_t> ulp_histogram;
  // With a bound: max and mean of |r - x| / bound, and how many elements exceed it.
  bool has_bound = false;
  double max_bound_ratio = 0, mean_bound_ratio = 0;
  std::size_t violations = 0;
};

constexpr int kUlpBuckets = 34;
std::vector<std::string> ulp_bucket_labels();  // "0", "<=1", "<=2", "<=4", ..., ">2^31"

// result, exact (and bound, optional): n values each. ULPs are counted in `out`'s precision.
GemmMetrics gemm_metrics(const double* result, const double* exact, std::size_t n, OutputFormat out,
                         const double* bound = nullptr);

}  // namespace fp8lab

#include "moe/routing_bounds.hpp"

#include <cmath>

#include "moe/route.hpp"
#include "formats/row_constants.hpp"

namespace fp8lab::moe {

namespace {
// The gate's two formats (FP32 and BF16 share FP32's exponent range; formats/row_constants.hpp).
constexpr int kMant32 = binary32::kMantissaBits, kMantBf16 = bfloat16::kMantissaBits;
constexpr double kU32 = binary32::kUnitRoundoff;
}  // namespace

double ulp_of(double x, int mant) {
  if (!std::isfinite(x)) return 0;
  const double a = std::fabs(x);
  int e = a == 0 ? binary32::kMinExponent : std::ilogb(a);
  if (e < binary32::kMinExponent) e = binary32::kMinExponent;
  return std::ldexp(1.0, e - mant);
}

void bounds_for_token(const float* s, const float* bias, const RouterSpec& spec, bool exact, TokenBounds& b) {
  const std::size_t E = static_cast<std::size_t>(spec.experts);
  b.exact = exact;
  b.scores.assign(s, s + E);
  b.sel.resize(E);
  selection_scores(s, bias, spec, b.sel.data());
  b.d_score.assign(E, 0.0);
  b.d_sel.assign(E, 0.0);
  if (exact) return;
  const bool bf16 = spec.gate_format == GateFormat::Bf16;
  const int sel_mant = spec.selection_is_bf16() ? kMantBf16 : kMant32;
  for (std::size_t e = 0; e < E; ++e) {
    const double v = s[e];
    double d = spec.kernel_score_ulps * ulp_of(v, kMant32);
    if (spec.score == ScoreFunction::Softmax) d += std::fabs(v) * spec.experts * kU32;
    if (bf16) d += ulp_of(v, kMantBf16);
    b.d_score[e] = d;
    b.d_sel[e] = d + ulp_of(std::fabs(static_cast<double>(b.sel[e])) + d, sel_mant);
  }
}

double weight_bound(const TokenBounds& b, const std::int32_t* ids, int j, double w, const RouterSpec& spec) {
  if (b.exact) return 0;
  const int K = spec.topk;
  const double u = spec.gate_format == GateFormat::Bf16 ? bfloat16::kUnitRoundoff : kU32;
  const int gate_mant = spec.gate_format == GateFormat::Bf16 || spec.weights_format == GateFormat::Bf16 ? kMantBf16 : kMant32;
  double S = 0, dS = 0;
  for (int i = 0; i < K; ++i) {
    S += b.scores[static_cast<std::size_t>(ids[i])];
    dS += b.d_score[static_cast<std::size_t>(ids[i])];
  }
  const std::size_t e = static_cast<std::size_t>(ids[j]);
  const double se = b.scores[e];
  double rel = 2 * u + K * kU32 + (se != 0 ? b.d_score[e] / std::fabs(se) : 0);
  if (spec.renormalize) rel += S != 0 ? dS / std::fabs(S) : 0;
  return (std::fabs(w) * rel + 2 * ulp_of(w, gate_mant)) * 1.01;
}

}  // namespace fp8lab::moe

// Laws of wkv_b = fp8 (forward.hpp wkv_b_fp8): on random small specs, weights, tokens and
// positions, the naive form (FP8 linear) and the absorbed form (dequantised weights) each stay
// within their certified bound of the exact attention of the dequantised weights, so they agree
// within the sum; and the bound is not vacuous (observed/bound ratios reported at the end).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "mla/forward.hpp"
#include "mla/numerics.hpp"
#include "mla/weights.hpp"
#include "quant/quantize.hpp"

namespace fp8lab::mla {

// RapidCheck prints a counterexample's spec as its canonical JSON (found by argument-dependent lookup).
inline void showValue(const MlaSpec& s, std::ostream& os) { os << to_json(s); }

namespace {

// Largest observed/bound ratios: absorbed vs naive over all outputs, and over queries that see
// more than one key (a query with one key has p = 1 exactly, so its naive error is the value's
// own, which the a-posteriori quantisation term bounds almost exactly).
double g_ratio_fp32 = 0, g_ratio_bf16 = 0, g_min_ratio_bf16 = 1, g_ratio_multi_fp32 = 0, g_bound_over_exact = 0, g_min_multi_fp32 = 1;
int g_bound_above_exact = 0, g_cases_fp32 = 0;

rc::Gen<MlaSpec> genSpec() {
  return rc::gen::apply(
      [](int heads, int q_lora, int nope, int rope_half, int v, int hidden, int kv_lora, bool attn_bf16) {
        MlaSpec s;
        s.heads = heads;
        s.q_lora = q_lora;
        s.kv_lora = kv_lora;  // ragged widths too: the last 1x128 and 128x128 blocks are partial
        s.nope = nope;
        s.rope = 2 * rope_half;
        s.v = v;
        s.hidden = hidden;
        s.wkv_b = MatmulFormat::Fp8;
        s.attn = attn_bf16 ? MatmulFormat::Bf16 : MatmulFormat::Fp32;
        return s;
      },
      rc::gen::inRange(1, 4), rc::gen::element(0, 16, 32), rc::gen::inRange(4, 33), rc::gen::inRange(1, 9),
      rc::gen::inRange(4, 33), rc::gen::inRange(8, 49), rc::gen::element(96, 128, 200, 256), rc::gen::arbitrary<bool>());
}

RC_GTEST_PROP(MlaFp8Wkvb, BothFormsWithinCertifiedBound, ()) {
  const MlaSpec s = *genSpec();
  const auto wseed = *rc::gen::arbitrary<std::uint32_t>();
  const std::size_t T = *rc::gen::inRange<std::size_t>(1, 9);
  const long start = *rc::gen::inRange(0L, 20000L);
  MlaWeights w = init_weights(s, wseed);
  // Half the cases: a checkpoint's weights with power-of-two block scales, given as E4M3 + scales.
  if (*rc::gen::arbitrary<bool>())
    w.wkv_b_fp8 = quantize(w.wkv_b.data(), w.wkv_b.size() / s.kv_lora, s.kv_lora, Tile{128, 128}, "e4m3",
                           scale_rule_by_name("deepseek_ue8m0"));
  const auto x = random_input(s, T, wseed + 1);
  const Projected p = project(x.data(), T, w, s, start);
  const FormsComparison fc = compare_forms(p, w, s);
  RC_ASSERT(fc.verdict.ok());
  // Not vacuous: with FP32 einsums the forms differ somewhere by at least a tenth of the summed
  // bound in every case. (With BF16 einsums the worst case of rounding q_abs and the scores to 8
  // bits, sum |q_abs||c| >> |q_abs . c|, dominates; there the ratio is only reported.)
  if (s.attn == MatmulFormat::Fp32) RC_ASSERT(fc.max_observed_over_bound >= 0.1);
  double maxexact = 0, maxbound = 0, multi = 0;
  const std::size_t per_token = static_cast<std::size_t>(s.heads) * s.v;
  for (std::size_t i = 0; i < fc.exact.size(); ++i) {
    RC_ASSERT(std::fabs(fc.naive[i] - fc.exact[i]) <= fc.bound_naive[i]);
    RC_ASSERT(std::fabs(fc.absorbed[i] - fc.exact[i]) <= fc.bound_absorbed[i]);
    maxexact = std::max(maxexact, std::fabs(fc.exact[i]));
    const double b = fc.bound_absorbed[i] + fc.bound_naive[i];
    maxbound = std::max(maxbound, b);
    if (i >= per_token && b > 0) multi = std::max(multi, std::fabs(static_cast<double>(fc.absorbed[i]) - fc.naive[i]) / b);
  }
  if (s.attn == MatmulFormat::Fp32) {
    g_bound_over_exact = std::max(g_bound_over_exact, maxbound / maxexact);
    g_ratio_fp32 = std::max(g_ratio_fp32, fc.max_observed_over_bound);
    g_ratio_multi_fp32 = std::max(g_ratio_multi_fp32, multi);
    if (T > 1) g_min_multi_fp32 = std::min(g_min_multi_fp32, multi);
    if (maxbound > maxexact) ++g_bound_above_exact;
    ++g_cases_fp32;
  } else {
    g_ratio_bf16 = std::max(g_ratio_bf16, fc.max_observed_over_bound);
    g_min_ratio_bf16 = std::min(g_min_ratio_bf16, fc.max_observed_over_bound);
  }
}

TEST(MlaFp8Wkvb, ZzReportRatios) {
  std::printf("[mla fp8 wkv_b] max observed/bound: attn fp32 %.3f (queries with >1 key: max %.3f, smallest per case %.3f), "
              "attn bf16 %.3f (smallest per case %.3f); max bound / max |exact| (fp32) %.3f, above 1 in %d of %d cases\n",
              g_ratio_fp32, g_ratio_multi_fp32, g_min_multi_fp32, g_ratio_bf16, g_min_ratio_bf16, g_bound_over_exact, g_bound_above_exact,
              g_cases_fp32);
}

}  // namespace
}  // namespace fp8lab::mla

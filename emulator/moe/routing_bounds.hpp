// The values a routing verdict judges against, and how far a conforming kernel may stray from
// them: per token, the gate-format scores and biased selection scores fp8lab computes, each with
// its certified error bound, and the bound on each returned weight. No verdict logic lives here.
//
// Certified score error (per expert, in the selection scores a kernel compares): a conforming
// kernel computes each score in float32 within spec.kernel_score_ulps ulps of the real value
// (softmax adds experts * 2^-24 relative for its float32 sum in another order), rounds it to the
// gate format (at most one ulp of that format away from ours), then adds the bias and rounds to
// the selection format (one more ulp of that format). A group (or node) score adds the bounds of
// the scores it sums plus one selection ulp per addition.
// Weight bound (first order, both sides rounding): |w| * (d_e/s_e + sum_j d_j / S + k 2^-24
// + 2 u) + 2 ulp(w), u = 2^-8 (bf16) or 2^-24 (fp32), d the score bounds.
// With `exact` (a pinned spec) every bound is zero: the kernel must reproduce the values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/router_spec.hpp"

namespace fp8lab::moe {

struct TokenBounds {
  bool exact = false;
  std::vector<float> scores, sel;     // gate-format scores, biased selection scores
  std::vector<double> d_score, d_sel; // their certified bounds (all zero when exact)
};

// One ulp of |x| in a format with `mant` fraction bits and float32's exponent range (fp32, bf16);
// 0 for non-finite x.
double ulp_of(double x, int mant);

// Fills `b` for one token: `s` its gate-format scores, `bias` the bias already in its format (or
// null).
void bounds_for_token(const float* s, const float* bias, const RouterSpec& spec, bool exact, TokenBounds& b);

// The certified bound of the weight of expert ids[j] (weights_for_ids' value w) for a kernel that
// chose `ids`; zero when exact.
double weight_bound(const TokenBounds& b, const std::int32_t* ids, int j, double w, const RouterSpec& spec);

}  // namespace fp8lab::moe

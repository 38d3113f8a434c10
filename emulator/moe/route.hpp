// The reference router: scores -> biased selection scores -> group / node limits -> top-k ->
// weights, every step rounded as RouterSpec says. Deterministic: pinned sigmoid/exp (correctly
// rounded, common/pinned_math), a total order on scores, and a fixed summation order.
//
// Order and NaN (the definition every comparison here uses):
//   * scores are ranked by value, larger first; -0 == +0; equal values: lower expert (or group,
//     node) index first (TiePolicy::LowestIndexFirst);
//   * NaN ranks below every number, -inf included. A NaN logit therefore never displaces a
//     number; a token with fewer than k non-NaN eligible experts still gets k distinct experts
//     (the NaN ones, lowest index first) and its weights then come out NaN, so the poison is
//     visible in the result instead of being silently routed somewhere. (torch.topk ranks NaN
//     above everything instead — a kernel that copies that differs only on NaN tokens.)
//   * masked experts (unselected groups/nodes) are excluded outright — the meaning of the
//     reference's masked_fill(-inf) — so they are never chosen, even when every eligible biased
//     score is negative or -inf (the 0-fill bug lets them win).
// Group score: Top2Sum = the two largest biased scores of the group added in float32 and rounded
// to the selection format (torch: topk(2).sum on that dtype); a group with fewer than two
// non-NaN scores scores NaN. Max = the largest.
// Weights: w_j = score(id_j) (unbiased, gate format); with renormalisation the selected scores are
// summed in float32 in selection order (largest first), rounded to the gate format, plus epsilon
// (float32), and each w_j = round_gate(w_j / denominator); then, when the scale targets the
// weights, w_j = round_gate(w_j * routed_scale). torch computes each bf16 op in float32 and rounds
// once to bf16, which is what round_gate(float op) models.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/router_spec.hpp"

namespace fp8lab::moe {

struct RouteResult {
  std::size_t tokens = 0;
  int topk = 0;
  std::vector<std::int32_t> ids;  // [tokens, topk], each row ordered by selection score, largest first
  std::vector<float> weights;     // [tokens, topk], values of the gate format
};

// Scores of the spec's score function from logits [tokens, experts] (row-major), rounded as the
// spec says: Sigmoid — bf16 gate: sigmoid_bf16(round_bf16(logit)), fp32 gate: sigmoid_f32(logit);
// Softmax — float32 (max-subtracted, pinned exp_f32, float32 sum in index order, one division),
// kept in float32 as the reference's softmax(dtype=float32) does. `out` has tokens*experts floats.
void gate_scores(const float* logits, std::size_t tokens, const RouterSpec& spec, float* out);

// Routes from logits. `bias` (experts floats, rounded to spec.bias_format) may be null: no bias.
RouteResult route(const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec);
// Routes from precomputed scores (rounded to the gate format first), skipping the score function,
// so that a kernel's selection can be checked apart from its scoring.
RouteResult route_from_scores(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec);

// route / route_from_scores into the caller's arrays ids and weights ([tokens, topk] each), without
// the intermediate arrays (the Python binding writes into its result arrays).
void route_into(const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec, std::int32_t* ids,
                float* weights);
void route_from_scores_into(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec,
                            std::int32_t* ids, float* weights);

namespace detail {
// route_from_scores with every token through the general one-token router (eligibility flags,
// one TopK per group), the path of node-limited specs: the oracle of the tests for the fast
// selection of the other specs.
RouteResult route_from_scores_reference(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec);
}  // namespace detail

// One token's biased selection scores (experts floats) from its gate-format scores: round_sel(s+b).
void selection_scores(const float* scores, const float* bias, const RouterSpec& spec, float* out);

// The weights the spec gives one token for a given set of spec.topk experts, in the given order
// (the sum runs in that order): `scores` are the token's gate-format scores (experts floats).
void weights_for_ids(const float* scores, const std::int32_t* ids, const RouterSpec& spec, float* out);

// Rounds to the format of a gate step (identity for fp32).
float round_gate(float x, GateFormat f);

// The order key of a score: larger key = preferred; NaN has the smallest key; -0 and +0 share one.
std::uint32_t score_order_key(float x);

}  // namespace fp8lab::moe

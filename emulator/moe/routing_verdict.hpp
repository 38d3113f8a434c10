// Verdicts for a kernel's routing, in fp8lab's three-kind vocabulary (checks/verdict.hpp):
//   bit-identical — every token has the reference's ids (same order) and weight bits;
//   within bound  — some tokens differ, each only (a) by weights within their certified bound, or
//                   (b) by swapping experts whose selection scores differ by less than the
//                   certified score-error bound of the gating format (a near-tie), every such token
//                   named in `swaps`;
//   violation     — anything else (named in `violations`: token, what, both values, the bound).
// With `pinned` set the spec is taken as bit-exact: any difference is a violation.
//
// Certified score error (per expert, in the selection scores a kernel compares): a conforming
// kernel computes each score in float32 within spec.kernel_score_ulps ulps of the real value
// (softmax adds experts * 2^-24 relative for its float32 sum in another order), rounds it to the
// gate format (at most one ulp of that format away from ours), then adds the bias and rounds to
// the selection format (one more ulp of that format). Two experts may swap iff their selection
// score gap is <= the sum of their bounds; a group may swap iff its group score gap is <= the sum
// of the bounds of the scores it adds (plus one selection ulp).
// Weight bound (first order, both sides rounding): |w| * (d_e/s_e + sum_j d_j / S + k 2^-24
// + 2 u) + 2 ulp(w), u = 2^-8 (bf16) or 2^-24 (fp32), d the score bounds; weights are compared
// with the reference weights recomputed for the kernel's own expert set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "checks/verdict.hpp"
#include "moe/router_spec.hpp"

namespace fp8lab::moe {

struct TieSwap {
  std::size_t token = 0;
  std::vector<std::int32_t> kernel_only, reference_only;  // experts chosen by one side only
  double gap = 0;    // largest selection-score advantage of a dropped reference expert
  double bound = 0;  // the certified bound it was within
};

struct RoutingViolation {
  std::size_t token = 0;
  std::string what;  // e.g. "expert 17 chosen over 40: selection scores 0x1.2p-1 < 0x1.4p-1, gap 0.06 > bound 0.004"
};

struct RoutingVerdict {
  VerdictKind kind = VerdictKind::BitIdentical;
  std::size_t tokens = 0;
  std::size_t identical_tokens = 0;
  std::size_t weight_only_tokens = 0;   // same experts, weights different but within bound
  std::size_t reordered_tokens = 0;     // same experts in another order (allowed: near-ties, or order-insensitive)
  std::size_t tie_swapped_tokens = 0;
  std::size_t violation_tokens = 0;
  double max_weight_bound_ratio = 0;    // max |w_kernel - w_expected| / bound over compared weights
  std::vector<TieSwap> swaps;           // every tie-swapped token (up to max_listed)
  std::vector<RoutingViolation> violations;  // every violating token (up to max_listed)
  std::string what;
  bool ok() const { return kind != VerdictKind::Violation; }
  std::string summary() const;
  std::string to_json() const;
};

struct RoutingCompareOptions {
  bool pinned = false;          // spec is bit-exact: every difference is a violation
  bool order_sensitive = false; // ids must also be in the reference's order (else compared as sets)
  bool inputs_are_scores = false;  // `logits` holds precomputed scores (route_from_scores)
  std::size_t max_listed = 1000;
};

// kernel_*: the routing under test; reference_*: what it is judged against (null: the emulator's
// own route of `logits`). ids/weights are [tokens, spec.topk]; logits [tokens, spec.experts];
// bias may be null.
RoutingVerdict compare_routing(const std::int32_t* kernel_ids, const float* kernel_weights,
                               const std::int32_t* reference_ids, const float* reference_weights, const float* logits,
                               std::size_t tokens, const float* bias, const RouterSpec& spec,
                               const RoutingCompareOptions& options = {});

}  // namespace fp8lab::moe

// Verdicts for a kernel's routing, in fp8lab's three-kind vocabulary (checks/verdict.hpp):
//   bit-identical — every token has the reference's ids (same order) and weight bits;
//   within bound  — some tokens differ, each only in ways a correct kernel may: its experts are a
//                   top-k under some resolution of the ties (experts, groups, nodes) of selection
//                   scores within their certified bounds (routing_feasible.hpp: exact ties, near
//                   ties, a tied group chosen instead, a selected group none of whose experts won),
//                   and its weights are the spec's weights for its own experts within their bound
//                   (routing_bounds.hpp); every token whose expert set differs is named in `swaps`;
//   violation     — anything else (named in `violations`: token, what, both values, the bound).
// With `pinned` set the bounds are zero: the experts must be a top-k of fp8lab's exact scores under
// some tie resolution (torch.topk leaves the tie order unspecified, so even a bit-exact spec cannot
// pin it) and the weights must be the spec's weights for those experts, bit for bit.
// NaN policy (every mode): a NaN weight matches any NaN weight whatever its sign and payload, and
// never a number; NaN scores rank below every number (route.hpp). An all -inf token (scores 0,
// weights 0/0) therefore passes with any tie resolution and NaN weights on both sides.
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

// Whether a kernel's expert choice is a correct routing: an exact top-k, under some resolution of
// the ties (between experts, between groups, between nodes), of some selection-score vector within
// the certified bounds of routing_bounds.hpp. With zero bounds (a pinned spec) that is exactly
// "a top-k of fp8lab's own scores under some tie resolution"; torch.topk leaves the tie order
// unspecified, so every resolution is a correct kernel.
//
// How it decides (no enumeration): let R be the kernel's experts and give each expert the
// interval [lo, hi] of its selection score. R's experts are raised as far as allowed (to hi, or
// along the kernel's order when the order matters), t = the lowest of them. Every other expert
// that stays eligible must be able to sit at or below t (lo <= t), so the feasible choice is
// pushed as far as it goes: R at the top, other experts of a selected unit capped at t, experts
// of unselected units at lo. A unit set S (groups, then nodes) of size m is then a top-m iff some
// threshold has every unit of S with hi >= it and every other unit with lo <= it; the candidate
// thresholds are the units' hi values (selection_units). Units holding R must be in S; a unit
// holding an expert with lo > t cannot be. Group and node scores are monotone in each expert
// score, so this choice is the best for every unit at once.
// NaN ranks below every number, -inf included (route.hpp's order); a group whose top-2 holds a NaN
// scores NaN.
// Node-limited specs: exact when groups = 1 or the nodes coincide with the groups; with both
// limits the node step runs on the group set chosen above, which may reject a valid routing whose
// groups need another tie resolution to let the nodes work (no DeepSeek recipe has both).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moe/router_spec.hpp"
#include "moe/routing_bounds.hpp"

namespace fp8lab::moe {

struct Feasibility {
  std::string problem;           // empty: a correct routing; else the first reason it is not
  std::vector<int> groups;       // a group set (ascending) under which it is one (groups > 1)
  bool ok() const { return problem.empty(); }
};

// `ids`: spec.topk distinct experts in range (the caller checks). `ordered`: the ids' order must
// also be a descending order of the scores under the tie resolution.
Feasibility routing_feasibility(const TokenBounds& b, const std::int32_t* ids, const RouterSpec& spec, bool ordered);

}  // namespace fp8lab::moe

#include "moe/routing_verdict.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>

#include "moe/route.hpp"
#include "moe/routing_bounds.hpp"
#include "moe/routing_feasible.hpp"
#include "moe/routing_number_text.hpp"

namespace fp8lab::moe {

namespace {

using detail::hexnum;
using detail::num;

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }
// The NaN policy: a NaN weight matches any NaN (sign and payload are not part of any spec: x86's
// 0/0 gives 0xFFC00000, CUDA's canonical NaN is 0x7FFFFFFF) and nothing else.
bool same_value(float a, float b) { return same_bits(a, b) || (std::isnan(a) && std::isnan(b)); }

// Kernel ids must be k distinct experts within the structural limits (at most topk_groups groups,
// max_nodes nodes), whatever the scores.
std::string structural_problem(const std::int32_t* ki, const RouterSpec& spec) {
  const int K = spec.topk, E = spec.experts;
  for (int j = 0; j < K; ++j) {
    if (ki[j] < 0 || ki[j] >= E) return "slot " + std::to_string(j) + ": id " + std::to_string(ki[j]) + " is not an expert";
    for (int i = 0; i < j; ++i)
      if (ki[i] == ki[j]) return "expert " + std::to_string(ki[j]) + " listed twice";
  }
  std::vector<int> gs, ns;
  for (int j = 0; j < K; ++j) {
    gs.push_back(ki[j] / spec.experts_per_group());
    ns.push_back(ki[j] / spec.experts_per_node());
  }
  std::sort(gs.begin(), gs.end());
  std::sort(ns.begin(), ns.end());
  const long ng = std::unique(gs.begin(), gs.end()) - gs.begin();
  const long nn = std::unique(ns.begin(), ns.end()) - ns.begin();
  if (spec.groups > 1 && ng > spec.topk_groups)
    return "experts from " + std::to_string(ng) + " groups, more than topk_groups = " + std::to_string(spec.topk_groups);
  if (spec.nodes > 0 && nn > spec.max_nodes)
    return "experts on " + std::to_string(nn) + " nodes, more than max_nodes = " + std::to_string(spec.max_nodes);
  return {};
}

// Weights against the spec's weights for the kernel's own experts, in the kernel's order.
std::string weight_problem(const TokenBounds& tb, const std::int32_t* ki, const float* kw, const RouterSpec& spec,
                           double& max_ratio) {
  std::vector<float> expect(static_cast<std::size_t>(spec.topk));
  weights_for_ids(tb.scores.data(), ki, spec, expect.data());
  for (int j = 0; j < spec.topk; ++j) {
    const float w = expect[static_cast<std::size_t>(j)];
    if (same_value(kw[j], w)) continue;
    const double bound = weight_bound(tb, ki, j, w, spec), err = std::fabs(static_cast<double>(kw[j]) - w);
    if (!(err <= bound) || tb.exact)
      return "weight of expert " + std::to_string(ki[j]) + " (slot " + std::to_string(j) + "): got " + hexnum(kw[j]) +
             ", expected " + hexnum(w) + ", error " + num(err) + " > bound " + num(bound);
    max_ratio = std::max(max_ratio, bound > 0 ? err / bound : 0.0);
  }
  return {};
}

// The swap record: experts only one side chose, and the largest score advantage of a dropped
// reference expert that stayed eligible under the kernel's group choice (0 for exact ties).
TieSwap swap_record(std::size_t t, const std::int32_t* ki, const std::int32_t* ri, const TokenBounds& tb,
                    const Feasibility& f, const RouterSpec& spec) {
  TieSwap sw;
  sw.token = t;
  std::vector<std::int32_t> kset(ki, ki + spec.topk), rset(ri, ri + spec.topk);
  std::sort(kset.begin(), kset.end());
  std::sort(rset.begin(), rset.end());
  std::set_difference(kset.begin(), kset.end(), rset.begin(), rset.end(), std::back_inserter(sw.kernel_only));
  std::set_difference(rset.begin(), rset.end(), kset.begin(), kset.end(), std::back_inserter(sw.reference_only));
  for (std::int32_t x : sw.kernel_only)
    for (std::int32_t y : sw.reference_only) {
      if (y < 0 || y >= spec.experts) continue;
      if (spec.groups > 1 && !std::binary_search(f.groups.begin(), f.groups.end(), y / spec.experts_per_group())) continue;
      const double gap = static_cast<double>(tb.sel[static_cast<std::size_t>(y)]) - tb.sel[static_cast<std::size_t>(x)];
      if (gap > sw.gap) {
        sw.gap = gap;
        sw.bound = tb.d_sel[static_cast<std::size_t>(x)] + tb.d_sel[static_cast<std::size_t>(y)];
      }
    }
  return sw;
}

}  // namespace

RoutingVerdict compare_routing(const std::int32_t* kid, const float* kw, const std::int32_t* rid, const float* rw,
                               const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec,
                               const RoutingCompareOptions& opt) {
  spec.validate();
  const std::size_t Ku = static_cast<std::size_t>(spec.topk), Eu = static_cast<std::size_t>(spec.experts);
  // Reference scores (for bounds) and, when not given, the reference routing.
  std::vector<float> scores(tokens * Eu);
  if (opt.inputs_are_scores) {
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = round_gate(logits[i], spec.gate_format);
  } else {
    gate_scores(logits, tokens, spec, scores.data());
  }
  std::vector<float> b;
  if (bias) {
    b.assign(bias, bias + spec.experts);
    for (float& x : b) x = round_gate(x, spec.bias_format == BiasFormat::Bf16 ? GateFormat::Bf16 : GateFormat::Fp32);
  }
  RouteResult own;
  if (!rid || !rw) {
    own = route_from_scores(scores.data(), tokens, bias, spec);
    rid = own.ids.data();
    rw = own.weights.data();
  }
  RoutingVerdict v;
  v.tokens = tokens;
  v.what = "moe routing " + spec.name;
  TokenBounds tb;
  for (std::size_t t = 0; t < tokens; ++t) {
    const std::int32_t *ki = kid + t * Ku, *ri = rid + t * Ku;
    const float *kwt = kw + t * Ku, *rwt = rw + t * Ku;
    if (std::equal(ki, ki + Ku, ri) && std::equal(kwt, kwt + Ku, rwt, same_bits)) {
      ++v.identical_tokens;
      continue;
    }
    std::string problem = structural_problem(ki, spec);
    Feasibility f;
    if (problem.empty()) {
      bounds_for_token(scores.data() + t * Eu, bias ? b.data() : nullptr, spec, opt.pinned, tb);
      f = routing_feasibility(tb, ki, spec, opt.order_sensitive);
      problem = f.problem;
    }
    if (problem.empty()) problem = weight_problem(tb, ki, kwt, spec, v.max_weight_bound_ratio);
    if (!problem.empty()) {
      ++v.violation_tokens;
      if (v.violations.size() < opt.max_listed) v.violations.push_back({t, problem});
    } else if (!std::is_permutation(ki, ki + Ku, ri)) {
      ++v.tie_swapped_tokens;
      if (v.swaps.size() < opt.max_listed) v.swaps.push_back(swap_record(t, ki, ri, tb, f, spec));
    } else if (!std::equal(ki, ki + Ku, ri)) {
      ++v.reordered_tokens;
    } else {
      ++v.weight_only_tokens;
    }
  }
  if (v.violation_tokens) v.kind = VerdictKind::Violation;
  else if (v.identical_tokens == tokens) v.kind = VerdictKind::BitIdentical;
  else v.kind = VerdictKind::WithinBound;
  return v;
}

}  // namespace fp8lab::moe

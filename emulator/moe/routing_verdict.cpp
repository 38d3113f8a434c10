#include "moe/routing_verdict.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <stdexcept>
#include <string>

#include "moe/route.hpp"

namespace fp8lab::moe {

namespace {

std::string hexnum(double v) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%a (%.9g)", v, v);
  return buf;
}
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// One ulp of |x| in a format with `mant` fraction bits and float32's exponent range (fp32, bf16).
double ulp_of(double x, int mant) {
  if (!std::isfinite(x)) return 0;
  const double a = std::fabs(x);
  int e = a == 0 ? -126 : std::ilogb(a);
  if (e < -126) e = -126;
  return std::ldexp(1.0, e - mant);
}

struct TokenBounds {
  std::vector<float> scores, sel;   // gate-format scores, selection scores
  std::vector<double> d_score, d_sel;
};

void bounds_for_token(const float* s, const float* bias, const RouterSpec& spec, TokenBounds& b) {
  const int E = spec.experts;
  b.scores.assign(s, s + E);
  b.sel.resize(static_cast<std::size_t>(E));
  selection_scores(s, bias, spec, b.sel.data());
  b.d_score.resize(static_cast<std::size_t>(E));
  b.d_sel.resize(static_cast<std::size_t>(E));
  const bool bf16 = spec.gate_format == GateFormat::Bf16;
  const int sel_mant = spec.selection_is_bf16() ? 7 : 23;
  for (int e = 0; e < E; ++e) {
    const double v = s[e];
    double d = spec.kernel_score_ulps * ulp_of(v, 23);
    if (spec.score == ScoreFunction::Softmax) d += std::fabs(v) * E * 0x1p-24;
    if (bf16) d += ulp_of(v, 7);
    b.d_score[static_cast<std::size_t>(e)] = d;
    b.d_sel[static_cast<std::size_t>(e)] = d + ulp_of(std::fabs(static_cast<double>(b.sel[static_cast<std::size_t>(e)])) + d, sel_mant);
  }
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// Group score and its bound for group g (mirrors route.cpp's definition).
void group_score(const TokenBounds& b, const RouterSpec& spec, int g, double& score, double& bound) {
  const int per = spec.experts_per_group();
  std::vector<std::pair<std::uint32_t, int>> v;
  for (int i = 0; i < per; ++i) v.push_back({score_order_key(b.sel[static_cast<std::size_t>(g * per + i)]), -(g * per + i)});
  std::sort(v.rbegin(), v.rend());
  const int e0 = -v[0].second;
  if (spec.group_score == GroupScore::Max) {
    score = b.sel[static_cast<std::size_t>(e0)];
    bound = b.d_sel[static_cast<std::size_t>(e0)];
    return;
  }
  const int e1 = -v[1].second;
  score = static_cast<double>(b.sel[static_cast<std::size_t>(e0)]) + b.sel[static_cast<std::size_t>(e1)];
  bound = b.d_sel[static_cast<std::size_t>(e0)] + b.d_sel[static_cast<std::size_t>(e1)] +
          ulp_of(std::fabs(score), spec.selection_is_bf16() ? 7 : 23);
}

}  // namespace

RoutingVerdict compare_routing(const std::int32_t* kid, const float* kw, const std::int32_t* rid, const float* rw,
                               const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec,
                               const RoutingCompareOptions& opt) {
  spec.validate();
  const int K = spec.topk, E = spec.experts;
  const std::size_t Ku = static_cast<std::size_t>(K), Eu = static_cast<std::size_t>(E);
  // Reference scores (for bounds) and, when not given, the reference routing.
  std::vector<float> scores(tokens * Eu);
  if (opt.inputs_are_scores) {
    std::copy(logits, logits + tokens * Eu, scores.begin());
    if (spec.gate_format == GateFormat::Bf16)
      for (float& x : scores) x = round_gate(x, GateFormat::Bf16);
  } else {
    gate_scores(logits, tokens, spec, scores.data());
  }
  std::vector<float> b;
  if (bias) {
    b.assign(bias, bias + E);
    if (spec.bias_format == BiasFormat::Bf16)
      for (float& x : b) x = round_gate(x, GateFormat::Bf16);
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
  std::vector<float> expect(Ku);
  const double u = spec.gate_format == GateFormat::Bf16 ? 0x1p-8 : 0x1p-24;
  const int gate_mant = spec.gate_format == GateFormat::Bf16 ? 7 : 23;

  for (std::size_t t = 0; t < tokens; ++t) {
    const std::int32_t* ki = kid + t * Ku;
    const std::int32_t* ri = rid + t * Ku;
    const float* kwt = kw + t * Ku;
    const float* rwt = rw + t * Ku;
    bool identical = true;
    for (int j = 0; j < K; ++j)
      if (ki[j] != ri[j] || !same_bits(kwt[j], rwt[j])) identical = false;
    if (identical) {
      ++v.identical_tokens;
      continue;
    }
    std::string problem;
    auto violate = [&](const std::string& what) {
      if (problem.empty()) problem = what;
    };
    // Kernel ids must be k distinct experts.
    for (int j = 0; j < K && problem.empty(); ++j) {
      if (ki[j] < 0 || ki[j] >= E) violate("slot " + std::to_string(j) + ": id " + std::to_string(ki[j]) + " is not an expert");
      for (int i = 0; i < j && problem.empty(); ++i)
        if (ki[i] == ki[j]) violate("expert " + std::to_string(ki[j]) + " listed twice");
    }
    // Structural limits hold whatever the scores: at most topk_groups groups, max_nodes nodes.
    if (problem.empty() && (spec.groups > 1 || spec.nodes > 0)) {
      std::vector<int> gs, ns;
      for (int j = 0; j < K; ++j) {
        gs.push_back(ki[j] / spec.experts_per_group());
        if (spec.nodes > 0) ns.push_back(ki[j] / spec.experts_per_node());
      }
      std::sort(gs.begin(), gs.end());
      std::sort(ns.begin(), ns.end());
      const long ng = std::unique(gs.begin(), gs.end()) - gs.begin();
      const long nn = std::unique(ns.begin(), ns.end()) - ns.begin();
      if (spec.groups > 1 && ng > spec.topk_groups)
        violate("experts from " + std::to_string(ng) + " groups, more than topk_groups = " + std::to_string(spec.topk_groups));
      else if (spec.nodes > 0 && nn > spec.max_nodes)
        violate("experts on " + std::to_string(nn) + " nodes, more than max_nodes = " + std::to_string(spec.max_nodes));
    }
    if (opt.pinned && problem.empty()) {
      int j = 0;
      while (j < K && ki[j] == ri[j] && same_bits(kwt[j], rwt[j])) ++j;
      violate("pinned spec: slot " + std::to_string(j) + ": got expert " + std::to_string(ki[j]) + " weight " +
              hexnum(kwt[j]) + ", expected expert " + std::to_string(ri[j]) + " weight " + hexnum(rwt[j]));
    }
    bool swapped = false, reordered = false;
    if (problem.empty()) {
      bounds_for_token(scores.data() + t * Eu, bias ? b.data() : nullptr, spec, tb);
      std::vector<std::int32_t> kset(ki, ki + K), rset(ri, ri + K), konly, ronly;
      std::sort(kset.begin(), kset.end());
      std::sort(rset.begin(), rset.end());
      std::set_difference(kset.begin(), kset.end(), rset.begin(), rset.end(), std::back_inserter(konly));
      std::set_difference(rset.begin(), rset.end(), kset.begin(), kset.end(), std::back_inserter(ronly));
      for (int j = 0; j < K; ++j)
        if (ki[j] != ri[j]) reordered = true;
      if (!konly.empty()) {
        swapped = true;
        TieSwap sw;
        sw.token = t;
        sw.kernel_only = konly;
        sw.reference_only = ronly;
        // Groups: a kernel expert from a group the reference did not select needs a group near-tie.
        if (spec.groups > 1) {
          const int per = spec.experts_per_group();
          std::vector<int> ref_groups;
          for (int j = 0; j < K; ++j) ref_groups.push_back(ri[j] / per);
          double weakest = INFINITY, weakest_bound = 0;
          for (int g : ref_groups) {
            double s, d;
            group_score(tb, spec, g, s, d);
            if (s < weakest || (s == weakest && d > weakest_bound)) weakest = s, weakest_bound = d;
          }
          for (std::int32_t x : konly) {
            const int g = x / per;
            if (std::find(ref_groups.begin(), ref_groups.end(), g) != ref_groups.end()) continue;
            double s, d;
            group_score(tb, spec, g, s, d);
            const double gap = weakest - s, bound = d + weakest_bound;
            if (!(gap <= bound))
              violate("expert " + std::to_string(x) + " from group " + std::to_string(g) +
                      ", not a selected group: its group score " + hexnum(s) + " is " + num(gap) +
                      " below the weakest selected group's, bound " + num(bound));
            sw.gap = std::max(sw.gap, gap);
            sw.bound = std::max(sw.bound, bound);
          }
        }
        for (std::int32_t x : konly) {
          for (std::int32_t y : ronly) {
            const double sx = tb.sel[static_cast<std::size_t>(x)], sy = tb.sel[static_cast<std::size_t>(y)];
            const double gap = sy - sx;
            const double bound = tb.d_sel[static_cast<std::size_t>(x)] + tb.d_sel[static_cast<std::size_t>(y)];
            if (std::isnan(sx) != std::isnan(sy) || !(gap <= bound || (std::isnan(sx) && std::isnan(sy))))
              violate("expert " + std::to_string(x) + " chosen over " + std::to_string(y) + ": selection scores " +
                      hexnum(sx) + " vs " + hexnum(sy) + ", gap " + num(gap) + " > bound " + num(bound));
            if (gap > sw.gap) sw.gap = gap;
            sw.bound = std::max(sw.bound, bound);
          }
        }
        if (problem.empty()) {
          if (v.swaps.size() < opt.max_listed) v.swaps.push_back(sw);
        }
      } else if (reordered && opt.order_sensitive) {
        // Same set in another order: each inverted pair must be a near-tie.
        for (int i = 0; i < K && problem.empty(); ++i)
          for (int j = i + 1; j < K && problem.empty(); ++j) {
            const auto pos = [&](std::int32_t e) { return std::find(ri, ri + K, e) - ri; };
            if (pos(ki[i]) > pos(ki[j])) {
              const double gap = static_cast<double>(tb.sel[static_cast<std::size_t>(ki[j])]) - tb.sel[static_cast<std::size_t>(ki[i])];
              const double bound = tb.d_sel[static_cast<std::size_t>(ki[i])] + tb.d_sel[static_cast<std::size_t>(ki[j])];
              if (!(gap <= bound))
                violate("order: expert " + std::to_string(ki[i]) + " before " + std::to_string(ki[j]) + ", gap " +
                        num(gap) + " > bound " + num(bound));
            }
          }
      }
      // Weights: against the spec's weights for the kernel's own experts, in the kernel's order.
      if (problem.empty()) {
        const float* s = tb.scores.data();
        weights_for_ids(s, ki, spec, expect.data());
        double S = 0, dS = 0;
        for (int j = 0; j < K; ++j) {
          S += s[ki[j]];
          dS += tb.d_score[static_cast<std::size_t>(ki[j])];
        }
        for (int j = 0; j < K && problem.empty(); ++j) {
          const double w = expect[static_cast<std::size_t>(j)], got = kwt[j];
          if (same_bits(kwt[j], expect[static_cast<std::size_t>(j)])) continue;
          const double se = s[ki[j]];
          double rel = 2 * u + K * 0x1p-24;
          if (spec.renormalize) rel += (se != 0 ? tb.d_score[static_cast<std::size_t>(ki[j])] / std::fabs(se) : 0) + (S != 0 ? dS / std::fabs(S) : 0);
          else rel += se != 0 ? tb.d_score[static_cast<std::size_t>(ki[j])] / std::fabs(se) : 0;
          const double bound = (std::fabs(w) * rel + 2 * ulp_of(w, gate_mant)) * 1.01;
          const double err = std::fabs(got - w);
          if (!(err <= bound)) {
            violate("weight of expert " + std::to_string(ki[j]) + " (slot " + std::to_string(j) + "): got " + hexnum(got) +
                    ", expected " + hexnum(w) + ", error " + num(err) + " > bound " + num(bound));
          } else {
            v.max_weight_bound_ratio = std::max(v.max_weight_bound_ratio, bound > 0 ? err / bound : 0.0);
          }
        }
      }
    }
    if (!problem.empty()) {
      ++v.violation_tokens;
      if (v.violations.size() < opt.max_listed) v.violations.push_back({t, problem});
    } else if (swapped) {
      ++v.tie_swapped_tokens;
    } else if (reordered) {
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

std::string RoutingVerdict::summary() const {
  std::string s = what + ": " + std::string(verdict_kind_name(kind)) + " (" + std::to_string(tokens) + " tokens: " +
                  std::to_string(identical_tokens) + " identical, " + std::to_string(weight_only_tokens) +
                  " weights within bound, " + std::to_string(reordered_tokens) + " reordered, " +
                  std::to_string(tie_swapped_tokens) + " near-tie swaps, " + std::to_string(violation_tokens) +
                  " violations)";
  if (!violations.empty()) s += "; first violation: token " + std::to_string(violations[0].token) + ": " + violations[0].what;
  else if (!swaps.empty()) s += "; first swap: token " + std::to_string(swaps[0].token);
  return s;
}

namespace {
std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}
std::string json_ids(const std::vector<std::int32_t>& v) {
  std::string o = "[";
  for (std::size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + std::to_string(v[i]);
  return o + "]";
}
std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

std::string RoutingVerdict::to_json() const {
  std::string j = "{";
  j += "\"identical_tokens\": " + std::to_string(identical_tokens);
  j += ", \"kind\": " + json_str(std::string(verdict_kind_name(kind)));
  j += ", \"max_weight_bound_ratio\": " + json_num(max_weight_bound_ratio);
  j += ", \"reordered_tokens\": " + std::to_string(reordered_tokens);
  j += ", \"swaps\": [";
  for (std::size_t i = 0; i < swaps.size(); ++i) {
    const TieSwap& s = swaps[i];
    j += std::string(i ? ", " : "") + "{\"bound\": " + json_num(s.bound) + ", \"gap\": " + json_num(s.gap) +
         ", \"kernel_only\": " + json_ids(s.kernel_only) + ", \"reference_only\": " + json_ids(s.reference_only) +
         ", \"token\": " + std::to_string(s.token) + "}";
  }
  j += "], \"tie_swapped_tokens\": " + std::to_string(tie_swapped_tokens);
  j += ", \"tokens\": " + std::to_string(tokens);
  j += ", \"violation_tokens\": " + std::to_string(violation_tokens);
  j += ", \"violations\": [";
  for (std::size_t i = 0; i < violations.size(); ++i)
    j += std::string(i ? ", " : "") + "{\"token\": " + std::to_string(violations[i].token) + ", \"what\": " +
         json_str(violations[i].what) + "}";
  j += "], \"weight_only_tokens\": " + std::to_string(weight_only_tokens);
  j += ", \"what\": " + json_str(what) + "}";
  return j;
}

}  // namespace fp8lab::moe

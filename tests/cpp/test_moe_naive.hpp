// A deliberately naive second formulation of the router, for the tests: sort everything with
// std::stable_sort and a comparator written out by hand, mask by building explicit lists, round
// to bf16 through the general formats encoder (not pinned_math's bit trick). It shares nothing
// with emulator/moe/route.cpp except RouterSpec and the score function's results.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "moe/router_spec.hpp"

namespace naive {

inline float bf16(float x) {
  fp8lab::EncodeOptions o;
  o.overflow = fp8lab::Overflow::InfOrNan;
  return static_cast<float>(fp8lab::round_to_format(x, fp8lab::format_by_name("bf16"), o));
}

// "a is preferred to b": larger value first; NaN after everything; equal values keep index order
// (the caller sorts indices that start in ascending order with a stable sort).
inline bool before(float a, float b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return a > b;
}

inline std::vector<int> sorted_by_score(const std::vector<float>& v, std::vector<int> idx) {
  std::sort(idx.begin(), idx.end());
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return before(v[static_cast<std::size_t>(a)], v[static_cast<std::size_t>(b)]); });
  return idx;
}

struct Route {
  std::vector<std::int32_t> ids;
  std::vector<float> w;
};

// One token. `scores` are gate-format scores, `bias` may be null (values rounded to the bias format
// by the caller or here).
inline Route route_token(const float* scores, const float* bias, const fp8lab::moe::RouterSpec& spec) {
  using namespace fp8lab::moe;
  const int E = spec.experts;
  const bool sel_bf16 = spec.gate_format == GateFormat::Bf16 && spec.bias_format == BiasFormat::Bf16;
  std::vector<float> sel(static_cast<std::size_t>(E));
  for (int e = 0; e < E; ++e) {
    float s = scores[e];
    if (bias) {
      float b = spec.bias_format == BiasFormat::Bf16 ? bf16(bias[e]) : bias[e];
      s = s + b;
      if (sel_bf16) s = bf16(s);
    }
    sel[static_cast<std::size_t>(e)] = s;
  }
  std::vector<int> allowed(static_cast<std::size_t>(E));
  std::iota(allowed.begin(), allowed.end(), 0);
  if (spec.groups > 1) {
    const int per = E / spec.groups;
    std::vector<float> gscore;
    for (int g = 0; g < spec.groups; ++g) {
      std::vector<int> members;
      for (int i = 0; i < per; ++i) members.push_back(g * per + i);
      members = sorted_by_score(sel, members);
      float gs;
      if (spec.group_score == GroupScore::Max) gs = sel[static_cast<std::size_t>(members[0])];
      else {
        gs = sel[static_cast<std::size_t>(members[0])] + sel[static_cast<std::size_t>(members[1])];
        if (sel_bf16) gs = bf16(gs);
      }
      gscore.push_back(gs);
    }
    std::vector<int> gidx(static_cast<std::size_t>(spec.groups));
    std::iota(gidx.begin(), gidx.end(), 0);
    gidx = sorted_by_score(gscore, gidx);
    std::vector<int> keep;
    for (int e : allowed)
      for (int r = 0; r < spec.topk_groups; ++r)
        if (e / per == gidx[static_cast<std::size_t>(r)]) keep.push_back(e);
    allowed = keep;
  }
  if (spec.nodes > 0) {
    const int per = E / spec.nodes;
    const int take = (spec.topk + spec.max_nodes - 1) / spec.max_nodes;
    std::vector<float> nscore;
    std::vector<int> nidx;
    for (int n = 0; n < spec.nodes; ++n) {
      std::vector<int> members;
      for (int e : allowed)
        if (e / per == n) members.push_back(e);
      if (members.empty()) continue;
      members = sorted_by_score(sel, members);
      float sum = 0;
      for (int j = 0; j < take && j < static_cast<int>(members.size()); ++j) sum = sum + sel[static_cast<std::size_t>(members[static_cast<std::size_t>(j)])];
      if (sel_bf16) sum = bf16(sum);
      nscore.push_back(sum);
      nidx.push_back(n);
    }
    std::vector<int> order(nidx.size());
    std::iota(order.begin(), order.end(), 0);
    order = sorted_by_score(nscore, order);
    std::vector<int> keep;
    for (int e : allowed)
      for (int r = 0; r < spec.max_nodes && r < static_cast<int>(order.size()); ++r)
        if (e / per == nidx[static_cast<std::size_t>(order[static_cast<std::size_t>(r)])]) keep.push_back(e);
    allowed = keep;
  }
  const std::vector<int> ranked = sorted_by_score(sel, allowed);
  Route r;
  float sum = 0;
  for (int j = 0; j < spec.topk; ++j) {
    const int e = ranked[static_cast<std::size_t>(j)];
    r.ids.push_back(e);
    r.w.push_back(scores[e]);
    sum = sum + scores[e];
  }
  const bool g16 = spec.gate_format == GateFormat::Bf16;
  if (spec.renormalize) {
    float d = (g16 ? bf16(sum) : sum) + static_cast<float>(spec.renorm_epsilon);
    for (float& w : r.w) {
      w = w / d;
      if (g16) w = bf16(w);
    }
  }
  if (spec.scale_target == ScaleTarget::Weights)
    for (float& w : r.w) {
      w = w * static_cast<float>(spec.routed_scale);
      if (g16) w = bf16(w);
    }
  if (spec.weights_format == GateFormat::Bf16)
    for (float& w : r.w) w = bf16(w);
  return r;
}

}  // namespace naive

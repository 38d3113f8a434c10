#include "moe/routing_feasible.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>

#include "moe/route.hpp"
#include "moe/routing_number_text.hpp"

namespace fp8lab::moe {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Rank values: doubles whose order is route.hpp's score order. NaN ranks lowest (-inf here) and
// -inf just above it (-DBL_MAX: no float score minus its bound reaches it).
double rank_of(double x) { return std::isnan(x) ? -kInf : (x == -kInf ? -DBL_MAX : x); }
double real_of(double r) { return r == -kInf ? std::numeric_limits<double>::quiet_NaN() : (r == -DBL_MAX ? -kInf : r); }

using detail::hexnum;
using detail::num;

// The score of a unit (group or node) from the rank values of its eligible experts: the sum of the
// `take` largest (route.cpp: float32 sum, largest first, rounded to the selection format once;
// NaN if one of them is NaN). Exact: that arithmetic. Else widened by the rounding the kernel may
// do differently (one float32 ulp per addition plus one selection ulp), up (dir > 0) or down.
double unit_score(std::vector<double> v, int take, bool exact, bool sel_bf16, int dir) {
  const int n = std::min<int>(take, static_cast<int>(v.size()));
  std::partial_sort(v.begin(), v.begin() + n, v.end(), std::greater<>());
  if (exact) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += static_cast<float>(real_of(v[static_cast<std::size_t>(i)]));
    return rank_of(round_gate(sum, sel_bf16 ? GateFormat::Bf16 : GateFormat::Fp32));
  }
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += real_of(v[static_cast<std::size_t>(i)]);
  if (n >= 2) sum += dir * ((n - 1) * ulp_of(sum, 23) + ulp_of(sum, sel_bf16 ? 7 : 23));
  return rank_of(sum);
}

// Is there a set S of m present units holding every `must` unit, none `banned`, with
// min_S hi >= max_{present, not S} lo? Fills `chosen` (a witness) when there is.
bool selection_units(const std::vector<double>& hi, const std::vector<double>& lo, const std::vector<char>& present,
                     const std::vector<char>& must, const std::vector<char>& banned, int m, std::vector<char>& chosen) {
  const std::size_t U = hi.size();
  for (std::size_t c = 0; c < U; ++c) {
    if (!present[c] || banned[c]) continue;
    const double theta = hi[c];
    std::vector<char> s(U, 0);
    int count = 0;
    bool fails = false;
    for (std::size_t u = 0; u < U && !fails; ++u) {
      if (!present[u]) continue;
      if (must[u] && hi[u] < theta) fails = true;
      if (must[u] || lo[u] > theta) {
        if (banned[u]) fails = true;
        s[u] = 1;
        ++count;
      }
    }
    if (fails || count > m) continue;
    std::vector<std::pair<double, std::size_t>> extra;
    for (std::size_t u = 0; u < U; ++u)
      if (present[u] && !banned[u] && !s[u] && hi[u] >= theta) extra.push_back({-hi[u], u});
    if (count + static_cast<int>(extra.size()) < m) continue;
    std::sort(extra.begin(), extra.end());
    for (int i = 0; count < m; ++i, ++count) s[extra[static_cast<std::size_t>(i)].second] = 1;
    chosen = s;
    return true;
  }
  return false;
}

struct Unitising {
  const char* noun;            // "group", "node"
  int per = 0, units = 0, m = 0, take = 0;
};

}  // namespace

Feasibility routing_feasibility(const TokenBounds& b, const std::int32_t* ids, const RouterSpec& spec, bool ordered) {
  Feasibility f;
  const int K = spec.topk, E = spec.experts;
  const std::size_t Eu = static_cast<std::size_t>(E);
  std::vector<double> lo(Eu), hi(Eu), top(Eu);
  for (std::size_t e = 0; e < Eu; ++e) {
    const double r = rank_of(b.sel[e]);
    const bool finite = std::isfinite(b.sel[e]);
    lo[e] = finite ? r - b.d_sel[e] : r;
    hi[e] = finite ? r + b.d_sel[e] : r;
  }
  std::vector<char> chosen(Eu, 0);
  for (int j = 0; j < K; ++j) chosen[static_cast<std::size_t>(ids[j])] = 1;
  auto gap_text = [&](std::int32_t x, std::int32_t y) {
    const std::size_t xu = static_cast<std::size_t>(x), yu = static_cast<std::size_t>(y);
    return "selection scores " + hexnum(b.sel[xu]) + " < " + hexnum(b.sel[yu]) + ", gap " +
           num(static_cast<double>(b.sel[yu]) - b.sel[xu]) + " > bound " + num(b.d_sel[xu] + b.d_sel[yu]);
  };
  // R raised as far as it may go; t its lowest value, held by expert `weakest`.
  std::int32_t weakest = ids[0];
  double t = kInf;
  for (int j = 0; j < K; ++j) {
    const std::size_t e = static_cast<std::size_t>(ids[j]);
    top[e] = ordered ? std::min(hi[e], t) : hi[e];
    if (top[e] < lo[e]) {
      f.problem = "order: expert " + std::to_string(ids[j - 1]) + " listed before " + std::to_string(ids[j]) + ": " +
                  gap_text(ids[j - 1], ids[j]);
      return f;
    }
    if (top[e] <= t) t = top[e], weakest = ids[j];
  }
  // Eligible experts of a candidate unit sit at most at t; the rest of the expert values.
  auto value_hi = [&](std::size_t e) { return chosen[e] ? top[e] : std::min(hi[e], t); };
  std::vector<char> eligible(Eu, 1);

  auto limit = [&](const Unitising& u) -> bool {
    std::vector<double> uhi(static_cast<std::size_t>(u.units)), ulo(uhi.size());
    std::vector<char> present(uhi.size(), 0), must(uhi.size(), 0), banned(uhi.size(), 0), pick;
    std::int32_t outranker = -1;
    for (int g = 0; g < u.units; ++g) {
      std::vector<double> vh, vl;
      const std::size_t gu = static_cast<std::size_t>(g);
      for (int i = 0; i < u.per; ++i) {
        const std::size_t e = static_cast<std::size_t>(g * u.per + i);
        if (!eligible[e]) continue;
        vh.push_back(value_hi(e));
        vl.push_back(lo[e]);
        if (chosen[e]) must[gu] = 1;
        else if (lo[e] > t) banned[gu] = 1, outranker = static_cast<std::int32_t>(e);
      }
      if (vh.empty()) continue;
      if (must[gu]) banned[gu] = 0;  // an outranking expert there is the expert-level check's
      present[gu] = 1;
      uhi[gu] = unit_score(vh, u.take, b.exact, spec.selection_is_bf16(), +1);
      ulo[gu] = unit_score(vl, u.take, b.exact, spec.selection_is_bf16(), -1);
    }
    const int m = std::min<int>(u.m, static_cast<int>(std::count(present.begin(), present.end(), 1)));
    if (selection_units(uhi, ulo, present, must, banned, m, pick)) {
      for (std::size_t e = 0; e < Eu; ++e)
        if (!pick[e / static_cast<std::size_t>(u.per)]) eligible[e] = 0;
      if (u.noun[0] == 'g')
        for (int g = 0; g < u.units; ++g)
          if (pick[static_cast<std::size_t>(g)]) f.groups.push_back(g);
      return true;
    }
    // Name the weakest unit the kernel used and the units that outrank it.
    int weak = -1;
    for (int g = 0; g < u.units; ++g)
      if (must[static_cast<std::size_t>(g)] && (weak < 0 || uhi[static_cast<std::size_t>(g)] < uhi[static_cast<std::size_t>(weak)])) weak = g;
    std::vector<double> others;
    for (int g = 0; g < u.units; ++g)
      if (g != weak && present[static_cast<std::size_t>(g)]) others.push_back(ulo[static_cast<std::size_t>(g)]);
    std::sort(others.rbegin(), others.rend());
    std::int32_t from_weak = -1;
    for (int j = 0; j < K && from_weak < 0; ++j)
      if (ids[j] / u.per == weak) from_weak = ids[j];
    const std::string head = "expert " + std::to_string(from_weak) + " from " + u.noun + " " + std::to_string(weak);
    if (static_cast<int>(others.size()) >= u.m && others[static_cast<std::size_t>(u.m - 1)] > uhi[static_cast<std::size_t>(weak)])
      f.problem = head + ", not a selected " + u.noun + ": its " + u.noun + " score is at most " +
                  hexnum(real_of(uhi[static_cast<std::size_t>(weak)])) + " but " + std::to_string(u.m) + " other " +
                  u.noun + "s score at least " + hexnum(real_of(others[static_cast<std::size_t>(u.m - 1)])) +
                  " (bounds included)";
    else if (outranker >= 0)
      f.problem = head + ": no choice of " + std::to_string(u.m) + " " + u.noun + "s holds the kernel's experts " +
                  "and leaves out expert " + std::to_string(outranker) + " (" + gap_text(weakest, outranker) + ")";
    else
      f.problem = head + ": no choice of " + std::to_string(u.m) + " " + u.noun + "s holds the kernel's experts";
    return false;
  };

  if (spec.groups > 1 &&
      !limit({"group", spec.experts_per_group(), spec.groups, spec.topk_groups,
              spec.group_score == GroupScore::Max ? 1 : 2}))
    return f;
  if (spec.nodes > 0 &&
      !limit({"node", spec.experts_per_node(), spec.nodes, spec.max_nodes, (K + spec.max_nodes - 1) / spec.max_nodes}))
    return f;
  // Within the selected units no other expert may outrank R.
  std::int32_t y = -1;
  for (std::size_t e = 0; e < Eu; ++e)
    if (eligible[e] && !chosen[e] && lo[e] > t && (y < 0 || lo[e] > lo[static_cast<std::size_t>(y)])) y = static_cast<std::int32_t>(e);
  if (y >= 0) f.problem = "expert " + std::to_string(weakest) + " chosen over " + std::to_string(y) + ": " + gap_text(weakest, y);
  return f;
}

}  // namespace fp8lab::moe

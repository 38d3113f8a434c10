// The routing verdict accepts exactly the routings that are a top-k under some resolution of the
// ties, checked against a brute-force enumeration: on small specs (8 or 12 experts, 4 groups, top-2
// groups, top-k 2..4) with scores drawn from a tiny set (so experts and groups tie often; -inf and
// NaN included), every tie-break order of the groups and of the eligible experts is tried; the
// routings they give are the correct ones. Every ordered k-tuple of distinct experts is then
// judged: accepted iff it is one of them (order-sensitive), or a permutation of one (as a set),
// in the pinned mode (zero bounds) and the default mode (the scores sit 0.25 apart, far beyond the
// certified bounds, so the two must agree).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "moe/route.hpp"
#include "moe/routing_verdict.hpp"

namespace {

using namespace fp8lab::moe;
using Tuple = std::vector<std::int32_t>;

struct TieCase {
  RouterSpec spec;
  std::vector<float> scores, bias;  // bias empty: none
};

rc::Gen<TieCase> genTieCase() {
  return rc::gen::exec([] {
    TieCase c;
    c.spec.name = "ties";
    c.spec.experts = *rc::gen::element(8, 12);
    c.spec.groups = 4;
    c.spec.topk_groups = 2;
    c.spec.topk = *rc::gen::inRange(2, 5);
    c.spec.group_score = *rc::gen::element(GroupScore::Top2Sum, GroupScore::Max);
    c.spec.gate_format = GateFormat::Fp32;
    c.spec.bias_format = BiasFormat::Fp32;
    c.spec.routed_scale = 2.5;
    c.spec.validate();
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const bool specials = *rc::gen::inRange(0, 3) == 0;
    for (int e = 0; e < c.spec.experts; ++e)
      c.scores.push_back(specials ? *rc::gen::element(0.0f, 0.5f, 0.75f, -inf, nan) : *rc::gen::element(0.0f, 0.25f, 0.5f, 0.75f));
    if (*rc::gen::arbitrary<bool>())
      for (int e = 0; e < c.spec.experts; ++e) c.bias.push_back(*rc::gen::element(0.0f, 0.25f));
    return c;
  });
}

// route.hpp's order on one value: larger first, NaN last; `prio` breaks ties (lower first).
bool before(float a, int pa, float b, int pb) {
  const std::uint32_t ka = score_order_key(a), kb = score_order_key(b);
  return ka != kb ? ka > kb : pa < pb;
}

// Every routing some tie resolution gives: all orders of the groups among themselves, then all
// orders of the eligible experts, as tie-breakers.
std::set<Tuple> all_tie_resolutions(const TieCase& c) {
  const RouterSpec& s = c.spec;
  const int per = s.experts_per_group();
  std::vector<float> sel(static_cast<std::size_t>(s.experts));
  selection_scores(c.scores.data(), c.bias.empty() ? nullptr : c.bias.data(), s, sel.data());
  std::vector<float> gscore;
  for (int g = 0; g < s.groups; ++g) {
    std::vector<float> v(sel.begin() + g * per, sel.begin() + (g + 1) * per);
    std::sort(v.begin(), v.end(), [](float a, float b) { return before(a, 0, b, 1); });
    gscore.push_back(s.group_score == GroupScore::Max ? v[0] : v[0] + v[1]);  // NaN in the top 2: NaN
  }
  std::set<std::vector<int>> group_sets;
  std::vector<int> gperm(static_cast<std::size_t>(s.groups));
  std::iota(gperm.begin(), gperm.end(), 0);
  do {
    std::vector<int> order(gperm.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return before(gscore[static_cast<std::size_t>(a)], gperm[static_cast<std::size_t>(a)], gscore[static_cast<std::size_t>(b)],
                    gperm[static_cast<std::size_t>(b)]);
    });
    std::vector<int> chosen(order.begin(), order.begin() + s.topk_groups);
    std::sort(chosen.begin(), chosen.end());
    group_sets.insert(chosen);
  } while (std::next_permutation(gperm.begin(), gperm.end()));
  std::set<Tuple> out;
  for (const std::vector<int>& gs : group_sets) {
    std::vector<int> eligible;
    for (int g : gs)
      for (int i = 0; i < per; ++i) eligible.push_back(g * per + i);
    std::vector<int> eperm(eligible.size());
    std::iota(eperm.begin(), eperm.end(), 0);
    do {
      std::vector<int> idx(eligible.size());
      std::iota(idx.begin(), idx.end(), 0);
      std::sort(idx.begin(), idx.end(), [&](int a, int b) {
        return before(sel[static_cast<std::size_t>(eligible[static_cast<std::size_t>(a)])], eperm[static_cast<std::size_t>(a)],
                      sel[static_cast<std::size_t>(eligible[static_cast<std::size_t>(b)])], eperm[static_cast<std::size_t>(b)]);
      });
      Tuple t;
      for (int j = 0; j < s.topk; ++j) t.push_back(eligible[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])]);
      out.insert(t);
    } while (std::next_permutation(eperm.begin(), eperm.end()));
  }
  return out;
}

// Every ordered k-tuple of distinct experts.
std::vector<Tuple> all_tuples(int experts, int k) {
  std::vector<Tuple> out;
  Tuple t;
  std::vector<char> used(static_cast<std::size_t>(experts), 0);
  auto rec = [&](auto&& self) -> void {
    if (static_cast<int>(t.size()) == k) return out.push_back(t);
    for (int e = 0; e < experts; ++e) {
      if (used[static_cast<std::size_t>(e)]) continue;
      used[static_cast<std::size_t>(e)] = 1;
      t.push_back(e);
      self(self);
      t.pop_back();
      used[static_cast<std::size_t>(e)] = 0;
    }
  };
  rec(rec);
  return out;
}

RC_GTEST_PROP(MoeVerdictTies, AcceptsExactlyTheTopKOfSomeTieResolution, ()) {
  const TieCase c = *genTieCase();
  const RouterSpec& s = c.spec;
  const std::set<Tuple> correct = all_tie_resolutions(c);
  std::set<Tuple> correct_sets;
  for (Tuple t : correct) {
    std::sort(t.begin(), t.end());
    correct_sets.insert(t);
  }
  // The emulator's own routing is one of them.
  const RouteResult own = route_from_scores(c.scores.data(), 1, c.bias.empty() ? nullptr : c.bias.data(), s);
  RC_ASSERT(correct.count(own.ids) == 1u);
  // Judge every tuple at once: one token per tuple, with the spec's weights for its experts.
  const std::vector<Tuple> tuples = all_tuples(s.experts, s.topk);
  const std::size_t T = tuples.size(), K = static_cast<std::size_t>(s.topk), E = static_cast<std::size_t>(s.experts);
  std::vector<std::int32_t> ids;
  std::vector<float> w(T * K), scores;
  for (std::size_t i = 0; i < T; ++i) {
    ids.insert(ids.end(), tuples[i].begin(), tuples[i].end());
    weights_for_ids(c.scores.data(), tuples[i].data(), s, w.data() + i * K);
    scores.insert(scores.end(), c.scores.begin(), c.scores.end());
  }
  (void)E;
  for (const bool pinned : {true, false})
    for (const bool ordered : {true, false}) {
      RoutingCompareOptions o;
      o.inputs_are_scores = true;
      o.pinned = pinned;
      o.order_sensitive = ordered;
      o.max_listed = T;
      const RoutingVerdict v = compare_routing(ids.data(), w.data(), nullptr, nullptr, scores.data(), T,
                                               c.bias.empty() ? nullptr : c.bias.data(), s, o);
      std::vector<char> rejected(T, 0);
      for (const RoutingViolation& x : v.violations) rejected[x.token] = 1;
      for (std::size_t i = 0; i < T; ++i) {
        Tuple set = tuples[i];
        std::sort(set.begin(), set.end());
        const bool ok = ordered ? correct.count(tuples[i]) == 1 : correct_sets.count(set) == 1;
        if (ok == !rejected[i]) continue;
        std::string what;
        for (const RoutingViolation& x : v.violations)
          if (x.token == i) what = x.what;
        RC_FAIL("pinned " + std::to_string(pinned) + " ordered " + std::to_string(ordered) + " tuple #" +
                std::to_string(i) + (ok ? " is a tie resolution but was rejected: " + what : " was accepted but is none"));
      }
    }
}

}  // namespace

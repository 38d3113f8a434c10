// The tie-aware routing verdict on engineered kernels: identical, near-tie swaps (experts and
// groups), exact group ties resolved the other way, a selected group none of whose experts won,
// all -inf tokens with NaN weights, far swaps, weight errors, pinned specs, malformed ids.
// (prop_moe_ties checks the verdict against an enumeration of every tie resolution.)
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "moe/route.hpp"
#include "moe/routing_verdict.hpp"

namespace {

using namespace fp8lab::moe;

struct Case {
  RouterSpec spec = router_recipe("deepseek_v3_hf");
  std::vector<float> scores = std::vector<float>(256, 0.1f);
};

RoutingCompareOptions scores_in() {
  RoutingCompareOptions o;
  o.inputs_are_scores = true;
  return o;
}

// Expert-level near tie inside one group: experts 0..6 at 0.9, expert 7 at 0.5, expert 8 one
// float32 ulp below 0.5. The reference takes 7; a kernel taking 8 is a near-tie swap.
Case expert_tie(float runner_up) {
  Case c;
  for (int e = 0; e < 7; ++e) c.scores[static_cast<std::size_t>(e)] = 0.9f;
  c.scores[7] = 0.5f;
  c.scores[8] = runner_up;
  return c;
}

RoutingVerdict judge(const Case& c, std::vector<std::int32_t> kid, const RoutingCompareOptions& o = scores_in(),
                     const std::vector<float>* kw_in = nullptr) {
  std::vector<float> kw(8);
  if (kw_in) kw = *kw_in;
  else weights_for_ids(c.scores.data(), kid.data(), c.spec, kw.data());
  return compare_routing(kid.data(), kw.data(), nullptr, nullptr, c.scores.data(), 1, nullptr, c.spec, o);
}

TEST(MoeVerdict, IdenticalRoutingIsBitIdentical) {
  const Case c = expert_tie(0.25f);
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  const RoutingVerdict v = compare_routing(r.ids.data(), r.weights.data(), nullptr, nullptr, c.scores.data(), 1,
                                           nullptr, c.spec, scores_in());
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::BitIdentical) << v.summary();
  EXPECT_EQ(v.identical_tokens, 1u);
}

TEST(MoeVerdict, NearTieSwapIsWithinBoundAndNamed) {
  const Case c = expert_tie(std::nextafter(0.5f, 0.0f));
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  ASSERT_EQ(r.ids[7], 7);
  const RoutingVerdict v = judge(c, {0, 1, 2, 3, 4, 5, 6, 8});
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
  ASSERT_EQ(v.swaps.size(), 1u);
  EXPECT_EQ(v.swaps[0].token, 0u);
  EXPECT_EQ(v.swaps[0].kernel_only, (std::vector<std::int32_t>{8}));
  EXPECT_EQ(v.swaps[0].reference_only, (std::vector<std::int32_t>{7}));
  EXPECT_NE(v.to_json().find("\"kind\": \"within-bound\""), std::string::npos);
  // The same swap under a pinned spec is a violation.
  RoutingCompareOptions pinned = scores_in();
  pinned.pinned = true;
  EXPECT_EQ(judge(c, {0, 1, 2, 3, 4, 5, 6, 8}, pinned).kind, fp8lab::VerdictKind::Violation);
}

TEST(MoeVerdict, FarSwapIsAViolation) {
  const Case c = expert_tie(0.4f);
  const RoutingVerdict v = judge(c, {0, 1, 2, 3, 4, 5, 6, 8});
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::Violation);
  ASSERT_EQ(v.violations.size(), 1u);
  EXPECT_NE(v.violations[0].what.find("expert 8 chosen over 7"), std::string::npos) << v.violations[0].what;
}

// The bound scales with the gate format: a gap of 2^-9 at 0.5 is within two bf16 ulps (a
// bf16-gate kernel may land on either side) but hundreds of float32 ulps.
TEST(MoeVerdict, BoundComesFromTheGateFormat) {
  Case c = expert_tie(0.5f - 0x1p-9f);
  EXPECT_EQ(judge(c, {0, 1, 2, 3, 4, 5, 6, 8}).kind, fp8lab::VerdictKind::Violation);
  c.spec = router_recipe("deepseek_v3");
  for (float& s : c.scores) s = fp8lab::moe::round_gate(s, GateFormat::Bf16);
  c.scores[8] = 0.5f - 0x1p-9f;  // a bf16 value (0x1.ffp-2)
  EXPECT_EQ(judge(c, {0, 1, 2, 3, 4, 5, 6, 8}).kind, fp8lab::VerdictKind::WithinBound);
}

TEST(MoeVerdict, GroupNearTieAndFarGroup) {
  Case c;
  for (int g = 0; g < 3; ++g) c.scores[static_cast<std::size_t>(g * 32)] = c.scores[static_cast<std::size_t>(g * 32 + 1)] = 0.9f;
  c.scores[96] = c.scores[97] = 0.6f;                               // group 3: sum 1.2
  c.scores[128] = 0.6f;
  c.scores[129] = std::nextafter(0.6f, 0.0f);                        // group 4: a hair below
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  ASSERT_EQ(r.ids[6], 96);
  const RoutingVerdict v = judge(c, {0, 1, 32, 33, 64, 65, 128, 129});
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
  // Group 4 well below: choosing its experts is a violation naming the unselected group.
  c.scores[129] = 0.45f;
  const RoutingVerdict far = judge(c, {0, 1, 32, 33, 64, 65, 128, 129});
  EXPECT_EQ(far.kind, fp8lab::VerdictKind::Violation);
  ASSERT_FALSE(far.violations.empty());
  EXPECT_NE(far.violations[0].what.find("not a selected group"), std::string::npos) << far.violations[0].what;
}

TEST(MoeVerdict, WeightsWithinAndBeyondTheirBound) {
  Case c = expert_tie(0.25f);
  c.spec = router_recipe("deepseek_v3");
  for (float& s : c.scores) s = fp8lab::moe::round_gate(s, GateFormat::Bf16);
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  std::vector<float> w = r.weights;
  w[3] = std::nextafter(w[3], 10.0f);  // one float32 ulp off a bf16 weight: within bound
  RoutingVerdict v = judge(c, r.ids, scores_in(), &w);
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
  EXPECT_EQ(v.weight_only_tokens, 1u);
  w[3] = r.weights[3] * 1.1f;  // 10% off
  v = judge(c, r.ids, scores_in(), &w);
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::Violation);
  EXPECT_NE(v.violations[0].what.find("weight of expert"), std::string::npos) << v.violations[0].what;
}

TEST(MoeVerdict, OrderAndMalformedIds) {
  const Case c = expert_tie(0.25f);
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  // Expert 7 (0.5) listed before the 0.9 experts: fine as a set, a violation when order matters.
  std::vector<std::int32_t> ids = {7, 0, 1, 2, 3, 4, 5, 6};
  RoutingVerdict v = judge(c, ids);
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
  EXPECT_EQ(v.reordered_tokens, 1u);
  RoutingCompareOptions o = scores_in();
  o.order_sensitive = true;
  EXPECT_EQ(judge(c, ids, o).kind, fp8lab::VerdictKind::Violation);
  // Equal scores 0..6 (all 0.9) may come in any order even when order matters.
  EXPECT_EQ(judge(c, {1, 0, 2, 3, 4, 5, 6, 7}, o).kind, fp8lab::VerdictKind::WithinBound);
  const std::vector<float> w(8, 0.3125f);
  EXPECT_EQ(judge(c, {0, 0, 1, 2, 3, 4, 5, 6}, scores_in(), &w).kind, fp8lab::VerdictKind::Violation);
  EXPECT_EQ(judge(c, {0, 1, 2, 3, 4, 5, 6, 256}, scores_in(), &w).kind, fp8lab::VerdictKind::Violation);
}

// A kernel that ignores the node limit is a violation even when every swap is a near-tie.
TEST(MoeVerdict, NodeLimitIsStructural) {
  Case c;
  c.spec.groups = 1;
  c.spec.topk_groups = 1;
  c.spec.nodes = 8;
  c.spec.max_nodes = 2;
  for (int e = 0; e < 256; ++e) c.scores[static_cast<std::size_t>(e)] = 0.5f;  // all tied
  const RouteResult r = route_from_scores(c.scores.data(), 1, nullptr, c.spec);
  EXPECT_EQ(r.ids, (std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  // Same scores, experts spread over 3 nodes (0, 1, 2): ties, but 3 nodes > max_nodes 2.
  const RoutingVerdict v = judge(c, {0, 1, 2, 3, 4, 5, 32, 64});
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::Violation);
  ASSERT_FALSE(v.violations.empty());
  EXPECT_NE(v.violations[0].what.find("max_nodes"), std::string::npos) << v.violations[0].what;
  EXPECT_EQ(judge(c, {0, 1, 2, 3, 4, 5, 32, 33}).kind, fp8lab::VerdictKind::WithinBound);
}

// A small spec: 8 experts in 4 groups of 2, top-2 groups, top-2 experts, fp32, no bias.
RouterSpec small_spec() {
  RouterSpec s;
  s.name = "small";
  s.experts = 8;
  s.groups = 4;
  s.topk_groups = 2;
  s.topk = 2;
  return s;
}

RoutingVerdict judge_small(const std::vector<float>& scores, std::vector<std::int32_t> kid, bool pinned = false) {
  const RouterSpec s = small_spec();
  std::vector<float> kw(2);
  weights_for_ids(scores.data(), kid.data(), s, kw.data());
  RoutingCompareOptions o = scores_in();
  o.pinned = pinned;
  return compare_routing(kid.data(), kw.data(), nullptr, nullptr, scores.data(), 1, nullptr, s, o);
}

// Groups 0 and 1 tie exactly (top-2 sums 1.0); the reference takes group 0 (lower index) and its
// expert 0 (0.875); a kernel that takes group 1 correctly returns its expert 2 (0.75), although
// 0.875 > 0.75 — expert 0 is not eligible under the kernel's group choice.
TEST(MoeVerdict, ExactGroupTieResolvedTheOtherWay) {
  const std::vector<float> s = {0.875f, 0.125f, 0.75f, 0.25f, 0.625f, 0.625f, 0.0f, 0.0f};
  const RouteResult r = route_from_scores(s.data(), 1, nullptr, small_spec());
  ASSERT_EQ(r.ids, (std::vector<std::int32_t>{0, 4}));
  for (bool pinned : {false, true}) {
    const RoutingVerdict v = judge_small(s, {4, 2}, pinned);
    EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
    ASSERT_EQ(v.swaps.size(), 1u);
    EXPECT_EQ(v.swaps[0].kernel_only, (std::vector<std::int32_t>{2}));
    EXPECT_EQ(v.swaps[0].gap, 0.0);  // expert 0 was not eligible for this kernel: no score gap
  }
  // Group 3 (sum 0) is not tied with anything: its experts are a violation.
  const RoutingVerdict far = judge_small(s, {4, 6});
  EXPECT_EQ(far.kind, fp8lab::VerdictKind::Violation);
  EXPECT_NE(far.violations[0].what.find("not a selected group"), std::string::npos) << far.violations[0].what;
  // Within the kernel's groups the top-2 must still win: {2, 3} drops expert 4 (0.625 > 0.25).
  EXPECT_EQ(judge_small(s, {2, 3}).kind, fp8lab::VerdictKind::Violation);
}

// Group 2 = {0.625, 0.625} wins; groups 0 = {0.875, 0.125} and 1 = {0.5, 0.5} tie for second.
// Choosing group 1 makes both experts of group 2 the top-2: a selected group (1) none of whose
// experts won, which only a tie resolution of the groups explains.
TEST(MoeVerdict, SelectedGroupWithoutWinningExperts) {
  const std::vector<float> s = {0.875f, 0.125f, 0.5f, 0.5f, 0.625f, 0.625f, 0.0f, 0.0f};
  const RouteResult r = route_from_scores(s.data(), 1, nullptr, small_spec());
  ASSERT_EQ(r.ids, (std::vector<std::int32_t>{0, 4}));
  const RoutingVerdict v = judge_small(s, {4, 5}, true);
  EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
  // Without the tie (group 1 a little lower) the same routing is wrong.
  std::vector<float> s2 = s;
  s2[3] = 0.25f;
  const RoutingVerdict w = judge_small(s2, {4, 5});
  EXPECT_EQ(w.kind, fp8lab::VerdictKind::Violation) << w.summary();
  EXPECT_NE(w.violations[0].what.find("leaves out expert 0"), std::string::npos) << w.violations[0].what;
}

// An all -inf token: every score is 0, every expert and group ties, the weights are 0/0. A kernel
// returning another tie resolution with CUDA's canonical NaN (0x7FFFFFFF) is right; a number where
// NaN is due is not.
TEST(MoeVerdict, AllMinusInfTokenWithNaNWeights) {
  const RouterSpec spec = router_recipe("deepseek_v3");
  const std::vector<float> logits(256, -std::numeric_limits<float>::infinity());
  const RouteResult r = route(logits.data(), 1, nullptr, spec);
  ASSERT_TRUE(std::isnan(r.weights[0]));
  std::vector<std::int32_t> ids = {255, 254, 253, 252, 200, 199, 198, 160};  // groups 7, 6, 5
  std::vector<float> w(8, std::bit_cast<float>(0x7FFFFFFFu));
  for (bool pinned : {false, true}) {
    RoutingCompareOptions o;
    o.pinned = pinned;
    const RoutingVerdict v = compare_routing(ids.data(), w.data(), nullptr, nullptr, logits.data(), 1, nullptr, spec, o);
    EXPECT_EQ(v.kind, fp8lab::VerdictKind::WithinBound) << v.summary();
    // The same ids and NaN bits as the reference's are identical, whatever the NaN's payload.
    std::vector<float> rw = r.weights;
    const RoutingVerdict same = compare_routing(r.ids.data(), rw.data(), nullptr, nullptr, logits.data(), 1, nullptr, spec, o);
    EXPECT_EQ(same.kind, fp8lab::VerdictKind::BitIdentical) << same.summary();
    rw[5] = std::bit_cast<float>(0x7FC00001u);
    EXPECT_EQ(compare_routing(r.ids.data(), rw.data(), nullptr, nullptr, logits.data(), 1, nullptr, spec, o).kind,
              fp8lab::VerdictKind::WithinBound);
  }
  w[3] = 0.0f;  // a kernel that zeroes NaN
  const RoutingVerdict bad = compare_routing(ids.data(), w.data(), nullptr, nullptr, logits.data(), 1, nullptr, spec, {});
  EXPECT_EQ(bad.kind, fp8lab::VerdictKind::Violation);
  EXPECT_NE(bad.violations[0].what.find("weight of expert 252"), std::string::npos) << bad.violations[0].what;
}

}  // namespace

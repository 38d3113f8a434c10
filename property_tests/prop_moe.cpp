// Properties of the router, load balancing and dispatch/combine, over generated specs and inputs
// (Gaussian scores, scores tied by bf16 rounding, all-negative biases, NaN scores).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "moe/dispatch.hpp"
#include "moe/route.hpp"
#include "moe/router_spec.hpp"
#include "../tests/cpp/test_moe_naive.hpp"

namespace {

using namespace fp8lab::moe;

// A valid spec of modest size: groups divide experts; the selected groups hold >= topk experts;
// optionally a node limit whose nodes nest with the groups.
rc::Gen<RouterSpec> genSpec() {
  return rc::gen::exec([] {
    RouterSpec s;
    s.name = "generated";
    s.experts = *rc::gen::element(8, 16, 32, 64, 256);
    s.groups = *rc::gen::element(1, 2, 4, 8);
    if (s.experts / s.groups < 2) s.groups = 1;
    s.topk_groups = *rc::gen::inRange(1, s.groups + 1);
    const int cap = s.topk_groups * (s.experts / s.groups);
    s.topk = *rc::gen::inRange(1, std::min(cap, 9) + 1);
    s.group_score = *rc::gen::element(GroupScore::Top2Sum, GroupScore::Max);
    s.gate_format = *rc::gen::element(GateFormat::Fp32, GateFormat::Bf16);
    s.bias_format = *rc::gen::element(BiasFormat::Fp32, BiasFormat::Bf16);
    s.renormalize = *rc::gen::arbitrary<bool>();
    s.routed_scale = *rc::gen::element(1.0, 2.5, 16.0);
    if (*rc::gen::arbitrary<bool>() && s.groups > 1) {
      // Nodes coincide with groups (the DeepSeek-V3 layout) or split each group in two.
      const int per_group = s.experts / s.groups;
      const bool split = per_group >= 4 && *rc::gen::arbitrary<bool>();
      s.nodes = split ? 2 * s.groups : s.groups;
      const int per_node = s.experts / s.nodes;
      const int eligible_nodes = split ? 2 * s.topk_groups : s.topk_groups;
      s.max_nodes = *rc::gen::inRange(1, s.nodes + 1);
      // Keep the limits satisfiable: the allowed nodes must hold topk eligible experts.
      if (std::min(s.max_nodes, eligible_nodes) * per_node < s.topk) s.nodes = s.max_nodes = 0;
    }
    s.validate();
    return s;
  });
}

enum class Kind { Gaussian, Bf16Ties, NegativeBias, WithNaN };

struct Input {
  RouterSpec spec;
  std::size_t tokens = 0;
  std::vector<float> scores;
  std::vector<float> bias;  // empty: no bias
};

rc::Gen<Input> genInput() {
  return rc::gen::exec([] {
    Input in;
    in.spec = *genSpec();
    in.tokens = static_cast<std::size_t>(*rc::gen::inRange(1, 12));
    const Kind kind = *rc::gen::element(Kind::Gaussian, Kind::Bf16Ties, Kind::NegativeBias, Kind::WithNaN);
    const std::size_t n = in.tokens * static_cast<std::size_t>(in.spec.experts);
    in.scores.resize(n);
    for (float& s : in.scores) {
      const int r = *rc::gen::inRange(0, 1 << 20);
      if (kind == Kind::Bf16Ties) s = 0.5f * (1.0f + (r % 4) / 128.0f) + (r >> 14) * 0x1p-17f;  // equal after bf16
      else s = static_cast<float>(r) * 0x1p-20f;
    }
    if (kind == Kind::WithNaN)
      for (float& s : in.scores)
        if (*rc::gen::inRange(0, 8) == 0) s = std::numeric_limits<float>::quiet_NaN();
    const bool with_bias = kind == Kind::NegativeBias || *rc::gen::arbitrary<bool>();
    if (with_bias) {
      in.bias.resize(static_cast<std::size_t>(in.spec.experts));
      for (float& b : in.bias) {
        const int r = *rc::gen::inRange(0, 1 << 10);
        b = kind == Kind::NegativeBias ? -2.0f - r * 0x1p-9f : (r - 512) * 0x1p-12f;
      }
    }
    return in;
  });
}

const float* biasp(const Input& in) { return in.bias.empty() ? nullptr : in.bias.data(); }
bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// Group scores and chosen groups by a from-scratch computation (naive sorting).
std::set<int> chosen_groups(const float* s, const float* bias, const RouterSpec& spec) {
  std::vector<float> sel(static_cast<std::size_t>(spec.experts));
  selection_scores(s, bias, spec, sel.data());
  const int per = spec.experts_per_group();
  std::vector<float> gs;
  for (int g = 0; g < spec.groups; ++g) {
    std::vector<int> m;
    for (int i = 0; i < per; ++i) m.push_back(g * per + i);
    m = naive::sorted_by_score(sel, m);
    float v = sel[static_cast<std::size_t>(m[0])];
    if (spec.group_score == GroupScore::Top2Sum) {
      v = sel[static_cast<std::size_t>(m[0])] + sel[static_cast<std::size_t>(m[1])];
      if (spec.selection_is_bf16()) v = naive::bf16(v);
    }
    gs.push_back(v);
  }
  std::vector<int> idx(static_cast<std::size_t>(spec.groups));
  for (int g = 0; g < spec.groups; ++g) idx[static_cast<std::size_t>(g)] = g;
  idx = naive::sorted_by_score(gs, idx);
  return std::set<int>(idx.begin(), idx.begin() + spec.topk_groups);
}

RC_GTEST_PROP(MoeRouter, ExactlyKDistinctExpertsFromAllowedGroupsAndNodes, ()) {
  const Input in = *genInput();
  const RouteResult r = route_from_scores(in.scores.data(), in.tokens, biasp(in), in.spec);
  const std::size_t K = static_cast<std::size_t>(in.spec.topk), E = static_cast<std::size_t>(in.spec.experts);
  std::vector<float> s(in.scores);
  if (in.spec.gate_format == GateFormat::Bf16)
    for (float& x : s) x = naive::bf16(x);
  std::vector<float> b(in.bias);
  if (!b.empty() && in.spec.bias_format == BiasFormat::Bf16)
    for (float& x : b) x = naive::bf16(x);
  for (std::size_t t = 0; t < in.tokens; ++t) {
    std::set<int> ids, groups, nodes;
    for (std::size_t j = 0; j < K; ++j) {
      const int e = r.ids[t * K + j];
      RC_ASSERT(e >= 0 && e < in.spec.experts);
      ids.insert(e);
      groups.insert(e / in.spec.experts_per_group());
      if (in.spec.nodes) nodes.insert(e / in.spec.experts_per_node());
    }
    RC_ASSERT(ids.size() == K);
    RC_ASSERT(static_cast<int>(groups.size()) <= in.spec.topk_groups);
    if (in.spec.nodes) RC_ASSERT(static_cast<int>(nodes.size()) <= in.spec.max_nodes);
    // No expert from an unselected group, even when every biased score is negative.
    if (in.spec.groups > 1) {
      const std::set<int> allowed = chosen_groups(s.data() + t * E, b.empty() ? nullptr : b.data(), in.spec);
      for (int g : groups) RC_ASSERT(allowed.count(g) == 1u);
    }
  }
}

RC_GTEST_PROP(MoeRouter, AgreesWithTheNaiveFormulation, ()) {
  const Input in = *genInput();
  const RouteResult r = route_from_scores(in.scores.data(), in.tokens, biasp(in), in.spec);
  const std::size_t K = static_cast<std::size_t>(in.spec.topk), E = static_cast<std::size_t>(in.spec.experts);
  for (std::size_t t = 0; t < in.tokens; ++t) {
    std::vector<float> s(in.scores.begin() + static_cast<std::ptrdiff_t>(t * E), in.scores.begin() + static_cast<std::ptrdiff_t>((t + 1) * E));
    if (in.spec.gate_format == GateFormat::Bf16)
      for (float& x : s) x = naive::bf16(x);
    const naive::Route n = naive::route_token(s.data(), biasp(in), in.spec);
    for (std::size_t j = 0; j < K; ++j) {
      RC_ASSERT(r.ids[t * K + j] == n.ids[j]);
      RC_ASSERT(same_bits(r.weights[t * K + j], n.w[j]) || (std::isnan(r.weights[t * K + j]) && std::isnan(n.w[j])));
    }
  }
}

RC_GTEST_PROP(MoeRouter, WeightsSumToTheRoutedScaleWithinRounding, ()) {
  Input in = *genInput();
  in.spec.renormalize = true;
  for (float& s : in.scores)
    if (std::isnan(s)) s = 0.25f;
  for (float& s : in.scores) s = std::max(s, 0x1p-10f);  // positive scores: a meaningful sum
  const RouteResult r = route_from_scores(in.scores.data(), in.tokens, biasp(in), in.spec);
  const std::size_t K = static_cast<std::size_t>(in.spec.topk);
  // Each weight is rounded (at most) twice in the gate format after an exact-ish quotient; the
  // denominator once: |sum - scale| <= scale * (2K + 2) u, u = 2^-8 (bf16) or 2^-24 (fp32).
  const double u = in.spec.gate_format == GateFormat::Bf16 ? 0x1p-8 : 0x1p-24;
  for (std::size_t t = 0; t < in.tokens; ++t) {
    double sum = 0;
    for (std::size_t j = 0; j < K; ++j) sum += r.weights[t * K + j];
    RC_ASSERT(std::fabs(sum - in.spec.routed_scale) <= in.spec.routed_scale * (2.0 * K + 2) * u);
  }
}

RC_GTEST_PROP(MoeRouter, BiasChangesSelectionButNeverTheWeightFormula, ()) {
  const Input in = *genInput();
  const RouteResult r = route_from_scores(in.scores.data(), in.tokens, biasp(in), in.spec);
  const std::size_t K = static_cast<std::size_t>(in.spec.topk), E = static_cast<std::size_t>(in.spec.experts);
  std::vector<float> s(in.scores);
  if (in.spec.gate_format == GateFormat::Bf16)
    for (float& x : s) x = naive::bf16(x);
  std::vector<float> w(K);
  for (std::size_t t = 0; t < in.tokens; ++t) {
    // The weights are the unbiased scores' formula applied to the chosen experts.
    weights_for_ids(s.data() + t * E, r.ids.data() + t * K, in.spec, w.data());
    for (std::size_t j = 0; j < K; ++j)
      RC_ASSERT(same_bits(w[j], r.weights[t * K + j]) || (std::isnan(w[j]) && std::isnan(r.weights[t * K + j])));
  }
}

RC_GTEST_PROP(MoeRouter, PermutingTokensPermutesOutputs, ()) {
  const Input in = *genInput();
  const std::size_t T = in.tokens, E = static_cast<std::size_t>(in.spec.experts), K = static_cast<std::size_t>(in.spec.topk);
  std::vector<std::size_t> perm(T);
  for (std::size_t i = 0; i < T; ++i) perm[i] = i;
  for (std::size_t i = T; i > 1; --i)  // Fisher-Yates with generated choices (shrinks to identity)
    std::swap(perm[i - 1], perm[static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, i))]);
  std::vector<float> ps(in.scores.size());
  for (std::size_t i = 0; i < T; ++i) std::copy_n(in.scores.begin() + static_cast<std::ptrdiff_t>(perm[i] * E), E, ps.begin() + static_cast<std::ptrdiff_t>(i * E));
  const RouteResult a = route_from_scores(in.scores.data(), T, biasp(in), in.spec);
  const RouteResult b = route_from_scores(ps.data(), T, biasp(in), in.spec);
  for (std::size_t i = 0; i < T; ++i)
    for (std::size_t j = 0; j < K; ++j) {
      RC_ASSERT(b.ids[i * K + j] == a.ids[perm[i] * K + j]);
      RC_ASSERT(same_bits(b.weights[i * K + j], a.weights[perm[i] * K + j]));
    }
}

RC_GTEST_PROP(MoeRouter, ExactTiesResolveToTheLowestIndex, ()) {
  RouterSpec spec = *genSpec();
  const float v = *rc::gen::element(0.25f, 0.5f, -0.0f, 0.0f);
  const std::vector<float> s(static_cast<std::size_t>(spec.experts), v);
  const RouteResult r = route_from_scores(s.data(), 1, nullptr, spec);
  // All equal: the lowest-index groups, nodes and experts win: ids 0 .. k-1 in order.
  for (int j = 0; j < spec.topk; ++j) RC_ASSERT(r.ids[static_cast<std::size_t>(j)] == j);
}

RC_GTEST_PROP(MoeDispatch, DispatchThenCombineWithIdentityExpertsGivesTheWeightedInput, ()) {
  const Input in = *genInput();
  const RouteResult r = route_from_scores(in.scores.data(), in.tokens, biasp(in), in.spec);
  const int alignment = *rc::gen::element(1, 4, 8, 128);
  const Dispatch d = dispatch(r.ids.data(), in.tokens, in.spec.topk, in.spec.experts, alignment);
  const std::size_t H = 3, K = static_cast<std::size_t>(in.spec.topk);
  std::vector<float> x(in.tokens * H);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(*rc::gen::inRange(-64, 64)) * 0.125f;
  std::vector<float> w(r.weights);
  for (float& v : w)
    if (std::isnan(v)) v = 0.5f;
  for (Layout layout : {Layout::Contiguous, Layout::Masked}) {
    std::vector<float> y = gather_rows(x.data(), H, d, layout);
    const std::vector<std::int32_t>& src = layout == Layout::Contiguous ? d.row_token : d.masked_token;
    for (std::size_t row = 0; row < src.size(); ++row) {
      if (layout == Layout::Contiguous) RC_ASSERT((src[row] == -1) == (d.row_expert[row] == -1));
      if (src[row] == -1)
        for (std::size_t h = 0; h < H; ++h) y[row * H + h] = std::numeric_limits<float>::quiet_NaN();  // never read
    }
    if (layout == Layout::Contiguous)
      for (int e = 0; e < in.spec.experts; ++e) RC_ASSERT((d.offsets[static_cast<std::size_t>(e)] % alignment) == 0);
    const std::vector<float> out = combine(y.data(), src.size(), H, d, layout, w.data());
    for (std::size_t t = 0; t < in.tokens; ++t)
      for (std::size_t h = 0; h < H; ++h) {
        float e = 0.0f;
        for (std::size_t j = 0; j < K; ++j) {
          const float p = w[t * K + j] * x[t * H + h];
          e = e + p;
        }
        RC_ASSERT(same_bits(out[t * H + h], e));
      }
  }
}

}  // namespace

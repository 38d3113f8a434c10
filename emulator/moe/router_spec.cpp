#include "moe/router_spec.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace fp8lab::moe {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& value, const std::string& why) {
  throw std::invalid_argument("RouterSpec." + field + " = " + value + ": " + why);
}

std::string num(double v) { return schema::g17(v); }

using schema::EnumRow;
constexpr std::array<EnumRow<ScoreFunction>, 2> kScore{
    {{"sigmoid", ScoreFunction::Sigmoid}, {"softmax", ScoreFunction::Softmax}}};
constexpr std::array<EnumRow<GateFormat>, 2> kGate{{{"fp32", GateFormat::Fp32}, {"bf16", GateFormat::Bf16}}};
constexpr std::array<EnumRow<BiasFormat>, 2> kBias{{{"fp32", BiasFormat::Fp32}, {"bf16", BiasFormat::Bf16}}};
constexpr std::array<EnumRow<GroupScore>, 2> kGroupScore{{{"top2_sum", GroupScore::Top2Sum}, {"max", GroupScore::Max}}};
constexpr std::array<EnumRow<ScaleTarget>, 2> kTarget{
    {{"weights", ScaleTarget::Weights}, {"output", ScaleTarget::Output}}};
constexpr std::array<EnumRow<TiePolicy>, 1> kTie{{{"lowest_index_first", TiePolicy::LowestIndexFirst}}};

constexpr long long kMaxExperts = 1 << 20;
bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0; }
bool finite_positive(double v) { return std::isfinite(v) && v > 0; }

}  // namespace

std::string_view score_function_name(ScoreFunction f) { return schema::enum_name<ScoreFunction>(kScore, f); }
std::string_view gate_format_name(GateFormat f) { return schema::enum_name<GateFormat>(kGate, f); }
std::string_view bias_format_name(BiasFormat f) { return schema::enum_name<BiasFormat>(kBias, f); }
std::string_view group_score_name(GroupScore g) { return schema::enum_name<GroupScore>(kGroupScore, g); }
std::string_view scale_target_name(ScaleTarget t) { return schema::enum_name<ScaleTarget>(kTarget, t); }
std::string_view tie_policy_name(TiePolicy t) { return schema::enum_name<TiePolicy>(kTie, t); }

ScoreFunction score_function_by_name(std::string_view s) { return schema::enum_by_name<ScoreFunction>(kScore, s, "score"); }
GateFormat gate_format_by_name(std::string_view s) { return schema::enum_by_name<GateFormat>(kGate, s, "gate_format"); }
BiasFormat bias_format_by_name(std::string_view s) { return schema::enum_by_name<BiasFormat>(kBias, s, "bias_format"); }
GroupScore group_score_by_name(std::string_view s) {
  return schema::enum_by_name<GroupScore>(kGroupScore, s, "group_score");
}
ScaleTarget scale_target_by_name(std::string_view s) {
  return schema::enum_by_name<ScaleTarget>(kTarget, s, "scale_target");
}

const schema::Schema<RouterSpec>& router_spec_schema() {
  using S = RouterSpec;
  static const schema::Schema<S> sc{
      "RouterSpec",
      {
          schema::enumeration<S, BiasFormat>("bias_format", &S::bias_format, kBias),
          schema::integer<S, int>("experts", &S::experts, 1, kMaxExperts),
          schema::enumeration<S, GateFormat>("gate_format", &S::gate_format, kGate),
          schema::enumeration<S, GroupScore>("group_score", &S::group_score, kGroupScore),
          schema::integer<S, int>("groups", &S::groups, 1, kMaxExperts),
          schema::real<S>("kernel_score_ulps", &S::kernel_score_ulps, finite_nonneg, "a finite value >= 0"),
          schema::integer<S, int>("max_nodes", &S::max_nodes, 0, kMaxExperts),
          schema::text<S>("name", &S::name),
          schema::integer<S, int>("nodes", &S::nodes, 0, kMaxExperts),
          schema::real<S>("renorm_epsilon", &S::renorm_epsilon, finite_nonneg, "a finite value >= 0"),
          schema::boolean<S>("renormalize", &S::renormalize),
          schema::real<S>("routed_scale", &S::routed_scale, finite_positive, "a finite value > 0"),
          schema::enumeration<S, ScaleTarget>("scale_target", &S::scale_target, kTarget),
          schema::enumeration<S, ScoreFunction>("score", &S::score, kScore),
          schema::enumeration<S, TiePolicy>("tie_policy", &S::tie_policy, kTie),
          schema::integer<S, int>("topk", &S::topk, 1, kMaxExperts),
          schema::integer<S, int>("topk_groups", &S::topk_groups, 1, kMaxExperts),
          schema::enumeration<S, GateFormat>("weights_format", &S::weights_format, kGate),
      },
      [](const S& s) { s.validate(); }};
  return sc;
}

void RouterSpec::validate() const {
  if (experts < 1 || experts > (1 << 20)) bad("experts", std::to_string(experts), "expected 1 .. 2^20");
  if (topk < 1 || topk > experts) bad("topk", std::to_string(topk), "expected 1 .. experts (" + std::to_string(experts) + ")");
  if (groups < 1 || experts % groups != 0)
    bad("groups", std::to_string(groups), "expected a divisor of experts (" + std::to_string(experts) + ")");
  if (topk_groups < 1 || topk_groups > groups)
    bad("topk_groups", std::to_string(topk_groups), "expected 1 .. groups (" + std::to_string(groups) + ")");
  if (static_cast<long>(topk_groups) * experts_per_group() < topk)
    bad("topk_groups", std::to_string(topk_groups),
        "the selected groups hold " + std::to_string(topk_groups * experts_per_group()) + " experts, fewer than topk (" +
            std::to_string(topk) + ")");
  if (group_score == GroupScore::Top2Sum && groups > 1 && experts_per_group() < 2)
    bad("group_score", "top2_sum", "needs at least 2 experts per group");
  if (nodes < 0 || (nodes > 0 && experts % nodes != 0))
    bad("nodes", std::to_string(nodes), "expected 0 (off) or a divisor of experts (" + std::to_string(experts) + ")");
  if (nodes > 0) {
    if (max_nodes < 1 || max_nodes > nodes)
      bad("max_nodes", std::to_string(max_nodes), "expected 1 .. nodes (" + std::to_string(nodes) + ")");
    if (groups > 1 && (experts_per_node() % experts_per_group() != 0 && experts_per_group() % experts_per_node() != 0))
      bad("nodes", std::to_string(nodes), "node and group boundaries must nest");
    if (static_cast<long>(max_nodes) * experts_per_node() < topk)
      bad("max_nodes", std::to_string(max_nodes), "the allowed nodes hold fewer experts than topk");
  }
  if (!(renorm_epsilon >= 0) || !std::isfinite(renorm_epsilon))
    bad("renorm_epsilon", num(renorm_epsilon), "expected a finite value >= 0");
  if (!std::isfinite(routed_scale) || !(routed_scale > 0)) bad("routed_scale", num(routed_scale), "expected a finite value > 0");
  if (!(kernel_score_ulps >= 0) || !std::isfinite(kernel_score_ulps))
    bad("kernel_score_ulps", num(kernel_score_ulps), "expected a finite value >= 0");
}

std::string RouterSpec::to_json() const { return schema::to_json(*this, router_spec_schema()); }

std::vector<std::string> router_recipe_names() {
  return {"deepseek_v3", "deepseek_v3_2025_02", "deepseek_v3_hf", "deepseek_v2", "sglang_output_scale"};
}

RouterSpec router_recipe(std::string_view name) {
  RouterSpec s;
  s.name = std::string(name);
  // DeepSeek-V3 config: n_routed_experts 256, num_experts_per_tok 8, n_group 8, topk_group 4,
  // routed_scaling_factor 2.5, scoring_func sigmoid, norm_topk_prob true.
  s.experts = 256;
  s.topk = 8;
  s.score = ScoreFunction::Sigmoid;
  s.groups = 8;
  s.topk_groups = 4;
  s.group_score = GroupScore::Top2Sum;
  s.renormalize = true;
  s.routed_scale = 2.5;
  if (name == "deepseek_v3") {
    // deepseek-ai/DeepSeek-V3 inference/model.py Gate @4592be4 (2025-08-26), current main.
    s.gate_format = GateFormat::Bf16;
    s.bias_format = BiasFormat::Fp32;
  } else if (name == "deepseek_v3_2025_02") {
    // The same Gate @1398800 (2025-02-14), main until 4592be4: bias in the default dtype bf16.
    s.gate_format = GateFormat::Bf16;
    s.bias_format = BiasFormat::Bf16;
  } else if (name == "deepseek_v3_hf" || name == "sglang_output_scale") {
    s.gate_format = GateFormat::Fp32;
    s.bias_format = BiasFormat::Fp32;
    s.renorm_epsilon = 1e-20;
    if (name == "sglang_output_scale") s.scale_target = ScaleTarget::Output;
  } else if (name == "deepseek_v2") {
    // DeepSeek-V2 config: n_routed_experts 160, num_experts_per_tok 6, n_group 8, topk_group 3,
    // topk_method group_limited_greedy (group max), routed_scaling_factor 16, norm_topk_prob false.
    s.experts = 160;
    s.topk = 6;
    s.score = ScoreFunction::Softmax;
    s.gate_format = GateFormat::Fp32;
    s.bias_format = BiasFormat::Fp32;
    s.groups = 8;
    s.topk_groups = 3;
    s.group_score = GroupScore::Max;
    s.renormalize = false;
    s.routed_scale = 16.0;
  } else {
    std::string names;
    for (const auto& n : router_recipe_names()) {
      if (!names.empty()) names += ", ";
      names += n;
    }
    throw std::invalid_argument("spec: unknown router recipe '" + std::string(name) + "' (expected one of " + names + ")");
  }
  return s;
}

}  // namespace fp8lab::moe

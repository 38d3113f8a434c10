#include "moe/router_spec.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

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

ScoreFunction score_function_by_name(std::string_view s) { return schema::enum_by_name<ScoreFunction>(kScore, s, "score"); }
GateFormat gate_format_by_name(std::string_view s) { return schema::enum_by_name<GateFormat>(kGate, s, "gate_format"); }
BiasFormat bias_format_by_name(std::string_view s) { return schema::enum_by_name<BiasFormat>(kBias, s, "bias_format"); }

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

namespace {

// DeepSeek-V3 config: n_routed_experts 256, num_experts_per_tok 8, n_group 8, topk_group 4,
// routed_scaling_factor 2.5, scoring_func sigmoid, norm_topk_prob true. Its rows differ in the
// gate's and bias's formats, transformers' epsilon and SGLang's scale target.
RouterSpec deepseek_v3_config(std::string name, GateFormat gate, BiasFormat bias, double renorm_epsilon = 0,
                              ScaleTarget target = ScaleTarget::Weights) {
  return {.name = std::move(name), .experts = 256, .topk = 8, .score = ScoreFunction::Sigmoid, .gate_format = gate,
          .bias_format = bias, .groups = 8, .topk_groups = 4, .group_score = GroupScore::Top2Sum, .renormalize = true,
          .renorm_epsilon = renorm_epsilon, .routed_scale = 2.5, .scale_target = target};
}

const std::vector<RouterSpec>& recipes() {
  static const std::vector<RouterSpec> t = {
      // deepseek-ai/DeepSeek-V3 inference/model.py Gate @4592be4 (2025-08-26), current main.
      deepseek_v3_config("deepseek_v3", GateFormat::Bf16, BiasFormat::Fp32),
      // The same Gate @1398800 (2025-02-14), main until 4592be4: bias in the default dtype bf16.
      deepseek_v3_config("deepseek_v3_2025_02", GateFormat::Bf16, BiasFormat::Bf16),
      deepseek_v3_config("deepseek_v3_hf", GateFormat::Fp32, BiasFormat::Fp32, 1e-20),
      // DeepSeek-V2 config: n_routed_experts 160, num_experts_per_tok 6, n_group 8, topk_group 3,
      // topk_method group_limited_greedy (group max), routed_scaling_factor 16, norm_topk_prob false.
      RouterSpec{.name = "deepseek_v2", .experts = 160, .topk = 6, .score = ScoreFunction::Softmax,
                 .gate_format = GateFormat::Fp32, .bias_format = BiasFormat::Fp32, .groups = 8, .topk_groups = 3,
                 .group_score = GroupScore::Max, .renormalize = false, .routed_scale = 16.0},
      deepseek_v3_config("sglang_output_scale", GateFormat::Fp32, BiasFormat::Fp32, 1e-20, ScaleTarget::Output),
  };
  return t;
}

}  // namespace

std::vector<std::string> router_recipe_names() { return schema::row_names<RouterSpec>(recipes()); }

RouterSpec router_recipe(std::string_view name) {
  return schema::row_by_name<RouterSpec>(recipes(), name, "spec", "router recipe", "expected one of ");
}

}  // namespace fp8lab::moe

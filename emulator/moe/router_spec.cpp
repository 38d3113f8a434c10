#include "moe/router_spec.hpp"

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace fp8lab::moe {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& value, const std::string& why) {
  throw std::invalid_argument("RouterSpec." + field + " = " + value + ": " + why);
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

template <class E>
E by_name(std::string_view s, std::initializer_list<std::pair<std::string_view, E>> table, const char* what) {
  std::string names;
  for (const auto& [n, e] : table) {
    if (n == s) return e;
    if (!names.empty()) names += ", ";
    names.append(n);
  }
  throw std::invalid_argument(std::string(what) + ": unknown value '" + std::string(s) + "' (expected one of " + names + ")");
}

}  // namespace

std::string_view score_function_name(ScoreFunction f) { return f == ScoreFunction::Sigmoid ? "sigmoid" : "softmax"; }
std::string_view gate_format_name(GateFormat f) { return f == GateFormat::Fp32 ? "fp32" : "bf16"; }
std::string_view bias_format_name(BiasFormat f) { return f == BiasFormat::Fp32 ? "fp32" : "bf16"; }
std::string_view group_score_name(GroupScore g) { return g == GroupScore::Top2Sum ? "top2_sum" : "max"; }
std::string_view scale_target_name(ScaleTarget t) { return t == ScaleTarget::Weights ? "weights" : "output"; }
std::string_view tie_policy_name(TiePolicy) { return "lowest_index_first"; }

ScoreFunction score_function_by_name(std::string_view s) {
  return by_name<ScoreFunction>(s, {{"sigmoid", ScoreFunction::Sigmoid}, {"softmax", ScoreFunction::Softmax}}, "score");
}
GateFormat gate_format_by_name(std::string_view s) {
  return by_name<GateFormat>(s, {{"fp32", GateFormat::Fp32}, {"bf16", GateFormat::Bf16}}, "gate_format");
}
BiasFormat bias_format_by_name(std::string_view s) {
  return by_name<BiasFormat>(s, {{"fp32", BiasFormat::Fp32}, {"bf16", BiasFormat::Bf16}}, "bias_format");
}
GroupScore group_score_by_name(std::string_view s) {
  return by_name<GroupScore>(s, {{"top2_sum", GroupScore::Top2Sum}, {"max", GroupScore::Max}}, "group_score");
}
ScaleTarget scale_target_by_name(std::string_view s) {
  return by_name<ScaleTarget>(s, {{"weights", ScaleTarget::Weights}, {"output", ScaleTarget::Output}}, "scale_target");
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

std::string RouterSpec::to_json() const {
  std::string j = "{";
  auto field = [&](const char* k, const std::string& v, bool quote) {
    if (j.size() > 1) j += ", ";
    j += '"';
    j += k;
    j += "\": ";
    if (quote) j += '"';
    j += v;
    if (quote) j += '"';
  };
  // Keys in sorted order.
  field("bias_format", std::string(bias_format_name(bias_format)), true);
  field("experts", std::to_string(experts), false);
  field("gate_format", std::string(gate_format_name(gate_format)), true);
  field("group_score", std::string(group_score_name(group_score)), true);
  field("groups", std::to_string(groups), false);
  field("kernel_score_ulps", num(kernel_score_ulps), false);
  field("max_nodes", std::to_string(max_nodes), false);
  field("name", name, true);
  field("nodes", std::to_string(nodes), false);
  field("renorm_epsilon", num(renorm_epsilon), false);
  field("renormalize", renormalize ? "true" : "false", false);
  field("routed_scale", num(routed_scale), false);
  field("scale_target", std::string(scale_target_name(scale_target)), true);
  field("score", std::string(score_function_name(score)), true);
  field("tie_policy", std::string(tie_policy_name(tie_policy)), true);
  field("topk", std::to_string(topk), false);
  field("topk_groups", std::to_string(topk_groups), false);
  return j + "}";
}

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

// What a MoE router computes, as data: score function, the arithmetic format of each gate step,
// group / node limits, renormalisation, routed scale and tie policy. The routing code never names
// a vendor; the named recipes below are rows of this table, each citing the code it models.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"

namespace fp8lab::moe {

enum class ScoreFunction : std::uint8_t { Sigmoid, Softmax };
// Format the gate's tensors are rounded to after each step (logits, scores, weight sum, quotient,
// scaled weight). Bf16 models the DeepSeek reference, whose Gate runs in the default dtype bf16.
enum class GateFormat : std::uint8_t { Fp32, Bf16 };
// Format of the selection bias. torch type promotion: bf16 scores + fp32 bias give fp32 biased
// scores; bf16 + bf16 gives bf16.
enum class BiasFormat : std::uint8_t { Fp32, Bf16 };
// Group score: sum of the two largest biased scores of the group (DeepSeek-V3 noaux_tc), or the
// largest (DeepSeek-V2 group_limited_greedy, and V3's inference Gate when there is no bias).
enum class GroupScore : std::uint8_t { Top2Sum, Max };
// Where the routed scale is applied: to the returned weights, or (SGLang's option) to the MoE
// output after combine — then the returned weights are unscaled.
enum class ScaleTarget : std::uint8_t { Weights, Output };
// Equal selection scores resolve to the lower expert index (the policy of the vLLM/SGLang CUDA
// routing kernels; torch.topk leaves it unspecified). The only policy; named so specs say it.
enum class TiePolicy : std::uint8_t { LowestIndexFirst };

struct RouterSpec {
  std::string name = "custom";
  int experts = 256;
  int topk = 8;
  ScoreFunction score = ScoreFunction::Sigmoid;
  GateFormat gate_format = GateFormat::Fp32;
  BiasFormat bias_format = BiasFormat::Fp32;
  // Group-limited selection: `groups` contiguous groups of experts/groups experts; only experts of
  // the `topk_groups` best groups may be chosen (the rest are masked as if -inf). groups = 1: off.
  int groups = 1;
  int topk_groups = 1;
  GroupScore group_score = GroupScore::Top2Sum;
  // Node-limited selection (DeepSeek-V3 training, paper §2.1.2): experts laid out contiguously on
  // `nodes` nodes; a token may use at most `max_nodes`, ranked by the sum of the highest
  // ceil(topk / max_nodes) biased scores among each node's still-eligible experts. nodes = 0: off.
  int nodes = 0;
  int max_nodes = 0;
  bool renormalize = true;     // weights /= (sum of the selected scores + epsilon)
  double renorm_epsilon = 0;   // added to the sum in float32 (HF: 1e-20)
  double routed_scale = 1.0;
  ScaleTarget scale_target = ScaleTarget::Weights;
  // The format the returned weights are rounded to, once (nearest even), after the arithmetic
  // above: fp32 leaves them as computed; bf16 is vLLM's fused DeepSeek routing kernel
  // (csrc/moe/grouped_topk_kernels.cu group_idx_and_topk_idx_kernel, from TensorRT-LLM
  // noAuxTcKernels.cu: score / topk_sum * routed_scaling_factor in float, stored in the scores'
  // dtype T, bf16 for a bf16 model), where the DeepSeek reference rounds every step (gate_format).
  GateFormat weights_format = GateFormat::Fp32;
  TiePolicy tie_policy = TiePolicy::LowestIndexFirst;
  // Certified error a conforming kernel may make in each score before rounding to the gate
  // format, in ulps of the score's float32 value (a kernel's float32 sigmoid / softmax is not
  // correctly rounded: CUDA's expf is within 2 ulps, __expf-based ones more). Used by the
  // tie-aware verdict only; the emulator's own scores are correctly rounded.
  double kernel_score_ulps = 4;

  // Throws std::invalid_argument naming the field, its value and the constraint.
  void validate() const;
  // Canonical JSON (keys sorted; router_spec_schema()).
  std::string to_json() const;
  int experts_per_group() const { return experts / groups; }
  int experts_per_node() const { return nodes > 0 ? experts / nodes : experts; }
  // Biased scores are bf16 only when both the gate and the bias are bf16 (torch type promotion).
  bool selection_is_bf16() const { return gate_format == GateFormat::Bf16 && bias_format == BiasFormat::Bf16; }
};

// Named recipes (each row in router_spec.cpp names the code it models, by commit and date):
//   deepseek_v3      the DeepSeek-V3 reference Gate as on its main branch today
//                    (deepseek-ai/DeepSeek-V3 inference/model.py @4592be4, 2025-08-26 "fp32 gate
//                    bias"; the Gate is unchanged up to main's 9b4e978, 2025-08-27): bf16 logits
//                    (bf16 linear), sigmoid on bf16, bias an fp32 Parameter, so the biased
//                    selection scores are fp32 (torch type promotion); 8 groups / top-4 by the fp32
//                    top-2 sum, -inf masking, weights = original bf16 scores / their bf16 sum, * 2.5
//                    (bf16). (That Gate falls back to the group max when a model has no bias; V3
//                    always has one, so the recipe keeps top2_sum even when route() has no bias.)
//   deepseek_v3_2025_02  the same Gate before that commit (@1398800, 2025-02-14 "fix scores mask",
//                    main's Gate from then until 2025-08-26): the bias a Parameter in the default
//                    dtype bf16, so the biased scores and group sums are bf16.
//   deepseek_v3_hf   transformers' DeepseekV3 noaux_tc: fp32 logits and sigmoid, fp32 bias,
//                    weights / (sum + 1e-20) * 2.5 in fp32 (masking -inf here: the 0.0 fill of one
//                    snapshot is a known bug, not a recipe).
//   deepseek_v2      DeepSeek-V2: softmax over 160 experts in fp32, top-6, 8 groups / top-3 by the
//                    group max, no renormalisation, routed scale 16.
//   sglang_output_scale  deepseek_v3_hf with the routed scale applied to the MoE output.
RouterSpec router_recipe(std::string_view name);  // std::invalid_argument for an unknown name
// The declared fields of RouterSpec (common/schema.hpp): JSON in and out, the binding's field list.
const schema::Schema<RouterSpec>& router_spec_schema();
std::vector<std::string> router_recipe_names();

ScoreFunction score_function_by_name(std::string_view s);
GateFormat gate_format_by_name(std::string_view s);
BiasFormat bias_format_by_name(std::string_view s);

}  // namespace fp8lab::moe

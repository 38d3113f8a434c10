// The DeepSeek-V3 gate on the GPU: sigmoid scores, selection bias, group-limited top-k (groups
// ranked by the sum of their two best biased scores, or their best), renormalised weights times
// the routed scale — the FP32 recipes (deepseek_v3_hf, sglang_output_scale, or any RouterSpec with
// fp32 gate and bias, sigmoid scores and no node limit). One thread block per token; scores on all
// threads with CUDA's expf (within 2 ulps, so scores are not bit-pinned: the check is moe's
// tie-aware routing verdict); selection on one thread with moe/route.hpp's order (larger first,
// -0 == +0, NaN last, ties to the lower index), so that given the kernel's own scores the
// selection and weights are bit-identical to route_from_scores().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gpu/router_select.hpp"
#include "moe/router_spec.hpp"

namespace fp8lab::gpu {

struct GpuRouting {
  std::vector<float> scores;        // [tokens, experts]: the kernel's sigmoid scores
  std::vector<std::int32_t> ids;    // [tokens, topk], selection order
  std::vector<float> weights;       // [tokens, topk]
};

// Throws std::invalid_argument naming the RouterSpec field the kernel does not implement (bf16
// gate or bias, softmax, nodes, more than 1024 experts, topk > 64) or a null logits pointer.
void validate_gpu_router(const float* logits, std::size_t tokens, const moe::RouterSpec& spec);

// The kernel's view of a spec (validate first).
RouterParams router_params_of(const moe::RouterSpec& spec);

// logits [tokens, experts] row-major; bias [experts] or null. NoDevice without a device.
GpuRouting router_sigmoid_groups(const float* logits, std::size_t tokens, const float* bias,
                                 const moe::RouterSpec& spec);

}  // namespace fp8lab::gpu

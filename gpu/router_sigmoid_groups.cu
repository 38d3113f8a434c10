// The DeepSeek-V3 gate kernel (see the header).
#include "gpu/router_sigmoid_groups.hpp"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"
#include "gpu/router_select.hpp"

namespace fp8lab::gpu {

namespace {

__global__ void router_kernel(const float* logits, const float* bias, RouterParams p, float* scores, int* ids,
                              float* weights) {
  __shared__ float s[kRouterMaxExperts], sel[kRouterMaxExperts];
  // Selection scratch in shared memory too, so that the kernel uses no local memory (stack).
  __shared__ unsigned long long gkey[kRouterMaxExperts / 2];
  __shared__ bool group_ok[kRouterMaxExperts / 2];
  __shared__ int chosen[kRouterMaxTopk];
  const std::size_t t = blockIdx.x;
  for (int e = threadIdx.x; e < p.experts; e += blockDim.x) {
    const float x = logits[t * p.experts + e];
    const float v = 1.0f / (1.0f + expf(-x));  // CUDA's expf: within 2 ulps (CUDA C Programming Guide, Table 13)
    s[e] = v;
    sel[e] = bias ? __fadd_rn(v, bias[e]) : v;
    scores[t * p.experts + e] = v;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  router_select_token(s, sel, p, gkey, group_ok, chosen, ids + t * p.topk, weights + t * p.topk);
}

}  // namespace

RouterParams router_params_of(const moe::RouterSpec& spec) {
  return RouterParams{spec.experts, spec.topk, spec.groups, spec.topk_groups,
                      spec.group_score == moe::GroupScore::Top2Sum, spec.renormalize,
                      static_cast<float>(spec.renorm_epsilon), static_cast<float>(spec.routed_scale),
                      spec.scale_target == moe::ScaleTarget::Weights};
}

void validate_gpu_router(const float* logits, std::size_t tokens, const moe::RouterSpec& spec) {
  spec.validate();
  using namespace moe;
  if (!logits && tokens) throw std::invalid_argument("logits: null pointer for " + std::to_string(tokens) + " tokens");
  if (spec.score != ScoreFunction::Sigmoid) throw std::invalid_argument("spec.score: the GPU router implements sigmoid only");
  if (spec.gate_format != GateFormat::Fp32) throw std::invalid_argument("spec.gate_format: the GPU router computes in fp32 only");
  if (spec.bias_format != BiasFormat::Fp32) throw std::invalid_argument("spec.bias_format: the GPU router takes an fp32 bias only");
  if (spec.nodes != 0) throw std::invalid_argument("spec.nodes: node-limited routing is not implemented on the GPU");
  if (spec.experts > kRouterMaxExperts) throw std::invalid_argument("spec.experts: " + std::to_string(spec.experts) + " > 1024");
  if (spec.topk > kRouterMaxTopk) throw std::invalid_argument("spec.topk: " + std::to_string(spec.topk) + " > 64");
  if (spec.groups > 1 && spec.group_score == GroupScore::Top2Sum && spec.experts_per_group() < 2) {
    throw std::invalid_argument("spec.groups: top-2-sum group scores need at least 2 experts per group");
  }
}

GpuRouting router_sigmoid_groups(const float* logits, std::size_t tokens, const float* bias,
                                 const moe::RouterSpec& spec) {
  validate_gpu_router(logits, tokens, spec);
  GpuRouting out;
  const std::size_t E = std::size_t(spec.experts), K = std::size_t(spec.topk);
  out.scores.assign(tokens * E, 0.0f);
  out.ids.assign(tokens * K, 0);
  out.weights.assign(tokens * K, 0.0f);
  if (tokens == 0) return out;
  require_device("router_sigmoid_groups");
  DeviceBuffer<float> dl(std::vector<float>(logits, logits + tokens * E)), db, ds(tokens * E), dw(tokens * K);
  if (bias) db = DeviceBuffer<float>(std::vector<float>(bias, bias + E));
  DeviceBuffer<int> di(tokens * K);
  const RouterParams p = router_params_of(spec);
  router_kernel<<<unsigned(tokens), 256>>>(dl.data(), bias ? db.data() : nullptr, p, ds.data(), di.data(), dw.data());
  check_cuda(cudaGetLastError(), "router_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "router_kernel");
  out.scores = ds.to_host();
  const auto ids = di.to_host();
  out.ids.assign(ids.begin(), ids.end());
  out.weights = dw.to_host();
  return out;
}

}  // namespace fp8lab::gpu

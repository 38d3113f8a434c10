// The DeepSeek-V3 gate kernel (see the header).
#include "gpu/router_sigmoid_groups.hpp"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"

namespace fp8lab::gpu {

namespace {

constexpr int kMaxExperts = 1024;
constexpr int kMaxTopk = 64;

struct RouterParams {
  int experts, topk, groups, topk_groups;
  bool group_top2;  // GroupScore::Top2Sum (else Max)
  bool renormalize;
  float epsilon, scale;
  bool scale_weights;
};

// moe/route.hpp's order: a larger key is preferred; NaN has the smallest key; -0 and +0 share one.
__device__ __forceinline__ unsigned order_key(float x) {
  if (x != x) return 0u;
  unsigned u = __float_as_uint(x);
  if ((u & 0x7FFFFFFFu) == 0) u = 0;  // -0 -> +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
// Key with the index: ties go to the lower index.
__device__ __forceinline__ unsigned long long ranked(float x, unsigned i) {
  return (static_cast<unsigned long long>(order_key(x)) << 32) | (0xFFFFFFFFu - i);
}

__global__ void router_kernel(const float* logits, const float* bias, RouterParams p, float* scores, int* ids,
                              float* weights) {
  __shared__ float s[kMaxExperts], sel[kMaxExperts];
  // Selection scratch in shared memory too, so that the kernel uses no local memory (stack).
  __shared__ unsigned long long gkey[kMaxExperts / 2];
  __shared__ bool group_ok[kMaxExperts / 2];
  __shared__ int chosen[kMaxTopk];
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

  // Group limit: eligible[g] for the topk_groups best groups.
  const int per = p.experts / p.groups;
  for (int g = 0; g < p.groups; ++g) group_ok[g] = p.groups <= 1;
  if (p.groups > 1) {
    for (int g = 0; g < p.groups; ++g) {
      unsigned long long k1 = 0, k2 = 0;
      int i1 = 0, i2 = 0;
      for (int i = 0; i < per; ++i) {
        const unsigned long long k = ranked(sel[g * per + i], i);
        if (k > k1) {
          k2 = k1, i2 = i1;
          k1 = k, i1 = i;
        } else if (k > k2) {
          k2 = k, i2 = i;
        }
      }
      const float score = p.group_top2 ? __fadd_rn(sel[g * per + i1], sel[g * per + i2]) : sel[g * per + i1];
      gkey[g] = ranked(score, g);
    }
    for (int j = 0; j < p.topk_groups; ++j) {
      int best = -1;
      for (int g = 0; g < p.groups; ++g)
        if (!group_ok[g] && (best < 0 || gkey[g] > gkey[best])) best = g;
      group_ok[best] = true;
    }
  }
  // Top-k experts among the eligible ones, by repeated selection of the largest remaining key.
  unsigned long long last = ~0ull;
  for (int j = 0; j < p.topk; ++j) {
    int best = -1;
    unsigned long long bestk = 0;
    for (int e = 0; e < p.experts; ++e) {
      if (!group_ok[e / per]) continue;
      const unsigned long long k = ranked(sel[e], e);
      if (k < last && (best < 0 || k > bestk)) best = e, bestk = k;
    }
    chosen[j] = best;
    last = bestk;
  }
  float sum = 0.0f;
  for (int j = 0; j < p.topk; ++j) sum = __fadd_rn(sum, s[chosen[j]]);  // selection order, as the emulator
  const float denom = __fadd_rn(sum, p.epsilon);
  for (int j = 0; j < p.topk; ++j) {
    float w = s[chosen[j]];
    if (p.renormalize) w = __fdiv_rn(w, denom);
    if (p.scale_weights) w = __fmul_rn(w, p.scale);
    ids[t * p.topk + j] = chosen[j];
    weights[t * p.topk + j] = w;
  }
}

}  // namespace

void validate_gpu_router(const float* logits, std::size_t tokens, const moe::RouterSpec& spec) {
  spec.validate();
  using namespace moe;
  if (!logits && tokens) throw std::invalid_argument("logits: null pointer for " + std::to_string(tokens) + " tokens");
  if (spec.score != ScoreFunction::Sigmoid) throw std::invalid_argument("spec.score: the GPU router implements sigmoid only");
  if (spec.gate_format != GateFormat::Fp32) throw std::invalid_argument("spec.gate_format: the GPU router computes in fp32 only");
  if (spec.bias_format != BiasFormat::Fp32) throw std::invalid_argument("spec.bias_format: the GPU router takes an fp32 bias only");
  if (spec.nodes != 0) throw std::invalid_argument("spec.nodes: node-limited routing is not implemented on the GPU");
  if (spec.experts > kMaxExperts) throw std::invalid_argument("spec.experts: " + std::to_string(spec.experts) + " > 1024");
  if (spec.topk > kMaxTopk) throw std::invalid_argument("spec.topk: " + std::to_string(spec.topk) + " > 64");
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
  const RouterParams p{spec.experts, spec.topk, spec.groups, spec.topk_groups,
                       spec.group_score == moe::GroupScore::Top2Sum, spec.renormalize,
                       static_cast<float>(spec.renorm_epsilon), static_cast<float>(spec.routed_scale),
                       spec.scale_target == moe::ScaleTarget::Weights};
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

// The DeepSeek-V3 gate's selection for one token — group scores, group top-k, expert top-k,
// renormalised and scaled weights — written once for host and device: the kernel
// (router_sigmoid_groups.cu) runs it on one thread per token, and gpu/tests/test_gpu_host.cpp runs
// the same code on the host against moe::route_from_scores(). Order (moe/route.hpp): larger first,
// -0 == +0, NaN below everything, ties to the lower index.
#pragma once

#include <cstdint>
#include <cstring>

#include "gpu/layout.hpp"

namespace fp8lab::gpu {

inline constexpr int kRouterMaxExperts = 1024;
inline constexpr int kRouterMaxTopk = 64;

struct RouterParams {
  int experts, topk, groups, topk_groups;
  bool group_top2;  // GroupScore::Top2Sum (else Max)
  bool renormalize;
  float epsilon, scale;
  bool scale_weights;  // ScaleTarget::Weights
};

FP8LAB_HD inline std::uint32_t router_order_key(float x) {
  std::uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(x);
#else
  std::memcpy(&u, &x, 4);
#endif
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0u;  // NaN: the smallest key
  if ((u & 0x7FFFFFFFu) == 0) u = 0;               // -0 == +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
// The key with the index folded in: unique, and the lower index wins a tie.
FP8LAB_HD inline unsigned long long router_ranked(float x, unsigned i) {
  return (static_cast<unsigned long long>(router_order_key(x)) << 32) | (0xFFFFFFFFu - i);
}

FP8LAB_HD inline float router_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// s: the token's scores, sel: its biased selection scores (experts each). Scratch: gkey and
// group_ok (groups each), chosen (topk). Writes topk ids and weights.
FP8LAB_HD inline void router_select_token(const float* s, const float* sel, const RouterParams& p,
                                          unsigned long long* gkey, bool* group_ok, int* chosen, int* ids_out,
                                          float* w_out) {
  const int per = p.experts / p.groups;
  for (int g = 0; g < p.groups; ++g) group_ok[g] = p.groups <= 1;
  if (p.groups > 1) {
    for (int g = 0; g < p.groups; ++g) {
      unsigned long long k1 = 0, k2 = 0;
      int i1 = 0, i2 = 0;
      for (int i = 0; i < per; ++i) {
        const unsigned long long k = router_ranked(sel[g * per + i], unsigned(i));
        if (k > k1) {
          k2 = k1, i2 = i1;
          k1 = k, i1 = i;
        } else if (k > k2) {
          k2 = k, i2 = i;
        }
      }
      // Top-2 sum in float32 (NaN if either is NaN: fewer than two numbers), or the best.
      const float score = p.group_top2 ? router_add(sel[g * per + i1], sel[g * per + i2]) : sel[g * per + i1];
      gkey[g] = router_ranked(score, unsigned(g));
    }
    for (int j = 0; j < p.topk_groups; ++j) {
      int best = -1;
      for (int g = 0; g < p.groups; ++g)
        if (!group_ok[g] && (best < 0 || gkey[g] > gkey[best])) best = g;
      group_ok[best] = true;
    }
  }
  // Top-k among the eligible experts: repeatedly the largest key below the previous one.
  unsigned long long last = ~0ull;
  for (int j = 0; j < p.topk; ++j) {
    int best = -1;
    unsigned long long bestk = 0;
    for (int e = 0; e < p.experts; ++e) {
      if (!group_ok[e / per]) continue;
      const unsigned long long k = router_ranked(sel[e], unsigned(e));
      if (k < last && (best < 0 || k > bestk)) best = e, bestk = k;
    }
    chosen[j] = best;
    last = bestk;
  }
  float sum = 0.0f;
  for (int j = 0; j < p.topk; ++j) sum = router_add(sum, s[chosen[j]]);  // in selection order
  const float denom = router_add(sum, p.epsilon);
  for (int j = 0; j < p.topk; ++j) {
    float w = s[chosen[j]];
#if defined(__CUDA_ARCH__)
    if (p.renormalize) w = __fdiv_rn(w, denom);
    if (p.scale_weights) w = __fmul_rn(w, p.scale);
#else
    if (p.renormalize) w = w / denom;
    if (p.scale_weights) w = w * p.scale;
#endif
    ids_out[j] = chosen[j];
    w_out[j] = w;
  }
}

}  // namespace fp8lab::gpu

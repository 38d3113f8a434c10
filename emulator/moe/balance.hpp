// Load balancing (DeepSeek-V3 paper §2.1.2): per-expert loads, the auxiliary-loss-free bias
// update, the sequence-wise balance loss, and node-limited routing statistics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/router_spec.hpp"

namespace fp8lab::moe {

// Tokens routed to each expert: counts[e] = #{(t, j) : ids[t*topk + j] == e}. Every id must be in
// [0, experts) (std::invalid_argument naming the first bad element otherwise).
std::vector<std::int64_t> expert_loads(const std::int32_t* ids, std::size_t tokens, int topk, int experts);

// The sign rule over one batch: with mean load L = tokens*topk/experts, b_e -= gamma if expert e
// is overloaded (load > L), b_e += gamma if underloaded (load < L), unchanged at exactly L.
// Arithmetic: float32 add of (float)gamma, then rounded to `bias_format` (a bf16 bias is stored
// in bf16). gamma must be finite and >= 0. Returns the new bias.
std::vector<float> update_bias(const float* bias, int experts, const std::int32_t* ids, std::size_t tokens, int topk,
                               double gamma, BiasFormat bias_format = BiasFormat::Fp32);

// Sequence-wise balance loss alpha * sum_i f_i P_i over one sequence of T tokens:
//   f_i = experts / (topk * T) * #{t : i selected for t},
//   P_i = (1/T) sum_t s_{i,t} / sum_j s_{j,t}   (s = the unbiased affinity scores [T, experts]).
// Computed in double, sums in token then expert order (deterministic). A token whose scores sum
// to 0, or any NaN score, gives a NaN loss (there is no meaningful value).
double balance_loss(const float* scores, const std::int32_t* ids, std::size_t tokens, int experts, int topk,
                    double alpha);

// Nodes touched per token when experts lie contiguously on `nodes` nodes.
struct NodeStats {
  std::vector<std::int32_t> nodes_per_token;  // [tokens]
  double mean = 0;
  int max = 0;
  std::vector<std::int64_t> histogram;        // histogram[n] = tokens touching exactly n nodes, n = 0..nodes
};
NodeStats node_stats(const std::int32_t* ids, std::size_t tokens, int topk, int experts, int nodes);

}  // namespace fp8lab::moe

#include "moe/balance.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/pinned_math.hpp"

namespace fp8lab::moe {

namespace {
void check_ids(const std::int32_t* ids, std::size_t n, int experts) {
  for (std::size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= experts)
      throw std::invalid_argument("ids: element " + std::to_string(i) + " = " + std::to_string(ids[i]) +
                                  " is not an expert index in [0, " + std::to_string(experts) + ")");
}
void check_shape(int experts, int topk) {
  if (experts < 1) throw std::invalid_argument("experts = " + std::to_string(experts) + ": expected >= 1");
  if (topk < 1) throw std::invalid_argument("topk = " + std::to_string(topk) + ": expected >= 1");
}
}  // namespace

std::vector<std::int64_t> expert_loads(const std::int32_t* ids, std::size_t tokens, int topk, int experts) {
  check_shape(experts, topk);
  const std::size_t n = tokens * static_cast<std::size_t>(topk);
  check_ids(ids, n, experts);
  std::vector<std::int64_t> c(static_cast<std::size_t>(experts), 0);
  for (std::size_t i = 0; i < n; ++i) ++c[static_cast<std::size_t>(ids[i])];
  return c;
}

std::vector<float> update_bias(const float* bias, int experts, const std::int32_t* ids, std::size_t tokens, int topk,
                               double gamma, BiasFormat bias_format) {
  if (!std::isfinite(gamma) || gamma < 0)
    throw std::invalid_argument("gamma = " + std::to_string(gamma) + ": expected a finite value >= 0");
  const std::vector<std::int64_t> loads = expert_loads(ids, tokens, topk, experts);
  // Compare load * experts with tokens * topk in integers: no rounding in the over/under decision.
  const std::int64_t total = static_cast<std::int64_t>(tokens) * topk;
  const float g = static_cast<float>(gamma);
  std::vector<float> out(static_cast<std::size_t>(experts));
  for (int e = 0; e < experts; ++e) {
    const std::int64_t lhs = loads[static_cast<std::size_t>(e)] * experts;
    float b = bias[e];
    if (lhs > total) b = b - g;
    else if (lhs < total) b = b + g;
    out[static_cast<std::size_t>(e)] = bias_format == BiasFormat::Bf16 ? round_to_bf16(b) : b;
  }
  return out;
}

double balance_loss(const float* scores, const std::int32_t* ids, std::size_t tokens, int experts, int topk,
                    double alpha) {
  check_shape(experts, topk);
  if (tokens == 0) throw std::invalid_argument("scores: expected at least one token");
  if (!std::isfinite(alpha)) throw std::invalid_argument("alpha: expected a finite value");
  const std::vector<std::int64_t> loads = expert_loads(ids, tokens, topk, experts);
  const std::size_t E = static_cast<std::size_t>(experts);
  std::vector<double> P(E, 0.0);
  for (std::size_t t = 0; t < tokens; ++t) {
    const float* s = scores + t * E;
    double row = 0;
    for (std::size_t e = 0; e < E; ++e) row += s[e];
    if (!(row != 0) || std::isnan(row)) return std::numeric_limits<double>::quiet_NaN();
    for (std::size_t e = 0; e < E; ++e) P[e] += s[e] / row;
  }
  const double T = static_cast<double>(tokens);
  double loss = 0;
  for (std::size_t e = 0; e < E; ++e) {
    const double f = static_cast<double>(experts) / (static_cast<double>(topk) * T) * static_cast<double>(loads[e]);
    loss += f * (P[e] / T);
  }
  return alpha * loss;
}

NodeStats node_stats(const std::int32_t* ids, std::size_t tokens, int topk, int experts, int nodes) {
  check_shape(experts, topk);
  if (nodes < 1 || experts % nodes != 0)
    throw std::invalid_argument("nodes = " + std::to_string(nodes) + ": expected a divisor of experts (" +
                                std::to_string(experts) + ")");
  check_ids(ids, tokens * static_cast<std::size_t>(topk), experts);
  const int per = experts / nodes;
  NodeStats st;
  st.nodes_per_token.resize(tokens);
  st.histogram.assign(static_cast<std::size_t>(nodes) + 1, 0);
  std::vector<unsigned char> seen(static_cast<std::size_t>(nodes));
  double sum = 0;
  for (std::size_t t = 0; t < tokens; ++t) {
    std::fill(seen.begin(), seen.end(), 0);
    int n = 0;
    for (int j = 0; j < topk; ++j) {
      const int node = ids[t * static_cast<std::size_t>(topk) + static_cast<std::size_t>(j)] / per;
      if (!seen[static_cast<std::size_t>(node)]) {
        seen[static_cast<std::size_t>(node)] = 1;
        ++n;
      }
    }
    st.nodes_per_token[t] = n;
    ++st.histogram[static_cast<std::size_t>(n)];
    sum += n;
    if (n > st.max) st.max = n;
  }
  st.mean = tokens ? sum / static_cast<double>(tokens) : 0.0;
  return st;
}

}  // namespace fp8lab::moe

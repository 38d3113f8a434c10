#include "moe/route.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"
#include "moe/route_keys.hpp"
#include "moe/route_select.hpp"

namespace fp8lab::moe {

// The key helpers of moe/route_keys.hpp, as this (baseline) build compiles them.
using FP8LAB_ISA_NS::index_of;
using FP8LAB_ISA_NS::order_key;
using FP8LAB_ISA_NS::ranked_key;
using FP8LAB_ISA_NS::TopK;

std::uint32_t score_order_key(float x) { return order_key(x); }

float round_gate(float x, GateFormat f) { return f == GateFormat::Bf16 ? round_to_bf16(x) : x; }

namespace {

// Key with the index folded in: equal scores prefer the lower index.
inline std::uint64_t ranked(float x, std::uint32_t index) { return ranked_key(order_key(x), index); }

// TopK with its own storage, for route_token's selections (k <= 64: check_topk_capacity).
struct TopKOf : TopK {
  std::uint64_t storage[64];
  explicit TopKOf(int k_) : TopK(storage, k_) {}
};

// Top-k for k that may exceed TopKOf's fixed capacity (group/node counts, large topk): a partial
// sort of `keys` in place (callers do not read them again).
void top_indices(std::vector<std::uint64_t>& keys, int k, std::vector<std::uint32_t>& out) {
  std::partial_sort(keys.begin(), keys.begin() + k, keys.end(), std::greater<>());
  out.resize(static_cast<std::size_t>(k));
  for (int i = 0; i < k; ++i) out[static_cast<std::size_t>(i)] = index_of(keys[static_cast<std::size_t>(i)]);
}

float round_sel(float x, const RouterSpec& spec) { return spec.selection_is_bf16() ? round_to_bf16(x) : x; }

void check_topk_capacity(const RouterSpec& spec) {
  if (spec.topk > 64) {
    // The per-token selection keeps the best k in a small array; larger k is a spec this
    // emulator does not model (DeepSeek uses 6-8).
    throw std::invalid_argument("RouterSpec.topk = " + std::to_string(spec.topk) + ": at most 64 supported");
  }
}

struct Scratch {
  std::vector<float> sel;
  std::vector<unsigned char> eligible;
  std::vector<std::uint64_t> group_keys, node_keys;
  std::vector<std::uint32_t> chosen;
  std::vector<std::uint32_t> keys32;       // moe_select_grouped's scratch: experts + groups
  std::vector<std::uint64_t> chosen_keys;  // and topk_groups
  std::vector<float> block;  // a block of tokens' gate scores
};

// Routes one token from its gate-format scores. Writes k ids and k weights.
void route_token(const float* s, const float* bias, const RouterSpec& spec, Scratch& w, std::int32_t* ids_out,
                 float* w_out, std::size_t token) {
  const int E = spec.experts;
  w.sel.resize(static_cast<std::size_t>(E));
  w.eligible.assign(static_cast<std::size_t>(E), 1);
  selection_scores(s, bias, spec, w.sel.data());
  const float* sel = w.sel.data();

  if (spec.groups > 1) {
    const int per = spec.experts_per_group();
    w.group_keys.resize(static_cast<std::size_t>(spec.groups));
    for (int g = 0; g < spec.groups; ++g) {
      const float* gs = sel + static_cast<std::ptrdiff_t>(g) * per;
      float score;
      if (spec.group_score == GroupScore::Max) {
        TopKOf t(1);
        for (int i = 0; i < per; ++i) t.offer(ranked(gs[i], static_cast<std::uint32_t>(i)));
        score = gs[index_of(t.keys[0])];
      } else {
        TopKOf t(2);
        for (int i = 0; i < per; ++i) t.offer(ranked(gs[i], static_cast<std::uint32_t>(i)));
        score = round_sel(gs[index_of(t.keys[0])] + gs[index_of(t.keys[1])], spec);
      }
      w.group_keys[static_cast<std::size_t>(g)] = ranked(score, static_cast<std::uint32_t>(g));
    }
    top_indices(w.group_keys, spec.topk_groups, w.chosen);
    std::fill(w.eligible.begin(), w.eligible.end(), 0);
    for (std::uint32_t g : w.chosen)
      std::fill_n(w.eligible.begin() + static_cast<std::ptrdiff_t>(g) * per, per, 1);
  }

  if (spec.nodes > 0) {
    const int per = spec.experts_per_node();
    const int take = (spec.topk + spec.max_nodes - 1) / spec.max_nodes;  // ceil(K_r / M)
    w.node_keys.clear();
    for (int n = 0; n < spec.nodes; ++n) {
      TopKOf t(std::min(take, 64));
      int count = 0;
      for (int i = 0; i < per; ++i) {
        const int e = n * per + i;
        if (!w.eligible[static_cast<std::size_t>(e)]) continue;
        t.offer(ranked(sel[e], static_cast<std::uint32_t>(i)));
        ++count;
      }
      if (count == 0) continue;  // no eligible expert: the node cannot be chosen
      // Sum of the node's best scores in float32, largest first, rounded once.
      float sum = 0.0f;
      for (int j = 0; j < t.n; ++j) sum += sel[n * per + static_cast<int>(index_of(t.keys[j]))];
      w.node_keys.push_back(ranked(round_sel(sum, spec), static_cast<std::uint32_t>(n)));
    }
    const int pick = std::min<int>(spec.max_nodes, static_cast<int>(w.node_keys.size()));
    top_indices(w.node_keys, pick, w.chosen);
    std::vector<unsigned char> node_ok(static_cast<std::size_t>(spec.nodes), 0);
    for (std::uint32_t n : w.chosen) node_ok[n] = 1;
    for (int e = 0; e < E; ++e)
      if (!node_ok[static_cast<std::size_t>(e / per)]) w.eligible[static_cast<std::size_t>(e)] = 0;
  }

  TopKOf t(spec.topk);
  int eligible_count = 0;
  for (int e = 0; e < E; ++e) {
    if (!w.eligible[static_cast<std::size_t>(e)]) continue;
    ++eligible_count;
    t.offer(ranked(sel[e], static_cast<std::uint32_t>(e)));
  }
  if (eligible_count < spec.topk)
    throw std::invalid_argument("spec: the group/node limits leave " + std::to_string(eligible_count) +
                                " eligible experts for token " + std::to_string(token) + ", fewer than topk (" +
                                std::to_string(spec.topk) + ")");

  for (int j = 0; j < spec.topk; ++j) ids_out[j] = static_cast<std::int32_t>(index_of(t.keys[j]));
  weights_for_ids(s, ids_out, spec, w_out);
}

// gate_scores for `rows` consecutive tokens, serially; `rounded` is scratch.
void gate_score_rows(const float* logits, std::size_t rows, const RouterSpec& spec, float* out, std::vector<float>& rounded) {
  const std::size_t E = static_cast<std::size_t>(spec.experts);
  if (spec.gate_format == GateFormat::Bf16) rounded.resize(E);
  for (std::size_t t = 0; t < rows; ++t) {
    const float* x = logits + t * E;
    float* o = out + t * E;
    if (spec.score == ScoreFunction::Sigmoid) {
      // sigmoid_bf16(round_to_bf16(x)) and sigmoid_f32(x) over the row, vectorised
      // (sigmoid_f32_array: the same bits as sigmoid_f32 element by element).
      if (spec.gate_format == GateFormat::Bf16) {
        for (std::size_t e = 0; e < E; ++e) rounded[e] = round_to_bf16(x[e]);
        sigmoid_f32_array(rounded.data(), E, o);
        for (std::size_t e = 0; e < E; ++e) o[e] = round_to_bf16(o[e]);
      } else {
        sigmoid_f32_array(x, E, o);
      }
    } else {
      // Softmax in float32: NaN anywhere in the row makes the row NaN (as torch's does).
      float m = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (std::size_t e = 0; e < E; ++e) {
        if (std::isnan(x[e])) nan = true;
        m = std::max(m, x[e]);
      }
      if (nan || std::isinf(m)) {
        // All -inf (0/0) or NaN or a +inf logit: the real softmax is undefined; give NaN.
        std::fill(o, o + E, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      float sum = 0.0f;
      for (std::size_t e = 0; e < E; ++e) {
        o[e] = exp_f32(x[e] - m);
        sum += o[e];
      }
      for (std::size_t e = 0; e < E; ++e) o[e] = o[e] / sum;
    }
  }
}

// Bias rounded to its format once (empty: no bias).
std::vector<float> rounded_bias(const float* bias, const RouterSpec& spec) {
  std::vector<float> b;
  if (bias) {
    b.assign(bias, bias + spec.experts);
    if (spec.bias_format == BiasFormat::Bf16)
      for (float& x : b) x = round_to_bf16(x);
  }
  return b;
}

// Tokens per block: the gate scores of a block are computed into a buffer of the thread (a few
// KiB, in cache) and routed at once, instead of all tokens' scores in one fresh array.
constexpr std::size_t kBlock = 16;

// Routes tokens [0, tokens) into ids/weights ([tokens, topk] each). `scores_of(begin, n, buffer)`
// returns the gate-format scores of tokens [begin, begin + n), computed into buffer (n * experts
// floats) or pointing into the caller's array. `reference` routes every token with route_token.
template <class ScoresOf>
void route_blocks(std::size_t tokens, const float* bias, const RouterSpec& spec, std::int32_t* ids, float* weights,
                  bool reference, const ScoresOf& scores_of) {
  const std::vector<float> b = rounded_bias(bias, spec);
  const float* bp = bias ? b.data() : nullptr;
  const std::size_t E = static_cast<std::size_t>(spec.experts), K = static_cast<std::size_t>(spec.topk);
  const GroupedSelection sel{spec.experts, spec.topk, spec.groups, spec.topk_groups,
                             spec.group_score == GroupScore::Max, spec.selection_is_bf16()};
  parallel_for(tokens, 256, [&](std::size_t begin, std::size_t end) {
    Scratch w;
    w.block.resize(kBlock * E);
    w.keys32.resize(E + static_cast<std::size_t>(spec.groups));
    w.chosen_keys.resize(static_cast<std::size_t>(spec.topk_groups));
    for (std::size_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::size_t n = std::min(kBlock, end - b0);
      const float* s = scores_of(b0, n, w.block.data());
      if (spec.nodes > 0 || reference) {
        for (std::size_t i = 0; i < n; ++i)
          route_token(s + i * E, bp, spec, w, ids + (b0 + i) * K, weights + (b0 + i) * K, b0 + i);
        continue;
      }
      moe_select_grouped(s, n, bp, sel, w.keys32.data(), w.chosen_keys.data(), ids + b0 * K);
      for (std::size_t i = 0; i < n; ++i) weights_for_ids(s + i * E, ids + (b0 + i) * K, spec, weights + (b0 + i) * K);
    }
  });
}

void check_route_spec(const RouterSpec& spec) {
  spec.validate();
  check_topk_capacity(spec);
}

// Gate-format scores from given scores: as they are for an fp32 gate, else rounded per block.
void route_scores_into(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec,
                       std::int32_t* ids, float* weights, bool reference) {
  check_route_spec(spec);
  const std::size_t E = static_cast<std::size_t>(spec.experts);
  route_blocks(tokens, bias, spec, ids, weights, reference, [&](std::size_t begin, std::size_t n, float* buf) {
    const float* src = scores + begin * E;
    if (spec.gate_format == GateFormat::Fp32) return src;
    for (std::size_t i = 0; i < n * E; ++i) buf[i] = round_to_bf16(src[i]);
    return static_cast<const float*>(buf);
  });
}

RouteResult result_for(std::size_t tokens, const RouterSpec& spec) {
  RouteResult r;
  r.tokens = tokens;
  r.topk = spec.topk;
  r.ids.resize(tokens * static_cast<std::size_t>(spec.topk));
  r.weights.resize(tokens * static_cast<std::size_t>(spec.topk));
  return r;
}

}  // namespace

void weights_for_ids(const float* s, const std::int32_t* ids, const RouterSpec& spec, float* w_out) {
  const GateFormat gf = spec.gate_format;
  float sum = 0.0f;
  for (int j = 0; j < spec.topk; ++j) {
    w_out[j] = s[ids[j]];
    sum += s[ids[j]];  // float32, in the given (selection) order
  }
  if (spec.renormalize) {
    const float denom = round_gate(sum, gf) + static_cast<float>(spec.renorm_epsilon);
    for (int j = 0; j < spec.topk; ++j) w_out[j] = round_gate(w_out[j] / denom, gf);
  }
  if (spec.scale_target == ScaleTarget::Weights) {
    const float scale = static_cast<float>(spec.routed_scale);
    for (int j = 0; j < spec.topk; ++j) w_out[j] = round_gate(w_out[j] * scale, gf);
  }
  if (spec.weights_format != GateFormat::Fp32)
    for (int j = 0; j < spec.topk; ++j) w_out[j] = round_gate(w_out[j], spec.weights_format);
}

void selection_scores(const float* s, const float* bias, const RouterSpec& spec, float* out) {
  const int E = spec.experts;
  if (!bias) {
    std::copy(s, s + E, out);
    return;
  }
  // float32 add, then the selection format (torch computes bf16 + bf16 in float32 and rounds once).
  for (int e = 0; e < E; ++e) out[e] = round_sel(s[e] + bias[e], spec);
}

void gate_scores(const float* logits, std::size_t tokens, const RouterSpec& spec, float* out) {
  spec.validate();
  parallel_for(tokens, 256, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rounded;
    gate_score_rows(logits + begin * static_cast<std::size_t>(spec.experts), end - begin, spec, out + begin * static_cast<std::size_t>(spec.experts), rounded);
  });
}

void route_into(const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec, std::int32_t* ids,
                float* weights) {
  check_route_spec(spec);
  const std::size_t E = static_cast<std::size_t>(spec.experts);
  // Each thread's blocks of scores are computed just before they are routed (gate_score_rows).
  route_blocks(tokens, bias, spec, ids, weights, false, [&](std::size_t begin, std::size_t n, float* buf) {
    thread_local std::vector<float> rounded;
    gate_score_rows(logits + begin * E, n, spec, buf, rounded);
    return static_cast<const float*>(buf);
  });
}

void route_from_scores_into(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec,
                            std::int32_t* ids, float* weights) {
  route_scores_into(scores, tokens, bias, spec, ids, weights, false);
}

RouteResult route(const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  check_route_spec(spec);
  RouteResult r = result_for(tokens, spec);
  route_into(logits, tokens, bias, spec, r.ids.data(), r.weights.data());
  return r;
}

RouteResult route_from_scores(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  check_route_spec(spec);
  RouteResult r = result_for(tokens, spec);
  route_scores_into(scores, tokens, bias, spec, r.ids.data(), r.weights.data(), false);
  return r;
}

namespace detail {
RouteResult route_from_scores_reference(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  check_route_spec(spec);
  RouteResult r = result_for(tokens, spec);
  route_scores_into(scores, tokens, bias, spec, r.ids.data(), r.weights.data(), true);
  return r;
}
}  // namespace detail

}  // namespace fp8lab::moe

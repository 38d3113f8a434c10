#include "moe/route.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"

namespace fp8lab::moe {

std::uint32_t score_order_key(float x) {
  // Standard order-preserving map of IEEE floats onto unsigned integers: flip all bits of
  // negatives, set the sign bit of positives. -inf maps to 0x007FFFFF > 0, so NaN (0) is lowest.
  // Written as selects, without branches, so that a loop of it vectorises.
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x), magnitude = u & 0x7FFFFFFFu;
  const std::uint32_t v = magnitude == 0 ? 0u : u;  // -0 -> +0
  const std::uint32_t key = (v & 0x80000000u) ? ~v : (v | 0x80000000u);
  return magnitude > 0x7F800000u ? 0u : key;
}

float round_gate(float x, GateFormat f) { return f == GateFormat::Bf16 ? round_to_bf16(x) : x; }

namespace {

// Key with the index folded in: equal scores prefer the lower index.
inline std::uint64_t ranked(float x, std::uint32_t index) {
  return (static_cast<std::uint64_t>(score_order_key(x)) << 32) | (0xFFFFFFFFu - index);
}
inline std::uint32_t index_of(std::uint64_t key) { return 0xFFFFFFFFu - static_cast<std::uint32_t>(key); }

// Keeps the k largest keys seen, in descending order.
struct TopK {
  std::uint64_t keys[64];
  int k = 0, n = 0;
  explicit TopK(int k_) : k(k_) {}
  void offer(std::uint64_t key) {
    if (n == k) {
      if (key <= keys[k - 1]) return;
      --n;
    }
    int i = n++;
    while (i > 0 && keys[i - 1] < key) {
      keys[i] = keys[i - 1];
      --i;
    }
    keys[i] = key;
  }
};

// Top-k for k that may exceed TopK's fixed capacity (group/node counts, large topk): a partial
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
  std::vector<std::uint64_t> group_keys, node_keys, keys;
  std::vector<std::uint32_t> chosen;
};

// route_token for specs without node limits (every router recipe but the node-limited ones), in
// fewer steps with the same keys, order and ties: every expert's ranked key once (a loop without
// branches), each group's best one or two keys by one scan, the groups by top_indices, and the
// final top-k over the chosen groups' experts only (the others are not eligible). TopK keeps the
// k largest of distinct keys, so the order in which they are offered does not matter.
void route_token_grouped(const float* s, const float* bias, const RouterSpec& spec, Scratch& w, std::int32_t* ids_out,
                         float* w_out) {
  const int E = spec.experts;
  w.sel.resize(static_cast<std::size_t>(E));
  w.keys.resize(static_cast<std::size_t>(E));
  selection_scores(s, bias, spec, w.sel.data());
  const float* sel = w.sel.data();
  std::uint64_t* keys = w.keys.data();
  for (int e = 0; e < E; ++e) keys[e] = ranked(sel[e], static_cast<std::uint32_t>(e));
  TopK t(spec.topk);
  if (spec.groups > 1) {
    const int per = spec.experts_per_group();
    w.group_keys.resize(static_cast<std::size_t>(spec.groups));
    for (int g = 0; g < spec.groups; ++g) {
      const std::uint64_t* gk = keys + static_cast<std::ptrdiff_t>(g) * per;
      std::uint64_t first = gk[0], second = 0;  // ranked keys are > 0: 0 is below every one
      for (int i = 1; i < per; ++i) {
        const std::uint64_t k = gk[i];
        second = k > first ? first : (k > second ? k : second);
        first = k > first ? k : first;
      }
      const float score = spec.group_score == GroupScore::Max
                              ? sel[index_of(first)]
                              : round_sel(sel[index_of(first)] + sel[index_of(second)], spec);
      w.group_keys[static_cast<std::size_t>(g)] = ranked(score, static_cast<std::uint32_t>(g));
    }
    top_indices(w.group_keys, spec.topk_groups, w.chosen);
    for (const std::uint32_t g : w.chosen)
      for (int i = 0; i < per; ++i) t.offer(keys[static_cast<std::ptrdiff_t>(g) * per + i]);
  } else {
    for (int e = 0; e < E; ++e) t.offer(keys[e]);
  }
  for (int j = 0; j < spec.topk; ++j) ids_out[j] = static_cast<std::int32_t>(index_of(t.keys[j]));
  weights_for_ids(s, ids_out, spec, w_out);
}

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
        TopK t(1);
        for (int i = 0; i < per; ++i) t.offer(ranked(gs[i], static_cast<std::uint32_t>(i)));
        score = gs[index_of(t.keys[0])];
      } else {
        TopK t(2);
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
      TopK t(std::min(take, 64));
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

  TopK t(spec.topk);
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

RouteResult route_impl(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  RouteResult r;
  r.tokens = tokens;
  r.topk = spec.topk;
  r.ids.resize(tokens * static_cast<std::size_t>(spec.topk));
  r.weights.resize(tokens * static_cast<std::size_t>(spec.topk));
  std::vector<float> b;
  if (bias) {
    b.assign(bias, bias + spec.experts);
    if (spec.bias_format == BiasFormat::Bf16)
      for (float& x : b) x = round_to_bf16(x);
  }
  const std::size_t E = static_cast<std::size_t>(spec.experts), K = static_cast<std::size_t>(spec.topk);
  parallel_for(tokens, 256, [&](std::size_t begin, std::size_t end) {
    Scratch w;
    for (std::size_t t = begin; t < end; ++t) {
      if (spec.nodes > 0)
        route_token(scores + t * E, bias ? b.data() : nullptr, spec, w, r.ids.data() + t * K, r.weights.data() + t * K, t);
      else
        route_token_grouped(scores + t * E, bias ? b.data() : nullptr, spec, w, r.ids.data() + t * K, r.weights.data() + t * K);
    }
  });
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
  const std::size_t E = static_cast<std::size_t>(spec.experts);
  parallel_for(tokens, 256, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rounded(spec.gate_format == GateFormat::Bf16 ? E : 0);
    for (std::size_t t = begin; t < end; ++t) {
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
  });
}

RouteResult route(const float* logits, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  spec.validate();
  check_topk_capacity(spec);
  std::vector<float> scores(tokens * static_cast<std::size_t>(spec.experts));
  gate_scores(logits, tokens, spec, scores.data());
  return route_impl(scores.data(), tokens, bias, spec);
}

RouteResult route_from_scores(const float* scores, std::size_t tokens, const float* bias, const RouterSpec& spec) {
  spec.validate();
  check_topk_capacity(spec);
  if (spec.gate_format == GateFormat::Fp32) return route_impl(scores, tokens, bias, spec);
  std::vector<float> s(scores, scores + tokens * static_cast<std::size_t>(spec.experts));
  for (float& x : s) x = round_to_bf16(x);
  return route_impl(s.data(), tokens, bias, spec);
}

}  // namespace fp8lab::moe

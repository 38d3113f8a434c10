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
  std::vector<std::uint64_t> group_keys, node_keys;
  std::vector<std::uint32_t> chosen, keys32, group_floor;
  std::vector<float> block;  // a block of tokens' gate scores
};

// The score a key stands for, up to what the order cannot see: -0 comes back as +0 and every NaN
// as the quiet NaN (sums and bf16 rounding of those give values of the same key).
inline float value_of_key(std::uint32_t k) {
  if (k == 0) return std::numeric_limits<float>::quiet_NaN();
  return std::bit_cast<float>((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// 16 order keys (GCC/Clang vector extension: one AVX-512 register, two AVX2 or four SSE2 ones).
using KeyLanes = std::uint32_t __attribute__((vector_size(64)));
constexpr int kLanes = 16;
inline KeyLanes load_keys(const std::uint32_t* p) {
  KeyLanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline KeyLanes max_lanes(KeyLanes a, KeyLanes b) { return a > b ? a : b; }
inline KeyLanes min_lanes(KeyLanes a, KeyLanes b) { return a > b ? b : a; }
// The upper half of each group of 2w lanes moved down onto the lower half (the rest don't matter).
template <int W>
inline KeyLanes down(KeyLanes v) {
  if constexpr (W == 8) return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
  if constexpr (W == 4) return __builtin_shufflevector(v, v, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
  if constexpr (W == 2) return __builtin_shufflevector(v, v, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  if constexpr (W == 1) return __builtin_shufflevector(v, v, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
}
// Merges the top-2 (f, s) of lanes [w, 2w) into those of lanes [0, w).
template <int W>
inline void merge_top2(KeyLanes& f, KeyLanes& s) {
  const KeyLanes f2 = down<W>(f), s2 = down<W>(s);
  s = max_lanes(max_lanes(s, s2), min_lanes(f, f2));
  f = max_lanes(f, f2);
}

// The two largest of n keys, as a multiset (second == first when the largest occurs twice):
// running maxima in 16 lanes, then a halving reduction.
inline void top2_keys(const std::uint32_t* k, int n, std::uint32_t& first, std::uint32_t& second) {
  if (n % kLanes != 0) {
    std::uint32_t f = k[0], s = 0;  // 0 (the NaN key) is below or equal to every key
    for (int i = 1; i < n; ++i) {
      s = std::max(s, std::min(f, k[i]));
      f = std::max(f, k[i]);
    }
    first = f;
    second = s;
    return;
  }
  KeyLanes f = load_keys(k), s = KeyLanes{};  // s = 0: below or equal to every key
  for (int i = kLanes; i < n; i += kLanes) {
    const KeyLanes x = load_keys(k + i);
    s = max_lanes(s, min_lanes(f, x));
    f = max_lanes(f, x);
  }
  merge_top2<8>(f, s);
  merge_top2<4>(f, s);
  merge_top2<2>(f, s);
  merge_top2<1>(f, s);
  first = f[0];
  second = s[0];
}

// Offers to t the keys of experts [begin, begin + n) whose order key is at least `floor` or the
// current k-th key: the others cannot enter the top k. Comparisons 16 at a time, offers only for
// the survivors.
inline void offer_range(const std::uint32_t* keys, int begin, int n, std::uint32_t floor, TopK& t) {
  const KeyLanes bit = {1u << 0, 1u << 1, 1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
                        1u << 8, 1u << 9, 1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15};
  int i = begin;
  for (; i + kLanes <= begin + n; i += kLanes) {
    const std::uint32_t thr = t.n == t.k ? std::max(floor, static_cast<std::uint32_t>(t.keys[t.k - 1] >> 32)) : floor;
    KeyLanes m = (load_keys(keys + i) >= thr) & bit;  // lanes of the survivors: their bit
    m |= down<8>(m);
    m |= down<4>(m);
    m |= down<2>(m);
    m |= down<1>(m);
    for (std::uint32_t mask = m[0]; mask; mask &= mask - 1) {
      const int e = i + std::countr_zero(mask);
      t.offer((static_cast<std::uint64_t>(keys[e]) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(e)));
    }
  }
  for (; i < begin + n; ++i)
    if (keys[i] >= floor) t.offer((static_cast<std::uint64_t>(keys[i]) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(i)));
}

// The selection of specs without node limits (every router recipe), on 32-bit order keys with the
// same order and ties as route_token (the reference, kept below for node limits and for the tests):
// each group's two best keys (its score only depends on their values), the groups by rank, and the
// final top-k over the chosen groups' experts, skipping those below the smallest of the chosen
// groups' best keys once these are at least k (then the k-th best is at least that). TopK keeps the
// k largest of distinct keys, so the order of the offers does not matter.
void select_grouped(const float* s, const float* bias, const RouterSpec& spec, Scratch& w, std::int32_t* ids_out) {
  const int E = spec.experts;
  w.keys32.resize(static_cast<std::size_t>(E));
  std::uint32_t* keys = w.keys32.data();
  if (!bias) {
    for (int e = 0; e < E; ++e) keys[e] = score_order_key(s[e]);
  } else if (spec.selection_is_bf16()) {
    for (int e = 0; e < E; ++e) keys[e] = score_order_key(round_to_bf16(s[e] + bias[e]));
  } else {
    for (int e = 0; e < E; ++e) keys[e] = score_order_key(s[e] + bias[e]);
  }
  TopK t(spec.topk);
  if (spec.groups == 1) {
    offer_range(keys, 0, E, 0, t);
  } else {
    const int G = spec.groups, per = spec.experts_per_group();
    const bool max_score = spec.group_score == GroupScore::Max;
    w.group_keys.resize(static_cast<std::size_t>(G));
    w.group_floor.resize(static_cast<std::size_t>(G));
    for (int g = 0; g < G; ++g) {
      std::uint32_t first, second;
      top2_keys(keys + static_cast<std::ptrdiff_t>(g) * per, per, first, second);
      const std::uint32_t score =
          max_score ? first : score_order_key(round_sel(value_of_key(first) + value_of_key(second), spec));
      w.group_keys[static_cast<std::size_t>(g)] = (static_cast<std::uint64_t>(score) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(g));
      w.group_floor[static_cast<std::size_t>(g)] = max_score ? first : second;
    }
    // The chosen groups: rank = how many groups come first (keys are distinct).
    w.chosen.clear();
    if (G <= 64) {
      for (int g = 0; g < G; ++g) {
        int rank = 0;
        for (int h = 0; h < G; ++h) rank += w.group_keys[static_cast<std::size_t>(h)] > w.group_keys[static_cast<std::size_t>(g)];
        if (rank < spec.topk_groups) w.chosen.push_back(static_cast<std::uint32_t>(g));
      }
    } else {
      top_indices(w.group_keys, spec.topk_groups, w.chosen);
    }
    const long known = static_cast<long>(w.chosen.size()) * (max_score ? 1 : 2);
    std::uint32_t floor = 0;
    if (known >= spec.topk) {
      floor = 0xFFFFFFFFu;
      for (const std::uint32_t g : w.chosen) floor = std::min(floor, w.group_floor[g]);
    }
    for (const std::uint32_t g : w.chosen) offer_range(keys, static_cast<int>(g) * per, per, floor, t);
  }
  for (int j = 0; j < spec.topk; ++j) ids_out[j] = static_cast<std::int32_t>(index_of(t.keys[j]));
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
  parallel_for(tokens, 256, [&](std::size_t begin, std::size_t end) {
    Scratch w;
    w.block.resize(kBlock * E);
    for (std::size_t b0 = begin; b0 < end; b0 += kBlock) {
      const std::size_t n = std::min(kBlock, end - b0);
      const float* s = scores_of(b0, n, w.block.data());
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t t = b0 + i;
        const float* st = s + i * E;
        if (spec.nodes > 0 || reference) {
          route_token(st, bp, spec, w, ids + t * K, weights + t * K, t);
        } else {
          select_grouped(st, bp, spec, w, ids + t * K);
          weights_for_ids(st, ids + t * K, spec, weights + t * K);
        }
      }
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

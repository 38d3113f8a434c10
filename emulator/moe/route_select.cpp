// moe_select_grouped (moe/route_select.hpp), compiled once per instruction set
// (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): the order keys 16 lanes at a time (GCC/Clang vector
// extension: one AVX-512 register, two AVX2 or four SSE2 ones). Keys are integers and the only
// float operations (bias add, group sum, bf16 rounding) are single IEEE operations, so every
// variant gives the same ids.
#include "moe/route_select.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/bf16.hpp"
#include "common/isa.hpp"
#include "moe/route_keys.hpp"

// The 64-byte vector type below is internal (anonymous namespace, inlined), so the compilers' note
// that passing it changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using KeyLanes = std::uint32_t __attribute__((vector_size(64)));
constexpr int kLanes = 16;
inline KeyLanes load_keys(const std::uint32_t* p) {
  KeyLanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline KeyLanes max_lanes(const KeyLanes& a, const KeyLanes& b) { return a > b ? a : b; }
inline KeyLanes min_lanes(const KeyLanes& a, const KeyLanes& b) { return a > b ? b : a; }
// The upper half of each group of 2w lanes moved down onto the lower half (the rest don't matter).
template <int W>
inline KeyLanes down(const KeyLanes& v) {
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
      t.offer(ranked_key(keys[e], static_cast<std::uint32_t>(e)));
    }
  }
  for (; i < begin + n; ++i)
    if (keys[i] >= floor) t.offer(ranked_key(keys[i], static_cast<std::uint32_t>(i)));
}

inline float round_sel(float x, bool bf16) { return bf16 ? round_to_bf16(x) : x; }

// One token, with the same order and ties as route.cpp's route_token: each group's two best keys
// (its score only depends on their values), the best topk_groups groups, and the final top-k over
// their experts, skipping those below the smallest of the chosen groups' best keys once these are
// at least k (then the k-th best is at least that). TopK keeps the k largest of distinct keys, so
// the order of the offers does not matter.
void select_token(const float* s, const float* bias, const moe::GroupedSelection& sel, std::uint32_t* keys,
                  std::uint64_t* group_keys, std::int32_t* ids_out) {
  const int E = sel.experts;
  if (!bias) {
    for (int e = 0; e < E; ++e) keys[e] = order_key(s[e]);
  } else if (sel.bf16) {
    for (int e = 0; e < E; ++e) keys[e] = order_key(round_to_bf16(s[e] + bias[e]));
  } else {
    for (int e = 0; e < E; ++e) keys[e] = order_key(s[e] + bias[e]);
  }
  std::uint64_t best[64];  // topk <= 64 (route.cpp checks)
  TopK t(best, sel.topk);
  if (sel.groups == 1) {
    offer_range(keys, 0, E, 0, t);
  } else {
    const int G = sel.groups, per = E / G;
    std::uint32_t* group_floor = keys + E;
    TopK chosen(group_keys, sel.topk_groups);
    for (int g = 0; g < G; ++g) {
      std::uint32_t first, second;
      top2_keys(keys + static_cast<std::ptrdiff_t>(g) * per, per, first, second);
      const std::uint32_t score =
          sel.max_score ? first : order_key(round_sel(value_of_key(first) + value_of_key(second), sel.bf16));
      chosen.offer(ranked_key(score, static_cast<std::uint32_t>(g)));
      group_floor[g] = sel.max_score ? first : second;
    }
    const long known = static_cast<long>(chosen.n) * (sel.max_score ? 1 : 2);
    std::uint32_t floor = 0;
    if (known >= sel.topk) {
      floor = 0xFFFFFFFFu;
      for (int j = 0; j < chosen.n; ++j) floor = std::min(floor, group_floor[index_of(chosen.keys[j])]);
    }
    for (int j = 0; j < chosen.n; ++j) offer_range(keys, static_cast<int>(index_of(chosen.keys[j])) * per, per, floor, t);
  }
  for (int j = 0; j < sel.topk; ++j) ids_out[j] = static_cast<std::int32_t>(index_of(t.keys[j]));
}

}  // namespace

void moe_select_grouped(const float* scores, std::size_t tokens, const float* bias, const moe::GroupedSelection& sel,
                        std::uint32_t* keys, std::uint64_t* group_keys, std::int32_t* ids) {
  const std::size_t E = static_cast<std::size_t>(sel.experts), K = static_cast<std::size_t>(sel.topk);
  for (std::size_t i = 0; i < tokens; ++i) select_token(scores + i * E, bias, sel, keys, group_keys, ids + i * K);
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, moe_select_grouped,
                      (const float* scores, std::size_t tokens, const float* bias, const moe::GroupedSelection& sel,
                       std::uint32_t* keys, std::uint64_t* group_keys, std::int32_t* ids),
                      (scores, tokens, bias, sel, keys, group_keys, ids))

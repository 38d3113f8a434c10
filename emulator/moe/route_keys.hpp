// The routers' 32-bit order keys and their top-k, shared by the reference selection (moe/route.cpp)
// and the dispatched one (moe/route_select.cpp). As common/pinned_exp.hpp, everything lies in an
// anonymous namespace inside fp8lab::FP8LAB_ISA_NS: each instruction-set build compiles its own
// copy, and no inline symbol is shared between builds with different flags.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

#include "common/isa.hpp"

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// Standard order-preserving map of IEEE floats onto unsigned integers: flip all bits of
// negatives, set the sign bit of positives. -inf maps to 0x007FFFFF > 0, so NaN (0) is lowest.
// Written as selects, without branches, so that a loop of it vectorises.
inline std::uint32_t order_key(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x), magnitude = u & 0x7FFFFFFFu;
  const std::uint32_t v = magnitude == 0 ? 0u : u;  // -0 -> +0
  const std::uint32_t key = (v & 0x80000000u) ? ~v : (v | 0x80000000u);
  return magnitude > 0x7F800000u ? 0u : key;
}

// The score a key stands for, up to what the order cannot see: -0 comes back as +0 and every NaN
// as the quiet NaN (sums and bf16 rounding of those give values of the same key).
inline float value_of_key(std::uint32_t k) {
  if (k == 0) return std::numeric_limits<float>::quiet_NaN();
  return std::bit_cast<float>((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// Key with the index folded in: equal keys prefer the lower index.
inline std::uint64_t ranked_key(std::uint32_t key, std::uint32_t index) {
  return (static_cast<std::uint64_t>(key) << 32) | (0xFFFFFFFFu - index);
}
inline std::uint32_t index_of(std::uint64_t key) { return 0xFFFFFFFFu - static_cast<std::uint32_t>(key); }

// Keeps the k largest keys offered, in descending order, in the caller's array of k.
struct TopK {
  std::uint64_t* keys;
  int k, n = 0;
  TopK(std::uint64_t* storage, int k_) : keys(storage), k(k_) {}
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

}  // namespace
}  // namespace fp8lab::FP8LAB_ISA_NS

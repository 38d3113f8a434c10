// Top-k selections compared tie-aware: how many selected tokens change between two indexers (the
// FP8 one and an exact one), and the verdict on a kernel's selection against the emulator's logits.
//
// Ties. A selection of size K = min(topk, valid) from logits x is *admissible* when it holds every
// token whose logit is above T (the K-th largest, counting repeats) and the rest from the tokens at
// exactly T. Between two logit rows a and b the change count is the least |A \ B| over admissible
// A (of a) and B (of b): a swap between exactly equal logits is never a change. With a> / a= the
// tokens above / at a's threshold (likewise b), the best overlap is
//   |a> ∩ b>| + x1 + x2 + x3,  x1 = min(|a> ∩ b=|, kb), x2 = min(|a= ∩ b>|, ka),
//   x3 = min(|a= ∩ b=|, kb - x1, ka - x2),
// where ka = K - |a>| and kb = K - |b>| are the boundary slots (greedy is optimal: x3 uses a slot of
// each side, x1 and x2 one each).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fp8lab::mla {

struct SelectionChange {
  std::size_t selected = 0;  // K = min(topk, valid tokens)
  std::size_t changed = 0;   // tie-aware change count (see above)
  std::size_t ties_a = 0;    // tokens exactly at a's K-th logit (1 when there is no tie)
  std::size_t ties_b = 0;
};

// a, b: m x n logits (-inf outside [starts[i], ends[i]); starts/ends may be null = [0, n)).
std::vector<SelectionChange> selection_changes(const double* a, const double* b, std::size_t m, std::size_t n,
                                               const std::int32_t* starts, const std::int32_t* ends, int topk);

// Checks a kernel's selection (m x topk indices in any order, -1 padding) against the logits the
// emulator computed: exactly min(topk, valid) distinct tokens inside [starts[i], ends[i]), then -1
// padding (anywhere in the row), forming an admissible selection. Returns "" when every query
// passes, else a message naming the first offending query and what is wrong with it.
std::string check_selection(const std::int32_t* indices, std::size_t m, int topk, const double* logits, std::size_t n,
                            const std::int32_t* starts, const std::int32_t* ends);

}  // namespace fp8lab::mla

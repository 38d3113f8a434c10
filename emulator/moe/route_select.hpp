// The selection of router specs without node limits (every router recipe), on 32-bit order keys:
// built once per instruction set (moe/route_select.cpp, FP8LAB_DISPATCH_SOURCES), called by
// moe/route.cpp per block of tokens. Same ids, in the same order, as route.cpp's reference
// route_token (tests/cpp/test_moe_route.cpp, MoeRouteFast, on every variant this CPU runs).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fp8lab::moe {

// What the selection reads of a RouterSpec, as plain values: the dispatched builds call no inline
// function of RouterSpec (an out-of-line copy of one, compiled with AVX-512, could be linked into
// baseline code).
struct GroupedSelection {
  int experts, topk, groups, topk_groups;
  bool max_score;  // a group's score is its best score, else the sum of its two best
  bool bf16;       // selection scores (biased, group sums) rounded to bf16 (RouterSpec::selection_is_bf16)
};

}  // namespace fp8lab::moe

namespace fp8lab {

// The top-k expert ids of `tokens` tokens, largest first: scores are rows of sel.experts gate-format
// scores, bias sel.experts values in their format (or nullptr), ids rows of sel.topk. Scratch:
// keys holds sel.experts + sel.groups words, group_keys sel.topk_groups.
void moe_select_grouped(const float* scores, std::size_t tokens, const float* bias, const moe::GroupedSelection& sel,
                        std::uint32_t* keys, std::uint64_t* group_keys, std::int32_t* ids);

}  // namespace fp8lab

// What the dense decode (decode.cpp) and the sparse decode (sparse_decode.cpp) both do with their
// outputs: the result and reference they start from (every row "sees no key": out 0, lse +inf,
// bound 0, decode.hpp's convention), the bound plan of one row, and where one row's reference goes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "mla/attention_row.hpp"
#include "mla/decode.hpp"

namespace fp8lab::mla {

// rows = batch * s_q * heads output rows of C values each.
inline DecodeResult empty_decode_result(std::size_t rows, std::size_t C) {
  DecodeResult r;
  r.out.assign(rows * C, 0.0f);
  r.out_bf16.assign(rows * C, 0);
  r.lse.assign(rows, std::numeric_limits<float>::infinity());
  return r;
}

inline DecodeReference empty_decode_reference(std::size_t rows, std::size_t C) {
  DecodeReference ref;
  ref.out.assign(rows * C, 0.0);
  ref.out_bound.assign(rows * C, 0.0);
  ref.lse.assign(rows, std::numeric_limits<double>::infinity());
  ref.lse_bound.assign(rows, 0.0);
  return ref;
}

// The bound plan of a row that sees V keys, under the split plan sp of tiles of `tile` keys: a
// split holds at most per_split tiles, of which the row sees at most min(V, per_split * tile) keys.
inline RowBoundPlan row_bound_plan(const SplitPlan& sp, std::size_t V, std::size_t tile, int num_splits,
                                   MatmulFormat decode_p, BoundScope scope) {
  RowBoundPlan bp;
  bp.per_split = sp.per_split;
  bp.tokens_split = std::min(V, sp.per_split * tile);
  bp.num_splits = num_splits;
  bp.decode_p = decode_p;
  bp.any_kernel = scope == BoundScope::AnyKernel;
  return bp;
}

// Row rr's values at out row oi ([batch, s_q, heads] order) and lse index li ([batch, heads, s_q]).
inline void store_row(DecodeReference& ref, const RowReference& rr, std::size_t oi, std::size_t li, std::size_t C) {
  std::copy(rr.out.begin(), rr.out.end(), ref.out.begin() + static_cast<std::ptrdiff_t>(oi * C));
  std::copy(rr.out_bound.begin(), rr.out_bound.end(), ref.out_bound.begin() + static_cast<std::ptrdiff_t>(oi * C));
  ref.lse[li] = rr.lse;
  ref.lse_bound[li] = rr.lse_bound;
}

}  // namespace fp8lab::mla

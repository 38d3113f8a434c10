// The hot loop of split-KV decode: one tile of cache rows folded into the online-softmax state of
// several heads at once, and a batch of correctly rounded exponentials. Compiled once per
// instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp); every variant gives the bits of the
// scalar statement in decode.hpp ("Within a split") for each head on its own.
//
// Why the bits cannot change: the vector code only runs independent computations side by side.
//  - Scores: each (head, row) dot keeps numerics.hpp's order (16 lanes, lane j sums the products
//    i = j mod 16 in increasing i, then the pairwise tree); several heads and rows are in flight at
//    once, each in its own accumulator.
//  - P.V: acc[h][c] receives its rows' products in row order, as before; the loop nest is turned so
//    that a block of (heads x columns) accumulators stays in registers across the tile's rows.
//  - Max, the rescale and the running sum l stay sequential per head.
//  - exp: exp_f32_batch returns exp_f32's value for every input (correct rounding has one answer):
//    a double evaluation with a certified error, and exp_f32 itself wherever that evaluation cannot
//    decide the rounding.
#pragma once

#include <cstddef>

namespace fp8lab {

// Scratch floats absorb_tile_heads needs for `heads` heads and tiles of up to n rows.
constexpr std::size_t absorb_tile_scratch(std::size_t heads, std::size_t n) { return heads * (n + 3); }

// For each head h < heads: q + h * D is its query, m[h], l[h] its running max and sum, acc + h * C
// its accumulator. rows: n rows of D floats (the first C of each the value). p_bf16: P is rounded to
// BF16 before P.V (decode_p = bf16). scratch: absorb_tile_scratch(heads, n) floats. n = 0 leaves the
// state as it is.
void mla_absorb_tile_heads(const float* q, std::size_t heads, const float* rows, std::size_t n, std::size_t D,
                           std::size_t C, float scale, bool p_bf16, float* m, float* l, float* acc, float* scratch);

// y[i] = exp_f32(x[i]) (common/pinned_math.hpp) for i < n; x and y may be the same array.
void exp_f32_batch(const float* x, float* y, std::size_t n);

}  // namespace fp8lab

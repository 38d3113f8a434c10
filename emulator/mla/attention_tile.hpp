// The hot loops of MLA: one tile of split-KV decode's cache rows folded into the online-softmax
// state of several heads at once, a batch of correctly rounded exponentials, and the prefill
// projections' GEMM in numerics.hpp's dot order. Compiled once per
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

// The projections' GEMM in numerics.hpp's dot order: out[i * ldo + j] = dot_f32(A_i, R(B_j), K)
// for i < M, j < N, where A is [M, K] row-major, B's row j starts at B + j * ldb, and R rounds to
// BF16 when b_bf16 (as is otherwise). Each dot keeps its lanes and tree; blocks of them run side by
// side, over K in chunks of kDotGemmChunk (with b_bf16, B's chunk is rounded and packed once; the
// lanes are kept in scratch between chunks). Callers cut N into panels of at most kDotGemmPanel for
// their threads. scratch: dot_f32_gemm_scratch(M, N, b_bf16) floats.
inline constexpr std::size_t kDotGemmChunk = 256, kDotGemmPanel = 32;
constexpr std::size_t dot_f32_gemm_scratch(std::size_t M, std::size_t N, bool b_bf16 = true) {
  return M * N * 16 + (b_bf16 ? N * kDotGemmChunk : 0);
}
void mla_dot_f32_gemm(const float* A, std::size_t M, const float* B, std::size_t N, std::size_t K, std::size_t ldb,
                      bool b_bf16, float* out, std::size_t ldo, float* scratch);

// P.V of several heads over the same value rows, as a fresh accumulation: for h < heads and c < C,
// acc[h * C + c] = the FP32 sum, in row order from 0, of fl(p[h * n + t] * rows[t * ldr + c]) for
// t < n (prefill's "o = sum_j p_j v_j in key order", forward.hpp step 4). Each element's sum is
// the scalar loop's; a block of (heads x 16-column) accumulators stays in registers across the
// rows. n = 0 gives zeros.
void mla_pv_rows(const float* p, std::size_t heads, std::size_t n, const float* rows, std::size_t ldr, std::size_t C,
                 float* acc);

// y[i] = exp_f32(x[i]) (common/pinned_math.hpp) for i < n; x and y may be the same array.
void exp_f32_batch(const float* x, float* y, std::size_t n);

}  // namespace fp8lab

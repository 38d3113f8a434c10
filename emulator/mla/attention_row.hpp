// One attention row (one query head) of split-KV decode, in the pieces the dense decode
// (decode.cpp) and the sparse decode (sparse_decode.cpp) share: the split plan, the online-softmax
// update of one tile, the combine of the splits, and the row's exact value with its certified bound.
// The arithmetic is stated in decode.hpp ("Within a split" and "Combine"); the bound's derivation is
// in attention_row.cpp. Both decodes feed these the rows (kv_lora + rope floats) a kernel reads;
// they differ only in which rows, in what order and how they are cut into tiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mla/mla_spec.hpp"

namespace fp8lab::mla {

// Equal split of `blocks` tiles over at most `num_splits` splits: each split takes per_split
// consecutive tiles; splits == the number of non-empty splits.
struct SplitPlan {
  std::size_t blocks = 0, per_split = 0, splits = 0;
};
SplitPlan split_plan(std::size_t items, std::size_t items_per_block, int num_splits);

// The online-softmax update of one tile for several heads: mla/attention_tile.hpp
// (mla_absorb_tile_heads, compiled per instruction set).

// Combine of nj splits' states (split j's m and l at m[j * ml_stride], l[...], its acc at
// acc[j * acc_stride]): M = max m_j, w_j = exp(m_j - M), L = sum l_j w_j, N = sum acc_j w_j;
// out[c] = bf16(N[c] / D) with D = L, or with an attention sink D = fl(L + exp(fl(sink - M)))
// (FlashMLA: out * exp(lse) / (exp(lse) + exp(sink)); sink = -inf is no sink: D = L exactly).
// Writes out (floats) and out_bits (BF16 patterns); returns lse = fl(M + log(L)) (without the sink,
// as FlashMLA returns it). `scratch` holds C floats. nj >= 1 and L > 0 are the caller's to ensure.
float combine_splits(const float* m, const float* l, const float* acc, std::size_t nj, std::size_t ml_stride,
                     std::size_t acc_stride, std::size_t C, float sink, float* out, std::uint16_t* out_bits,
                     float* scratch);

// What the certified bound of one row needs from the kernel's plan.
struct RowBoundPlan {
  std::size_t per_split = 1;      // tiles one split holds
  std::size_t tokens_split = 1;   // rows one split can hold that this row sees
  int num_splits = 1;
  MatmulFormat decode_p = MatmulFormat::Fp32;
  bool any_kernel = true;         // BoundScope::AnyKernel (see decode.hpp), else this emulator's bound
};

// The exact attention of one row over V rows (float64, pinned exp) and its certified bound.
struct RowReference {
  std::vector<double> out, out_bound;  // C each
  std::vector<double> abs_weighted;    // sum_t p_t |v_t[c]| (p normalised): the bound's A
  double lse = 0, lse_bound = 0;
  double max_score = 0, max_delta = 0; // exact max score and the largest score error bound
  double rho = 0, rho_n = 0;           // relative error of the kernel's L and N (attention_row.cpp)
  double vmax = 0, underflow = 0;      // max |row element| and the weights' underflow term
};
// V >= 1 rows. out is sum p_t v_t[c] with p = softmax(scale * q . k).
RowReference row_reference(const float* q, const float* rows, std::size_t V, std::size_t D, std::size_t C,
                           double scale, const RowBoundPlan& plan);

// The bound of one out element given its exact value o, its A, the relative error `rel` of N/L,
// and `extra_u` further FP32 roundings of the result (the division: 1): the final BF16 rounding
// included.
double out_element_bound(double o, double A, double rel, double absolute, double extra_u, bool any_kernel);

}  // namespace fp8lab::mla

// IndexerSpec: everything that changes the bits of DeepSeek-V3.2's lightning indexer (DSA's
// token selector), as data on the declared schema (common/schema.hpp). Defaults are DeepSeek-V3.2's
// (DeepSeek-V3.2-Exp inference/config_671B_v3.2.json: index_n_heads 64, index_head_dim 128,
// index_topk 2048, scale_fmt "ue8m0"). The arithmetic each field selects is in mla/indexer.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"

namespace fp8lab::mla {

// The head dimension every source fixes: model.py's act_quant gives one scale per 128 channels and
// fp8_index reads one q scale per head (so 128 exactly); DeepGEMM's sm90 kernels take kHeadDim 128.
inline constexpr int kIndexHeadDim = 128;

// How the per-head dot products q_h . k_j become one logit: where the key's scale s_j and the head
// weights w_h meet, and in which FP32 order the heads are summed.
enum class IndexReduction : std::uint8_t {
  // DeepSeek-V3.2-Exp inference/kernel.py fp8_index_kernel (TileLang): t_h = fl(max(acc_h, 0) * w_h),
  // S = sum over h, logit = fl(S * s_j) (the key scale after the head sum). The order of TileLang's
  // T.reduce_sum is not read off a source here: heads are summed sequentially h = 0, 1, ...
  // (assumed), so bits are pinned for that order only.
  V32Tilelang,
  // DeepGEMM sm90_fp8_mqa_logits.cuh / sm90_fp8_paged_mqa_logits.cuh: lane t (of the 4 holding one
  // KV row) sums heads 8g + 2t (+1) over g as sum = fma(fmaxf(acc, 0), w, sum) (nvcc's default
  // -fmad=true; DeepGEMM's JIT passes no --fmad flag), v_t = fl(fl(sum_even + sum_odd) * s_j),
  // then two __shfl_xor_sync butterflies: logit = (v_0 + v_1) + (v_2 + v_3). Heads % 8 == 0.
  DeepgemmSm90,
  // DeepGEMM README's statement of fp8_mqa_logits (kv_j = kv * sf; relu(q . kv_j) * w; sum): the key
  // scale on each head's dot before the ReLU, t_h = fl(max(fl(acc_h * s_j), 0) * w_h), heads summed
  // sequentially (assumed order; the README states no order).
  PerHeadScale,
};

struct IndexerSpec {
  int heads = 64;      // index_n_heads
  int topk = 2048;     // index_topk
  // accum/ tensor-core preset of the FP8 q . k (E4M3 input, k dividing 128): Hopper FP8 wgmma, as
  // both sources issue it (TileLang T.gemm and DeepGEMM WGMMA::wgmma over kHeadDim / 32 chained
  // instructions, FP32 accumulator, no promotion: 128 = 4 x k32 stays inside the tensor core).
  std::string instruction = "hopper_fp8";
  // quant/ scale rule of act_quant on q and k, 1 x 128 tiles: model.py's act_quant(x, 128, "ue8m0")
  // is kernel.py act_quant_kernel(round_scale=True) = rule "deepseek_v32_ue8m0".
  std::string scale_rule = "deepseek_v32_ue8m0";
  IndexReduction reduction = IndexReduction::V32Tilelang;
};

const schema::Schema<IndexerSpec>& indexer_spec_schema();
std::string to_json(const IndexerSpec& s);
// Strict reader (unknown keys, wrong kinds, out-of-range values name the field); validates.
IndexerSpec indexer_spec_from_json(std::string_view json);
// Throws std::invalid_argument naming the field (unknown preset/rule, a preset that is not E4M3 or
// whose k does not divide 128, a rule that is not E4M3-able, heads % 8 != 0 for deepgemm_sm90).
void validate(const IndexerSpec& s);

}  // namespace fp8lab::mla

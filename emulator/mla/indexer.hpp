// DeepSeek-V3.2's lightning indexer (DSA): per query, a logit for every cached token and the top-k
// tokens MLA then attends to. Written from DeepSeek-V3.2-Exp inference/model.py (`Indexer.forward`,
// `rotate_activation`) and inference/kernel.py (`act_quant`, `fp8_index`), and from DeepGEMM's
// fp8_mqa_logits / fp8_paged_mqa_logits (deep_gemm/include/deep_gemm/impls/sm90_*mqa_logits.cuh);
// the spec fields are in mla/indexer_spec.hpp. Given q (m x H x 128, after RoPE), k (n x 128, after
// k_norm and RoPE) and the weights_proj output w (m x H), all BF16 values:
//   1. rotate_activation: q, k <- bf16(fl32(Hadamard(x)) * fl32(128^-1/2)) per 128-vector, the
//      Hadamard in FP32 as fast_hadamard_transform's kernel does it for N = 128 (16 threads x 8
//      elements: butterflies (a + b, a - b) over index bits 0, 1, ..., 6 in that order, the scale
//      multiplied once at the end, then one BF16 rounding on store). Its --use_fast_math flushes FP32
//      subnormals; not modelled (BF16 inputs would have to be below ~1e-38).
//   2. act_quant(x, 128, "ue8m0") on q and k: E4M3 elements with one power-of-two FP32 scale per
//      128-vector (quant/ rule spec.scale_rule, 1 x 128 tiles).
//   3. weights (model.py, torch op by op): w' = fl32(fl32(bf16(fl32(w * fl32(H^-1/2))) * q_s) *
//      fl32(128^-1/2)) — weights_proj's BF16 output times H^-1/2 (a BF16 tensor op), then the FP32
//      q scale and softmax_scale (type promotion to FP32, left to right).
//   4. acc_h = q8_h . k8_j over 128 E4M3 elements, chained through spec.instruction's tensor-core
//      model from C = 0 (gemm/ accumulate tensorcore: TileLang's T.gemm and DeepGEMM's wgmma loop),
//      then the head reduction of spec.reduction with the key's scale s_j (IndexReduction).
//   5. tokens outside [starts[i], ends[i]) get -inf (DeepGEMM's cu_seq_len_k_start/end; model.py's
//      causal mask is the case starts = 0, ends = start_pos + i + 1).
//   6. top-k: the min(topk, valid) largest logits, ties broken by the lower token index (torch.topk
//      leaves tie order unspecified; selection checks (indexer_select.hpp) accept any tie order),
//      in descending logit order, padded with -1 (FlashMLA's invalid index) to topk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mla/indexer_spec.hpp"
#include "quant/qtensor.hpp"

namespace fp8lab::mla {

// The inputs, row-major, as float32 holding BF16 values (checked). starts/ends may be null
// (then every query sees tokens [0, n)).
struct IndexerInputs {
  const float* q = nullptr;        // m x heads x 128
  const float* k = nullptr;        // n x 128
  const float* weights = nullptr;  // m x heads
  const std::int32_t* starts = nullptr;  // m
  const std::int32_t* ends = nullptr;    // m
  std::size_t m = 0, n = 0;
};

// Steps 1-3: the operands the FP8 kernel reads.
struct IndexerOperands {
  std::vector<float> q_rot, k_rot;  // step 1, BF16 values (m*H x 128, n x 128)
  QTensor q8, k8;                   // step 2 (rows m*H and n, 1 x 128 tiles)
  std::vector<float> w;             // step 3, m x H folded FP32 weights
  std::vector<float> k_scale;       // n: k8's scale per token (s_j)
};

struct IndexerResult {
  IndexerOperands ops;
  std::vector<float> logits;          // m x n, -inf outside [starts[i], ends[i])
  std::vector<std::int32_t> indices;  // m x topk, -1 padded
};

// rotate_activation on `rows` 128-vectors of BF16 values (step 1); `scaled` = false leaves out the
// 128^-1/2 (for tests that show the scale matters).
std::vector<float> rotate_activation(const float* x, std::size_t rows, bool scaled = true);

// Checks shapes, values (BF16, finite), ranges (0 <= starts[i] <= ends[i] <= n) and topk <= n;
// std::invalid_argument names the argument and the first offending element.
void validate_indexer_inputs(const IndexerInputs& in, const IndexerSpec& spec);

IndexerOperands indexer_operands(const IndexerInputs& in, const IndexerSpec& spec);
// Step 4-5 on prepared operands: m x n FP32 logits.
std::vector<float> indexer_logits(const IndexerOperands& ops, const IndexerInputs& in, const IndexerSpec& spec);
// A certified bound on |indexer_logits - indexer_logits_exact(Quantised)| per element (0 outside
// the ranges): gemm/'s running bound of each tensor-core accumulator (gemm/bounds.hpp), carried
// through the head reduction's FP32 steps as computed (relu is 1-Lipschitz; each multiply, add and
// FMA adds u|result| with u = 2^-24, products and FMAs 2^-149 for underflow), times (1 + 2^-30).
std::vector<double> indexer_logit_bound(const IndexerOperands& ops, const IndexerInputs& in, const IndexerSpec& spec);
// Step 6 on any m x n logits (NaN logits inside a range are an error naming the query and token).
std::vector<std::int32_t> indexer_topk(const float* logits, const IndexerInputs& in, int topk);
// Steps 1-6.
IndexerResult index(const IndexerInputs& in, const IndexerSpec& spec);

// What the FP8 indexer approximates, in float64, for stability measurements (m x n, -inf outside
// the ranges):
//  - Quantised: the same E4M3 elements, scales and folded weights w' as index() (step 1-3 bits), with
//    exact dots and the sum s_j * sum_h w'_h * relu(q8_h . k8_j) in float64: isolates the FP8
//    kernel's accumulation and rounding from the quantisation.
//  - Unquantised: the BF16 inputs through the exact Hadamard (float64, times 128^-1/2), no FP8, with
//    weights w * H^-1/2 * 128^-1/2 in float64: sum_h w_h * relu(q_h . k_j) — the indexer as real
//    arithmetic on the model's BF16 activations.
enum class ExactIndexer : std::uint8_t { Quantised, Unquantised };
std::vector<double> indexer_logits_exact(const IndexerInputs& in, const IndexerSpec& spec, ExactIndexer which);

}  // namespace fp8lab::mla

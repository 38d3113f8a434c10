// GEMMs on block-scaled tensor-core instructions (Blackwell tcgen05 kind::mxf8f6f4.block_scale and
// kind::mxf4nvf4.block_scale, accum's *_mxf8f6f4 / *_mxf4nvf4 presets): the operands' tile scales
// enter each instruction as values of the preset's scale format (UE8M0 or UE4M3, decoded by the
// format row; one per scale_block products, accum/tensor_core.hpp fused_dot_add_scaled) and the FP32
// accumulator stays in the tensor core for the whole K loop — D = instruction(a[k..], b[k..], sa, sb,
// D) with no promotion and no CUDA-core combine, as DeepGEMM's sm100 FP8 GEMM issues tcgen05.mma
// into one tensor-memory accumulator over all K blocks (a 1x128 or 128x128 scale is reused by the 4
// MMAs of K = 32 inside its 128).
//
// Two-level (NVFP4) operands: the tensor scales do not enter the instruction; the epilogue multiplies
// the FP32 accumulator by alpha, as TransformerEngine's cuBLASLt NVFP4 GEMM does
// (transformer_engine/common/gemm/cublaslt_gemm.cu calls nvte_nvfp4_compute_per_tensor_scale,
// common/recipe/nvfp4.cu: alpha = alpha_in * amax_A * amax_B * factor_inv, float32 left to right,
// alpha_in = 1, factor_inv = (float)(1.0 / (6.0 * 6.0 * 448.0 * 448.0))), then cuBLASLt's
// D = alpha * acc in the FP32 scale type. Note alpha is not S_dec_A * S_dec_B bit for bit (S_dec =
// 1 / fl(2688 / amax)); the certified bound (block_scaled_chain_bound) counts the difference.
#pragma once

#include <cstddef>
#include <vector>

#include "accum/tensor_core.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// Throws std::invalid_argument naming the operand when a scale is not a value of the instruction's
// scale format (format row model.scale_format: UE8M0 powers of two in [2^-127, 2^127], UE4M3 values
// in [0, 448]), varies within one scale block along K, or when one operand is two-level and the
// other not.
void validate_block_scaled(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model);
// Throws std::invalid_argument naming the operand when a two-level (NVFP4) operand meets anything
// but a block-scaled tensor-core GEMM (the only path whose epilogue applies its global scale).
void refuse_two_level(const GemmOperand& a, const GemmOperand& b, const char* why);

// The epilogue's alpha for two-level operands (see above); 1 when both are one-level.
float block_scaled_alpha(const GemmOperand& a, const GemmOperand& b);

// The FP32 result of every output (M x N, row-major): the accumulator after the whole K chain, scales
// applied inside the instructions, times alpha for two-level operands. fast: the blocked kernel
// (gemm/block_scaled_kernel.hpp, bit-identical) where the form has one, else instruction by instruction.
std::vector<float> block_scaled_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                           bool fast = true);

// Output (i, j)'s value as block_scaled_accumulate gives it and the running bound on its distance to
// the exact sum of the dequantised products (gemm/bounds.hpp's derivation per instruction, in
// gemm/instruction_bound.hpp; then the epilogue's alpha).
struct ChainBound {
  float value;
  double err;
};
ChainBound block_scaled_chain_bound(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                    std::size_t i, std::size_t j);

}  // namespace fp8lab

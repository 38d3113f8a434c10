// GEMMs on block-scaled tensor-core instructions (Blackwell tcgen05 kind::mxf8f6f4.block_scale,
// accum's *_mxf8f6f4 presets): the operands' power-of-two tile scales enter each instruction as
// UE8M0 exponents (one per scale_block products, accum/tensor_core.hpp fused_dot_add_block_scaled)
// and the FP32 accumulator stays in the tensor core for the whole K loop — D = instruction(a[k..],
// b[k..], ea, eb, D) with no promotion and no CUDA-core combine, as DeepGEMM's sm100 FP8 GEMM
// issues tcgen05.mma into one tensor-memory accumulator over all K blocks (a 1x128 or 128x128
// scale is reused by the 4 MMAs of K = 32 inside its 128). Every shape runs per instruction: there
// is no blocked fast kernel for these presets.
#pragma once

#include <cstddef>
#include <vector>

#include "accum/tensor_core.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// Throws std::invalid_argument naming the operand when a scale is not a power of two in
// [2^-127, 2^127] (what a UE8M0 byte holds) or varies within one scale block along K.
void validate_block_scaled(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model);

// The FP32 accumulator of every output (M x N, row-major), scales applied inside the instructions.
std::vector<float> block_scaled_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model);

// Output (i, j)'s accumulator and the running bound on its distance to the exact sum of the
// dequantised products (gemm/bounds.hpp's derivation, each product's exponent raised by its
// scales' exponents before the alignment).
struct ChainBound {
  float value;
  double err;
};
ChainBound block_scaled_chain_bound(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                    std::size_t i, std::size_t j);

}  // namespace fp8lab

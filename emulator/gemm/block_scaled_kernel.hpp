// The blocked fast path of block-scaled GEMMs (gemm/block_scaled.hpp): every operand element and
// block scale is decoded once into the integers the instruction's arithmetic reads (significand,
// exponents and sign for DotForm::Fused / ST-FDPA with UE8M0 scales; input-format quanta and the
// scale's significand and exponent for DotForm::ScaledGroups / GST-FDPA), then each output's chain
// of instructions over K runs on those integers with accum's step 5 (detail::normalise_sum). Bit
// for bit the chain of accum's fused_dot_add_scaled (tests/cpp/test_gemm_block_scaled.cpp compares
// them over shapes, ragged K and special values for every block-scaled preset).
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "accum/tensor_core.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// The FP32 accumulator of every output (M x N, row-major; before the epilogue's alpha), or an empty
// vector when the model's form has no kernel here (the caller then chains instructions). Outputs
// whose operand rows hold NaN or Inf, or whose running sum leaves the finite range, are taken from
// `chain(i, j)` (the instruction chain), which is what the arithmetic would give there too.
std::vector<float> block_scaled_kernel(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                       const std::function<float(std::size_t, std::size_t)>& chain);

}  // namespace fp8lab

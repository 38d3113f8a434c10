// The certified bound of the FP32 (CUDA-core) accumulation modes, sequential or pairwise, computed
// blocked: 8 output columns in vector lanes, the operand-only factors of each product's bound
// (x = fl(a*sa), u32*|x| + eta, ...) computed once per element instead of once per output. Every
// lane adds the doubles gemm/bounds.cpp's per-element certificate adds, in the same order, so the
// bounds are bit-identical to it (property_tests/prop_gemm.cpp BoundKernelEqualsPerElementBound).
#pragma once

#include "gemm/operand.hpp"

namespace fp8lab {

// For every output (row-major M x N): the FP32 accumulator (acc) and the running bound of its
// distance to the exact sum of the dequantised products (err), before C and output rounding.
void fp32_chain_bounds(const GemmOperand& a, const GemmOperand& b, bool pairwise_sum, float* acc, double* err);

}  // namespace fp8lab

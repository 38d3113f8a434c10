// The certified bound of a Hopper FP8 tensor-core GEMM (promoted or one chain) computed blocked,
// as the GEMM kernel computes the values: 16 output columns in vector lanes (with AVX-512 BW/CD, k
// in pairs of 16-bit lanes; in every other build one k at a time in int32 lanes, a GCC/Clang
// vector extension). Per instruction it forms what gemm/bounds.cpp's per-element certificate forms (the
// alignment exponent, how many terms are not multiples of its unit, the truncated D) and adds the
// same doubles in the same order, so the bounds are bit-identical to that certificate
// (property_tests/prop_gemm.cpp BoundKernelEqualsPerElementBound, and the determinism digest).
#pragma once

#include <cstddef>

#include "accum/tensor_core.hpp"
#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// For every output (row-major M x N): the FP32 accumulator after the last promotion (acc) and the
// running bound of its distance to the exact scaled sum (err), before C and output rounding
// (gemm/bound_steps.hpp finish() adds those). `model` must be a preset the Hopper FP8 vector
// kernel covers (hopper_fp8_kernel_models); operands finite values of its input format;
// promote_every = 0: one chain over K.
void hopper_fp8_chain_bounds(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                             std::size_t promote_every, Combine combine, float* acc, double* err);

}  // namespace fp8lab

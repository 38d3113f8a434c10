// A specialised kernel for the Hopper FP8 E4M3 wgmma model (k = 32, 13 fractional alignment
// bits, result truncated to 14 significant bits; REFERENCE.md "Tensor cores", after MMA-Sim arXiv
// 2511.10909 and Khattak & Mikaitis arXiv 2512.07004). It computes 16 output columns at once with
// integer lanes that the compiler vectorises; tests/cpp/test_gemm_kernel.cpp proves it
// bit-identical to accum's generic fused_dot_add.
#pragma once

#include <cstddef>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// One Hopper E4M3 instruction on 32 products (fewer means zero-padded), the model as specified:
// the reference the vector kernel is written from, also used by tests.
float hopper_e4m3_dot_add(const float* a, const float* b, std::size_t n, float c);

// Scaled tensor-core accumulation over K for all M x N outputs, before C and output rounding:
// promote_every = 0 means no promotion (TensorCore: one chain, scales applied at the end).
// Operand elements must be E4M3 values (checked by the caller).
std::vector<float> hopper_e4m3_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, std::size_t promote_every,
                                               Combine combine);

}  // namespace fp8lab

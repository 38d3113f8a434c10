// Blocked kernels for the two FP32 (CUDA-core) accumulation modes of gemm.hpp: x = fl(a*sa),
// y = fl(b*sb), products fl(x*y) without FMA, summed per output either sequentially (k = 0, 1,
// ...) or by gemm's balanced binary tree (left half [0, n/2), right half [n/2, n)). The kernel
// vectorises across 16 output columns and keeps every output's own order of operations, so each
// output is the bits the per-element loop computes (tests/cpp/test_gemm.cpp Fp32Kernel and
// property_tests/prop_gemm.cpp compare them on random shapes, NaN/Inf and thread counts).
#pragma once

#include <vector>

#include "gemm/operand.hpp"

namespace fp8lab {

// The FP32 accumulators of all M x N outputs (before C and output rounding), a: M x K, b: N x K.
std::vector<float> fp32_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, bool pairwise);

// The same accumulators (acc) and, for the certified bound (gemm/bounds.hpp), per output the
// binary32 sums of |p_k| in k order (psum) and of |s_k| after every sequential addition, or of |v|
// at every internal node of the pairwise tree in post-order (nsum). Arrays of M x N, row-major.
void fp32_gemm_accumulate_sums(const GemmOperand& a, const GemmOperand& b, bool pairwise, float* acc, float* psum,
                               float* nsum);

}  // namespace fp8lab

// A blocked GEMM kernel for the fused tensor-core presets other than Hopper FP8's own kernel:
// BF16, FP16 and TF32 inputs on Hopper, Ada, Ampere and Blackwell, and the other fused FP8 rows
// (Ada mma.sync in halves of 16 with an FP32 or FP16 accumulator, Blackwell tcgen05 with 25
// alignment bits). It computes
// 16 output columns at once and keeps every output's own sequence of fused blocks, so each output
// is the bits of accum's fused_dot_add chains (tests/cpp/test_gemm_tc_lanes.cpp and
// property_tests/prop_gemm.cpp compare them on every preset row the predicate claims).
//
// The arithmetic, lane-wise: a product of two values of an input format (at most 11 significant
// bits each) is exact in binary64, and so is its scaling by 2^(F - top), where top is the block's
// largest alignment exponent (from the operands' clamped exponents and C's, accum/tensor_core.hpp
// step 1-3); the aligned, truncated term is that scaled product converted to an integer (toward
// zero), |term| < 2^(F + 2). The terms are summed exactly in int32 in chunks of at most
// 2^(29 - F) (so no chunk sum reaches 2^31). In the AVX-512 variant every preset row's block is
// one such chunk, or two whose second sum plus C's term stays in int32 (Blackwell FP8): S = sum +
// C's term is formed as a sign and a 32-bit magnitude and |S| 2^(top - F) truncated to the output
// precision and FP32's grid (an FP16 accumulator: rounded to nearest even onto FP16's grid) with
// AVX-512's rounding overrides (vcvtudq2ps / vscalefps toward zero, vcvtps2ph). The AVX2 and
// portable variants (SSE2, NEON on aarch64) compute the same int32 sums and finish in float and
// int32 lanes of their native vectors (generic_state_chain: truncation toward zero emulated on the
// nearest float, scaling by 2^e on exponent fields, FP16 rounding by adding and subtracting a power
// of two). Operands outside binary32 products' range, and models no preset has, sum the chunks in
// binary64 (integers below 2^53), and the sum times 2^(top - F), exact in binary64, is truncated or
// rounded there.
#pragma once

#include <cstddef>
#include <vector>

#include "accum/tensor_core.hpp"
#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// Whether the kernel computes `model` (a preset row) exactly: one fused form without block scales
// or zero-term exponent, truncated steps 3-5 (no exact sum, C inside the block), an FP32
// accumulator with truncated output of at most 24 bits or an FP16 one rounded to nearest even,
// F <= 28, blocks dividing k.
bool tc_lanes_kernel_models(const TensorCoreModel& model);

// The tensor-core accumulators of all M x N outputs before C and output rounding (gemm.cpp's
// tensor_core_accumulate): promote_every = 0 means one chain over K with the scales applied at the
// end. Preconditions (checked by the caller): tc_lanes_kernel_models(model), every operand element
// finite (gemm.cpp recomputes the outputs of rows and columns holding NaN or Inf).
std::vector<float> tc_lanes_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                            std::size_t promote_every, Combine combine);

}  // namespace fp8lab

// Batches of single tensor-core instructions (fp8lab.dot): out[i] = fused_dot_add(a + i*k,
// b + i*k, c[i], model) for i < batch, model.k products each, no block scales. The Hopper FP8
// presets run on the GEMM kernel's lane arithmetic, 16 instructions at a time
// (gemm/hopper_fp8_kernel, hopper_fp8_dot_batch); every other preset, and every instruction holding
// a NaN or an infinity, on accum's fused_dot_add. Parallel over chunks, the same bits on any thread
// count and every instruction-set variant (tests/cpp/test_gemm.cpp DotBatch).
#pragma once

#include <cstddef>

#include "accum/tensor_core.hpp"

namespace fp8lab {

// Operand elements must be values of model.input_format. allow_fast_kernel = false forces
// fused_dot_add for every instruction (the reference).
void fused_dot_add_batch(const float* a, const float* b, const float* c, std::size_t batch, const TensorCoreModel& model,
                         float* out, bool allow_fast_kernel = true);

// The flat index of the first element of a, and of b, that is not a value of the model's input
// format (b's: b_input_format) by formats/representable's definition; batch * model.k when none.
struct DotBatchCheck {
  std::size_t a, b;
};
// fused_dot_add_batch on any float operands, checking them on the way (in the kernel's pass over
// each chunk, not in a pass of its own). When the answer names an element, out is unspecified.
DotBatchCheck fused_dot_add_batch_checked(const float* a, const float* b, const float* c, std::size_t batch,
                                          const TensorCoreModel& model, float* out);

}  // namespace fp8lab

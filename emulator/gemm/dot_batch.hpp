// Batches of single tensor-core instructions (fp8lab.dot): out[i] = fused_dot_add(a + i*k,
// b + i*k, c[i], model) for i < batch, model.k products each, no block scales. The Hopper FP8
// presets run on the GEMM's vector kernel (gemm/hopper_fp8_kernel, hopper_fp8_dot), every other
// preset and every instruction holding a NaN or Inf on accum's fused_dot_add; parallel, and the
// same bits on any thread count (tests/cpp/test_gemm.cpp DotBatch).
#pragma once

#include <cstddef>

#include "accum/tensor_core.hpp"

namespace fp8lab {

// allow_fast_kernel = false forces fused_dot_add for every instruction (the reference).
void fused_dot_add_batch(const float* a, const float* b, const float* c, std::size_t batch, const TensorCoreModel& model,
                         float* out, bool allow_fast_kernel = true);

}  // namespace fp8lab

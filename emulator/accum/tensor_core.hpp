// The tensor-core instruction model: a parameterised fused dot-add d = sum_i a_i*b_i + c computed
// the way one MMA instruction computes it (exact products, alignment to the largest exponent
// with truncation to a fixed number of fractional bits, exact integer sum, normalisation of the
// result). Presets name the instruction they model and cite their source.
// (Interface fixed here so gemm/ and accum/ can be written side by side; accum/ implements it.)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace fp8lab {

struct TensorCoreModel;  // defined in accum/tensor_core_model.hpp by the accum area

// A preset by name, e.g. "hopper_wgmma_m64nNk32_f32_e4m3"; short aliases "hopper_fp8" (E4M3),
// "hopper_fp8_e5m2", "hopper_bf16", "hopper_fp16", "ada_fp8", "ampere_bf16", "ampere_fp16",
// "blackwell_fp8". Unknown names throw std::invalid_argument listing the valid ones.
const TensorCoreModel& tensor_core_by_name(std::string_view name);
std::vector<std::string> tensor_core_names();
// Products per instruction (32 for Hopper FP8 wgmma, 16 for Hopper BF16, ...).
int tensor_core_k(const TensorCoreModel& model);

// One instruction: d = a[0..k) . b[0..k) + c, where k = tensor_core_k(model), a and b hold values
// exactly representable in the model's input format (as float), c and the result are FP32.
float fused_dot_add(const float* a, const float* b, float c, const TensorCoreModel& model);

}  // namespace fp8lab

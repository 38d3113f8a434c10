// A specialised kernel for the Hopper FP8 wgmma model with E4M3 or E5M2 operands (k = 32, 13
// fractional alignment bits, result truncated to 14 significant bits; REFERENCE.md "Tensor cores",
// after MMA-Sim arXiv 2511.10909 and Khattak & Mikaitis arXiv 2512.07004). It computes 16 output
// columns at once in integer vector lanes; tests/cpp/test_gemm.cpp (HopperFp8Kernel) and
// property_tests/prop_gemm.cpp prove it bit-identical to chains of accum's generic fused_dot_add.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "accum/tensor_core.hpp"

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// One Hopper E4M3 instruction on 32 products (fewer means zero-padded), the model as specified:
// the reference the vector kernel is written from, also used by tests.
float hopper_e4m3_dot_add(const float* a, const float* b, std::size_t n, float c);

// The operand formats the vector kernel covers: accum's presets hopper_fp8 (E4M3) and
// hopper_fp8_e5m2 (the same instruction model, E5M2 operands).
enum class Fp8Operands : std::uint8_t { E4m3, E5m2 };
// The vector kernel's operand format for an instruction model, when the kernel covers it
// (gemm/hopper_fp8_presets.cpp).
std::optional<Fp8Operands> hopper_fp8_operands(const TensorCoreModel& model);

// n single instructions of 32 products (a, b: n x 32 floats, c: n) into out, 16 at a time in
// vector lanes; the batched form of the kernel for fp8lab.dot (gemm/dot_batch), bit-identical to
// accum's fused_dot_add. An instruction holding a NaN or an infinity (operand or c), or an
// operand element that may not be a value of the operand format, is left to the caller: its
// index (< n, ascending) goes to left[0, count) and its out[i] is unspecified. Returns count.
// Every other operand element is a value of the format: the kernel checks, so the caller need
// not (a sound quick test; what it flags, formats/representable settles).
std::size_t hopper_fp8_dot_batch(const float* a, const float* b, const float* c, std::size_t n, Fp8Operands operands,
                                 float* out, std::uint32_t* left);

// Whether `model` (a tensor-core preset row) is the instruction the kernel's built-in constants
// describe (k, one fused block, alignment bits, output bits and rounding, FP32 accumulator) with
// operands of `operands`' layout, itself checked against the input format's row: gemm uses the
// kernel for them (hopper_fp8_operands), and tests/cpp/test_row_constants.cpp requires it of both.
bool hopper_fp8_kernel_models(const TensorCoreModel& model, Fp8Operands operands);

// Scaled tensor-core accumulation over K for all M x N outputs, before C and output rounding:
// promote_every = 0 means no promotion (TensorCore: one chain, scales applied at the end).
// Operand elements must be values of the operand format (checked by the caller).
std::vector<float> hopper_fp8_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, std::size_t promote_every,
                                              Combine combine, Fp8Operands operands);

}  // namespace fp8lab

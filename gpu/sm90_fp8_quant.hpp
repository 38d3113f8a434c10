// FP8 (E4M3) block quantisation on the GPU: one thread block per tile (1x128, 128x128, per-row,
// per-tensor, any Tile), the tile's amax reduced in shared memory, the scale formed by the
// ScaleRule's steps in FP32 device arithmetic (__fdiv_rn, bit operations for the power-of-two
// rules), each element scaled and cast with cuda_fp8.h's conversion (satfinite or not, as the
// rule says). Implements quant/quantize.hpp's quantize() for the rules `deepseek`, `deepgemm`,
// `deepseek_ue8m0`, `deepgemm_ue8m0` (and every other rule except the MX shared exponent),
// bit-identical in elements, scales and UE8M0 bytes (gpu/tests/prop_gpu_kernels.cpp).
#pragma once

#include <cstddef>

#include "gpu/quant_scale.hpp"
#include "quant/qtensor.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab::gpu {

// Throws std::invalid_argument naming the argument: null x with a non-empty shape, fmt other than
// e4m3, a rule that does not validate or uses the MX shared exponent. NoDevice without a device.
QTensor sm90_fp8_quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, const ScaleRule& rule);

// The kernel's view of a rule (throws nothing; validate first).
QuantRule quant_rule_of(const ScaleRule& rule);

// The argument checks alone (no device needed).
void validate_sm90_fp8_quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, const ScaleRule& rule);

}  // namespace fp8lab::gpu

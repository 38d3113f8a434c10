// FP32 -> BF16 rounding, nearest-even, as a float: the hot path of GEMM outputs, the BF16 MoE
// gate and MLA's BF16 steps. One definition for all of them. It is formats' encode(x, "bf16") on
// float32 input (tests/cpp/test_formats.cpp checks the two agree, NaN included): bf16 is the top
// half of float32, so nearest-even is "add 0x7FFF plus the lowest kept bit, then truncate", and a
// carry runs into the exponent (the next binade, or Inf), as CUDA's __float2bfloat16_rn. Every NaN
// becomes the canonical bf16 NaN 0x7FFF, as encode() and CUDA do.
#pragma once

#include <bit>
#include <cstdint>

namespace fp8lab {

inline float round_to_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return std::bit_cast<float>(0x7FFF0000u);
  return std::bit_cast<float>((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

}  // namespace fp8lab

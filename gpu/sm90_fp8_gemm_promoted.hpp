// Our FP8 block-scaled GEMM for sm_90a: D = C + A·Bᵀ (A M x K, B N x K, E4M3), WGMMA m64n128k32
// on the tensor cores, the partial sum promoted every N_C elements of K (GemmSpec::promote_every,
// 0 or Accumulate::TensorCore: once at the end) into FP32 registers with the spec's combine
// order, BF16 or FP32 output. It implements exactly the emulator's GemmSpec
// {Promoted | TensorCore, instruction hopper_fp8, combine, out bf16 | fp32}: fp8lab::gemm() on the
// same operands is the reference, bit for bit (gpu/tests/prop_gpu_kernels.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab::gpu {

// A GemmOperand as the kernel reads it: E4M3 bytes zero-padded to whole tiles (rows to
// `row_block`, K to 128) and the FP32 scale grid with its tile shape.
struct PaddedOperand {
  std::size_t rows = 0, cols = 0, rows_pad = 0, cols_pad = 0;
  std::vector<std::uint8_t> bits;  // rows_pad x cols_pad, row-major, zero padding
  std::vector<float> scales;       // as GemmOperand::scales
  std::size_t tile_rows = 1, tile_cols = 1, grid_cols = 0;
};
// Throws std::invalid_argument naming `arg` when the operand is not E4M3.
PaddedOperand pad_operand_e4m3(const GemmOperand& x, std::size_t row_block, std::string_view arg);

// The promotion interval the kernel uses for `spec` and K: promote_every, or 0 (one promotion at
// the end) for TensorCore. Throws std::invalid_argument naming the field the kernel cannot do:
// accumulate other than promoted/tensorcore, an instruction other than the Hopper E4M3 preset,
// fp64 output, promote_every not a positive multiple of 32, operands not E4M3, shapes that do
// not agree, scales not constant over each promotion interval.
int validate_promoted_gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec);

// Runs the kernel; returns M x N values of the output format (as fp8lab::gemm does). Throws
// NoDevice without a device.
std::vector<double> sm90_fp8_gemm_promoted(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                           const float* c = nullptr);

// Seconds per call of the kernel alone on M x N x K with 1x128 (A) / 128x128 (B) scales, N_C =
// 128, DeepGEMM combine, BF16 out (data random, made on the device), mean over `iters` after a
// warm-up.
double time_sm90_fp8_gemm_promoted(std::size_t m, std::size_t n, std::size_t k, int iters);

}  // namespace fp8lab::gpu

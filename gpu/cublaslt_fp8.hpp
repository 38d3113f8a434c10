// NVIDIA's FP8 GEMMs through cuBLASLt — the vendor kernels users actually call — behind the same
// operands as the emulator (A M x K, B N x K, E4M3, GemmOperand scales), so that check.sh can ask
// which emulator GemmSpec (promotion interval, combine order) reproduces their bits.
//   per_tensor             one FP32 scale per operand (A_SCALE_POINTER / B_SCALE_POINTER)
//   per_tensor_fast_accum  the same with CUBLASLT_MATMUL_DESC_FAST_ACCUM = 1
//   block_1x128_128x128    A 1x128 (CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F), B 128x128
//                          (..._BLK128x128_32F): the DeepSeek-V3 recipe, where this cuBLASLt has it
// cuBLASLt is column-major: row-major D (M x N) is computed as Dᵀ = B·Aᵀ with cuBLAS's "A" = our B
// (opT) and "B" = our A (opN), the TN layout FP8 requires.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab::gpu {

enum class CublasLtMode { PerTensor, PerTensorFastAccum, Block1x128x128 };
std::string_view cublaslt_mode_name(CublasLtMode m);  // per_tensor, per_tensor_fast_accum, block_1x128_128x128
CublasLtMode cublaslt_mode_by_name(std::string_view name);
std::vector<CublasLtMode> cublaslt_modes();  // the modes this build's cuBLASLt headers offer

// The layout of the VEC128 scale tensor of our A, which cuBLASLt's header does not spell out: one
// FP32 per (row, 128-block of K), either K-block-major (index kb * M + m, M contiguous, like
// DeepGEMM's TMA-aligned scales) or row-major (index m * ceil(K/128) + kb). check.sh runs both and
// reports which one the library reads (the wrong one fails the certified bound).
enum class VecScaleLayout { KBlockMajor, RowMajor };

// Throws std::invalid_argument naming the argument: operands not E4M3, shapes that disagree,
// K, N or M not multiples of 16 (cuBLASLt FP8 alignment), per-tensor modes with more than one
// scale per operand, the block mode without 1x128 (a) / 128x128 (b) tiles, fp64 output.
void validate_cublaslt_fp8_gemm(const GemmOperand& a, const GemmOperand& b, CublasLtMode mode, OutputFormat out);

// M x N values of the output format. NoDevice without a device; CudaError (with the cuBLASLt
// status) when the library has no algorithm for the combination.
std::vector<double> cublaslt_fp8_gemm(const GemmOperand& a, const GemmOperand& b, CublasLtMode mode, OutputFormat out,
                                      VecScaleLayout vec_layout = VecScaleLayout::KBlockMajor);

// Seconds per call for M x N x K (random E4M3 data, unit scales, BF16 out), mean over `iters`.
double time_cublaslt_fp8_gemm(std::size_t m, std::size_t n, std::size_t k, CublasLtMode mode, int iters);

}  // namespace fp8lab::gpu

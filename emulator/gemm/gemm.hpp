// Block-scaled GEMM emulation: D = C + A·Bᵀ with A M x K, B N x K (DeepGEMM's NT layout), optional
// FP32 C (M x N), accumulated as GemmSpec says and rounded to its output format.
//
// Conventions (each a choice the spec names, not a vendor default):
// - Scales: a promoted partial sum over [j*N_C, (j+1)*N_C) meets the scales of that interval
//   (they must be constant over it: 1x128 / 128x128 tiles with N_C = 128, per-row, per-tensor).
//   TensorCore (no promotion) needs scales constant along the whole K of each row (per-tensor or
//   per-row) and applies them once at the end with the same combine order (acc = 0).
// - Fp32Sequential / Fp32Pairwise use the dequantised operands rounded to FP32, x = fl(a*sa),
//   y = fl(b*sb), products fl(x*y) (no FMA), as a scalar CUDA-core loop would.
// - C is added last in FP32, D = fl(acc + c), then rounded to the output format; with
//   Accumulate::Exact, C enters the exact sum.
// - Ragged K is zero-padded to whole instructions (TMA's out-of-bounds fill); zero terms never
//   change a tensor-core result.
// - NaN and Inf operands and C follow one policy in every mode (gemm/non_finite.hpp: NaN in a
//   product, Inf x 0 and +Inf + -Inf give NaN; an Inf otherwise propagates); scales are finite.
#pragma once

#include "common/bf16.hpp"  // round_to_bf16, used with gemm outputs

#include <cstddef>
#include <functional>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

struct GemmOptions {
  // Use the blocked kernels: gemm/hopper_fp8_kernel when the instruction is a Hopper FP8 preset,
  // gemm/tc_lanes_kernel for the other fused presets it models (tc_lanes_kernel_models),
  // gemm/fp32_kernel for accumulate fp32 / fp32_pairwise, gemm/exact_kernel for exact with narrow
  // formats, gemm/block_scaled_kernel for block-scaled (tcgen05) instructions. false forces the per-element reference paths (accum's generic fused_dot_add, the
  // scalar FP32 loops, the Kulisch sums); tests prove them bit-identical.
  bool allow_fast_kernel = true;
};

// Returns M x N results as doubles (each exactly a value of the output format). Throws
// std::invalid_argument naming the argument on bad shapes, scales or values.
std::vector<double> gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c = nullptr,
                         const GemmOptions& options = {});
// The same into storage of the caller's: result(M * N), called once the operands are checked,
// returns where the M x N doubles go (the Python binding's reused buffers, common/buffer_pool.hpp).
void gemm_into(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
               const std::function<double*(std::size_t)>& result, const GemmOptions& options = {});

// Checks shapes and the spec against the operands (what gemm() checks before computing).
void validate_gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec);


}  // namespace fp8lab

// A certified error bound for every output element of an emulated GEMM: |D - exact| <= bound,
// where exact = C + A·Bᵀ computed exactly from the dequantised inputs. It is a *running* error
// bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.3): the
// computation is replayed and each rounding step contributes the largest error the spec allows
// for it, sized by the values actually computed at that step. The derivation, step by step:
//
// Tensor-core instruction (model parameters: F fractional alignment bits, P output bits,
// REFERENCE.md "Tensor cores"):
//   1. Products are exact.
//   2. Every term (product, and C = previous D) is aligned to u = 2^(emax - F), emax the largest
//      term exponent, by truncating its magnitude: the error of one term is < u, and 0 when the
//      term is a multiple of u. Bound: n_inexact * u.
//   3. The aligned sum is exact (integer addition).
//   4. Normalisation truncates the sum S' to P significant bits: error < ulp_P(S'); truncation
//      keeps the leading bit, so ulp_P(S') = ulp_P(D) = 2^(e(D) + 1 - P) for the computed D
//      (D = 0 only when S' = 0). Bound: 2^(e(D) + 1 - P).
//   Chained instructions add their bounds (C carries the previous error exactly into the sum).
//   An instruction of k/block fused blocks (Ada mma.sync halves) is bounded block by block; a
//   block's intermediate D is the model evaluated on that block alone (zero blocks then pass it
//   through unchanged). Variants of accum's model: `exact_sum` (one FP32 rounding of the exact
//   sum, in either direction: one FP32 ULP of the result, no alignment error); `c_after_products` (the products are aligned among themselves
//   and normalised, S_p, then fl32(S_p + C): steps 2 and 4 for S_p plus u32*|D|); a result below
//   2^-125 may also be truncated onto FP32's subnormal grid (2^-149 more).
// Promotion with FP32 u32 = 2^-24 (each operation fl(z) = z / (1 + d), |d| <= u32, so the error is
// <= u32 * |computed|, plus eta = 2^-149 for a product that underflows):
//   deepgemm  s = fl(sa*sb), acc' = fl(s*p + acc):
//             |s*p - sa*sb*P| <= |s|*Bp + u32*|s|*(|p| + Bp); + u32*|acc'| + eta
//   triton    q1 = fl(p*sa), q2 = fl(q1*sb), acc' = fl(q2 + acc):
//             |q2 - sa*sb*P| <= u32*|q2| + eta + |sb|*(u32*|q1| + eta) + |sa*sb|*Bp; + u32*|acc'|
//   cublas    q1 = fl(p*sa), acc' = fl(q1*sb + acc):
//             |q1*sb - sa*sb*P| <= |sb|*(u32*|q1| + eta) + |sa*sb|*Bp; + u32*|acc'| + eta
//   where P is the block's exact partial sum and Bp the chain bound of p. Errors of acc carry over.
// C and output: fl32(acc + c) adds u32*|result|; BF16 round-to-nearest-even adds
//   2^-8*|D| + 2^-134 (half an ULP, or half the smallest subnormal).
// FP32 accumulation: x = fl(a*sa), y = fl(b*sb), p = fl(x*y) (errors as above, operand errors
//   propagated through the product), each addition u32*|computed|; pairwise sums the two halves'
//   bounds at every node.
// Exact: only the output rounding, 2^-p*|D| + 2^(emin - p).
// The bound itself is evaluated in binary64 and multiplied by (1 + 2^-30), which covers the
// relative rounding error of the (at most a few 10^5) binary64 operations per element.
// Where it runs: the Hopper FP8 presets and the FP32 modes on blocked kernels
// (gemm/bound_kernel.hpp, gemm/fp32_bound_kernel.hpp), which replay the steps above for 16 / 8
// outputs at once and add the same binary64 terms in the same order, so the bounds are the
// per-element certificate's to the bit; other presets, NaN/Inf rows and GemmOptions{false} take
// the per-element one (gemm/bounds.cpp).
// Infinite results get an infinite bound.
#pragma once

#include <vector>

#include "gemm/gemm.hpp"
#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// The bound for each of the M x N outputs of gemm(a, b, spec, c) (c may be nullptr).
// options.allow_fast_kernel = false forces the per-element certificate everywhere (the blocked
// one, gemm/bound_kernel.hpp, gives the same doubles; tests compare them).
std::vector<double> gemm_error_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                     const float* c = nullptr, const GemmOptions& options = {});


}  // namespace fp8lab

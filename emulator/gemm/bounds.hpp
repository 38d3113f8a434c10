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
// FP32 accumulation: x = fl(a*sa), y = fl(b*sb), p = fl(x*y), summed sequentially (s_k =
//   fl(s_(k-1) + p_k)) or pairwise (each node v = fl(l + r)). The running bound replayed product
//   by product (fp32_replayed_error_bound, the certificate until the change below) is
//     sum_k t_k + u32 * sum_k |s_k|   (pairwise: + u32 * sum over the internal nodes of |v|),
//     t_k = u32*|p_k| + eta + ex*|y_k| + (|x_k| + ex)*ey,  ex = u32*|x_k| + eta, ey = u32*|y_k| + eta
//   (|xy - XY| <= |x - X||y| + |X||y - Y| with |X| <= |x| + ex; fl(xy) errs by u32*|p| + eta).
//   Expanded, ex*|y| + (|x| + ex)*ey = (2u + u^2)|x y| + eta (1 + u)(|x| + |y|) + eta^2 (u = u32),
//   and round-to-nearest gives |x y| <= (1 + u)|p| + eta/2 (|z - fl(z)| <= u|fl(z)| in the normal
//   range, <= eta/2 in the subnormal one), so
//     t_k <= c1 |p_k| + eta (1 + u)(|x_k| + |y_k|) + c0,  c1 = 3u + 3u^2 + u^3, c0 = eta (1 + 2u)
//   (c0 >= eta + (2u + u^2) eta/2 + eta^2; c1, c0 and eta (1 + u) are exact in binary64), term by
//   term no smaller than the old t_k. Summed: c1 P + eta (1 + u)(X + Y) + K c0 with P = sum |p_k|,
//   X = sum |x_k|, Y = sum |y_k|. The value kernel computes P and N (= sum_k |s_k|, or the sum of
//   |v| over the tree's internal nodes in post-order) in binary32 alongside the values
//   (gemm/fp32_kernel.hpp fp32_gemm_accumulate_sums: per product one add for each and the AND for
//   |s|; |p| by an AND, or on AVX-512 as the product fl(|x| |y|), s then taking fma(+-1, |p|, s));
//   X, Y are per-row binary64 sums (O((M + N) K)). A binary32 sum of n >= 1 non-negative terms in
//   any fixed order has n - 1 roundings, each fl(a + b) = (a + b)(1 + d), |d| <= u (an addition
//   never underflows: a subnormal sum is exact), so computed >= (1 - u)^(n-1) exact >= (1 - (n-1)u)
//   exact, i.e. exact <= computed / (1 - (n - 1) u), with n - 1 <= K - 1 for both P and N; the
//   partial sums grow, so a finite result means no overflow. Hence the accumulator's bound
//     (c1 P^ + u N^) / (1 - (K - 1) u) + eta (1 + u)(X + Y) + K c0
//   (bound_steps::fp32_sums_bound), never below the replayed one and at most about
//   1 + 2 (K + 1) u times it (P^ and N^ may also have rounded up; tests/cpp/test_gemm_fp32_bound.cpp
//   measures 1 + 4.5e-4 at most for K = 8192 on random data). It is used for K <= 2^20 (then
//   (K - 1) u <= 1/16, and the binary64 sums X, Y err by < 2^-33 relative) when P^ and N^ are finite;
//   where a binary32 sum overflows while the value is finite, or K > 2^20, the output takes the
//   replayed bound (both paths alike). C and output rounding as above.
// Exact: only the output rounding, 2^-p*|D| + 2^(emin - p).
// The bound itself is evaluated in binary64 and multiplied by (1 + 2^-30), which covers the
// relative rounding error of the (at most a few 10^5) binary64 operations per element (for the
// FP32 modes' sums formula: a dozen operations after X and Y, the division by 1 - (K - 1) u
// included).
// Where it runs: the Hopper FP8 presets on a blocked kernel (gemm/bound_kernel.hpp), which replays
// the steps above for 16 outputs at once and adds the same binary64 terms in the same order; the
// FP32 modes on the value kernel's sums (gemm/fp32_kernel.hpp), the same binary32 operations in the
// same order as the per-element certificate's; so the bounds are the per-element certificate's to
// the bit (tests compare them on every kernel variant). Other presets, NaN/Inf rows and
// GemmOptions{false} take the per-element one (gemm/bounds.cpp).
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

// The FP32 modes' (spec.accumulate Fp32Sequential / Fp32Pairwise) bound replayed product by
// product in binary64, per element: the certificate before the one from the value kernel's sums
// (see above), kept as that one's fallback (K > 2^20, a binary32 sum overflowing) and for the
// tests, which check the new bound against it (never below, at most a fraction of a percent above).
std::vector<double> fp32_replayed_error_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                              const float* c = nullptr);


}  // namespace fp8lab

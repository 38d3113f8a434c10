// The GEMM's NaN/Inf policy, as the tensor cores propagate non-finite values (one policy for every
// accumulation mode; gemm.hpp cites it):
//   * a product with a NaN factor is NaN; Inf x 0 is NaN; Inf x (finite non-zero) is a signed Inf;
//   * a sum holding a NaN term is NaN; +Inf and -Inf together give NaN; otherwise an Inf term makes
//     the sum that Inf, whatever the finite terms;
//   * C enters as one more term; the dequantisation scales are finite (operand.cpp rejects others).
// Sources: PTX ISA, mma/wgmma ("the result is NaN if any input is NaN"; IEEE 754 §7.2 invalid
// operations for Inf x 0 and Inf - Inf); Khattak & Mikaitis, arXiv 2512.07004, and MMA-Sim
// (arXiv 2511.10909; mmasim/arithmetic/fdpa.py e_fdpa: the sum of the summands in float decides NaN
// and Inf before the fused arithmetic), whose models tests/python/test_gemm_non_finite.py runs as an
// oracle. Inside the tensor-core model this is accum's fused_dot_add (non_finite_result); between
// instructions and at promotion the FP32 partial sums carry it through IEEE arithmetic (NaN x s is
// NaN; Inf x s is Inf for s != 0; acc + Inf is Inf; Inf - Inf is NaN). Fp32 accumulation is IEEE
// arithmetic throughout; Exact, whose sum of finite terms has no NaN or Inf, takes the class below.
// Output: the NaN of the output format is its canonical NaN (sign clear, all exponent and mantissa
// bits set: FP32 0x7FFFFFFF, BF16 0x7FFF, what mmasim and CUDA's conversions produce); gemm()
// returns doubles, so a NaN result is only a NaN: its payload is not part of the model.
// A format without Inf (E4M3) cannot hold one: gemm rejects it as "not an e4m3 value".
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "gemm/operand.hpp"

namespace fp8lab {

// Which rows of an operand hold a NaN or an infinity; `any` when one does.
struct NonFiniteRows {
  std::vector<char> row;
  bool any = false;
};
NonFiniteRows non_finite_rows(const GemmOperand& x);

// D[i, j]'s class under the policy when a term (a product, or C when c is given) is NaN or
// infinite: NaN or a signed Inf; nullopt when every term is finite.
std::optional<double> non_finite_dot(const GemmOperand& a, const GemmOperand& b, std::size_t i, std::size_t j,
                                     const float* c);

// A copy of x with every NaN and infinity replaced by zero (for arithmetic that takes only finite
// values; the outputs those elements touch are then recomputed under the policy).
GemmOperand finite_part(const GemmOperand& x);

}  // namespace fp8lab

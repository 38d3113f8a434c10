// The exact reference: D = C + A·Bᵀ computed without any rounding from the dequantised inputs
// (element * scale, both exact) and rounded once to the output format. This is what every
// accumulator choice is measured against.
#pragma once

#include <cstddef>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// a: M x K, b: N x K (NT layout), c: optional M x N FP32 (nullptr for none). Returns M x N values
// rounded once (nearest even) to `out` (Fp64 for metrics). Parallel over output tiles; the result
// does not depend on the thread count.
//
// How it stays fast: K is cut into intervals over which both operands' scales are constant.
// Within one, each row's elements are written as integers over a common exponent; when the two
// integer widths plus log2(interval) fit 63 (or 126) bits the interval's dot product is an exact
// int64 (or __int128) sum; otherwise every product goes straight into the Kulisch accumulator.
// Each interval's sum then enters the accumulator multiplied exactly by the scales' significands.
// With allow_fast_kernel (the default) narrow formats take gemm/exact_kernel's integer GEMM, the
// same values by a faster route; false forces the general path below (tests compare the two).
std::vector<double> gemm_exact(const GemmOperand& a, const GemmOperand& b, const float* c, OutputFormat out,
                               bool allow_fast_kernel = true);

}  // namespace fp8lab

// The exact GEMM as an integer GEMM, for operands in narrow formats (FP8, FP6, FP4): every value
// of such a format is an integer n times its smallest subnormal 2^lsb, |n| < 2^width, both read
// from the format row (E4M3: lsb = -9, 448 = 229376 * 2^-9 so width = 18). A product of two such
// integers is below 2^(wa + wb) (36 bits for E4M3 x E4M3), so binary64 sums of up to
// 2^(53 - wa - wb) products are exact integers (2^17 for E4M3): the kernel sums chunks of that
// length, inside intervals of constant scales, with binary64 FMAs (every intermediate is an
// exact integer, so fusing changes nothing). Each chunk sum S is then multiplied exactly by the
// scales' significands (S * ma * mb < 2^101, an __int128) and the terms, with C, are added in
// one integer per output at a common exponent (or, when their exponents are too far apart, in
// the Kulisch accumulator) and rounded once. Same value as gemm_exact's general path, hence the
// same bits (tests/cpp/test_gemm.cpp ExactKernel, property_tests/prop_gemm.cpp).
#pragma once

#include <optional>
#include <vector>

#include "gemm/gemm_spec.hpp"
#include "gemm/operand.hpp"

namespace fp8lab {

// gemm_exact(a, b, c, out) when both operands are narrow enough (finite elements on their
// format's integer grid, wa + wb <= 53); nullopt otherwise (the caller takes the general path).
std::optional<std::vector<double>> exact_integer_gemm(const GemmOperand& a, const GemmOperand& b, const float* c,
                                                      OutputFormat out);

}  // namespace fp8lab

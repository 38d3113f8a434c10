// The random Hadamard transform TransformerEngine applies before NVFP4 quantisation of the
// weight-gradient GEMM's operands (custom_recipes/reference_nvfp4.py NVFP4QuantizerRef._apply_rht):
// every run of 16 consecutive values along a row, x, becomes x @ (diag(s) H16 / 4), H16 the
// Sylvester Hadamard matrix (H[i][j] = (-1)^popcount(i & j)) and s TE's fixed sign vector
// (get_wgrad_sign_vector). Each output is the exact sum of its 16 products x_i * s_i * H[i][j] / 4
// (each exact in float32) rounded once to float32, nearest-even: a deterministic function, whereas
// TE's python reference leaves the order to a float32 matmul and its kernel to the tensor cores.
#pragma once

#include <array>
#include <cstddef>

namespace fp8lab {

inline constexpr std::size_t kRhtSize = 16;
// TE get_wgrad_sign_vector(): [1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1].
const std::array<int, kRhtSize>& te_rht_signs();

// out (rows x cols) = the transform of x (rows x cols) along rows; cols must be a multiple of 16
// (std::invalid_argument naming cols otherwise). NaN in a block gives NaN outputs for the whole
// block; +Inf and -Inf together give NaN, either alone gives that infinity times each output's sign.
void rht16(const float* x, std::size_t rows, std::size_t cols, float* out);

}  // namespace fp8lab

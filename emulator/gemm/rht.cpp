// The size-16 random Hadamard transform (see rht.hpp), summed exactly in the Kulisch accumulator.
#include "gemm/rht.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "gemm/kulisch.hpp"

namespace fp8lab {

namespace {

// +1 or -1: the sign s_i * H16[i][j].
int coefficient(std::size_t i, std::size_t j) {
  return te_rht_signs()[i] * ((std::popcount(static_cast<unsigned>(i & j)) & 1) ? -1 : 1);
}

// One output of a block that holds NaN or an infinity: IEEE's sum of the signed terms.
float non_finite_output(const float* x, std::size_t j) {
  bool pos = false, neg = false;
  for (std::size_t i = 0; i < kRhtSize; ++i) {
    if (std::isnan(x[i])) return std::numeric_limits<float>::quiet_NaN();
    if (std::isinf(x[i])) ((x[i] > 0) == (coefficient(i, j) > 0) ? pos : neg) = true;
  }
  if (pos && neg) return std::numeric_limits<float>::quiet_NaN();
  return pos ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
}

void block(const float* x, float* out) {
  bool finite = true;
  for (std::size_t i = 0; i < kRhtSize; ++i) finite = finite && std::isfinite(x[i]);
  for (std::size_t j = 0; j < kRhtSize; ++j) {
    if (!finite) {
      out[j] = non_finite_output(x, j);
      continue;
    }
    KulischAccumulator acc;
    for (std::size_t i = 0; i < kRhtSize; ++i) {
      const FloatParts p = float_parts(x[i]);  // x = m 2^e; the term is +-m 2^(e-2), exact
      acc.add(static_cast<__int128>(coefficient(i, j) * static_cast<long long>(p.m)), p.e - 2);
    }
    out[j] = static_cast<float>(acc.round(24, -126, 127));  // one rounding to float32
  }
}

}  // namespace

const std::array<int, kRhtSize>& te_rht_signs() {
  static constexpr std::array<int, kRhtSize> s{1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1};
  return s;
}

void rht16(const float* x, std::size_t rows, std::size_t cols, float* out) {
  if (cols % kRhtSize != 0)
    throw std::invalid_argument("cols: the Hadamard transform works on runs of 16 along a row; " + std::to_string(cols) +
                                " columns is not a multiple of 16");
  if (rows * cols != 0 && (x == nullptr || out == nullptr)) throw std::invalid_argument("x: null pointer for a non-empty matrix");
  parallel_for(rows, 8, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t c = 0; c < cols; c += kRhtSize) block(x + r * cols + c, out + r * cols + c);
  });
}

}  // namespace fp8lab

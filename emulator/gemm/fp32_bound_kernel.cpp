#include "gemm/fp32_bound_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/bound_steps.hpp"

#ifdef __AVX512F__
#include <immintrin.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // internal 64-byte vector helpers (see hopper_fp8_kernel.cpp)
#endif

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp). GCC/Clang vector
// extensions: IEEE operations lane by lane, each exactly the scalar one (no FMA: -ffp-contract=off).
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using bound_steps::kEta;
using bound_steps::kU32;

constexpr std::size_t kW = 8;     // output columns per vector
constexpr std::size_t kRows = 4;  // rows of A per task
using F8 = float __attribute__((vector_size(kW * sizeof(float))));
using D8 = double __attribute__((vector_size(kW * sizeof(double))));
using UF8 = std::uint32_t __attribute__((vector_size(kW * sizeof(float))));
using UD8 = std::uint64_t __attribute__((vector_size(kW * sizeof(double))));

template <class V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// std::fabs lane-wise: the sign bit cleared.
inline F8 magnitude(F8 x) { return std::bit_cast<F8>(std::bit_cast<UF8>(x) & 0x7FFFFFFFu); }
inline D8 magnitude(D8 x) { return std::bit_cast<D8>(std::bit_cast<UD8>(x) & 0x7FFFFFFFFFFFFFFFull); }
// float to double lane-wise (exact). With AVX-512 one vcvtps2pd: GCC lowers the generic
// conversion to two half-width ones and an insert here.
inline D8 widen(F8 x) {
#ifdef __AVX512F__
  return std::bit_cast<D8>(_mm512_cvtps_pd(std::bit_cast<__m256>(x)));
#else
  return __builtin_convertvector(x, D8);
#endif
}

// The factors of product_with_bound (gemm/bounds.cpp) that depend on one operand only: x =
// fl(a*sa), ex = u32*|x| + eta and |x| + ex for A per (i, k); y, ey and |y| for B per (group of kW
// columns, k, lane) (padding columns: zeros).
struct Factors {
  std::vector<float> x, y;
  std::vector<double> ex, axe, ey, ay;
};

Factors factors(const GemmOperand& a, const GemmOperand& b) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, G = (N + kW - 1) / kW;
  Factors f{std::vector<float>(M * K), std::vector<float>(G * K * kW), std::vector<double>(M * K),
            std::vector<double>(M * K), std::vector<double>(G * K * kW), std::vector<double>(G * K * kW)};
  parallel_for(M, 16, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i)
      for (std::size_t k = 0; k < K; ++k) {
        const float x = a.row(i)[k] * a.scale(i, k);
        const double ex = kU32 * std::fabs(x) + kEta;
        f.x[i * K + k] = x;
        f.ex[i * K + k] = ex;
        f.axe[i * K + k] = std::fabs(x) + ex;
      }
  });
  parallel_for(N, 16, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t j = j0; j < j1; ++j)
      for (std::size_t k = 0; k < K; ++k) {
        const float y = b.row(j)[k] * b.scale(j, k);
        const std::size_t at = ((j / kW) * K + k) * kW + j % kW;
        f.y[at] = y;
        f.ey[at] = kU32 * std::fabs(y) + kEta;
        f.ay[at] = std::fabs(y);
      }
  });
  return f;
}

struct Track8 {  // kW binary32 values and their bounds
  F8 v;
  D8 err;
};

// Product k of row i against column group g: product_with_bound's p and bound, lane-wise.
inline Track8 product(const Factors& f, std::size_t K, std::size_t i, std::size_t g, std::size_t k) {
  const std::size_t at = (g * K + k) * kW;
  const float x = f.x[i * K + k];
  const double ex = f.ex[i * K + k], axe = f.axe[i * K + k];
  const F8 p = x * load<F8>(&f.y[at]);
  return {p, kU32 * widen(magnitude(p)) + kEta + ex * load<D8>(&f.ay[at]) + axe * load<D8>(&f.ey[at])};
}

// pairwise_with_bound (gemm/bounds.cpp) on kW lanes of `rows` rows at once, over the products
// [k0, k0 + n), n >= 1: the same split, the same additions.
void pairwise(const Factors& f, std::size_t K, std::size_t i0, std::size_t rows, std::size_t g, std::size_t k0,
              std::size_t n, Track8* s) {
  if (n == 1) {
    for (std::size_t r = 0; r < rows; ++r) s[r] = product(f, K, i0 + r, g, k0);
    return;
  }
  const std::size_t h = n / 2;
  Track8 left[kRows], right[kRows];
  pairwise(f, K, i0, rows, g, k0, h, left);
  pairwise(f, K, i0, rows, g, k0 + h, n - h, right);
  for (std::size_t r = 0; r < rows; ++r) {
    const F8 v = left[r].v + right[r].v;
    s[r] = {v, left[r].err + right[r].err + kU32 * widen(magnitude(v))};
  }
}

}  // namespace

void fp32_chain_bounds(const GemmOperand& a, const GemmOperand& b, bool pairwise_sum, float* acc, double* err) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, G = (N + kW - 1) / kW, IT = (M + kRows - 1) / kRows;
  const Factors f = factors(a, b);
  parallel_for(IT * G, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t g = t / IT, i0 = (t % IT) * kRows, rows = std::min(kRows, M - i0);
      Track8 s[kRows] = {};
      if (pairwise_sum) {
        if (K > 0) pairwise(f, K, i0, rows, g, 0, K, s);
      } else {
        for (std::size_t k = 0; k < K; ++k)  // acc = fl(acc + p), err += (bound of p) + u32*|acc|
          for (std::size_t r = 0; r < rows; ++r) {
            const Track8 p = product(f, K, i0 + r, g, k);
            s[r].v = s[r].v + p.v;
            s[r].err += p.err + kU32 * widen(magnitude(s[r].v));
          }
      }
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t l = 0; l < kW && g * kW + l < N; ++l) {
          acc[(i0 + r) * N + g * kW + l] = s[r].v[l];
          err[(i0 + r) * N + g * kW + l] = s[r].err[l];
        }
    }
  });
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, fp32_chain_bounds,
                      (const GemmOperand& a, const GemmOperand& b, bool pairwise_sum, float* acc, double* err),
                      (a, b, pairwise_sum, acc, err))

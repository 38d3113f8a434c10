// The blocked Hopper FP8 bound (gemm/bound_kernel.hpp) against the per-element certificate it
// replaces (gemm_error_bound with GemmOptions{false}, the oracle), bit for bit, on every kernel
// variant this CPU runs (common/isa.hpp: the AVX-512 build has its own 16-bit-pair path, the AVX2
// and portable builds the vector-extension one). Hostile operands: zeros, E4M3/E5M2 subnormals,
// the format's maximum, cancelling rows, whole instructions at the largest exponent (every bit
// of the aligned sum and of D in use), instructions far below their tile's maximum, a NaN (and for
// E5M2 an Inf) in one row of A and one of B (those outputs take the per-element path); K not a
// multiple of the instruction's 32 and M, N not multiples of the kernel's 6-row, 2 x 16-column
// tiles; promoted (N_C = 32, 128, 256) and one chain, every combine order, FP32 and BF16 output,
// C or none.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/isa.hpp"
#include "gemm/bounds.hpp"
#include "test_gemm_support.hpp"

namespace fp8lab {
namespace {

using testing::gaussian;
using testing::quantise;

TEST(BoundKernel, BitIdenticalToPerElementCertificateOnEveryVariant) {
  // M = 13 and 11: a task's rows as 6 + 6 + 1 and 6 + 5, so that the AVX2 path's row blocks of
  // 3, 2 and 1 are all taken.
  for (const std::size_t M : {13, 11})
  for (const auto& [fmt, instruction] : {std::pair{"e4m3", "hopper_fp8"}, std::pair{"e5m2", "hopper_fp8_e5m2"}}) {
    const std::size_t N = 37, K = 333;
    const bool e5m2 = std::string(fmt) == "e5m2";
    auto x = gaussian(M * K, 31), y = gaussian(N * K, 32);
    for (std::size_t i = 0; i < x.size(); i += 7) x[i] = std::ldexp(x[i], static_cast<int>(i % 19) - 9);
    for (std::size_t i = 0; i < y.size(); i += 11) y[i] = 0;
    for (std::size_t k = 0; k < K; ++k) y[K + k] = -y[k];  // row 1 of B cancels row 0
    for (std::size_t k = 0; k < K; ++k) x[2 * K + k] = static_cast<float>(k % 3 == 0 ? 0x1p-9 : 0x1.cp8);
    for (std::size_t k = 0; k < K; ++k) x[3 * K + k] = static_cast<float>(k % 5 == 0 ? -0x1.ep7 : 0x1.cp8);
    for (std::size_t k = 0; k < K; ++k) y[2 * K + k] = static_cast<float>(k % 7 == 0 ? 0x1.ep7 : 0x1.cp8);
    for (std::size_t k = 0; k < K; ++k)
      x[4 * K + k] = static_cast<float>((k / 32) % 2 ? 0x1.cp8 : (k % 3 ? 0x1.4p-14 : -0x1.8p-15));
    for (std::size_t k = 0; k < K; ++k) x[5 * K + k] = 0;  // a zero row: D = 0 in every instruction
    for (std::size_t k = 0; k < K; ++k) x[6 * K + k] = static_cast<float>(k % 2 ? 0x1p-6 : -0x1p-6);  // ties
    auto c = gaussian(M * N, 33, 64.0);
    for (Tile tile : {Tile{1, 128}, Tile{1, 0}}) {
      auto a = operand_from_qtensor(quantise(x, M, K, tile, fmt), "a");
      auto b = operand_from_qtensor(quantise(y, N, K, tile == Tile{1, 0} ? Tile{0, 0} : Tile{128, 128}, fmt), "b");
      a.elements[7 * K + 40] = NAN;  // row 7 of A and row 20 of B through the per-element path
      b.elements[20 * K + 5] = e5m2 ? -INFINITY : NAN;
      for (Combine comb : {Combine::DeepGemm, Combine::Triton, Combine::Cublas})
        for (Accumulate acc : {Accumulate::Promoted, Accumulate::TensorCore})
          for (int nc : {128, 32, 256}) {
            if (acc == Accumulate::TensorCore && (tile == Tile{1, 128} || nc != 128)) continue;
            if (nc == 256 && tile == Tile{1, 128}) continue;  // would cross a scale tile
            GemmSpec s;
            s.accumulate = acc;
            s.combine = comb;
            s.promote_every = nc;
            s.instruction = instruction;
            s.out = nc == 32 ? OutputFormat::Bf16 : OutputFormat::Fp32;
            const float* cp = comb == Combine::Triton ? c.data() : nullptr;
            const std::vector<double> ref = gemm_error_bound(a, b, s, cp, {false});
            for (const Isa isa : runnable_isas()) {
              const ScopedIsa use(isa);
              const std::vector<double> fast = gemm_error_bound(a, b, s, cp, {true});
              ASSERT_EQ(fast.size(), ref.size());
              for (std::size_t e = 0; e < fast.size(); ++e)
                ASSERT_EQ(std::bit_cast<std::uint64_t>(fast[e]), std::bit_cast<std::uint64_t>(ref[e]))
                    << isa_name(isa) << " " << fmt << " M " << M << " element " << e << " (" << e / N << ", " << e % N << ") "
                    << accumulate_name(acc) << " nc " << nc << " combine " << combine_name(comb) << ": kernel "
                    << fast[e] << ", certificate " << ref[e];
            }
          }
    }
  }
}

}  // namespace
}  // namespace fp8lab

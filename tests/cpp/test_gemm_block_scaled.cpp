// The block-scaled GEMM fast path (gemm/block_scaled_kernel.hpp) against the instruction chain
// (accum's fused_dot_add_scaled over K, GemmOptions::allow_fast_kernel = false), bit for bit, for every
// block-scaled preset: shapes with K below one instruction, ragged K (not a multiple of the
// instruction's k or of the scale block), random element patterns (NaN and Inf where the format has
// them), scales over the whole scale format (UE8M0 2^-127 .. 2^127, UE4M3 zero, subnormals, 448),
// zero rows, and rows that overflow the FP32 accumulator mid-chain; on every kernel variant this CPU
// runs (common/isa.hpp).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "common/isa.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "gemm/gemm.hpp"

namespace fp8lab {
namespace {

// rows x K values of the preset's input format: finite random patterns, except row 0 zero, row 1
// all the format's maximum with the largest scale (the UE8M0 chains overflow), row 2 with a NaN (or
// Inf) where the format has one, row 3 small patterns only (subnormals and the lowest binades, so
// the products' alignment clamps decide), row 4 the smallest scale (terms below the zero-term
// exponent).
GemmOperand operand(const TensorCoreModel& m, const char* fmt, std::size_t rows, std::size_t K, std::mt19937& rng) {
  const Format& in = format_by_name(fmt);
  const Format& sf = format_by_name(m.scale_format);
  const std::size_t sb = static_cast<std::size_t>(m.scale_block);
  GemmOperand x;
  x.rows = rows;
  x.cols = K;
  x.fmt = in.name;
  x.quantised = true;
  x.tile_rows = 1;
  x.tile_cols = sb;
  x.elements.resize(rows * K);
  const std::uint32_t patterns = 1u << in.total_bits();
  std::uniform_int_distribution<std::uint32_t> pattern(0, patterns - 1), small(0, 4u << in.mantissa_bits);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t t = 0; t < K; ++t) {
      double v = std::nan("");
      while (!std::isfinite(v)) v = decode(r == 3 ? small(rng) | (pattern(rng) & (patterns >> 1)) : pattern(rng), in);
      if (r == 0) v = 0;
      if (r == 1) v = in.max_finite();
      if (r == 2 && t == K / 2 && in.has_nan()) v = std::nan("");
      x.elements[r * K + t] = static_cast<float>(v);
    }
  x.scales.resize(rows * x.grid_cols());
  std::uniform_int_distribution<std::uint32_t> scale_pattern(0, (1u << sf.total_bits()) - 1);
  for (std::size_t i = 0; i < x.scales.size(); ++i) {
    double s = std::nan("");
    while (!std::isfinite(s) || (s == 0 && !sf.has_zero())) s = decode(scale_pattern(rng), sf);
    const std::size_t r = i / x.grid_cols();
    x.scales[i] = static_cast<float>(r == 1 ? sf.max_finite() : r == 4 ? sf.min_positive() : s);
  }
  return x;
}

TEST(BlockScaledKernel, EqualsTheInstructionChainForEveryPreset) {
  std::mt19937 rng(20261202);
  GemmSpec spec;
  spec.accumulate = Accumulate::TensorCore;
  spec.out = OutputFormat::Fp32;
  GemmOptions slow;
  slow.allow_fast_kernel = false;
  int presets = 0;
  for (const TensorCoreModel& m : tensor_core_presets()) {
    if (m.scale_block == 0) continue;
    ++presets;
    spec.instruction = m.name;
    const std::size_t k = static_cast<std::size_t>(m.k);
    for (const std::size_t K : {std::size_t{1}, k - 1, k, 3 * k + 7, 5 * k + static_cast<std::size_t>(m.scale_block)}) {
      // B's rows: one partial group of the kernel's 16 output columns, one whole and one more, three.
      constexpr std::size_t kBRows[] = {9, 17, 37};
      for (int rep = 0; rep < 3; ++rep) {
        const GemmOperand a = operand(m, m.input_format, 12, K, rng), b = operand(m, b_input_format(m), kBRows[rep], K, rng);
        const std::vector<double> ref = gemm(a, b, spec, nullptr, slow);
        for (const Isa isa : runnable_isas()) {
          const ScopedIsa use(isa);
          const std::vector<double> fast = gemm(a, b, spec);
          for (std::size_t e = 0; e < fast.size(); ++e)
            ASSERT_TRUE(std::bit_cast<std::uint64_t>(fast[e]) == std::bit_cast<std::uint64_t>(ref[e]) ||
                        (std::isnan(fast[e]) && std::isnan(ref[e])))
                << m.name << " on " << isa_name(isa) << " K=" << K << " output " << e << ": fast " << fast[e]
                << ", chain " << ref[e];
        }
      }
    }
  }
  EXPECT_EQ(presets, 12);  // 5 kind::mxf8f6f4, 4 of them mixed A x B, 3 kind::mxf4nvf4
}

// Hostile operands: each row one of the patterns below, its scales from a pool with the scale
// format's extremes (and NaN and zero where the format has them).
GemmOperand hostile(const TensorCoreModel& m, const char* fmt, std::size_t rows, std::size_t K, std::mt19937& rng) {
  const Format& in = format_by_name(fmt);
  const Format& sf = format_by_name(m.scale_format);
  GemmOperand x;
  x.rows = rows;
  x.cols = K;
  x.fmt = in.name;
  x.quantised = true;
  x.tile_rows = 1;
  x.tile_cols = static_cast<std::size_t>(m.scale_block);
  x.elements.resize(rows * K);
  const std::uint32_t patterns = 1u << in.total_bits();
  std::uniform_int_distribution<std::uint32_t> pattern(0, patterns - 1), pick(0, 99);
  auto finite = [&] {
    double v = std::nan("");
    while (!std::isfinite(v)) v = decode(pattern(rng), in);
    return v;
  };
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint32_t kind = pick(rng) % 8;
    for (std::size_t t = 0; t < K; ++t) {
      double v = finite();
      const std::uint32_t p = pick(rng);
      switch (kind) {
        case 0: v = 0; break;                                               // all-zero row
        case 1: v = p < 50 ? 0 : v; break;                                  // half zeros
        case 2: v = (p % 2 ? -1 : 1) * in.min_positive() * (1 + p % 3); break;  // subnormals
        case 3: v = (p % 2 ? -1 : 1) * in.max_finite(); break;              // max-finite, both signs
        case 4: if (p < 3 && in.has_nan()) v = std::nan(""); break;         // a NaN now and then
        case 5: if (p < 3 && in.has_inf()) v = p % 2 ? HUGE_VAL : -HUGE_VAL; break;
        default: break;
      }
      x.elements[r * K + t] = static_cast<float>(v);
    }
  }
  x.scales.resize(rows * x.grid_cols());
  std::uniform_int_distribution<std::uint32_t> scale_pattern(0, (1u << sf.total_bits()) - 1);
  for (float& s : x.scales) {
    const std::uint32_t p = pick(rng);
    double v = std::nan("");
    while (!std::isfinite(v) || (v == 0 && !sf.has_zero())) v = decode(scale_pattern(rng), sf);
    if (p < 10) v = sf.max_finite();
    else if (p < 20) v = sf.min_positive();
    else if (p < 25 && sf.has_zero()) v = 0;
    else if (p < 27 && sf.has_nan()) v = std::nan("");
    else if (p < 40) v = 1;
    s = static_cast<float>(v);
  }
  return x;
}

TEST(BlockScaledKernel, HostileOperandsAndShapesOnEveryVariant) {
  std::mt19937 rng(20261203);
  GemmSpec spec;
  spec.accumulate = Accumulate::TensorCore;
  spec.out = OutputFormat::Fp32;
  GemmOptions slow;
  slow.allow_fast_kernel = false;
  for (const TensorCoreModel& m : tensor_core_presets()) {
    if (m.scale_block == 0) continue;
    spec.instruction = m.name;
    const std::size_t k = static_cast<std::size_t>(m.k), sb = static_cast<std::size_t>(m.scale_block);
    for (const std::size_t K : {std::size_t{3}, sb + 1, 2 * k + sb / 2 + 1}) {
      // 2 x 8: one whole tile of the portable build (2 rows, 2 groups of 4 columns), no tail.
      for (const std::size_t M : {1, 2, 7, 17, 33})
      for (const std::size_t N : {1, 7, 8, 17, 33}) {
        const GemmOperand a = hostile(m, m.input_format, M, K, rng), b = hostile(m, b_input_format(m), N, K, rng);
        const std::vector<double> ref = gemm(a, b, spec, nullptr, slow);
        for (const Isa isa : runnable_isas()) {
          const ScopedIsa use(isa);
          const std::vector<double> fast = gemm(a, b, spec);
          for (std::size_t e = 0; e < fast.size(); ++e)
            ASSERT_TRUE(std::bit_cast<std::uint64_t>(fast[e]) == std::bit_cast<std::uint64_t>(ref[e]) ||
                        (std::isnan(fast[e]) && std::isnan(ref[e])))
                << m.name << " on " << isa_name(isa) << " M=" << M << " N=" << N << " K=" << K << " output " << e
                << ": fast " << fast[e] << ", chain " << ref[e];
        }
      }
    }
  }
}

}  // namespace
}  // namespace fp8lab

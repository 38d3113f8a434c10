// The fused presets' blocked kernel (gemm/tc_lanes_kernel) against the generic path (accum's
// fused_dot_add per output and instruction, gemm(..., {false})) on every preset row it claims,
// every combine order, promoted and not, and every instruction-set variant this CPU runs.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "gemm/combine.hpp"
#include "gemm/gemm.hpp"
#include "gemm/tc_lanes_kernel.hpp"

namespace fp8lab {
namespace {

// Values of format f for rows x K, hostile by row kind (A: row % 7, B: row % 5): typical values,
// any exponent of the format, its subnormals with max finite and signed zeros, values near 2^-63
// (BF16/TF32 products near FP32's least normal: D, entering the next block as C, subnormal) or
// the format's own subnormals (an FP16 accumulator's D below 2^-14),
// equal (A) or opposite (B) neighbours (products cancelling exactly inside a block), max finite
// against large positive values (every aligned term near 2^(F + 2): the int32 partial sums at
// their bound; BF16: sums past FP32's range), and B's row 1 the negation of row 0. `narrow` keeps every
// exponent in [-50, 49] (the kernel's binary32 products; BF16 and TF32 beyond take binary64 ones).
std::vector<float> hostile(std::size_t rows, std::size_t K, const Format& f, std::uint64_t seed, bool is_b,
                           bool narrow = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss;
  const int emin = f.min_normal_exponent(), m = f.mantissa_bits, emax = std::ilogb(f.max_finite());
  std::uniform_int_distribution<int> any_exp(emin - m, emax);
  const double maxf = f.max_finite(), least = std::ldexp(1.0, emin - m);
  auto value = [&](double x) {
    if (narrow && x != 0) {
      int e;
      const double frac = std::frexp(x, &e);  // |x| in [2^(e-1), 2^e)
      x = std::ldexp(frac, std::clamp(e, -49, 50));
    }
    return static_cast<float>(round_to_format(std::clamp(x, -maxf, maxf), f));
  };
  std::vector<float> v(rows * K);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < K; ++k) {
      const double g = gauss(rng);
      double x = g;
      switch (is_b ? r % 5 + 10 : r % 7) {
        case 1: case 12: x = std::ldexp(g, any_exp(rng)); break;
        case 2: x = k % 4 == 0 ? least * static_cast<double>(1 + k % 7) : k % 4 == 1 ? maxf : k % 4 == 2 ? -0.0 : -least; break;
        case 3: case 14: x = std::ldexp(g, std::max(-63, emin - 1) - static_cast<int>(k % 9)); break;
        case 4: x = k % 2 ? static_cast<double>(v[r * K + k - 1]) : g; break;
        case 13: x = k % 2 ? -static_cast<double>(v[r * K + k - 1]) : g; break;
        case 5: x = maxf; break;
        case 11: x = k % 3 ? maxf : 0.75 * maxf; break;
        case 6: x = std::ldexp(g, emax - 1); break;
        default: break;
      }
      v[r * K + k] = value(x);
    }
  if (is_b && rows > 1)
    for (std::size_t k = 0; k < K; ++k) v[K + k] = -v[k];
  return v;
}

// An operand of these values with one scale per tile (tile_cols 0: the whole K), scales that are
// not powers of two, so that each combine order's roundings show.
GemmOperand scaled(const std::vector<float>& v, std::size_t rows, std::size_t K, std::size_t tile_rows,
                   std::size_t tile_cols, std::uint64_t seed) {
  GemmOperand x = operand_from_floats(v.data(), rows, K, "x");
  x.tile_rows = tile_rows;
  x.tile_cols = tile_cols == 0 ? std::max<std::size_t>(K, 1) : tile_cols;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.3f, 3.0f);
  x.scales.resize(((rows + x.tile_rows - 1) / x.tile_rows) * x.grid_cols());
  for (float& s : x.scales) s = u(rng);
  return x;
}

GemmSpec spec_of(const TensorCoreModel& model, Accumulate acc, Combine comb, int nc) {
  GemmSpec s;
  s.instruction = model.name;
  s.accumulate = acc;
  s.combine = comb;
  s.promote_every = nc;
  s.out = OutputFormat::Fp32;
  return s;
}

TEST(TcLanesKernel, ClaimsTheFusedPresets) {
  // Exactly these (issue #15: every tensor-core preset on a blocked kernel); the rows it refuses
  // have an exact sum with C after it, block scales or a two-level form.
  const std::set<std::string> claimed{
      "hopper_fp8",  "hopper_fp8_e5m2", "hopper_bf16",  "hopper_fp16",       "hopper_tf32",    "ada_fp8",
      "ada_fp8_e5m2", "ada_bf16",       "ada_fp16",     "ada_tf32",          "ampere_bf16",    "ampere_fp16",
      "ampere_tf32", "blackwell_fp8",   "blackwell_fp8_e5m2", "blackwell_bf16", "blackwell_fp16", "blackwell_tf32",
      "ada_fp8_f16", "ada_fp8_e5m2_f16"};
  std::set<std::string> got;
  for (const TensorCoreModel& m : tensor_core_presets())
    if (tc_lanes_kernel_models(m)) got.insert(m.alias);
  EXPECT_EQ(got, claimed);
}

// Every preset row: the claimed ones against the generic path, on every variant. M and N reach
// partial row tiles and column groups; K = 333 ends in a partial instruction, K = 5 is shorter
// than one; promotion every instruction and every 128.
TEST(TcLanesKernel, EveryClaimedPresetBitIdenticalToGeneric) {
  int checked = 0;
  for (const TensorCoreModel& model : tensor_core_presets()) {
    if (!tc_lanes_kernel_models(model)) continue;
    ++checked;
    const Format& fa = format_by_name(model.input_format);
    const Format& fb = format_by_name(b_input_format(model));
    for (const bool narrow : {false, true})
    for (const auto& [M, N, K] : {std::tuple<std::size_t, std::size_t, std::size_t>{11, 37, 333}, {7, 17, 5}}) {
      const auto x = hostile(M, K, fa, 100 + M, false, narrow), y = hostile(N, K, fb, 200 + N, true, narrow);
      for (const Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted})
        for (const int nc : {model.k, 128}) {
          if (acc == Accumulate::TensorCore && nc != model.k) continue;
          // TensorCore applies the scales once: per row of A, one for B; promotion per 1 x 128
          // and 128 x 128 tiles.
          const GemmOperand a = acc == Accumulate::TensorCore ? scaled(x, M, K, 1, 0, 1) : scaled(x, M, K, 1, 128, 1);
          const GemmOperand b = acc == Accumulate::TensorCore ? scaled(y, N, K, N, 0, 2) : scaled(y, N, K, 128, 128, 2);
          for (const Combine comb : {Combine::DeepGemm, Combine::Triton, Combine::Cublas}) {
            const GemmSpec s = spec_of(model, acc, comb, nc);
            const std::vector<double> slow = gemm(a, b, s, nullptr, {false});
            const std::size_t every = acc == Accumulate::Promoted ? static_cast<std::size_t>(nc) : 0;
            for (const Isa isa : runnable_isas()) {
              const ScopedIsa use(isa);
              const std::vector<float> fast = tc_lanes_gemm_accumulate(a, b, model, every, comb);
              ASSERT_EQ(fast.size(), slow.size());
              for (std::size_t e = 0; e < fast.size(); ++e) {
                const float want = static_cast<float>(slow[e]);
                if (std::isnan(want) && std::isnan(fast[e])) continue;  // a NaN's payload is not modelled
                ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[e]), std::bit_cast<std::uint32_t>(want))
                    << model.name << " " << isa_name(isa) << " " << accumulate_name(acc) << " nc " << nc << " "
                    << combine_name(comb) << (narrow ? " narrow" : " wide") << " M " << M << " N " << N << " K " << K << " element [" << e / N
                    << ", " << e % N << "] got " << fast[e] << " want " << want;
              }
            }
          }
        }
    }
  }
  EXPECT_GE(checked, 20);
}

// Through gemm(): the dispatch to the kernel, NaN and Inf in A and B (rows and columns recomputed
// by the generic path), C, BF16 output, and thread counts.
TEST(TcLanesKernel, GemmDispatchWithNonFiniteAndC) {
  for (const char* name : {"hopper_bf16", "ampere_fp16", "ada_tf32", "blackwell_fp8_e5m2", "ada_fp8", "ada_fp8_e5m2_f16"}) {
    const TensorCoreModel& model = tensor_core_by_name(name);
    const Format& f = format_by_name(model.input_format);
    const std::size_t M = 9, N = 35, K = 100;
    auto x = hostile(M, K, f, 7, false), y = hostile(N, K, f, 8, true);
    x[2 * K + 3] = NAN;
    y[4 * K + 1] = f.has_inf() ? -INFINITY : NAN;
    if (f.has_inf()) x[5 * K + 7] = INFINITY;
    const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
    std::vector<float> c(M * N);
    std::mt19937_64 rng(9);
    std::normal_distribution<float> g;
    for (float& v : c) v = g(rng);
    for (const Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted})
      for (const OutputFormat out : {OutputFormat::Fp32, OutputFormat::Bf16}) {
        GemmSpec s = spec_of(model, acc, Combine::Triton, 4 * model.k);
        s.out = out;
        const std::vector<double> slow = gemm(a, b, s, c.data(), {false});
        for (const Isa isa : runnable_isas())
          for (const int threads : {1, 3}) {
            const ScopedIsa use(isa);
            set_num_threads(threads);
            const std::vector<double> fast = gemm(a, b, s, c.data(), {true});
            set_num_threads(0);
            for (std::size_t e = 0; e < fast.size(); ++e) {
              if (std::isnan(fast[e]) && std::isnan(slow[e])) continue;
              ASSERT_EQ(std::bit_cast<std::uint64_t>(fast[e]), std::bit_cast<std::uint64_t>(slow[e]))
                  << name << " " << isa_name(isa) << " threads " << threads << " element " << e;
            }
          }
      }
  }
}

// A block whose C and products all sit at the block's largest exponent with the format's largest
// significand: |S| = |C's term| + 16 terms near 2^(F + 2) passes 2^31 for F = 25 and blocks of 16
// (the int32 finish's sign-and-magnitude sum, tc_lanes_kernel.cpp fused_block_int). Block 1 makes
// C = (largest significand) * 2^0 (one product), block 2 has every product at exponent 0; rows and
// columns in both signs, and either sign of C against the products.
TEST(TcLanesKernel, BlockSumPastInt32) {
  for (const TensorCoreModel& model : tensor_core_presets()) {
    if (!tc_lanes_kernel_models(model)) continue;
    const Format& fa = format_by_name(model.input_format);
    const Format& fb = format_by_name(b_input_format(model));
    const double sa = 2.0 - std::ldexp(1.0, -fa.mantissa_bits), sb = 2.0 - std::ldexp(1.0, -fb.mantissa_bits);
    const std::size_t blk = static_cast<std::size_t>(model.block), K = 2 * static_cast<std::size_t>(model.k);
    const std::size_t M = 4, N = 4;
    std::vector<float> x(M * K, 0.0f), y(N * K, 0.0f);
    for (std::size_t i = 0; i < M; ++i) {
      const float s1 = i % 2 ? -1.0f : 1.0f, s2 = i / 2 ? -s1 : s1;
      x[i * K] = s1 * static_cast<float>(sa);
      for (std::size_t k = blk; k < 2 * blk; ++k) x[i * K + k] = s2 * static_cast<float>(sa);
    }
    for (std::size_t j = 0; j < N; ++j) {
      y[j * K] = j % 2 ? -1.0f : 1.0f;
      for (std::size_t k = blk; k < 2 * blk; ++k) y[j * K + k] = (j / 2 ? -1.0f : 1.0f) * static_cast<float>(sb);
    }
    const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
    const GemmSpec s = spec_of(model, Accumulate::TensorCore, Combine::DeepGemm, model.k);
    const std::vector<double> slow = gemm(a, b, s, nullptr, {false});
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      const std::vector<float> fast = tc_lanes_gemm_accumulate(a, b, model, 0, Combine::DeepGemm);
      for (std::size_t e = 0; e < fast.size(); ++e)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[e]), std::bit_cast<std::uint32_t>(static_cast<float>(slow[e])))
            << model.name << " " << isa_name(isa) << " element " << e << " got " << fast[e] << " want " << slow[e];
    }
  }
}

// Zero operands beside the smallest and the largest ones, on every claimed preset and variant:
// blocks whose only non-zero products are the format's least subnormals squared or least normals
// with their last bit set squared (products down to the format's smallest quantum), next to zero
// operands against max-finite ones, and whole blocks of such zeros after a chain of the smallest
// products (C the smallest D a chain can hold). Here the zero operand's saturated exponent (the
// AVX-512 lane-state chain's 8-bit sentinel, tc_lanes_kernel.cpp exponent_words) must stay low
// enough: its sum with the largest exponent sets the block's alignment when it passes the real
// products' and C's exponents, and truncates their low bits. Row kinds of A (r % 5) and of B
// (r % 5) pair each pattern with each: random smallest, alternating smallest / zero or max finite,
// whole blocks of either, and anything. Chains over the whole K and promoted every instruction.
TEST(TcLanesKernel, ZeroOperandsBesideExtremes) {
  for (const TensorCoreModel& model : tensor_core_presets()) {
    if (!tc_lanes_kernel_models(model)) continue;
    const std::size_t M = 25, N = 35, K = 4 * static_cast<std::size_t>(model.k) + 3, blk = static_cast<std::size_t>(model.block);
    // narrow: the extremes kept within [2^-49, 2^50) (BF16 and TF32 then take the kernel's
    // binary32 products, and the narrowest exponent words the operands' own range allows).
    auto values = [&](const Format& f, std::size_t rows, std::uint64_t seed, bool is_b, bool narrow) {
      // (narrow: the smallest values at 2^-49 with their largest and their least significand, so
      // that the products' low bits reach 2^(-98 - 2 mantissa bits).)
      const int emin = f.min_normal_exponent(), m = f.mantissa_bits;
      const bool low = narrow && emin - m < -49;
      const double least = low ? std::ldexp(2.0 - std::ldexp(1.0, -m), -49) : std::ldexp(1.0, emin - m);
      const double normal = low ? std::ldexp(1.0 + std::ldexp(1.0, -m), -49) : std::ldexp(1.0, emin) + least;
      const double maxf = narrow ? std::min(f.max_finite(), std::ldexp(2.0 - std::ldexp(1.0, -f.mantissa_bits), 49))
                                 : f.max_finite();
      const double any[] = {0.0, -0.0, least, -least, normal, -normal, maxf, -maxf, 1.0};
      std::mt19937_64 rng(seed);
      auto small = [&] { return (rng() % 2 ? 1.0 : -1.0) * (rng() % 3 ? least : normal); };
      // A's zeros meet B's max finite values and the other way round.
      const double big = is_b ? maxf : 0.0, other = is_b ? 0.0 : maxf;
      std::vector<float> v(rows * K);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t k = 0; k < K; ++k) {
          double x = 0;
          switch (r % 5) {
            case 0: x = rng() % 4 ? small() : big; break;
            case 1: x = k % 2 ? (r / 5 % 2 ? big : other) : small(); break;
            case 2: x = (k / blk) % 2 ? (r / 5 % 2 ? big : other) : small(); break;
            case 3: x = (k / blk) % 3 == 2 ? small() : (r / 5 % 2 ? big : other); break;
            default: x = any[rng() % 9]; break;
          }
          v[r * K + k] = static_cast<float>(x);
        }
      return v;
    };
    for (const bool narrow : {false, true}) {
    const auto x = values(format_by_name(model.input_format), M, 5, false, narrow),
               y = values(format_by_name(b_input_format(model)), N, 6, true, narrow);
    const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
    for (const Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted}) {
      const GemmSpec s = spec_of(model, acc, Combine::DeepGemm, model.k);
      const std::vector<double> slow = gemm(a, b, s, nullptr, {false});
      const std::size_t every = acc == Accumulate::Promoted ? static_cast<std::size_t>(model.k) : 0;
      for (const Isa isa : runnable_isas()) {
        const ScopedIsa use(isa);
        const std::vector<float> fast = tc_lanes_gemm_accumulate(a, b, model, every, Combine::DeepGemm);
        for (std::size_t e = 0; e < fast.size(); ++e)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[e]), std::bit_cast<std::uint32_t>(static_cast<float>(slow[e])))
              << model.name << " " << isa_name(isa) << " " << accumulate_name(acc) << (narrow ? " narrow" : " wide")
              << " element [" << e / N << ", " << e % N << "] got " << fast[e] << " want " << slow[e];
      }
    }
    }
  }
}

TEST(TcLanesKernel, RefusesAPromotionIntervalOffTheInstruction) {
  const TensorCoreModel& model = tensor_core_by_name("hopper_bf16");
  const std::vector<float> v(16, 1.0f);
  const GemmOperand a = operand_from_floats(v.data(), 1, 16, "a");
  for (const Isa isa : runnable_isas()) {
    set_isa(isa);
    try {
      tc_lanes_gemm_accumulate(a, a, model, 24, Combine::DeepGemm);
      ADD_FAILURE() << isa_name(isa) << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "promote_every: 24 is not a multiple of the instruction K = 16") << isa_name(isa);
    }
  }
  set_isa(std::nullopt);
}

// K = 0: every output's chain is empty, so its accumulator is +0, on every claimed preset and
// variant (the AVX-512 lane-state path divided by the panels' K when packing exponent words).
// Models beside the preset rows, which the kernel takes as well (tc_lanes_kernel_models): a
// preset's block shape (so that the lane-state chains run, generic_state_chain in the AVX2 and
// portable variants) with another F or output precision: one int32 chunk with few bits kept and a
// coarse or fine alignment, two sums (C's term apart, and Blackwell FP8's 18 + 14 products) with
// precision < 24 (no preset has it), an FP16 accumulator with a coarser alignment. Against the
// instruction chains themselves (accum's fused_dot_add per output, zero-padded to whole
// instructions, and the combine), one chain over K and promoted every instruction, on every variant.
TEST(TcLanesKernel, ModelsBesideThePresets) {
  struct Variant {
    const char* base;
    int frac, precision;
  };
  const Variant variants[] = {{"ampere_fp16", 3, 4},   {"ampere_fp16", 10, 11}, {"ampere_fp16", 20, 7},
                              {"ampere_bf16", 24, 13}, {"ada_tf32", 12, 13},    {"hopper_bf16", 25, 9},
                              {"hopper_fp16", 25, 17}, {"blackwell_fp8", 25, 7}, {"blackwell_fp8", 25, 20},
                              {"ada_fp8_f16", 5, 11},  {"ada_fp8_f16", 10, 11}, {"ada_fp8", 6, 7}};
  for (const Variant& var : variants) {
    TensorCoreModel model = tensor_core_by_name(var.base);
    model.alignment_frac_bits = var.frac;
    model.output_precision = var.precision;
    ASSERT_TRUE(tc_lanes_kernel_models(model)) << var.base << " F " << var.frac << " p " << var.precision;
    const Format& fa = format_by_name(model.input_format);
    const Format& fb = format_by_name(b_input_format(model));
    const std::size_t M = 9, N = 21, k = static_cast<std::size_t>(model.k), K = 3 * k + 5, Kp = 4 * k;
    for (const bool narrow : {false, true}) {
      const auto x = hostile(M, K, fa, 300 + var.frac, false, narrow), y = hostile(N, K, fb, 400 + var.precision, true, narrow);
      const GemmOperand a = operand_from_floats(x.data(), M, K, "a"), b = operand_from_floats(y.data(), N, K, "b");
      for (const std::size_t every : {std::size_t{0}, k}) {
        std::vector<float> want(M * N);
        std::vector<float> ra(Kp), rb(Kp);
        for (std::size_t i = 0; i < M; ++i)
          for (std::size_t j = 0; j < N; ++j) {
            std::fill(ra.begin(), ra.end(), 0.0f);
            std::fill(rb.begin(), rb.end(), 0.0f);
            std::copy(x.begin() + i * K, x.begin() + (i + 1) * K, ra.begin());
            std::copy(y.begin() + j * K, y.begin() + (j + 1) * K, rb.begin());
            float acc = 0.0f, c = 0.0f;
            for (std::size_t k0 = 0; k0 < Kp; k0 += k) {
              c = fused_dot_add(ra.data() + k0, rb.data() + k0, every == 0 ? c : 0.0f, model);
              if (every != 0) acc = combine_partial(Combine::DeepGemm, c, a.scale(i, k0), b.scale(j, k0), acc);
            }
            want[i * N + j] = every == 0 ? combine_partial(Combine::DeepGemm, c, a.scale(i, 0), b.scale(j, 0), 0.0f) : acc;
          }
        for (const Isa isa : runnable_isas()) {
          const ScopedIsa use(isa);
          const std::vector<float> fast = tc_lanes_gemm_accumulate(a, b, model, every, Combine::DeepGemm);
          for (std::size_t e = 0; e < fast.size(); ++e) {
            if (std::isnan(want[e]) && std::isnan(fast[e])) continue;
            ASSERT_EQ(std::bit_cast<std::uint32_t>(fast[e]), std::bit_cast<std::uint32_t>(want[e]))
                << var.base << " F " << var.frac << " p " << var.precision << " " << isa_name(isa) << " every " << every
                << (narrow ? " narrow" : " wide") << " element [" << e / N << ", " << e % N << "] got " << fast[e]
                << " want " << want[e];
          }
        }
      }
    }
  }
}

TEST(TcLanesKernel, EmptyKGivesZeros) {
  for (const TensorCoreModel& model : tensor_core_presets()) {
    if (!tc_lanes_kernel_models(model)) continue;
    GemmOperand a = operand_from_floats(nullptr, 5, 0, "a"), b = operand_from_floats(nullptr, 17, 0, "b");
    for (const Isa isa : runnable_isas()) {
      set_isa(isa);
      for (const std::size_t nc : {std::size_t{0}, static_cast<std::size_t>(model.k)}) {
        const std::vector<float> out = tc_lanes_gemm_accumulate(a, b, model, nc, Combine::DeepGemm);
        ASSERT_EQ(out.size(), 5u * 17u) << model.name << " " << isa_name(isa);
        for (const float v : out) EXPECT_EQ(std::bit_cast<std::uint32_t>(v), 0u) << model.name << " " << isa_name(isa);
      }
    }
  }
  set_isa(std::nullopt);
}

}  // namespace
}  // namespace fp8lab

// Laws of the GEMM emulation, checked on generated shapes and data (RapidCheck).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "../tests/cpp/test_gemm_support.hpp"
#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/bounds.hpp"
#include "gemm/exact.hpp"
#include "gemm/gemm.hpp"
#include "gemm/tc_lanes_kernel.hpp"
#include "formats/encode.hpp"

namespace fp8lab {
namespace {

struct Problem {
  std::size_t M, N, K;
  std::uint64_t seed;
  int sigma_exp;   // inputs ~ N(0, 2^sigma_exp) before quantisation
  bool adversarial;  // wide dynamic range, zeros, cancelling rows
};

Problem gen_problem(std::size_t max_k = 700) {
  Problem p;
  p.M = *rc::gen::inRange<std::size_t>(1, 7);
  p.N = *rc::gen::inRange<std::size_t>(1, 35);
  p.K = *rc::gen::inRange<std::size_t>(1, max_k);
  p.seed = *rc::gen::arbitrary<std::uint32_t>();
  p.sigma_exp = *rc::gen::inRange(-20, 20);
  p.adversarial = *rc::gen::arbitrary<bool>();
  return p;
}

std::vector<float> data(const Problem& p, std::size_t rows, std::uint64_t salt) {
  auto x = testing::gaussian(rows * p.K, p.seed * 2654435761u + salt, std::ldexp(1.0, p.sigma_exp));
  if (p.adversarial) {
    for (std::size_t i = 0; i < x.size(); i += 3) x[i] = std::ldexp(x[i], static_cast<int>((i * 7919) % 23) - 11);
    for (std::size_t i = 1; i < x.size(); i += 5) x[i] = 0;
    if (rows > 1)
      for (std::size_t k = 0; k < p.K; ++k) x[p.K + k] = -x[k];
  }
  return x;
}

// data(), or with `uniform` values of one magnitude and random signs (quantised tiles are then
// near-uniform: a tensor-core instruction's aligned sum and the D it carries use all their bits).
std::vector<float> kernel_data(const Problem& p, std::size_t rows, std::uint64_t salt, bool uniform) {
  std::vector<float> x = data(p, rows, salt);
  if (uniform)
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] = std::ldexp((i * 2654435761u + salt + p.seed) % 97 < 48 ? -1.0f : 1.0f, p.sigma_exp) *
             (1.0f + static_cast<float>((i * 40503u + salt) % 8) / 8.0f);
  return x;
}

GemmOperand operand(const Problem& p, std::size_t rows, std::uint64_t salt, Tile tile, bool pow2 = false) {
  return operand_from_qtensor(testing::quantise(data(p, rows, salt), rows, p.K, tile, "e4m3", pow2), "x");
}

bool same_bits(const std::vector<double>& x, const std::vector<double>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

RC_GTEST_PROP(GemmProperties, PromotionWithNcEqualKIsOnePromotion, ()) {
  Problem p = gen_problem();
  p.K = 32 * *rc::gen::inRange<std::size_t>(1, 20);
  const auto a = operand(p, p.M, 1, Tile{1, 0}), b = operand(p, p.N, 2, Tile{0, 0});
  GemmSpec promoted;
  promoted.promote_every = static_cast<int>(p.K);
  promoted.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  GemmSpec chained = promoted;
  chained.accumulate = Accumulate::TensorCore;
  RC_ASSERT(same_bits(gemm(a, b, promoted), gemm(a, b, chained)));
}

RC_GTEST_PROP(GemmProperties, CertifiedBoundIsNeverExceeded, ()) {
  const Problem p = gen_problem();
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::TensorCore, Accumulate::Fp32Sequential,
                                   Accumulate::Fp32Pairwise, Accumulate::Exact);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  s.promote_every = *rc::gen::element(32, 64, 128);
  const bool rowwise = s.accumulate == Accumulate::TensorCore;
  const auto a = operand(p, p.M, 1, rowwise ? Tile{1, 0} : Tile{1, 128});
  const auto b = operand(p, p.N, 2, rowwise ? Tile{0, 0} : Tile{128, 128});
  const bool with_c = *rc::gen::arbitrary<bool>();
  const auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp));
  const float* cp = with_c ? c.data() : nullptr;
  const auto d = gemm(a, b, s, cp);
  const auto x = gemm_exact(a, b, cp, OutputFormat::Fp64);
  const auto bound = gemm_error_bound(a, b, s, cp);
  for (std::size_t e = 0; e < d.size(); ++e) {
    RC_ASSERT(std::isfinite(d[e]));
    RC_ASSERT(std::fabs(d[e] - x[e]) <= bound[e]);
  }
}

RC_GTEST_PROP(GemmProperties, CertifiedBoundHoldsForEveryInstructionModel, ()) {
  // The generic path (accum's fused_dot_add) and the bound's handling of split blocks (Ada),
  // wide alignment (BF16/FP16, Blackwell) and exact sums with C added after (B200 mma.sync).
  Problem p = gen_problem(300);
  const std::string instruction = *rc::gen::element<std::string>(
      "hopper_fp8", "hopper_fp8_e5m2", "hopper_bf16", "ada_fp8", "ada_bf16", "ampere_fp16", "blackwell_fp8",
      "blackwell_mma_fp8");
  const TensorCoreModel& model = tensor_core_by_name(instruction);
  GemmSpec s;
  s.instruction = instruction;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::TensorCore);
  s.promote_every = model.k * *rc::gen::element(1, 2, 4);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  const std::size_t tile = static_cast<std::size_t>(s.promote_every);
  const bool rowwise = s.accumulate == Accumulate::TensorCore;
  const auto a = operand_from_qtensor(
      testing::quantise(data(p, p.M, 1), p.M, p.K, rowwise ? Tile{1, 0} : Tile{1, tile}, model.input_format), "a");
  const auto b = operand_from_qtensor(
      testing::quantise(data(p, p.N, 2), p.N, p.K, rowwise ? Tile{0, 0} : Tile{tile, tile}, model.input_format), "b");
  const auto d = gemm(a, b, s);
  const auto x = gemm_exact(a, b, nullptr, OutputFormat::Fp64);
  const auto bound = gemm_error_bound(a, b, s);
  for (std::size_t e = 0; e < d.size(); ++e) RC_ASSERT(std::fabs(d[e] - x[e]) <= bound[e]);
}

RC_GTEST_PROP(GemmProperties, PowerOfTwoScalesScaleTheOutputExactly, ()) {
  Problem p = gen_problem();
  p.sigma_exp = 0;
  const auto a = operand(p, p.M, 1, Tile{1, 128}), b = operand(p, p.N, 2, Tile{128, 128});
  GemmSpec s;
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::Exact, Accumulate::Fp32Sequential);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  const int shift = *rc::gen::inRange(-30, 30);
  GemmOperand a2 = a;
  for (auto& sc : a2.scales) sc = std::ldexp(sc, shift);
  const auto d = gemm(a, b, s), d2 = gemm(a2, b, s);
  for (std::size_t e = 0; e < d.size(); ++e) RC_ASSERT(d2[e] == std::ldexp(d[e], shift));
}

RC_GTEST_PROP(GemmProperties, TranspositionSymmetry, ()) {
  // (A·Bᵀ)ᵀ = B·Aᵀ: products commute inside the tensor core; DeepGEMM's sa*sb commutes too.
  // Triton's and cuBLAS's orders apply sa before sb, so they commute only with power-of-two scales.
  const Problem p = gen_problem();
  GemmSpec s;
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  const bool pow2 = s.combine != Combine::DeepGemm;
  const auto a = operand(p, p.M, 1, Tile{1, 128}, pow2), b = operand(p, p.N, 2, Tile{1, 128}, pow2);
  const auto d = gemm(a, b, s), t = gemm(b, a, s);
  for (std::size_t i = 0; i < p.M; ++i)
    for (std::size_t j = 0; j < p.N; ++j) RC_ASSERT(d[i * p.N + j] == t[j * p.M + i]);
}

RC_GTEST_PROP(GemmProperties, ZeroRowsGiveZeros, ()) {
  const Problem p = gen_problem();
  auto a = operand(p, p.M, 1, Tile{1, 128});
  const auto b = operand(p, p.N, 2, Tile{128, 128});
  const std::size_t zero_row = *rc::gen::inRange<std::size_t>(0, p.M);
  std::fill(a.elements.begin() + zero_row * p.K, a.elements.begin() + (zero_row + 1) * p.K, 0.0f);
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::Exact, Accumulate::Fp32Pairwise);
  const auto d = gemm(a, b, s);
  for (std::size_t j = 0; j < p.N; ++j) RC_ASSERT(d[zero_row * p.N + j] == 0.0);
}

// The vector Hopper FP8 kernel (E4M3 or E5M2) against instruction-by-instruction fused_dot_add chains, on
// every blocking of rows and columns and on data whose products crowd the largest exponent
// (quantised tiles are near-uniform in magnitude: the aligned sums and each D carried into the
// next instruction then use all their bits). Each run draws the kernel variant (common/isa.hpp).
RC_GTEST_PROP(GemmProperties, FastKernelEqualsInstructionChains, ()) {
  Problem p = gen_problem(400);
  const bool e5m2 = *rc::gen::arbitrary<bool>();
  const char* fmt = e5m2 ? "e5m2" : "e4m3";
  p.M = *rc::gen::inRange<std::size_t>(1, 14);
  const bool uniform = *rc::gen::arbitrary<bool>();
  auto values = [&](std::size_t rows, std::uint64_t salt) { return kernel_data(p, rows, salt, uniform); };
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::TensorCore);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  s.out = OutputFormat::Fp32;
  s.instruction = e5m2 ? "hopper_fp8_e5m2" : "hopper_fp8";
  const bool promoted = s.accumulate == Accumulate::Promoted;
  if (promoted) s.promote_every = *rc::gen::element(32, 64, 128);
  const Tile ta = promoted ? Tile{1, 128} : Tile{1, 0}, tb = promoted ? Tile{128, 128} : Tile{0, 0};
  const auto a = operand_from_qtensor(testing::quantise(values(p.M, 1), p.M, p.K, ta, fmt), "a");
  const auto b = operand_from_qtensor(testing::quantise(values(p.N, 2), p.N, p.K, tb, fmt), "b");
  const ScopedIsa use(*rc::gen::elementOf(runnable_isas()));  // each kernel variant this CPU runs
  RC_ASSERT(same_bits(gemm(a, b, s, nullptr, {true}), gemm(a, b, s, nullptr, {false})));
}

// Equal bits, or both NaN (a NaN's payload is not part of the model: gemm/non_finite.hpp).
bool same_values(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) return false;
  for (std::size_t e = 0; e < x.size(); ++e)
    if (std::bit_cast<std::uint64_t>(x[e]) != std::bit_cast<std::uint64_t>(y[e]) && !(std::isnan(x[e]) && std::isnan(y[e])))
      return false;
  return true;
}

// gemm's blocked kernels against its per-element reference paths (GemmOptions{false}) on a drawn
// thread count and kernel variant: same_values.
void assert_fast_equals_reference(const GemmOperand& a, const GemmOperand& b, const GemmSpec& s, const float* cp) {
  set_num_threads(*rc::gen::inRange(1, 4));
  const ScopedIsa use(*rc::gen::elementOf(runnable_isas()));  // each kernel variant this CPU runs
  const auto fast = gemm(a, b, s, cp, {true});
  set_num_threads(0);
  RC_ASSERT(same_values(fast, gemm(a, b, s, cp, {false})));
}

// The blocked kernels of the FP32 and exact modes against their per-element reference paths
// (GemmOptions{false}), on ragged shapes, quantised or plain-float operands with NaN and Inf
// sprinkled in, C or none, and any thread count.
RC_GTEST_PROP(GemmProperties, BlockedKernelsEqualPerElementPaths, ()) {
  Problem p = gen_problem(400);
  p.M = *rc::gen::inRange<std::size_t>(1, 20);
  p.N = *rc::gen::inRange<std::size_t>(1, 70);
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Fp32Sequential, Accumulate::Fp32Pairwise, Accumulate::Exact);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32, OutputFormat::Fp64);
  const bool plain = *rc::gen::arbitrary<bool>();
  auto make = [&](std::size_t rows, std::uint64_t salt, Tile tile) {
    if (!plain) return operand(p, rows, salt, tile);
    const auto x = data(p, rows, salt);
    return operand_from_floats(x.data(), rows, p.K, "x");
  };
  GemmOperand a = make(p.M, 1, Tile{1, 128}), b = make(p.N, 2, Tile{128, 128});
  const int specials = *rc::gen::inRange(0, 4);
  for (int t = 0; t < specials; ++t) {
    GemmOperand& x = t % 2 ? b : a;
    const float v = plain ? *rc::gen::element(NAN, INFINITY, -INFINITY) : NAN;  // E4M3 has no Inf
    x.elements[*rc::gen::inRange<std::size_t>(0, x.elements.size())] = v;
  }
  auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp));
  if (specials) c[0] = INFINITY;
  const float* cp = *rc::gen::arbitrary<bool>() ? c.data() : nullptr;
  assert_fast_equals_reference(a, b, s, cp);
}

// The fused presets' kernel (gemm/tc_lanes_kernel: BF16, FP16, TF32 and the FP32-accumulator FP8
// rows other than Hopper FP8's own kernel) through gemm against instruction-by-instruction chains:
// a claimed row drawn, values of its format over a drawn part of its exponent range (BF16/TF32 up
// to FP32's extremes), per-tile scales that are not powers of two, NaN/Inf sprinkled in, C or
// none, any output, thread count and kernel variant.
RC_GTEST_PROP(GemmProperties, TcLanesKernelEqualsInstructionChains, ()) {
  std::vector<const TensorCoreModel*> rows;
  for (const TensorCoreModel& m : tensor_core_presets())
    if (tc_lanes_kernel_models(m) && !hopper_fp8_operands(m)) rows.push_back(&m);
  RC_PRE(!rows.empty());
  const TensorCoreModel& model = **rc::gen::elementOf(rows);
  Problem p = gen_problem(300);
  p.M = *rc::gen::inRange<std::size_t>(1, 14);
  p.N = *rc::gen::inRange<std::size_t>(1, 40);
  const Format& f = format_by_name(model.input_format);
  const int shift = *rc::gen::inRange(-140, 130);
  GemmSpec s;
  s.instruction = model.name;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::TensorCore);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  const bool promoted = s.accumulate == Accumulate::Promoted;
  if (promoted) s.promote_every = model.k * *rc::gen::element(1, 2, 4);  // within a 128 tile (k <= 32)
  auto make = [&](std::size_t rows_, std::uint64_t salt) {
    std::vector<float> x = data(p, rows_, salt);
    const double maxf = f.max_finite();
    for (float& v : x) v = static_cast<float>(round_to_format(std::clamp(std::ldexp(double(v), shift), -maxf, maxf), f));
    GemmOperand op = operand_from_floats(x.data(), rows_, p.K, "x");
    op.tile_rows = promoted && salt == 2 ? 128 : (salt == 2 ? rows_ : 1);
    op.tile_cols = promoted ? 128 : std::max<std::size_t>(p.K, 1);
    op.scales.resize(((rows_ + op.tile_rows - 1) / op.tile_rows) * op.grid_cols());
    for (std::size_t t = 0; t < op.scales.size(); ++t) op.scales[t] = 0.25f + static_cast<float>((t * 7919 + salt) % 97) / 37.0f;
    return op;
  };
  GemmOperand a = make(p.M, 1), b = make(p.N, 2);
  const int specials = *rc::gen::inRange(0, 4);
  for (int t = 0; t < specials; ++t) {
    GemmOperand& x = t % 2 ? b : a;
    const float v = f.has_inf() ? *rc::gen::element(NAN, INFINITY, -INFINITY) : NAN;
    x.elements[*rc::gen::inRange<std::size_t>(0, x.elements.size())] = v;
  }
  const auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp));
  assert_fast_equals_reference(a, b, s, *rc::gen::arbitrary<bool>() ? c.data() : nullptr);
}

// The blocked certificates (gemm/bound_kernel for the Hopper FP8 presets, gemm/fp32_kernel's sums
// for the FP32 modes) against the per-element one they replace (GemmOptions{false}, the old path
// kept as the oracle): the same doubles, promoted (N_C = 32, 64, 128) or one chain or FP32
// sequential/pairwise, every combine order and output, C or none, NaN/Inf sprinkled in (and Inf in
// C for the FP32 modes), on wide-range data with zeros and cancelling rows or on products crowding
// the largest exponent, ragged shapes, every kernel variant and thread count. Without specials the
// bound is also checked against the exact error (gemm_exact).
RC_GTEST_PROP(GemmProperties, BoundKernelEqualsPerElementBound, ()) {
  Problem p = gen_problem(400);
  const bool e5m2 = *rc::gen::arbitrary<bool>();
  const char* fmt = e5m2 ? "e5m2" : "e4m3";
  p.M = *rc::gen::inRange<std::size_t>(1, 14);
  p.N = *rc::gen::inRange<std::size_t>(1, 50);
  const bool uniform = *rc::gen::arbitrary<bool>();
  auto values = [&](std::size_t rows, std::uint64_t salt) { return kernel_data(p, rows, salt, uniform); };
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::TensorCore, Accumulate::Fp32Sequential,
                                   Accumulate::Fp32Pairwise);
  s.combine = *rc::gen::element(Combine::DeepGemm, Combine::Triton, Combine::Cublas);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  s.instruction = e5m2 ? "hopper_fp8_e5m2" : "hopper_fp8";
  const bool fp32 = s.accumulate == Accumulate::Fp32Sequential || s.accumulate == Accumulate::Fp32Pairwise;
  const bool chain = s.accumulate == Accumulate::TensorCore;
  if (s.accumulate == Accumulate::Promoted) s.promote_every = *rc::gen::element(32, 64, 128);
  const Tile ta = chain ? Tile{1, 0} : Tile{1, 128}, tb = chain ? Tile{0, 0} : Tile{128, 128};
  const bool plain = fp32 && *rc::gen::arbitrary<bool>();  // FP32 modes: full 24-bit floats too
  GemmOperand a = plain ? operand_from_floats(values(p.M, 1).data(), p.M, p.K, "a")
                        : operand_from_qtensor(testing::quantise(values(p.M, 1), p.M, p.K, ta, fmt), "a");
  GemmOperand b = plain ? operand_from_floats(values(p.N, 2).data(), p.N, p.K, "b")
                        : operand_from_qtensor(testing::quantise(values(p.N, 2), p.N, p.K, tb, fmt), "b");
  const int specials = *rc::gen::inRange(0, 3) == 0 ? *rc::gen::inRange(1, 4) : 0;
  for (int t = 0; t < specials; ++t) {
    GemmOperand& x = t % 2 ? b : a;
    x.elements[*rc::gen::inRange<std::size_t>(0, x.elements.size())] =
        e5m2 || fp32 ? *rc::gen::element(NAN, INFINITY, -INFINITY) : NAN;
  }
  auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp + 4));
  if (fp32 && specials) c[0] = INFINITY;  // the FP32 modes take any float, and an infinite C
  const float* cp = *rc::gen::arbitrary<bool>() ? c.data() : nullptr;
  const auto ref = gemm_error_bound(a, b, s, cp, {false});
  set_num_threads(*rc::gen::inRange(1, 4));
  std::vector<double> fast;
  for (const Isa isa : runnable_isas()) {  // every kernel variant this CPU runs, each against the oracle
    const ScopedIsa use(isa);
    fast = gemm_error_bound(a, b, s, cp, {true});
    RC_ASSERT(same_bits(fast, ref));
  }
  set_num_threads(0);
  if (specials) return;
  const auto d = gemm(a, b, s, cp);
  const auto x = gemm_exact(a, b, cp, OutputFormat::Fp64);
  for (std::size_t e = 0; e < d.size(); ++e) RC_ASSERT(std::fabs(d[e] - x[e]) <= fast[e]);
}

// The FP32 modes' bound from the value kernel's sums (gemm/bounds.hpp) against the binary64
// replay it replaced (fp32_replayed_error_bound): never below it (the new per-product and
// per-addition terms dominate the old ones term by term; up to binary64 rounding), at most
// 1 + (2K + 2) * 2^-24 above (the binary32 sums may have rounded up by (1 + u)^(K - 1) and are then
// divided by 1 - (K - 1) u; c1 and c0 exceed the old per-product terms by up to 2u relative: a zero
// operand's bound is c0 = eta (1 + 2u) against eta (1 + eta)), and it covers |D - exact|; plain
// floats or E4M3 tiles, adversarial data (zeros, cancelling rows, a wide range), every output
// format, C or none.
RC_GTEST_PROP(GemmProperties, Fp32SumsBoundWithinItsFactorOfTheReplay, ()) {
  Problem p = gen_problem(3000);
  p.M = *rc::gen::inRange<std::size_t>(1, 8);
  p.N = *rc::gen::inRange<std::size_t>(1, 40);
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Fp32Sequential, Accumulate::Fp32Pairwise);
  s.out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32);
  const bool plain = *rc::gen::arbitrary<bool>();
  const GemmOperand a = plain ? operand_from_floats(data(p, p.M, 1).data(), p.M, p.K, "a") : operand(p, p.M, 1, Tile{1, 128});
  const GemmOperand b = plain ? operand_from_floats(data(p, p.N, 2).data(), p.N, p.K, "b") : operand(p, p.N, 2, Tile{128, 128});
  const auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp + 2));
  const float* cp = *rc::gen::arbitrary<bool>() ? c.data() : nullptr;
  const auto now = gemm_error_bound(a, b, s, cp), old = fp32_replayed_error_bound(a, b, s, cp);
  const auto d = gemm(a, b, s, cp);
  const auto x = gemm_exact(a, b, cp, OutputFormat::Fp64);
  for (std::size_t e = 0; e < now.size(); ++e) {
    RC_ASSERT(now[e] >= old[e] * (1 - 0x1p-40));
    RC_ASSERT(now[e] <= old[e] * (1 + static_cast<double>(2 * p.K + 2) * 0x1p-24 + 0x1p-30));
    RC_ASSERT(std::fabs(d[e] - x[e]) <= now[e]);
  }
}

// The integer exact kernel (gemm/exact_kernel.cpp) against the Kulisch path: E4M3 and E2M1
// operands, any tiling, scales with random significands spread over 0-14 binades per row and per
// tile around 2^-126 .. 2^100 (the vector fold, its flushes, the checked path, subnormal scales),
// up to 40 chunks of 128, C or none, every output format, thread count and kernel variant.
RC_GTEST_PROP(GemmProperties, ExactKernelEqualsKulischPathAcrossScaleSpans, ()) {
  Problem p = gen_problem(128 * 40);
  p.M = *rc::gen::inRange<std::size_t>(1, 14);
  p.N = *rc::gen::inRange<std::size_t>(1, 40);
  const char* fa = *rc::gen::element("e4m3", "e2m1");
  const char* fb = *rc::gen::element("e4m3", "e2m1");
  const Tile ta = *rc::gen::element(Tile{1, 128}, Tile{1, 0}, Tile{0, 0}, Tile{128, 128}, Tile{1, 64});
  const Tile tb = *rc::gen::element(Tile{128, 128}, Tile{1, 128}, Tile{0, 0}, Tile{1, 256});
  auto a = operand_from_qtensor(testing::quantise(data(p, p.M, 1), p.M, p.K, ta, fa), "a");
  auto b = operand_from_qtensor(testing::quantise(data(p, p.N, 2), p.N, p.K, tb, fb), "b");
  const int base = *rc::gen::inRange(-140, 100);
  for (GemmOperand* x : {&a, &b}) {
    const int span = *rc::gen::inRange(0, 15);
    for (float& s : x->scales) {
      const double m = 1.0 + static_cast<double>(*rc::gen::inRange(0, 1 << 23)) / (1 << 23);
      s = static_cast<float>(std::ldexp(m, base + *rc::gen::inRange(0, span + 1)));
    }
  }
  auto c = testing::gaussian(p.M * p.N, p.seed + 3, std::ldexp(1.0, p.sigma_exp));
  const float* cp = *rc::gen::arbitrary<bool>() ? c.data() : nullptr;
  const OutputFormat out = *rc::gen::element(OutputFormat::Bf16, OutputFormat::Fp32, OutputFormat::Fp64);
  set_num_threads(*rc::gen::inRange(1, 4));
  const ScopedIsa use(*rc::gen::elementOf(runnable_isas()));
  const auto fast = gemm_exact(a, b, cp, out);
  set_num_threads(0);
  RC_ASSERT(same_bits(fast, gemm_exact(a, b, cp, out, false)));
}

RC_GTEST_PROP(GemmProperties, ThreadCountDoesNotChangeBits, ()) {
  const Problem p = gen_problem(300);
  const auto a = operand(p, p.M * 5, 1, Tile{1, 128}), b = operand(p, p.N * 3, 2, Tile{128, 128});
  GemmSpec s;
  s.accumulate = *rc::gen::element(Accumulate::Promoted, Accumulate::Exact, Accumulate::Fp32Sequential,
                                   Accumulate::Fp32Pairwise);
  std::vector<std::vector<double>> results;
  for (int threads : {1, 2, 7}) {
    set_num_threads(threads);
    results.push_back(gemm(a, b, s));
  }
  set_num_threads(0);
  RC_ASSERT(same_bits(results[0], results[1]));
  RC_ASSERT(same_bits(results[0], results[2]));
}

}  // namespace
}  // namespace fp8lab

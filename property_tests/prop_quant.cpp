// quant: RapidCheck properties of the block quantiser, for every named rule.
#include <gtest/gtest.h>
#include <iostream>
#include <rapidcheck/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "quant/quantize.hpp"

namespace fp8lab {
namespace {

// A tile-structured input: each row is one of the adversarial kinds (the list), over a
// Gaussian background whose magnitude varies by row. Generated from a seed so shrinking reduces
// the shape and the kind mix, and a counterexample prints as (rows, cols, seed, kinds).
struct QuantInput {
  std::size_t rows = 0, cols = 0;
  std::vector<float> x;
};

enum class Kind { Gaussian, Zero, Extreme, Subnormal, Outlier, MixedSigns, TinyAmax };

QuantInput gen_quant_input(bool allow_non_finite) {
  QuantInput in;
  in.rows = *rc::gen::inRange<std::size_t>(1, 40);
  in.cols = *rc::gen::inRange<std::size_t>(1, 300);
  const auto seed = *rc::gen::arbitrary<std::uint32_t>();
  const auto kinds = *rc::gen::container<std::vector<int>>(in.rows, rc::gen::inRange(0, 7));
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  in.x.resize(in.rows * in.cols);
  for (std::size_t r = 0; r < in.rows; ++r) {
    const float mag = std::ldexp(1.0f, static_cast<int>(g() % 40) - 20);
    for (std::size_t c = 0; c < in.cols; ++c) {
      float v = n(g) * mag;
      switch (static_cast<Kind>(kinds[r])) {
        case Kind::Gaussian: break;
        case Kind::Zero: v = 0.0f; break;
        case Kind::Extreme: v = (g() & 1 ? 448.0f : -448.0f) * mag; break;
        case Kind::Subnormal: v = std::ldexp(static_cast<float>(g() % (1u << 23)), -149); break;
        case Kind::Outlier: v = c == 0 ? 1e30f : v; break;
        case Kind::MixedSigns: v = (c % 2 ? -1.0f : 1.0f) * std::fabs(v); break;
        case Kind::TinyAmax: v *= 1e-12f; break;
      }
      in.x[r * in.cols + c] = v;
    }
  }
  if (allow_non_finite && in.rows * in.cols > 3 && *rc::gen::arbitrary<bool>()) {
    in.x[g() % in.x.size()] = std::numeric_limits<float>::quiet_NaN();
    in.x[g() % in.x.size()] = -std::numeric_limits<float>::infinity();
  }
  return in;
}

Tile gen_tile(const std::string& name) {
  const ScaleRule& rule = scale_rule_by_name(name);
  if (rule.tile_elements == 32) return *rc::gen::element(Tile{1, 32}, Tile{32, 1}, Tile{2, 16});
  if (rule.two_level()) return *rc::gen::element(Tile{1, 16}, Tile{16, 16});  // NVFP4's two tilings
  return *rc::gen::element(Tile{1, 128}, Tile{128, 128}, Tile{128, 1}, Tile{0, 0}, Tile{1, 0}, Tile{3, 7});
}

double half_ulp(double v, const Format& f) {
  const double a = std::fabs(v);
  const int e = a < f.min_normal() ? f.min_normal_exponent() : std::ilogb(a);
  return std::ldexp(0.5, e - f.mantissa_bits);
}

// Every element: its code is q = apply(x) (float32) rounded to nearest in the element format, so
// |decode(code) - q| <= half an ULP of the format at q, unless q is beyond max finite, where it is
// +-max (saturating casts, and vLLM's clamp) or NaN (PyTorch's cast, from max + half an ULP up).
RC_GTEST_PROP(QuantProps, EveryElementIsWithinHalfAnUlpOfItsScaledValue, ()) {
  const auto names = scale_rule_names();
  const std::string name = *rc::gen::elementOf(names);
  const ScaleRule& rule = scale_rule_by_name(name);
  const std::string fmt = rule.tile_elements == 32 || rule.two_level()
                              ? *rc::gen::element<std::string>("e4m3", "e5m2", "e2m1", "e2m3fn", "e3m2fn")
                              : *rc::gen::element<std::string>("e4m3", "e5m2", "e3m2fn");
  const Format& f = format_by_name(fmt);
  const QuantInput in = gen_quant_input(true);
  const Tile tile = gen_tile(name);
  const QTensor q = quantize(in.x.data(), in.rows, in.cols, tile, fmt, rule);
  const double fmax = f.max_finite();
  // Two-level rules: the tensor's S_enc from an independently taken tensor amax.
  float tensor_amax = 0.0f;
  for (const float v : in.x) tensor_amax = amax_step(tensor_amax, v, rule.amax_nan);
  const float global_encode = rule.two_level() ? nvfp4_global_encode(tensor_amax, rule, f) : 1.0f;
  if (rule.two_level())
    RC_ASSERT(std::bit_cast<std::uint32_t>(q.global_scale) == std::bit_cast<std::uint32_t>(1.0f / global_encode));
  for (std::size_t r = 0; r < in.rows; ++r)
    for (std::size_t c = 0; c < in.cols; ++c) {
      // The tile's scale, recomputed from an independently taken amax.
      const std::size_t tr = q.tile_rows_eff(), tc = q.tile_cols_eff();
      float amax = 0.0f;
      for (std::size_t i = (r / tr) * tr; i < std::min(in.rows, (r / tr + 1) * tr); ++i)
        for (std::size_t j = (c / tc) * tc; j < std::min(in.cols, (c / tc + 1) * tc); ++j)
          amax = amax_step(amax, in.x[i * in.cols + j], rule.amax_nan);
      // 4over6 picks one of two candidates by the block's error: take its pick (an E4M3 value,
      // which nvfp4_block_scale keeps) and check the multiplier that goes with it.
      const TileScale ts = rule.four_over_six ? nvfp4_block_scale(q.dequant_scale(r, c), global_encode)
                                              : compute_tile_scale(amax, rule, f, global_encode);
      RC_ASSERT(std::bit_cast<std::uint32_t>(ts.dequant) == std::bit_cast<std::uint32_t>(q.dequant_scale(r, c)) ||
                (std::isnan(ts.dequant) && std::isnan(q.dequant_scale(r, c))));
      const float qv = apply_scale(in.x[r * in.cols + c], ts, rule.apply);
      const double e = q.element(r, c);
      if (std::isnan(qv)) {
        RC_ASSERT(std::isnan(e) || !f.has_nan());
      } else if (std::fabs(qv) > fmax) {
        const bool saturates = rule.cast_overflow == Overflow::Saturate || rule.clamp_before_cast || !f.has_nan();
        if (saturates) RC_ASSERT(e == std::copysign(fmax, qv));
        else if (std::fabs(qv) >= fmax + half_ulp(fmax, f) * 1.0000001) RC_ASSERT(std::isnan(e) || std::isinf(e));
      } else {
        RC_ASSERT(std::fabs(e - qv) <= half_ulp(qv, f));
      }
    }
}

RC_GTEST_PROP(QuantProps, PowerOfTwoRulesProducePowersOfTwo, ()) {
  for (const auto& name : scale_rule_names()) {
    const ScaleRule& rule = scale_rule_by_name(name);
    if (!rule.power_of_two()) continue;
    const QuantInput in = gen_quant_input(false);
    const QTensor q = quantize(in.x.data(), in.rows, in.cols, gen_tile(name), "e4m3", rule);
    for (float s : q.scales) {
      RC_ASSERT(std::isfinite(s) && s > 0.0f);
      int e = 0;
      RC_ASSERT(std::frexp(s, &e) == 0.5f);
    }
  }
}

RC_GTEST_PROP(QuantProps, ScaleIsMonotoneInAmax, ()) {
  const auto names = scale_rule_names();
  const std::string name = *rc::gen::elementOf(names);
  const ScaleRule& rule = scale_rule_by_name(name);
  const Format& f = format_by_name(*rc::gen::element<std::string>("e4m3", "e5m2"));
  // Positive finite float32 amax values (TE maps amax 0 to scale 1: a documented special case).
  auto gen_amax = rc::gen::map(rc::gen::inRange<std::uint32_t>(1, 0x7F800000u),
                               [](std::uint32_t b) { return std::bit_cast<float>(b); });
  float a = *gen_amax, b = *gen_amax;
  if (b < a) std::swap(a, b);
  const float sa = compute_tile_scale(a, rule, f).dequant, sb = compute_tile_scale(b, rule, f).dequant;
  if (std::isnan(sa) || std::isnan(sb)) {
    RC_ASSERT(rule.storage == ScaleStorage::Ue8m0);  // only UE8M0 reads an unrepresentable scale as NaN
    return;
  }
  RC_ASSERT(sa <= sb);
}

// Re-quantising what a power-of-two rule dequantises gives the same values (the bits may differ:
// a tile whose largest element rounded down to half its binade gets half the scale).
RC_GTEST_PROP(QuantProps, QuantiseOfDequantiseKeepsValuesForPowerOfTwoRules, ()) {
  const std::string name = *rc::gen::element<std::string>("deepseek_ue8m0", "deepgemm_ue8m0", "te", "flashmla_cache", "mx");
  const ScaleRule& rule = scale_rule_by_name(name);
  const QuantInput in = gen_quant_input(false);
  const Tile tile = gen_tile(name);
  const QTensor q = quantize(in.x.data(), in.rows, in.cols, tile, "e4m3", rule);
  const std::vector<float> d = dequantize_fp32(q);
  const QTensor q2 = quantize(d.data(), in.rows, in.cols, tile, "e4m3", rule);
  RC_ASSERT(dequantize(q2) == dequantize(q));
}

// Retiling with power-of-two scales: exact for every element whose value, under its new tile's
// scale, is zero or a normal number of the format. (A subnormal or out-of-range one may round.)
RC_GTEST_PROP(QuantProps, RetileIsExactWhileElementsStayNormal, ()) {
  const std::string name = *rc::gen::element<std::string>("deepseek_ue8m0", "deepgemm_ue8m0", "te", "flashmla_cache");
  const ScaleRule& rule = scale_rule_by_name(name);
  const QuantInput in = gen_quant_input(false);
  const QTensor q = quantize(in.x.data(), in.rows, in.cols, Tile{1, 128}, "e4m3", rule);
  const QTensor t = retile(q, Tile{128, 1});
  const Format& f = q.format();
  const std::vector<double> before = dequantize(q), after = dequantize(t);
  for (std::size_t r = 0; r < in.rows; ++r)
    for (std::size_t c = 0; c < in.cols; ++c) {
      const double v = before[r * in.cols + c];
      const double scaled = v / static_cast<double>(t.dequant_scale(r, c));
      const double a = std::fabs(scaled);
      if (a == 0.0 || (a >= f.min_normal() && a <= f.max_finite())) RC_ASSERT(after[r * in.cols + c] == v);
    }
}

// ... and without that condition a counterexample exists: inputs drawn from the same generator
// (sampled directly, so that a passing run logs no failed-property banner) find one quickly.
TEST(QuantProps, RetileIsNotExactInGeneralAndACounterexampleIsFound) {
  const auto inputs = rc::gen::exec([] { return gen_quant_input(false); });
  int found_after = -1;
  for (int n = 0; n < 200 && found_after < 0; ++n) {
    const rc::Random random(rc::Random::Key{0x5eed, 0xf8, 0x1ab, static_cast<std::uint64_t>(n)});
    const QuantInput in = inputs(random, 50).value();
    const QTensor q = quantize(in.x.data(), in.rows, in.cols, Tile{1, 128}, "e4m3", scale_rule_by_name("deepseek_ue8m0"));
    if (dequantize(retile(q, Tile{128, 1})) != dequantize(q)) found_after = n + 1;
  }
  ASSERT_GT(found_after, 0) << "no input among 200 changed a value when retiled 1x128 -> 128x1";
  std::cout << "retile 1x128 -> 128x1 changed a value on input " << found_after << " of the sample\n";
}

}  // namespace
}  // namespace fp8lab

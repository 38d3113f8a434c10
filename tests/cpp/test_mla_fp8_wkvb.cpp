// wkv_b as DeepSeek-V3 runs an FP8 checkpoint (forward.hpp wkv_b_fp8): spec validation, the naive
// FP8 linear on hand-worked values, both forms within their certified bounds of the exact attention
// of the dequantised weights, checkpoint weights given as E4M3 + block scales, and wrong scales
// reported as violations.
#include <gtest/gtest.h>

#include <boost/multiprecision/cpp_bin_float.hpp>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "checks/verdict.hpp"
#include "mla/forward.hpp"
#include "mla/numerics.hpp"
#include "mla/weights.hpp"
#include "quant/quantize.hpp"

using namespace fp8lab;
using namespace fp8lab::mla;

namespace {

MlaSpec fp8_spec(MatmulFormat attn = MatmulFormat::Fp32) {
  MlaSpec s;
  s.hidden = 64;
  s.heads = 2;
  s.q_lora = 32;
  s.kv_lora = 256;  // two 128-wide activation blocks and weight block columns
  s.nope = 32;
  s.rope = 8;
  s.v = 32;  // 2 x 64 = 128 rows: one weight block row
  s.wkv_b = MatmulFormat::Fp8;
  s.attn = attn;
  return s;
}

std::string message_of(const MlaSpec& s) {
  try {
    s.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// Elementwise |got - exact| <= bound over all outputs: the number of violations.
std::size_t violations(const std::vector<float>& got, const std::vector<double>& exact, const std::vector<double>& bound) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < got.size(); ++i) n += !(std::fabs(got[i] - exact[i]) <= bound[i]);
  return n;
}

// absorbed vs naive with both bounds summed, through the project's verdict (as compare_forms does).
Verdict forms_verdict(const std::vector<float>& a, const std::vector<float>& n, const std::vector<double>& ba,
                      const std::vector<double>& bn) {
  std::vector<double> got(a.begin(), a.end()), expected(n.begin(), n.end()), bound(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) bound[i] = ba[i] + bn[i];
  CompareInputs in;
  in.got = got.data();
  in.expected = expected.data();
  in.exact = expected.data();
  in.bound = bound.data();
  in.count = got.size();
  in.what = "test";
  return compare(in);
}

}  // namespace

TEST(MlaFp8Wkvb, SpecAcceptsFp8ForWkvbOnly) {
  MlaSpec s = fp8_spec();
  EXPECT_NO_THROW(s.validate());
  const MlaSpec back = spec_from_json(to_json(s));
  EXPECT_EQ(back.wkv_b, MatmulFormat::Fp8);
  EXPECT_NE(to_json(s).find("\"wkv_b\":\"fp8\""), std::string::npos);
  MlaSpec bad = s;
  bad.attn = MatmulFormat::Fp8;
  EXPECT_NE(message_of(bad).find("MlaSpec.attn = \"fp8\": expected fp32 or bf16"), std::string::npos) << message_of(bad);
  bad = s;
  bad.decode_p = MatmulFormat::Fp8;
  EXPECT_NE(message_of(bad).find("MlaSpec.decode_p = \"fp8\": expected fp32 or bf16"), std::string::npos) << message_of(bad);
  bad = s;
  bad.wkv_b = MatmulFormat::Bf16TensorCore;
  EXPECT_NE(message_of(bad).find("MlaSpec.wkv_b = \"bf16_tc\": expected fp32, bf16 or fp8"), std::string::npos) << message_of(bad);
  EXPECT_THROW(spec_from_json(R"({"attn":"fp8"})"), std::invalid_argument);
  EXPECT_EQ(spec_from_json(R"({"wkv_b":"fp8"})").wkv_b, MatmulFormat::Fp8);
}

TEST(MlaFp8Wkvb, NaiveLinearOnHandWorkedValues) {
  // One head, nope = v = 1, kv_lora 128: each block's amax is 448, so the "deepseek" scales are
  // max(448, 1e-4) / 448 = 1 and the E4M3 elements are the values themselves, rounded to 4
  // significant bits. Latent [448, 1.0625, 0...]: 1.0625 = 1 + 2^-4 lies halfway between the E4M3
  // neighbours 1 and 1.125, nearest-even gives 1. W_UK row [1, 16, 0...], W_UV row [448, 0...]
  // (W_UV[0] = 448 sets the block's amax). Then k_nope = 448 + 1 * 16 = 464 (exact: 448 + 17 = 465,
  // the activation quantisation costs exactly 1) and v = 448^2 = 200704 = 49 * 2^12, both exact in
  // BF16; the tensor core's 13 alignment bits keep 16 next to 448 exactly.
  MlaSpec s;
  s.hidden = 8;
  s.heads = 1;
  s.q_lora = 0;
  s.kv_lora = 128;
  s.nope = 1;
  s.rope = 2;
  s.v = 1;
  s.wkv_b = MatmulFormat::Fp8;
  MlaWeights w = init_weights(s, 3);
  std::fill(w.wkv_b.begin(), w.wkv_b.end(), 0.0f);
  w.wkv_b[0] = 1;
  w.wkv_b[1] = 16;
  w.wkv_b[128] = 448;
  std::vector<float> latent(128, 0.0f);
  latent[0] = 448;
  latent[1] = 1.0625f;
  std::vector<double> bound;
  const auto kv = wkv_b_naive(latent.data(), 1, w, s, &bound);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0], 464.0f);
  EXPECT_EQ(kv[1], 200704.0f);
  // The bound covers the 1 the quantisation cost (and the gemm's own certified slack, which includes
  // half a BF16 ULP of 464 = 1), and says nothing much larger.
  EXPECT_GE(bound[0], 1.0);
  EXPECT_LT(bound[0], 4.0);
  // v is exact; its bound is the gemm's worst case for a result of 2^17.6: half a BF16 ULP-sized
  // 2^-8 |D| (784) plus the tensor core's 14-bit truncation and promotion terms (2^4 each).
  EXPECT_GE(bound[1], 0.0);
  EXPECT_LE(bound[1], 200704.0 * 0x1p-7);
  // 3.0625 = 3 + 2^-4 is nearer E4M3's 3 than 3.25 (spacing 0.25 in [2, 4)): k = 448 + 48 = 496,
  // exact 497.
  latent[1] = 3.0625f;
  EXPECT_EQ(wkv_b_naive(latent.data(), 1, w, s)[0], 496.0f);
}

TEST(MlaFp8Wkvb, NaiveKeysWithinBoundOfExactProducts) {
  // Independent oracle: sum_c W_exact[o, c] latent[t, c] in 200-bit arithmetic (Boost), W_exact the
  // E4M3 elements times their block scales decoded separately from the QTensor.
  using Big = boost::multiprecision::cpp_bin_float_100;
  const MlaSpec s = fp8_spec();
  const MlaWeights w = init_weights(s, 21);
  const auto x = random_input(s, 5, 22);
  const Projected p = project(x.data(), 5, w, s, 0);
  std::vector<double> bound;
  const auto kv = wkv_b_naive(p.latent.data(), 5, w, s, &bound);
  const QTensor q = wkv_b_fp8(w, s);
  const std::size_t N = static_cast<std::size_t>(s.heads) * (s.nope + s.v), C = s.kv_lora;
  double max_ratio = 0, max_rel = 0;
  for (std::size_t t = 0; t < 5; ++t)
    for (std::size_t o = 0; o < N; ++o) {
      Big e = 0;
      for (std::size_t c = 0; c < C; ++c) e += Big(q.element(o, c)) * Big(q.dequant_scale(o, c)) * Big(p.latent[t * C + c]);
      const double err = std::fabs(static_cast<double>(Big(kv[t * N + o]) - e));
      ASSERT_LE(err, bound[t * N + o]) << t << "," << o;
      max_ratio = std::max(max_ratio, err / bound[t * N + o]);
      max_rel = std::max(max_rel, err / std::fabs(static_cast<double>(e)));
    }
  // Not vacuous: the bound is met to within a small factor somewhere.
  EXPECT_GT(max_ratio, 0.2);
  std::printf("[mla fp8 wkv_b] naive k/v vs exact: max observed/bound %.3f, max rel. error %.3g\n", max_ratio, max_rel);
}

TEST(MlaFp8Wkvb, FormsAgreeWithinCertifiedBound) {
  for (MatmulFormat af : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
    const MlaSpec s = fp8_spec(af);
    const MlaWeights w = init_weights(s, 42);
    const auto x = random_input(s, 12, 7);
    const Projected p = project(x.data(), 12, w, s, 100);
    const FormsComparison fc = compare_forms(p, w, s);
    EXPECT_TRUE(fc.verdict.ok()) << fc.verdict.summary();
    EXPECT_EQ(violations(fc.absorbed, fc.exact, fc.bound_absorbed), 0u);
    EXPECT_EQ(violations(fc.naive, fc.exact, fc.bound_naive), 0u);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < fc.exact.size(); ++i) {
      num += (static_cast<double>(fc.absorbed[i]) - fc.naive[i]) * (static_cast<double>(fc.absorbed[i]) - fc.naive[i]);
      den += fc.exact[i] * fc.exact[i];
    }
    // The FP8 path really ran: the forms differ by far more than with BF16 wkv_b (FP8 quantisation
    // of the latent costs ~2^-5 relative per element; BF16 ~2^-9).
    MlaSpec sb = s;
    sb.wkv_b = MatmulFormat::Bf16;
    const FormsComparison fb = compare_forms(p, w, sb);
    EXPECT_GT(fc.max_abs_difference, 2 * fb.max_abs_difference);
    // Not vacuous: aim for a bound within 10x of what is observed.
    EXPECT_GT(fc.max_observed_over_bound, af == MatmulFormat::Fp32 ? 0.1 : 0.02);
    std::printf("[mla fp8 wkv_b] absorbed vs naive (attn=%s): normwise %.3g, max |diff| %.3g (%.3g of max |exact|), "
                "observed/bound %.3f; bf16 wkv_b: max |diff| %.3g\n",
                std::string(matmul_format_name(af)).c_str(), std::sqrt(num / den), fc.max_abs_difference,
                fc.max_rel_difference, fc.max_observed_over_bound, fb.max_abs_difference);
  }
}

TEST(MlaFp8Wkvb, AbsorbedUsesDequantisedWeights) {
  // Absorbed weights: kernel.py weight_dequant = fl32(e4m3 * scale), then the default dtype.
  for (MatmulFormat af : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
    const MlaSpec s = fp8_spec(af);
    const MlaWeights w = init_weights(s, 5);
    const QTensor q = wkv_b_fp8(w, s);
    const auto wa = wkv_b_absorbed(w, s);
    const auto we = wkv_b_exact(w, s);
    std::size_t inexact = 0;
    for (std::size_t r = 0; r < q.rows; ++r)
      for (std::size_t c = 0; c < q.cols; ++c) {
        const std::size_t i = r * q.cols + c;
        const double e = q.element(r, c) * static_cast<double>(q.dequant_scale(r, c));
        ASSERT_EQ(we[i], e);
        const float f32 = static_cast<float>(e);  // one rounding of the exact product
        ASSERT_EQ(wa[i], af == MatmulFormat::Bf16 ? round_to_bf16(f32) : f32) << i;
        inexact += wa[i] != e;
      }
    // The scales are amax/448, not powers of two: e4m3 (4 bits) x FP32 scale (24 bits) needs up to
    // 28 bits, so FP32 rounds some products and BF16 most.
    EXPECT_GT(inexact, 0u);
  }
}

TEST(MlaFp8Wkvb, CheckpointWeightsAreUsedAsGiven) {
  const MlaSpec s = fp8_spec();
  MlaWeights w = init_weights(s, 8);
  const auto x = random_input(s, 6, 9);
  const Projected p = project(x.data(), 6, w, s, 0);
  // Given explicitly, the deepseek-quantised weights give the same bits as the default path.
  MlaWeights given = w;
  given.wkv_b_fp8 = quantize(w.wkv_b.data(), w.wkv_b.size() / s.kv_lora, s.kv_lora, Tile{128, 128}, "e4m3",
                             scale_rule_by_name("deepseek"));
  for (Form f : {Form::Naive, Form::Absorbed}) EXPECT_EQ(attention(p, w, s, f), attention(p, given, s, f));
  // Another checkpoint (power-of-two scales): both forms follow it, within bound of its exact attention.
  MlaWeights pow2 = w;
  pow2.wkv_b_fp8 = quantize(w.wkv_b.data(), w.wkv_b.size() / s.kv_lora, s.kv_lora, Tile{128, 128}, "e4m3",
                            scale_rule_by_name("deepseek_ue8m0"));
  const FormsComparison fc = compare_forms(p, pow2, s);
  EXPECT_TRUE(fc.verdict.ok()) << fc.verdict.summary();
  EXPECT_EQ(violations(fc.naive, fc.exact, fc.bound_naive), 0u);
  EXPECT_NE(fc.naive, attention(p, w, s, Form::Naive));
  // Bad checkpoint tensors are named.
  auto message = [&](MlaWeights bad) {
    try {
      (void)attention(p, bad, s, Form::Naive);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  MlaWeights bad = given;
  bad.wkv_b_fp8.tile = Tile{1, 128};
  EXPECT_NE(message(bad).find("weights.wkv_b_fp8"), std::string::npos);
  bad = given;
  bad.wkv_b_fp8.scales[0] = std::nanf("");
  EXPECT_NE(message(bad).find("weights.wkv_b_fp8"), std::string::npos);
  bad = given;
  bad.wkv_b_fp8.rows = 64;
  EXPECT_NE(message(bad).find("weights.wkv_b_fp8: expected shape"), std::string::npos);
}

TEST(MlaFp8Wkvb, WrongWeightScaleIsAViolation) {
  const MlaSpec s = fp8_spec();
  const MlaWeights w = init_weights(s, 31);
  const auto x = random_input(s, 8, 32);
  const Projected p = project(x.data(), 8, w, s, 0);
  const std::vector<double> exact = exact_attention(p, w, s, softmax_scale_value(s));
  std::vector<double> ba, bn;
  const auto absorbed = attention(p, w, s, Form::Absorbed, &ba);
  // "scale instead of scale_inv": the reciprocal of each block's multiplier in the naive path.
  MlaWeights inv = w;
  inv.wkv_b_fp8 = wkv_b_fp8(w, s);
  for (auto& v : inv.wkv_b_fp8.scales) v = 1.0f / v;
  std::vector<double> bi;
  const auto naive_inv = attention(p, inv, s, Form::Naive, &bi);
  // The comparison of the forms (absorbed with the right weights) is a violation. Per element
  // against the exact attention only some are: a bound computed from wildly wrong keys/values is
  // itself huge (the softmax error cap of 1 times |v|), so the forms comparison is the check.
  const Verdict vi = forms_verdict(absorbed, naive_inv, ba, bi);
  EXPECT_EQ(vi.kind, VerdictKind::Violation) << vi.summary();
  EXPECT_GT(vi.violations, 0u);
  EXPECT_GT(violations(naive_inv, exact, bi), 0u);
  std::printf("[mla fp8 wkv_b] 1/scale in the naive path: %zu of %zu outputs violate absorbed vs naive, %zu the exact\n",
              vi.violations, naive_inv.size(), violations(naive_inv, exact, bi));
  // A subtler slip: one block's scale 25% too large (scale * 1.25), naive path only.
  MlaWeights off = w;
  off.wkv_b_fp8 = wkv_b_fp8(w, s);
  off.wkv_b_fp8.scales[0] *= 1.25f;
  std::vector<double> bo;
  const auto naive_off = attention(p, off, s, Form::Naive, &bo);
  const Verdict v = forms_verdict(absorbed, naive_off, ba, bo);
  EXPECT_EQ(v.kind, VerdictKind::Violation) << v.summary();
  EXPECT_GT(violations(naive_off, exact, bo), 0u);
  std::printf("[mla fp8 wkv_b] scale*1.25 in one block: %zu of %zu outputs violate absorbed vs naive, %zu the exact\n",
              v.violations, naive_off.size(), violations(naive_off, exact, bo));
}

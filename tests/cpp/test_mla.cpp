// MLA emulator: spec, layouts, pinned log, decode and both prefill forms against exact references.
#include <gtest/gtest.h>

#include <bit>
#include <boost/multiprecision/cpp_bin_float.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <atomic>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

#include "common/isa.hpp"
#include "mla/decode.hpp"
#include "mla/forward.hpp"
#include "mla/numerics.hpp"
#include "mla/paged_cache.hpp"
#include "mla/rope.hpp"
#include "mla/weight_cache.hpp"
#include "gemm/recipe.hpp"
#include "common/parallel.hpp"
#include "mla/weights.hpp"
#include "quant/scale_rule.hpp"
#include "test_mla_support.hpp"

using namespace fp8lab;
using namespace fp8lab::mla;

namespace {

using fp8lab::mla::testing::small_spec;
std::vector<float> uniform_values(std::size_t n, std::uint64_t seed, double width) {
  return fp8lab::mla::testing::uniform_values(n, seed, width, 9);
}

}  // namespace

TEST(MlaSpec, DeepSeekDefaultsAndKvBytes) {
  MlaSpec s;
  // Published dims: 128 heads, q_lora 1536, kv_lora 512, nope 128, rope 64, v 128.
  const KvBytes b = kv_bytes_per_token(s);
  EXPECT_EQ(b.mha_bf16, 128u * (128 + 64 + 128) * 2);  // 81920
  EXPECT_EQ(b.mla_bf16, 1152u);                          // 576 x 2
  EXPECT_EQ(b.mla_fp8, 656u);                            // FlashMLA: 512 + 16 + 128
  // 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.13523377886088..., computed with Python's math module.
  EXPECT_EQ(softmax_scale_value(s), static_cast<float>(0x1.14f5728c2d01dp-3));
  EXPECT_EQ(softmax_scale_named(s, "flashmla"), static_cast<float>(1.0 / 24.0));
}

TEST(MlaSpec, JsonRoundTripAndErrors) {
  MlaSpec s = small_spec();
  s.cache = CacheFormat::Fp8E4m3;
  s.rope_layout = RopeLayout::HalfSplit;
  s.num_splits = 3;
  s.softmax_scale = "0.125";
  s.yarn.factor = 8;
  const MlaSpec t = spec_from_json(to_json(s));
  EXPECT_EQ(to_json(t), to_json(s));
  EXPECT_THROW(spec_from_json("{\"heads\":0}"), std::invalid_argument);
  EXPECT_THROW(spec_from_json("{\"colour\":1}"), std::invalid_argument);
  EXPECT_THROW(spec_from_json("{\"cache\":\"fp4\"}"), std::invalid_argument);
  // attn_ops: read and written; deepseek_reference only with BF16 einsums on BF16 inputs.
  EXPECT_EQ(s.attn_ops, AttnOps::Fused);
  EXPECT_NE(to_json(s).find("\"attn_ops\":\"fused\""), std::string::npos);
  EXPECT_EQ(spec_from_json(R"({"attn":"bf16","attn_ops":"deepseek_reference"})").attn_ops, AttnOps::DeepseekReference);
  EXPECT_THROW(spec_from_json(R"({"attn_ops":"deepseek_reference"})"), std::invalid_argument);  // attn fp32
  EXPECT_THROW(spec_from_json(R"({"attn":"bf16","attn_ops":"deepseek_reference","wkv_a":"fp32"})"), std::invalid_argument);
  EXPECT_THROW(spec_from_json(R"({"attn_ops":"torch"})"), std::invalid_argument);
  MlaSpec bad = small_spec();
  bad.softmax_scale = "big";
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad = small_spec();
  bad.cache = CacheFormat::Fp8E4m3;
  bad.kv_lora = 96;
  try {
    bad.validate();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kv_lora"), std::string::npos);
  }
}

TEST(MlaNumerics, LogIsCorrectlyRounded) {
  using big = boost::multiprecision::number<boost::multiprecision::cpp_bin_float<120>>;
  std::size_t checked = 0;
  for (std::uint32_t i = 0; i < 20000; ++i) {
    std::uint32_t bits = 0x00800000u + static_cast<std::uint32_t>(counter_uniform(1, 2, i) * (0x7F000000u - 0x00800000u));
    float x;
    std::memcpy(&x, &bits, 4);
    const float got = log_f32(x);
    const big exact = boost::multiprecision::log(big(static_cast<double>(x)));
    const big err = boost::multiprecision::abs(big(static_cast<double>(got)) - exact);
    const big half_ulp_up = boost::multiprecision::abs(big(static_cast<double>(std::nextafter(got, INFINITY))) - big(static_cast<double>(got))) / 2;
    const big half_ulp_dn = boost::multiprecision::abs(big(static_cast<double>(got)) - big(static_cast<double>(std::nextafter(got, -INFINITY)))) / 2;
    ASSERT_LE(err, std::max(half_ulp_up, half_ulp_dn)) << "x=" << x;
    ++checked;
  }
  EXPECT_EQ(log_f32(1.0f), 0.0f);
  EXPECT_EQ(log_f32(0.0f), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(log_f32(-1.0f)));
  EXPECT_EQ(checked, 20000u);
}

TEST(MlaNumerics, DotOrderIsLaneStrided) {
  std::vector<float> a(32, 0x1p-24f), b(32, 1.0f);
  a[0] = 1.0f;
  // Lane 0: 1 + 2^-24 (i = 16) -> 1 (tie, even). Lanes 1..15: 2^-23 each. Tree level 1:
  // (1 + 2^-23) = 1 + 2^-23 exact; the others 2^-22. Level 2: (1+2^-23) + 2^-22 = 1 + 3*2^-23 exact;
  // level 3: + 2^-21 = 1 + 7*2^-23; level 4: + 2^-20 (8 lanes of 2^-23) = 1 + 15*2^-23.
  EXPECT_EQ(dot_f32(a.data(), b.data(), 32), 1.0f + 15 * 0x1p-23f);
  // Sequential order would give 1 (each 2^-24 lost to ties-to-even): the order is observable.
}

// The cache's scale is the flashmla_cache rule's row: on every positive finite BF16 amax (the
// cache's dtype) it equals FlashMLA's formula written out from tests/quant.py
// (_cast_scale_inv_to_ue8m0): s = fl32(amax / 448), clamp_min(s, 1e-4), 2^ceil(log2 s), the
// ceiling taken exactly with frexp.
TEST(MlaCache, Fp8TileScaleIsTheFlashmlaRuleOnEveryBf16Amax) {
  const ScaleRule& rule = scale_rule_by_name(kFp8CacheRule);
  EXPECT_EQ(rule.name, "flashmla_cache");
  EXPECT_EQ(format_by_name(kFp8CacheFormat).max_finite(), 448.0);
  int checked = 0;
  for (std::uint32_t b = 0; b < 0x7F80u; ++b) {
    const std::uint32_t u = b << 16;
    float amax;
    std::memcpy(&amax, &u, 4);
    float s = std::max(amax / 448.0f, 1e-4f);
    int e = 0;
    const float m = std::frexp(s, &e);
    const float want = m == 0.5f ? s : std::ldexp(1.0f, e);
    ASSERT_EQ(fp8_tile_scale(amax), want) << "amax " << amax;
    ++checked;
  }
  EXPECT_EQ(checked, 0x7F80);
}

TEST(MlaCache, Fp8TileScaleAndLayout) {
  EXPECT_EQ(fp8_tile_scale(448.0f), 1.0f);
  EXPECT_EQ(fp8_tile_scale(449.0f), 2.0f);
  EXPECT_EQ(fp8_tile_scale(56.0f), 0.125f);
  EXPECT_EQ(fp8_tile_scale(0.0f), 0x1p-13f);  // 1e-4 clamp, next power of two up is 2^-13
  MlaSpec s = small_spec();
  s.kv_lora = 256;
  s.cache = CacheFormat::Fp8E4m3;
  std::vector<float> lat(256, 0.0f), kpe(8, 0.0f);
  lat[0] = 3.0f;    // tile 0 amax 3 -> scale 2^ceil(log2(3/448)) = 2^-7; 3/2^-7 = 384 = E4M3 0x7C
  lat[128] = -0.5f; // tile 1 amax 0.5 -> 2^-9; -256 = E4M3 0xF8
  kpe[0] = 1.5f;    // bf16 0x3FC0
  PagedCache c = build_cache(lat.data(), kpe.data(), {1}, s);
  ASSERT_EQ(c.row_bytes, 256u + 8u + 16u);
  const std::uint8_t* row = c.bytes.data();
  EXPECT_EQ(row[0], 0x7C);
  EXPECT_EQ(row[128], 0xF8);
  float s0, s1;
  std::memcpy(&s0, row + 256, 4);
  std::memcpy(&s1, row + 260, 4);
  EXPECT_EQ(s0, 0x1p-7f);
  EXPECT_EQ(s1, 0x1p-9f);
  EXPECT_EQ(row[264], 0xC0);  // little-endian 0x3FC0
  EXPECT_EQ(row[265], 0x3F);
  std::vector<float> back(264);
  read_row(row, s, back.data());
  EXPECT_EQ(back[0], 3.0f);
  EXPECT_EQ(back[128], -0.5f);
  EXPECT_EQ(back[256], 1.5f);
}

TEST(MlaDecode, SingleTokenIsItsValueAndScore) {
  // One key: p = exp(0) = 1 exactly, l = 1, out = bf16(v / 1) = v, lse = s + log(1) = s.
  MlaSpec s = small_spec();
  const std::size_t D = s.cache_dim();
  auto lat = uniform_values(s.kv_lora, 3, 1.0), kpe = uniform_values(s.rope, 4, 1.0);
  auto q = uniform_values(s.heads * D, 5, 1.0);
  PagedCache c = build_cache(lat.data(), kpe.data(), {1}, s);
  DecodeResult r = decode(q.data(), s.heads, c, s);
  const float scale = softmax_scale_value(s);
  for (int h = 0; h < s.heads; ++h) {
    for (int i = 0; i < s.kv_lora; ++i) EXPECT_EQ(r.out[h * s.kv_lora + i], lat[i]);
    std::vector<float> k(lat);
    k.insert(k.end(), kpe.begin(), kpe.end());
    EXPECT_EQ(r.lse[h], dot_f32(&q[h * D], k.data(), D) * scale);
  }
}

TEST(MlaDecode, EmptySequenceGivesZeroAndInfinity) {
  MlaSpec s = small_spec();
  auto lat = uniform_values(70 * s.kv_lora, 3, 1.0), kpe = uniform_values(70 * s.rope, 4, 1.0);
  auto q = uniform_values(3 * s.heads * s.cache_dim(), 5, 1.0);
  PagedCache c = build_cache(lat.data(), kpe.data(), {0, 70, 0}, s);
  DecodeResult r = decode(q.data(), s.heads, c, s);
  for (int h = 0; h < s.heads; ++h) {
    EXPECT_EQ(r.lse[h], std::numeric_limits<float>::infinity());
    EXPECT_EQ(r.lse[2 * s.heads + h], std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isfinite(r.lse[s.heads + h]));
    for (int i = 0; i < s.kv_lora; ++i) EXPECT_EQ(r.out_bf16[h * s.kv_lora + i], 0u);
  }
  DecodeReference ref = decode_reference(q.data(), s.heads, c, s, softmax_scale_value(s));
  DecodeVerdicts v = check_decode(r, ref, 3, s.heads, s);
  EXPECT_TRUE(v.out.ok()) << v.out.summary();
  EXPECT_TRUE(v.lse.ok()) << v.lse.summary();
}

TEST(MlaDecode, WithinBoundOfExactForSplitsAndFormats) {
  for (CacheFormat cf : {CacheFormat::Bf16, CacheFormat::Fp8E4m3})
    for (int splits : {1, 2, 5})
      for (MatmulFormat pf : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
        MlaSpec s = small_spec();
        s.cache = cf;
        s.num_splits = splits;
        s.decode_p = pf;
        const std::vector<std::int32_t> lens = {1, 64, 65, 300};
        const std::size_t total = 430;
        auto lat = uniform_values(total * s.kv_lora, 11, 2.0), kpe = uniform_values(total * s.rope, 12, 2.0);
        auto q = uniform_values(lens.size() * s.heads * s.cache_dim(), 13, 1.5);
        PagedCache c = build_cache(lat.data(), kpe.data(), lens, s);
        DecodeResult r = decode(q.data(), s.heads, c, s);
        DecodeReference ref = decode_reference(q.data(), s.heads, c, s, softmax_scale_value(s), BoundScope::ThisEmulator);
        DecodeVerdicts v = check_decode(r, ref, lens.size(), s.heads, s);
        EXPECT_TRUE(v.out.ok()) << v.out.summary();
        EXPECT_TRUE(v.lse.ok()) << v.lse.summary();
        // The kernel-agnostic bound is looser and holds as well.
        DecodeReference any = decode_reference(q.data(), s.heads, c, s, softmax_scale_value(s), BoundScope::AnyKernel);
        for (std::size_t i = 0; i < ref.out_bound.size(); ++i) ASSERT_GE(any.out_bound[i], ref.out_bound[i]);
        EXPECT_TRUE(check_decode(r, any, lens.size(), s.heads, s).out.ok());
        // The bound is not vacuous: the observed error uses a real part of it.
        EXPECT_GT(v.max_out_ratio, 0.05) << "cache " << cache_format_name(cf) << " splits " << splits;
        std::printf("[mla] decode cache=%s splits=%d p=%s: out observed/bound %.3f, lse observed/bound %.3f\n",
                    std::string(cache_format_name(cf)).c_str(), splits, std::string(matmul_format_name(pf)).c_str(),
                    v.max_out_ratio, v.max_lse_ratio);
      }
}

TEST(MlaDecode, BadInputsNameTheArgument) {
  MlaSpec s = small_spec();
  auto lat = uniform_values(10 * s.kv_lora, 3, 1.0), kpe = uniform_values(10 * s.rope, 4, 1.0);
  auto q = uniform_values(s.heads * s.cache_dim(), 5, 1.0);
  PagedCache c = build_cache(lat.data(), kpe.data(), {10}, s);
  auto expect_msg = [](auto&& f, const char* word) {
    try {
      f();
      ADD_FAILURE() << "no exception for " << word;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { decode(q.data(), s.heads + 1, c, s); }, "heads");
  PagedCache bad = c;
  bad.block_table[0] = 7;
  expect_msg([&] { decode(q.data(), s.heads, bad, s); }, "block_table");
  bad = c;
  bad.seqlens[0] = 65;
  expect_msg([&] { decode(q.data(), s.heads, bad, s); }, "seqlens");
  auto qn = q;
  qn[3] = std::numeric_limits<float>::quiet_NaN();
  expect_msg([&] { decode(qn.data(), s.heads, c, s); }, "q");
  MlaSpec f8 = s;
  f8.cache = CacheFormat::Fp8E4m3;
  expect_msg([&] { decode(q.data(), s.heads, c, f8); }, "cache");
  expect_msg([&] { build_cache(lat.data(), kpe.data(), {-1}, s); }, "seqlens");
}

TEST(MlaForward, FormsAgreeWithinCertifiedBound) {
  for (MatmulFormat af : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
    MlaSpec s = small_spec();
    s.attn = af;
    const MlaWeights w = init_weights(s, 42);
    const auto x = random_input(s, 12, 7);
    const Projected p = project(x.data(), 12, w, s, 100);
    const FormsComparison fc = compare_forms(p, w, s);
    EXPECT_TRUE(fc.verdict.ok()) << fc.verdict.summary();
    EXPECT_GT(fc.max_observed_over_bound, 1e-3);
    // Each form against the exact attention with its own bound.
    for (auto [got, bnd] : {std::pair{&fc.absorbed, &fc.bound_absorbed}, std::pair{&fc.naive, &fc.bound_naive}})
      for (std::size_t i = 0; i < got->size(); ++i) ASSERT_LE(std::fabs((*got)[i] - fc.exact[i]), (*bnd)[i]) << i;
    std::printf("[mla] absorbed vs naive (attn=%s): max |diff| %.3g (%.3g of max |out|), observed/bound %.3f\n",
                std::string(matmul_format_name(af)).c_str(), fc.max_abs_difference, fc.max_rel_difference,
                fc.max_observed_over_bound);
  }
}

TEST(MlaForward, WrongScaleIsAViolation) {
  MlaSpec s = small_spec();
  s.attn = MatmulFormat::Fp32;
  const MlaWeights w = init_weights(s, 1);
  const auto x = random_input(s, 8, 2);
  const Projected p = project(x.data(), 8, w, s, 0);
  std::vector<double> bound;
  MlaSpec wrong = s;
  wrong.softmax_scale = "flashmla";
  const auto got = attention(p, w, wrong, Form::Absorbed, &bound);
  const auto exact = exact_attention(p, w, s, softmax_scale_value(s));
  std::size_t violations = 0;
  for (std::size_t i = 0; i < got.size(); ++i) violations += std::fabs(got[i] - exact[i]) > bound[i];
  EXPECT_GT(violations, got.size() / 4);
}

TEST(MlaForward, DecodeOfLastTokenMatchesPrefill) {
  // The absorbed prefill's last query over all keys is what decode computes from the cache.
  MlaSpec s = small_spec();
  s.attn = MatmulFormat::Fp32;
  const MlaWeights w = init_weights(s, 5);
  const std::size_t T = 70;
  const auto x = random_input(s, T, 6);
  const Projected p = project(x.data(), T, w, s, 0);
  const auto qa = absorbed_query(p, w, s);
  PagedCache c = build_cache(p.latent.data(), p.k_pe.data(), {static_cast<std::int32_t>(T)}, s);
  const std::size_t D = s.cache_dim();
  std::vector<float> qlast(qa.end() - s.heads * D, qa.end());
  DecodeResult r = decode(qlast.data(), s.heads, c, s);
  DecodeReference ref = decode_reference(qlast.data(), s.heads, c, s, softmax_scale_value(s));
  DecodeVerdicts v = check_decode(r, ref, 1, s.heads, s);
  EXPECT_TRUE(v.out.ok()) << v.out.summary();
  // W_UV applied to the decode output approximates the prefill's attention output of the last token.
  const auto attn = attention(p, w, s, Form::Absorbed);
  for (int h = 0; h < s.heads; ++h)
    for (int d = 0; d < s.v; ++d) {
      double o = 0, mag = 0;
      for (int c2 = 0; c2 < s.kv_lora; ++c2) {
        const double wv = w.wkv_b[(static_cast<std::size_t>(h) * (s.nope + s.v) + s.nope + d) * s.kv_lora + c2];
        o += wv * r.out[h * s.kv_lora + c2];
        mag += std::fabs(wv * r.out[h * s.kv_lora + c2]);
      }
      EXPECT_NEAR(o, attn[((T - 1) * s.heads + h) * s.v + d], 0x1p-7 * mag + 1e-6);  // BF16 output of decode
    }
}

TEST(MlaRope, LayoutsGiveBitIdenticalRotations) {
  MlaSpec s = small_spec();
  const auto freqs = rope_inverse_frequencies(s);
  std::vector<float> c(freqs.size()), sn(freqs.size());
  rope_cos_sin(s, freqs, 1234, c.data(), sn.data());
  auto x = uniform_values(s.rope, 8, 1.0);
  const auto perm = interleaved_to_half_split(s.rope);
  std::vector<float> xh(s.rope);
  for (int j = 0; j < s.rope; ++j) xh[j] = x[perm[j]];
  apply_rope(s, c.data(), sn.data(), x.data());
  MlaSpec h = s;
  h.rope_layout = RopeLayout::HalfSplit;
  apply_rope(h, c.data(), sn.data(), xh.data());
  for (int j = 0; j < s.rope; ++j) EXPECT_EQ(xh[j], x[perm[j]]);
}

TEST(MlaRope, YarnFrequenciesFollowTheReference) {
  // DeepSeek-V3 dims: rope 64, theta 1e4, factor 40, original 4096, beta 32/1. Correction range:
  // low = floor(64 ln(4096/(32*2pi)) / (2 ln 1e4)) = floor(10.52) = 10,
  // high = ceil(64 ln(4096/(2pi)) / (2 ln 1e4)) = ceil(22.6) = 23.
  MlaSpec s;
  const auto f = rope_inverse_frequencies(s);
  ASSERT_EQ(f.size(), 32u);
  // i <= 10: unchanged base frequencies (ramp 0 -> smooth 1); i >= 23: divided by 40.
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[5], std::pow(1e4, -10.0 / 64), 1e-7 * f[5]);
  EXPECT_NEAR(f[30], std::pow(1e4, -60.0 / 64) / 40, 1e-6 * f[30]);
  // In between, the ramp (i - 10) / 13 mixes the two.
  const double r = (16 - 10) / 13.0;
  const double base16 = std::pow(1e4, -32.0 / 64);
  EXPECT_NEAR(f[16], base16 / 40 * r + base16 * (1 - r), 1e-6 * f[16]);
}

#include "quant/quantize.hpp"

TEST(MlaCache, Fp8RowsMatchTheQuantAreasFlashMlaRule) {
  // A second implementation of the same convention: quant/'s "flashmla_cache" scale rule on 1x128
  // tiles of the BF16 latents must give the bytes and scales the cache stores.
  MlaSpec s = small_spec();
  s.kv_lora = 512;
  s.cache = CacheFormat::Fp8E4m3;
  const std::size_t T = 40;
  auto lat = uniform_values(T * 512, 31, 1.0), kpe = uniform_values(T * s.rope, 32, 1.0);
  for (std::size_t i = 0; i < lat.size(); ++i) lat[i] = round_to_bf16(lat[i] * static_cast<float>(1 + 40 * counter_uniform(33, 0, i / 128)));
  std::fill_n(&lat[5 * 512 + 128], 128, 0.0f);  // an all-zero tile: the 1e-4 floor on the scale
  const PagedCache c = build_cache(lat.data(), kpe.data(), {static_cast<std::int32_t>(T)}, s);
  const QTensor q = quantize(lat.data(), T, 512, Tile{1, 128}, "e4m3", scale_rule_by_name("flashmla_cache"));
  for (std::size_t t = 0; t < T; ++t) {
    const std::uint8_t* row = &c.bytes[t * c.row_bytes];
    for (std::size_t i = 0; i < 512; ++i) ASSERT_EQ(row[i], q.bits[t * 512 + i]) << "token " << t << " channel " << i;
    for (std::size_t k = 0; k < 4; ++k) {
      float sc;
      std::memcpy(&sc, row + 512 + 4 * k, 4);
      ASSERT_EQ(sc, q.scales[t * 4 + k]) << "token " << t << " tile " << k;
    }
  }
}

TEST(MlaForward, Fp8ProjectionsRunAndStayNearBf16) {
  MlaSpec s = small_spec();
  s.hidden = 256;
  s.q_lora = 128;
  MlaSpec f8 = s;
  f8.wq_a = f8.wq_b = f8.wkv_a = f8.wo = MatmulFormat::Fp8;
  const MlaWeights w = init_weights(s, 8);
  const auto x = random_input(s, 6, 9);
  const ForwardResult a = forward(x.data(), 6, w, s, Form::Absorbed, 0);
  const ForwardResult b = forward(x.data(), 6, w, f8, Form::Absorbed, 0);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.out.size(); ++i) {
    num += (static_cast<double>(a.out[i]) - b.out[i]) * (static_cast<double>(a.out[i]) - b.out[i]);
    den += static_cast<double>(a.out[i]) * a.out[i];
  }
  const double rel = std::sqrt(num / den);
  // E4M3 (3 mantissa bits) on activations and weights: a few percent, and never exactly zero.
  EXPECT_GT(rel, 1e-3);
  EXPECT_LT(rel, 0.15);
  std::printf("[mla] FP8 projections (wq_a, wq_b, wkv_a, wo) vs BF16: output normwise rel. difference %.3g\n", rel);
  // The forms still agree within bound: the bound starts after the shared projections.
  const FormsComparison fc = compare_forms(b.projected, w, f8);
  EXPECT_TRUE(fc.verdict.ok()) << fc.verdict.summary();
  // BF16 through the Hopper wgmma model (truncating alignment) vs FP32-accumulated BF16 products:
  // both round to BF16 at the end, so they differ by at most a few BF16 ulps per projection.
  MlaSpec tc = s;
  tc.wq_a = tc.wq_b = tc.wkv_a = tc.wo = MatmulFormat::Bf16TensorCore;
  const ForwardResult t = forward(x.data(), 6, w, tc, Form::Absorbed, 0);
  double tnum = 0;
  for (std::size_t i = 0; i < a.out.size(); ++i)
    tnum += (static_cast<double>(a.out[i]) - t.out[i]) * (static_cast<double>(a.out[i]) - t.out[i]);
  EXPECT_LT(std::sqrt(tnum / den), 0x1p-6);
  std::printf("[mla] BF16 tensor-core projections vs FP32-accumulated BF16: normwise rel. difference %.3g\n",
              std::sqrt(tnum / den));
  MlaSpec bad = s;
  bad.attn = MatmulFormat::Fp8;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad = s;
  bad.wkv_b = MatmulFormat::Bf16TensorCore;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

TEST(MlaForward, ChunkedPrefillEqualsOneCall) {
  // Tokens 0..9 in one call, or 0..5 then 6..9 with the first chunk's latents as prefix: the last
  // four queries see the same keys in the same order, so every bit agrees (both forms).
  MlaSpec s = small_spec();
  const MlaWeights w = init_weights(s, 12);
  const auto x = random_input(s, 10, 13);
  for (Form f : {Form::Absorbed, Form::Naive}) {
    const ForwardResult all = forward(x.data(), 10, w, s, f, 50);
    const ForwardResult head = forward(x.data(), 6, w, s, f, 50);
    const ForwardResult tail = forward(x.data() + 6 * s.hidden, 4, w, s, f, 56, &head.projected);
    const std::size_t row = static_cast<std::size_t>(s.heads) * s.v;
    for (std::size_t i = 0; i < 4 * row; ++i) ASSERT_EQ(tail.attn[i], all.attn[6 * row + i]) << i;
    for (std::size_t i = 0; i < 4u * s.hidden; ++i) ASSERT_EQ(tail.out[i], all.out[6 * s.hidden + i]) << i;
  }
  const ForwardResult head = forward(x.data(), 6, w, s, Form::Absorbed, 50);
  const Projected tailp = project(x.data() + 6 * s.hidden, 4, w, s, 56);
  const FormsComparison fc = compare_forms(tailp, w, s, &head.projected);
  EXPECT_TRUE(fc.verdict.ok()) << fc.verdict.summary();
}

namespace {

std::uint32_t bits_of(float v) { return std::bit_cast<std::uint32_t>(v); }
::testing::AssertionResult same_bits(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << what << ": sizes " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (bits_of(a[i]) != bits_of(b[i]))
      return ::testing::AssertionFailure() << what << "[" << i << "]: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// The weights copied into buffers of the test's own and viewed field by field, as the Python
// binding views the caller's numpy arrays (no MlaWeights behind the view).
struct ForeignWeights {
  std::vector<std::vector<float>> store;
  QTensor fp8;
  MlaWeightsView view;
  explicit ForeignWeights(const MlaWeights& w) : fp8(w.wkv_b_fp8) {
    auto hold = [&](const std::vector<float>& v) {
      store.push_back(v);
      return std::span<const float>(store.back());
    };
    store.reserve(8);
    view.wq_a = hold(w.wq_a);
    view.q_norm = hold(w.q_norm);
    view.wq_b = hold(w.wq_b);
    view.wq = hold(w.wq);
    view.wkv_a = hold(w.wkv_a);
    view.kv_norm = hold(w.kv_norm);
    view.wkv_b = hold(w.wkv_b);
    view.wo = hold(w.wo);
    view.wkv_b_fp8 = &fp8;
  }
};

}  // namespace

TEST(MlaForward, OneCallOverViewsEqualsItsSteps) {
  // forward() checks the weights once and reads them in place, and returns the absorbed query it
  // computed anyway; the oracle is the path the binding took before: the weights in an MlaWeights of
  // their own, project, attention, output_projection and absorbed_query, each checking the weights.
  // Every spec kind the steps branch on (FP8 / BF16 tensor-core / BF16 projections, q_lora 0, FP8
  // wkv_b quantised or given, BF16 einsums in the reference op sequence), both forms, a prefix, an
  // odd token count, on every instruction-set variant this CPU runs.
  std::vector<std::pair<const char*, MlaSpec>> specs;
  MlaSpec s = small_spec();
  specs.push_back({"bf16 projections", s});
  MlaSpec q0 = s;
  q0.q_lora = 0;
  specs.push_back({"q_lora 0", q0});
  MlaSpec f8 = s;
  f8.hidden = 128;
  f8.wq_a = f8.wq_b = f8.wkv_a = f8.wo = MatmulFormat::Fp8;
  specs.push_back({"fp8 projections", f8});
  MlaSpec tc = s;
  tc.wq_a = tc.wq_b = tc.wkv_a = tc.wo = MatmulFormat::Bf16TensorCore;
  specs.push_back({"bf16 tensor-core projections", tc});
  MlaSpec wb = s;
  wb.wkv_b = MatmulFormat::Fp8;
  wb.attn = MatmulFormat::Bf16;
  specs.push_back({"fp8 wkv_b", wb});
  MlaSpec ref = s;
  ref.attn = MatmulFormat::Bf16;
  ref.attn_ops = AttnOps::DeepseekReference;
  specs.push_back({"deepseek_reference einsums", ref});
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    for (const auto& [name, sp] : specs) {
      sp.validate();
      MlaWeights w = init_weights(sp, 17);
      for (bool given : {false, true}) {
        if (given && sp.wkv_b != MatmulFormat::Fp8) continue;
        if (given)  // a checkpoint's FP8 wkv_b (power-of-two scales: not what wkv_b would quantise to)
          w.wkv_b_fp8 = quantize(w.wkv_b.data(), w.wkv_b.size() / sp.kv_lora, sp.kv_lora, Tile{128, 128}, "e4m3",
                                 scale_rule_by_name("deepseek_ue8m0"));
        const ForeignWeights fw(w);
        const auto x = random_input(sp, 7, 18);
        const ForwardResult head = forward(x.data(), 3, w, sp, Form::Absorbed, 5);
        for (Form f : {Form::Absorbed, Form::Naive})
          for (const Projected* prefix : {static_cast<const Projected*>(nullptr), &head.projected}) {
            SCOPED_TRACE(std::string(isa_name(isa)) + " " + name + (given ? " (given fp8 wkv_b) " : " ") +
                         std::string(form_name(f)) + (prefix ? " with prefix" : ""));
            std::vector<float> qa;
            const ForwardResult got = forward(x.data(), 7, fw.view, sp, f, 8, prefix, &qa);
            const Projected p = project(x.data(), 7, w, sp, 8);
            const std::vector<float> attn = attention(p, w, sp, f, nullptr, prefix);
            ASSERT_TRUE(same_bits(got.projected.q_nope, p.q_nope, "q_nope"));
            ASSERT_TRUE(same_bits(got.projected.q_pe, p.q_pe, "q_pe"));
            ASSERT_TRUE(same_bits(got.projected.latent, p.latent, "latent"));
            ASSERT_TRUE(same_bits(got.projected.k_pe, p.k_pe, "k_pe"));
            ASSERT_TRUE(same_bits(got.attn, attn, "attn"));
            ASSERT_TRUE(same_bits(got.out, output_projection(attn, 7, w, sp), "out"));
            ASSERT_TRUE(same_bits(qa, absorbed_query(p, w, sp), "q_absorbed"));
          }
      }
    }
  }
}

TEST(MlaForward, ViewedWeightsAreReadAtEachCall) {
  // A view is not a snapshot: what the memory holds at the call is what the call uses, checked
  // again (a NaN written between calls is an error naming the tensor and element).
  const MlaSpec s = small_spec();
  const MlaWeights w = init_weights(s, 4);
  ForeignWeights fw(w);
  const auto x = random_input(s, 5, 6);
  const ForwardResult before = forward(x.data(), 5, fw.view, s, Form::Absorbed, 0);
  float* wkv_b = fw.store[6].data();
  ASSERT_EQ(fw.view.wkv_b.data(), wkv_b);
  wkv_b[3] = -2 * wkv_b[3];
  MlaWeights changed = w;
  changed.wkv_b[3] = wkv_b[3];
  const ForwardResult after = forward(x.data(), 5, fw.view, s, Form::Absorbed, 0);
  EXPECT_FALSE(same_bits(after.attn, before.attn, "attn"));
  EXPECT_TRUE(same_bits(after.attn, forward(x.data(), 5, changed, s, Form::Absorbed, 0).attn, "attn"));
  float* wo = fw.store[7].data();
  wo[11] = std::numeric_limits<float>::quiet_NaN();
  try {
    (void)forward(x.data(), 5, fw.view, s, Form::Naive, 0);
    ADD_FAILURE() << "a NaN weight was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "weights.wo: element 11 is not finite");
  }
}

namespace {

// Bit equality where both sides are NaN counts as equal (an overflowing score gives NaN on both
// paths; only its payload could depend on operand order).
::testing::AssertionResult same_values(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << what << ": sizes " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (bits_of(a[i]) != bits_of(b[i]) && !(std::isnan(a[i]) && std::isnan(b[i])))
      return ::testing::AssertionFailure() << what << "[" << i << "]: " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

// Projected inputs drawn directly (attention() takes them as given): width sets the score range;
// every 7th latent row zero, and, when hostile, a few huge and subnormal entries.
Projected hostile_projected(const MlaSpec& s, std::size_t T, std::uint64_t seed, double width, bool hostile) {
  Projected p;
  p.tokens = T;
  const std::size_t H = s.heads;
  p.q_nope = uniform_values(T * H * s.nope, seed, width);
  p.q_pe = uniform_values(T * H * s.rope, seed + 1, width);
  p.latent = uniform_values(T * s.kv_lora, seed + 2, 1.0);
  p.k_pe = uniform_values(T * s.rope, seed + 3, 1.0);
  for (std::size_t t = 0; t < T; t += 7) std::fill_n(&p.latent[t * s.kv_lora], s.kv_lora, 0.0f);
  if (hostile) {
    p.latent[1] = 0x1p-140f;  // subnormal
    p.latent[p.latent.size() / 2] = -3e4f;
    p.q_nope[3] = 0x1p-149f;
    p.q_nope[p.q_nope.size() - 1] = 1e30f;  // its scores overflow to +-Inf: NaN rows on both paths
    p.k_pe.back() = -0.0f;
  }
  return p;
}

}  // namespace

TEST(MlaForward, HeadGroupsEqualTheRowByRowPath) {
  // attention() without a bound runs attend_all (absorbed: heads in groups of 4 sharing their key
  // reads, P.V through mla_pv_rows, W_UV as one GEMM per head over all tokens); with a bound, the
  // row-by-row attend_row. Same bits, on every instruction-set variant: head counts around the
  // group (1, 3, 4, 7), token counts 1, 2, 9, 17, widths with and without a 16-lane tail, a prefix,
  // both forms, FP32/BF16 attention, the reference op sequence, FP8 wkv_b, scores from tiny to
  // overflowing (exp underflows to subnormals and 0).
  std::size_t checked = 0;
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    for (int heads : {1, 3, 4, 7})
      for (std::size_t T : {1u, 2u, 9u, 17u}) {
        MlaSpec s = small_spec();
        s.heads = heads;
        if (T == 9) {  // widths off the 16 lanes
          s.kv_lora = 37;
          s.nope = 5;
          s.v = 19;
          s.rope = 6;
        }
        for (int variant = 0; variant < 4; ++variant) {
          MlaSpec sp = s;
          if (variant == 1) sp.attn = MatmulFormat::Bf16;
          if (variant == 2) {
            sp.attn = MatmulFormat::Bf16;
            sp.attn_ops = AttnOps::DeepseekReference;
          }
          if (variant == 3 && s.kv_lora % 128 == 0) sp.wkv_b = MatmulFormat::Fp8;
          const MlaWeights w = init_weights(sp, 20 + heads);
          const std::uint64_t seed = 100 * heads + T + 10 * variant;
          for (double width : {0.01, 4.0, 60.0})
            for (bool with_prefix : {false, true}) {
              const bool hostile = width == 60.0;
              const Projected p = hostile_projected(sp, T, seed, width, hostile);
              const Projected pre = hostile_projected(sp, 3, seed + 5, width, false);
              const Projected* prefix = with_prefix ? &pre : nullptr;
              for (Form f : {Form::Absorbed, Form::Naive}) {
                std::vector<double> bound;
                const std::vector<float> fast = attention(p, w, sp, f, nullptr, prefix);
                const std::vector<float> rows = attention(p, w, sp, f, &bound, prefix);
                ASSERT_TRUE(same_values(fast, rows, "attn"))
                    << isa_name(isa) << " heads " << heads << " T " << T << " variant " << variant << " width " << width
                    << " prefix " << with_prefix << " form " << form_name(f);
                checked += fast.size();
              }
            }
        }
      }
  }
  EXPECT_GT(checked, 20000u);
}

TEST(MlaWeightCache, InPlaceWritesAreSeenAndTheCacheStaysBounded) {
  // FP8 projections and an FP8 wkv_b quantised from w.wkv_b: their quantised weights are kept
  // between calls, keyed by the values. A second call hits; a write into the viewed memory (a sign,
  // one ulp) gives what a fresh process would compute with the written weights.
  MlaSpec s = small_spec();
  s.wq_a = s.wq_b = s.wkv_a = s.wo = s.wkv_b = MatmulFormat::Fp8;
  const MlaWeights w = init_weights(s, 31);
  ForeignWeights fw(w);
  fw.fp8 = QTensor{};  // wkv_b_fp8 empty: wkv_b is quantised (and cached) too
  const auto x = random_input(s, 5, 32);
  clear_weight_cache();
  const ForwardResult first = forward(x.data(), 5, fw.view, s, Form::Naive, 0);
  const WeightCacheInfo after_first = weight_cache_info();
  EXPECT_EQ(after_first.entries, 5u);  // wq_a, wq_b, wkv_a, wo, wkv_b
  const ForwardResult again = forward(x.data(), 5, fw.view, s, Form::Naive, 0);
  EXPECT_EQ(weight_cache_info().hits, after_first.hits + 5);
  EXPECT_TRUE(same_bits(again.out, first.out, "out"));
  struct Write {
    std::size_t tensor, index;
    bool ulp;
  };
  const Write writes[] = {{7, 11, false}, {2, 0, true}, {6, 3, false}, {4, w.wkv_a.size() - 1, true}, {0, 77, true}};
  for (const Write& wr : writes) {
    float& v = fw.store[wr.tensor][wr.index];
    v = wr.ulp ? std::nextafter(v, INFINITY) : -v;
    const ForwardResult got = forward(x.data(), 5, fw.view, s, Form::Naive, 0);
    MlaWeights fresh = w;  // the written weights in a fresh MlaWeights, with an empty cache
    fresh.wq_a = fw.store[0];
    fresh.wq_b = fw.store[2];
    fresh.wkv_a = fw.store[4];
    fresh.wkv_b = fw.store[6];
    fresh.wo = fw.store[7];
    fresh.wkv_b_fp8 = QTensor{};
    clear_weight_cache();
    const ForwardResult want = forward(x.data(), 5, fresh, s, Form::Naive, 0);
    EXPECT_TRUE(same_bits(got.out, want.out, "out")) << "tensor " << wr.tensor << " element " << wr.index;
    EXPECT_TRUE(same_bits(got.attn, want.attn, "attn")) << "tensor " << wr.tensor << " element " << wr.index;
  }
  // Bounded: many layers' weights never hold more than the limits.
  for (int seed = 0; seed < 24; ++seed) {
    const MlaWeights other = init_weights(s, 1000 + seed);
    (void)forward(x.data(), 1, other, s, Form::Absorbed, 0);
    const WeightCacheInfo info = weight_cache_info();
    ASSERT_LE(info.entries, kWeightCacheEntries);
    ASSERT_LE(info.bytes, kWeightCacheBytes);
  }
  EXPECT_EQ(weight_cache_info().entries, kWeightCacheEntries);
  clear_weight_cache();
  EXPECT_EQ(weight_cache_info().entries, 0u);
  EXPECT_EQ(weight_cache_info().bytes, 0u);
}

TEST(MlaWeightCache, FingerprintSeesEveryOneElementChange) {
  // Odd and even lengths, across the chunk boundary (2^18 words = 2^19 floats); each element
  // changed alone (sign, one ulp, +0 to -0) changes the fingerprint, and it is the same on 1 and 2
  // threads.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{16}, (std::size_t{1} << 19) + 3}) {
    std::vector<float> v = uniform_values(n, n + 1, 2.0);
    if (n > 2) v[2] = 0.0f;
    set_num_threads(1);
    const std::uint64_t one = weights_fingerprint(v.data(), n);
    set_num_threads(2);
    const std::uint64_t base = weights_fingerprint(v.data(), n);
    set_num_threads(0);
    EXPECT_EQ(one, base) << n;
    const std::size_t step = n > 1000 ? 4099 : 1;
    for (std::size_t i = 0; i < n; i += step)
      for (int kind = 0; kind < 2; ++kind) {
        const float old = v[i];
        v[i] = kind == 0 ? -old : std::nextafter(old, INFINITY);
        ASSERT_NE(weights_fingerprint(v.data(), n), base) << "n " << n << " element " << i << " kind " << kind;
        v[i] = old;
      }
    if (n > 0) {  // the last element (the odd tail) too
      const float old = v[n - 1];
      v[n - 1] = -old;
      EXPECT_NE(weights_fingerprint(v.data(), n), base);
      v[n - 1] = old;
    }
  }
}

TEST(MlaForward, HeadGroupsAcrossTokenChunksEqualTheRowByRowPath) {
  // attend_all takes the absorbed form's W_UV over chunks of 128 tokens: 130 and 257 tokens (a
  // last chunk of 2 and 1), with a prefix, FP32 and BF16 attention, against the row-by-row path.
  for (std::size_t T : {130u, 257u})
    for (MatmulFormat attn : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
      MlaSpec s = small_spec();
      s.heads = 5;
      s.attn = attn;
      const MlaWeights w = init_weights(s, 77);
      const Projected p = hostile_projected(s, T, T + 3, 3.0, true);
      const Projected pre = hostile_projected(s, 4, T + 9, 3.0, false);
      for (Form f : {Form::Absorbed, Form::Naive}) {
        std::vector<double> bound;
        ASSERT_TRUE(same_values(attention(p, w, s, f, nullptr, &pre), attention(p, w, s, f, &bound, &pre), "attn"))
            << "T " << T << " form " << form_name(f);
      }
    }
}

TEST(MlaWeightCache, ForkedChildWhileAnotherThreadUsesTheCache) {
  // fork() while another thread is inside the cache (its mutex possibly held): the child's cache is
  // unlocked and usable (pthread_atfork), not a deadlock (alarm: 30 s). What a call does besides
  // the cache runs here once first: a fork while the other thread is inside some function's first
  // call (a lazy static's initialisation, e.g. scale_rule_schema()'s) leaves the child waiting on
  // that guard forever, the hazard of fork() in any threaded program, not the cache's. The cache
  // itself is made when the library loads (weight_cache.cpp), so its first use cannot race a fork.
  const std::vector<float> wt = uniform_values(128 * 256, 5, 1.0);
  const OperandRecipe& op = gemm_recipe(kFp8LinearRecipe).b;
  (void)weights_fingerprint(wt.data(), wt.size());
  (void)op.rule.to_json();
  (void)quantize_operand(wt.data(), 128, 256, op);
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    std::vector<float> other = wt;
    for (std::size_t i = 0; !stop.load(); ++i) {
      other[i % other.size()] = -other[i % other.size()];  // new values: misses that insert and evict
      (void)quantized_weights(other, 128, 256, op);
    }
  });
  for (int i = 0; i < 50; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      alarm(30);
      const auto q = quantized_weights(wt, 128, 256, op);
      _exit(q->rows == 128 && weight_cache_info().entries >= 1 ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "fork " << i << " status " << status;
  }
  stop.store(true);
  busy.join();
}

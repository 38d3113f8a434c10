// quant: hand-worked scale and element values per rule (hex floats), the sources' special cases,
// the fast encoder against formats' encode(), JSON round trips, thread-count independence, errors.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "common/parallel.hpp"
#include "quant/quantize.hpp"

namespace fp8lab {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::uint32_t fbits(float f) { return std::bit_cast<std::uint32_t>(f); }

QTensor q1(std::vector<float> row, const char* rule, const char* fmt = "e4m3", std::size_t width = 128) {
  row.resize(width, 0.0f);
  return quantize(row.data(), 1, width, Tile{1, width}, fmt, scale_rule_by_name(rule));
}

// ---- hand-worked values ----
TEST(QuantRules, DeepseekDividesAndSaturates) {
  // amax 3136 = 448 * 7: s = 7 exactly; 10.9375 / 7 = 1.5625, an E4M3 tie -> even 1.5 (0x3C).
  auto q = q1({3136.0f, 10.9375f, -3136.0f}, "deepseek");
  EXPECT_EQ(q.scales[0], 7.0f);
  EXPECT_EQ(q.bits[0], 0x7Eu);  // 448
  EXPECT_EQ(q.bits[1], 0x3Cu);
  EXPECT_EQ(q.bits[2], 0xFEu);  // -448
  EXPECT_TRUE(q.scale_bits_ue8m0.empty());
}

TEST(QuantRules, DeepgemmMultipliesByTheRoundedReciprocal) {
  // fl32(1/7) = 0x1.24924ap-3 > 1/7, so 10.9375 * fl32(1/7) = 0x1.900002p+0 rounds up to 1.625 (0x3D).
  auto q = q1({3136.0f, 10.9375f}, "deepgemm");
  EXPECT_EQ(q.scales[0], 7.0f);
  EXPECT_EQ(1.0f / 7.0f, 0x1.24924ap-3f);
  EXPECT_EQ(10.9375f * (1.0f / 7.0f), 0x1.900002p+0f);
  EXPECT_EQ(q.bits[1], 0x3Du);
}

TEST(QuantRules, AmaxFloorIsTheFloat32Epsilon) {
  // An all-zero tile: amax floors to fl32(1e-4) = 0x1.a36e2ep-14; s = that / 448.
  auto q = q1({}, "deepseek");
  EXPECT_EQ(q.scales[0], 0x1.a36e2ep-14f / 448.0f);
  EXPECT_EQ(q.bits[0], 0x00u);
  // DeepGEMM ue8m0: 0x1.a36e2ep-14 / 448 = 0x1.df6...p-23 -> exponent bits + 1 -> 2^-22, byte 105.
  auto g = q1({}, "deepgemm_ue8m0");
  EXPECT_EQ(g.scales[0], 0x1p-22f);
  EXPECT_EQ(g.scale_bits_ue8m0[0], 105u);
}

TEST(QuantRules, UE8M0CeilingsAreExactAtPowersOfTwo) {
  // amax = 448 * 2^-5 -> s = 2^-5 exactly: both ceilings keep it; elements keep 448 -> 0x7E.
  for (const char* r : {"deepseek_ue8m0", "deepgemm_ue8m0", "flashmla_cache"}) {
    auto q = q1({14.0f, 7.0f}, r);
    EXPECT_EQ(q.scales[0], 0x1p-5f) << r;
    EXPECT_EQ(q.bits[0], 0x7Eu) << r;
    EXPECT_EQ(q.bits[1], 0x76u) << r;  // 224 = 1.75 * 2^7: field 14, mantissa 110
  }
  // One ulp above: 14 * (1 + 2^-23) / 448 is above 2^-5, so the ceiling is 2^-4.
  auto q = q1({std::nextafter(14.0f, 100.0f)}, "deepseek_ue8m0");
  EXPECT_EQ(q.scales[0], 0x1p-4f);
  EXPECT_EQ(q.bits[0], 0x76u);  // 224.00002 -> 224
}

TEST(QuantRules, FlashmlaFloorsTheScaleNotTheAmax) {
  auto fm = q1({1e-3f}, "flashmla_cache");
  auto ds = q1({1e-3f}, "deepseek_ue8m0");
  EXPECT_EQ(fm.scales[0], 0x1p-13f);  // max(1e-3/448, 1e-4) = 1e-4 -> 2^-13
  EXPECT_EQ(ds.scales[0], 0x1p-18f);  // 1e-3/448 = 2.23e-6 -> 2^-18
  EXPECT_EQ(fm.bits[0], 0x50u);       // 8.19 -> 8
  EXPECT_EQ(ds.bits[0], 0x78u);       // 262.1 -> 256
}

TEST(QuantRules, TransformerEngineScaleAndSpecialCases) {
  // 448 / 1344 = fl32(1/3) = 0x1.555556p-2; mantissa cleared -> 0.25; stored inverse 4.
  // 1344 * 0.25 = 336, an E4M3 tie between 320 (0x7A) and 352 -> 0x7A.
  auto te = q1({1344.0f}, "te");
  EXPECT_EQ(te.scales[0], 4.0f);
  EXPECT_EQ(te.bits[0], 0x7Au);
  auto t32 = q1({1344.0f}, "te_fp32");
  EXPECT_EQ(t32.scales[0], 1.0f / 0x1.555556p-2f);
  EXPECT_EQ(t32.bits[0], 0x7Eu);
  // amax 0 -> scale 1; amax Inf -> scale 1 (and Inf * 1 saturates to 448); NaN ignored by fmaxf.
  EXPECT_EQ(q1({}, "te").scales[0], 1.0f);
  auto inf = q1({kInf, 2.0f}, "te");
  EXPECT_EQ(inf.scales[0], 1.0f);
  EXPECT_EQ(inf.bits[0], 0x7Eu);
  EXPECT_EQ(inf.bits[1], 0x40u);
  auto nan = q1({kNaN, 448.0f}, "te");
  EXPECT_EQ(nan.scales[0], 1.0f);
  EXPECT_EQ(nan.bits[0], 0x7Fu);
  // A subnormal amax: 448 / 1e-40 overflows -> FLT_MAX -> mask -> 2^127; stored 2^-127.
  auto tiny = q1({1e-40f}, "te");
  EXPECT_EQ(tiny.scales[0], 0x1p-127f);
  auto tiny32 = q1({1e-40f}, "te_fp32");
  EXPECT_EQ(tiny32.scales[0], 1.0f / FLT_MAX);
}

TEST(QuantRules, VllmClampsBeforeThePytorchCast) {
  // amax Inf: s = Inf; finite / Inf = 0, Inf / Inf = NaN (clamp keeps NaN).
  auto q = q1({kInf, 1.0f}, "vllm");
  EXPECT_TRUE(std::isinf(q.scales[0]));
  EXPECT_EQ(q.bits[0], 0x7Fu);
  EXPECT_EQ(q.bits[1], 0x00u);
  // Tiny amax: eps 1e-10 (float32) floors it.
  EXPECT_EQ(q1({1e-12f}, "vllm").scales[0], 1e-10f / 448.0f);
}

TEST(QuantRules, DeepgemmNanPropagatesAndTheExponentTrickClamps) {
  auto g = q1({1.0f, kNaN}, "deepgemm_ue8m0");
  EXPECT_EQ(g.scale_bits_ue8m0[0], 254u);
  EXPECT_EQ(g.scales[0], 0x1p127f);
  auto d = q1({1.0f, kNaN}, "deepseek");  // Triton's max skips NaN
  EXPECT_EQ(d.scales[0], 1.0f / 448.0f);
  EXPECT_EQ(d.bits[0], 0x7Eu);
  EXPECT_EQ(d.bits[1], 0x7Fu);
}

TEST(QuantRules, MxSharedExponent) {
  // amax 384 = 1.5 * 2^8: floor(log2) - emax(e4m3) = 8 - 8 = 0 -> X = 1, byte 127.
  auto a = q1({384.0f, 500.0f / 2}, "mx", "e4m3", 32);
  EXPECT_EQ(a.scale_bits_ue8m0[0], 127u);
  // amax 500: X = 1 and 500 saturates to 448 (MX clamps to max normal).
  auto b = q1({500.0f}, "mx", "e4m3", 32);
  EXPECT_EQ(b.scales[0], 1.0f);
  EXPECT_EQ(b.bits[0], 0x7Eu);
  // E2M1 (emax 2): amax 6 -> X = 2^0; 5 -> 4 or 6 tie -> even (4, 0b110? 4 = 1.0 * 2^2: 0x6).
  auto c = q1({6.0f, 5.0f}, "mx", "e2m1", 32);
  EXPECT_EQ(c.scales[0], 1.0f);
  EXPECT_EQ(c.bits[0], 0x7u);
  EXPECT_EQ(c.bits[1], 0x6u);
  // All zero -> smallest exponent 2^-127 (byte 0); NaN or Inf -> NaN scale (0xFF).
  EXPECT_EQ(q1({}, "mx", "e4m3", 32).scale_bits_ue8m0[0], 0u);
  auto n = q1({kInf}, "mx", "e4m3", 32);
  EXPECT_EQ(n.scale_bits_ue8m0[0], 0xFFu);
  EXPECT_TRUE(std::isnan(n.scales[0]));
  EXPECT_TRUE(std::isnan(n.value(0, 1)));
}

TEST(QuantRules, QuantiseOfDequantiseKeepsValuesNotAlwaysBits) {
  // amax 7.1875 = 230 * 2^-5: s = 2^ceil(log2(7.1875 / 448)) = 2^-5, 230 rounds to 224 (0x76),
  // dequantised 7.0. Re-quantised: amax 7 -> s = 2^ceil(log2(7 / 448)) = 2^-6 exactly, element 448
  // (0x7E): another code and scale, the same value (prop_quant checks the value law in general).
  auto q = q1({7.1875f}, "deepseek_ue8m0");
  EXPECT_EQ(q.scales[0], 0x1p-5f);
  EXPECT_EQ(q.bits[0], 0x76u);
  const std::vector<float> d = dequantize_fp32(q);
  EXPECT_EQ(d[0], 7.0f);
  auto q2 = quantize(d.data(), 1, 128, Tile{1, 128}, "e4m3", scale_rule_by_name("deepseek_ue8m0"));
  EXPECT_EQ(q2.scales[0], 0x1p-6f);
  EXPECT_EQ(q2.bits[0], 0x7Eu);
  EXPECT_EQ(dequantize(q2), dequantize(q));
}

// ---- tiling ----
TEST(QuantTiling, RaggedEdgeTilesUseTheirValidElements) {
  // 3 x 5 in 2 x 2 tiles: the bottom-right tile is the single element [2, 4].
  std::vector<float> x(15);
  for (int i = 0; i < 15; ++i) x[i] = static_cast<float>(i + 1);
  auto q = quantize(x.data(), 3, 5, Tile{2, 2}, "e4m3", scale_rule_by_name("deepseek"));
  ASSERT_EQ(q.scales.size(), 6u);
  EXPECT_EQ(q.scales[0], 7.0f / 448.0f);   // max of 1, 2, 6, 7
  EXPECT_EQ(q.scales[2], 10.0f / 448.0f);  // max of 5, 10
  EXPECT_EQ(q.scales[5], 15.0f / 448.0f);  // 15 alone
  auto pt = quantize(x.data(), 3, 5, Tile{0, 0}, "e4m3", scale_rule_by_name("deepseek"));
  ASSERT_EQ(pt.scales.size(), 1u);
  auto pr = quantize(x.data(), 3, 5, Tile{1, 0}, "e4m3", scale_rule_by_name("deepseek"));
  ASSERT_EQ(pr.scales.size(), 3u);
  EXPECT_EQ(pr.scales[1], 10.0f / 448.0f);
}

TEST(QuantTiling, ResultDoesNotDependOnThreadCount) {
  std::mt19937 g(7);
  std::normal_distribution<float> n(0.0f, 3.0f);
  std::vector<float> x(513 * 300);
  for (auto& v : x) v = n(g);
  x[1234] = kNaN;
  for (const auto& name : scale_rule_names()) {
    const ScaleRule& rule = scale_rule_by_name(name);
    const Tile t = rule.tile_elements == 32 ? Tile{1, 32} : rule.two_level() ? Tile{16, 16} : Tile{128, 128};
    set_num_threads(1);
    auto a = quantize(x.data(), 513, 300, t, "e4m3", scale_rule_by_name(name));
    set_num_threads(4);
    auto b = quantize(x.data(), 513, 300, t, "e4m3", scale_rule_by_name(name));
    set_num_threads(0);
    EXPECT_EQ(a.bits, b.bits) << name;
    EXPECT_EQ(a.scale_bits_ue8m0, b.scale_bits_ue8m0) << name;
    ASSERT_EQ(a.scales.size(), b.scales.size());
    for (std::size_t i = 0; i < a.scales.size(); ++i) EXPECT_EQ(fbits(a.scales[i]), fbits(b.scales[i])) << name;
  }
}

// ---- specs ----
TEST(QuantSpec, EveryNamedRuleRoundTripsThroughJson) {
  for (const auto& name : scale_rule_names()) {
    const ScaleRule& r = scale_rule_by_name(name);
    EXPECT_EQ(scale_rule_from_json(r.to_json()), r) << name;
    EXPECT_FALSE(r.source.empty()) << name;
  }
  EXPECT_NE(scale_rule_by_name("deepseek").to_json().find("\"epsilon_hex\":\"0x1.a36e2ep-14\""), std::string::npos);
}

TEST(QuantSpec, RetileKeepsACustomRule) {
  ScaleRule r = scale_rule_by_name("deepgemm_ue8m0");
  r.name = "my_kernel";
  std::vector<float> x(256 * 4, 1.5f);
  auto q = quantize(x.data(), 4, 256, Tile{1, 128}, "e4m3", r);
  auto t = retile(q, Tile{4, 1});
  EXPECT_EQ(t.rule, "my_kernel");
  EXPECT_EQ(dequantize(t), dequantize(q));
}

// ---- errors ----
TEST(QuantErrors, NameTheArgument) {
  std::vector<float> x(64, 1.0f);
  auto expect_msg = [](auto&& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no exception; wanted one mentioning " << part;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { scale_rule_by_name("deep_seek"); }, "valid rules: deepseek");
  expect_msg([&] { quantize(x.data(), 1, 64, Tile{1, 64}, "e4m3", scale_rule_by_name("mx")); }, "exactly 32 elements");
  expect_msg([&] { quantize(static_cast<const float*>(nullptr), 1, 64, Tile{1, 64}, "e4m3", scale_rule_by_name("te")); },
             "x: null pointer");
  expect_msg([&] { quantize(x.data(), 1, 64, Tile{1, 64}, "e4m4x", scale_rule_by_name("te")); }, "e4m4x");
  ScaleRule bad = scale_rule_by_name("deepseek");
  bad.storage = ScaleStorage::Ue8m0;
  expect_msg([&] { quantize(x.data(), 1, 64, Tile{1, 64}, "e4m3", bad); }, "storage 'ue8m0'");
  expect_msg([&] { scale_rule_from_json(R"({"apply":"divide","form":"fmax_over_amax"})"); }, "does not fit form");
  expect_msg([&] { scale_rule_from_json(R"({"colour":"red"})"); }, "unknown key 'colour'");
  const double d[2] = {0.1, 1.0};
  expect_msg([&] { quantize(d, 1, 2, Tile{1, 2}, "e4m3", scale_rule_by_name("te")); }, "element [0, 0]");
  QTensor q = quantize(x.data(), 1, 64, Tile{1, 64}, "e4m3", scale_rule_by_name("deepseek"));
  q.scales.pop_back();
  expect_msg([&] { dequantize(q); }, "scales, expected 1");
}

// The old dequantisation, element by element: T(decode(bits)) * T(tile scale) * T(global scale).
template <class T>
std::vector<T> statement_dequantize(const QTensor& q) {
  std::vector<T> out(q.rows * q.cols);
  for (std::size_t r = 0; r < q.rows; ++r)
    for (std::size_t c = 0; c < q.cols; ++c)
      out[r * q.cols + c] = static_cast<T>(decode(q.bits[r * q.cols + c], q.format())) *
                            static_cast<T>(q.dequant_scale(r, c)) * static_cast<T>(q.global_scale);
  return out;
}

template <class T>
::testing::AssertionResult same_values(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(got[i]) !=
            std::bit_cast<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>(want[i]) &&
        !(std::isnan(got[i]) && std::isnan(want[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << " vs " << want[i];
  return ::testing::AssertionSuccess();
}

TEST(QuantDequantize, DequantizeTableIsThePerElementStatement) {
  // dequantize / dequantize_fp32 (a table of every pattern, one scale per tile) against the
  // per-element statement, bit for bit: every format up to 16 bits, every pattern (NaN and Inf
  // codes, +-0, subnormals, max-finite), scales 0, subnormal, huge, Inf and NaN, global scales 1
  // and 0.37, tiles 1x128, 128x128, 7x5, per-row and per-tensor, shapes empty, 1x1, ragged and
  // smaller than the table (the per-element branch).
  std::mt19937 rng(15);
  const float special_scales[] = {0.0f, 0x1p-140f, 3.4e38f, kInf, kNaN, -2.5f, 1.0f};
  const Tile tiles[] = {{1, 128}, {128, 128}, {7, 5}, {1, 0}, {0, 0}};
  const std::size_t shapes[][2] = {{0, 0}, {1, 1}, {3, 300}, {129, 17}, {260, 260}};
  std::size_t checked = 0;
  for (const std::string& name : format_names()) {
    const Format& f = format_by_name(name);
    if (f.total_bits() > 16) continue;
    const std::uint32_t limit = (1u << f.total_bits()) - 1u;
    for (const Tile& tile : tiles)
      for (const auto& shape : shapes)
        for (float global : {1.0f, 0.37f}) {
          QTensor q;
          q.rows = shape[0];
          q.cols = shape[1];
          q.fmt = name;
          q.tile = tile;
          q.rule = "deepseek";
          q.global_scale = global;
          std::vector<std::uint32_t> pats(q.rows * q.cols);
          for (std::size_t i = 0; i < pats.size(); ++i) pats[i] = i % 3 == 0 ? (i / 3) & limit : rng() & limit;
          q.bits = ElementBits::from_values(pats.begin(), pats.end(), f.storage_bits());
          q.scales.resize(q.tile_grid_rows() * q.tile_grid_cols());
          for (std::size_t i = 0; i < q.scales.size(); ++i)
            q.scales[i] = i % 4 == 1 ? special_scales[(i / 4) % std::size(special_scales)]
                                     : std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 999.0f, static_cast<int>(rng() % 40) - 20);
          ASSERT_TRUE(same_values(dequantize(q), statement_dequantize<double>(q)))
              << name << " tile " << tile.rows << "x" << tile.cols << " shape " << q.rows << "x" << q.cols;
          ASSERT_TRUE(same_values(dequantize_fp32(q), statement_dequantize<float>(q)))
              << name << " fp32, tile " << tile.rows << "x" << tile.cols << " shape " << q.rows << "x" << q.cols;
          checked += pats.size();
        }
  }
  EXPECT_GT(checked, 500000u);
}

}  // namespace
}  // namespace fp8lab

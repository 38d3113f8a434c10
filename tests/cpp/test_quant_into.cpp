// The quantiser's paths against each other and against a per-element reference: quantize() (a
// QTensor) and quantize_into() (caller memory, storage-width bits) for every rule, tile shape and
// element format the rule takes, on matrices with zeros, NaN and infinities, including a band too
// tall for the fused pass (the three-pass fallback); and, for the single-level rules with
// nearest-even casts, the reference written from the rules' definition: the tile's amax by
// amax_step over its elements, compute_tile_scale, apply_scale, the clamp, then encode() per element.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "common/isa.hpp"
#include "quant/quantize.hpp"

namespace fp8lab {
namespace {

std::vector<float> matrix(std::size_t rows, std::size_t cols, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const float row_scale = std::ldexp(1.0f, static_cast<int>(g() % 24) - 12);
    for (std::size_t c = 0; c < cols; ++c) x[r * cols + c] = n(g) * row_scale;
  }
  if (x.size() > 400) {
    x[5] = std::numeric_limits<float>::quiet_NaN();
    x[301] = std::numeric_limits<float>::infinity();
    x[302] = -std::numeric_limits<float>::infinity();
    for (std::size_t c = 0; c < cols && c < 64; ++c) x[(rows / 2) * cols + c] = 0.0f;
  }
  return x;
}

template <class T>
bool same_bits(const std::vector<T>& a, const T* b) {
  return std::memcmp(a.data(), b, a.size() * sizeof(T)) == 0;
}

// quantize_into's bits, scales and scale bytes equal the QTensor's; returns false if the rule
// refused the tile (both paths must then refuse).
bool expect_paths_agree(const std::vector<float>& x, std::size_t rows, std::size_t cols, Tile tile, const std::string& fmt,
                        const ScaleRule& rule) {
  QTensor q;
  try {
    q = quantize(x.data(), rows, cols, tile, fmt, rule);
  } catch (const std::invalid_argument&) {
    std::vector<std::uint32_t> bits(rows * cols);
    std::vector<float> scales(rows * cols + 1);
    std::vector<std::uint8_t> bytes(rows * cols + 1);
    EXPECT_THROW(quantize_into(x.data(), rows, cols, tile, fmt, rule, {bits.data(), 32, scales.data(), bytes.data()}),
                 std::invalid_argument);
    return false;
  }
  const Format& f = format_by_name(fmt);
  std::vector<std::uint8_t> out(rows * cols * (f.storage_bits() / 8));
  std::vector<float> scales(q.scales.size());
  std::vector<std::uint8_t> bytes(q.scales.size());
  const float global = quantize_into(x.data(), rows, cols, tile, fmt, rule, {out.data(), f.storage_bits(), scales.data(), bytes.data()});
  const std::string what = rule.name + " " + fmt + " tile (" + std::to_string(tile.rows) + ", " + std::to_string(tile.cols) + ")";
  for (std::size_t i = 0; i < q.bits.size(); ++i) {
    const std::uint32_t got = f.storage_bits() == 8 ? out[i] : f.storage_bits() == 16 ? reinterpret_cast<const std::uint16_t*>(out.data())[i]
                                                                                        : reinterpret_cast<const std::uint32_t*>(out.data())[i];
    if (got != q.bits[i]) {
      ADD_FAILURE() << what << ": element " << i << " " << got << " vs QTensor " << q.bits[i];
      return true;
    }
  }
  EXPECT_TRUE(same_bits(q.scales, scales.data())) << what;
  if (!q.scale_bits_ue8m0.empty()) {
    EXPECT_TRUE(same_bits(q.scale_bits_ue8m0, bytes.data())) << what;
  }
  EXPECT_EQ(std::bit_cast<std::uint32_t>(global), std::bit_cast<std::uint32_t>(q.global_scale)) << what;
  return true;
}

TEST(QuantizeInto, EveryRuleTileAndFormatGivesTheQTensorsBits) {
  const std::size_t rows = 67, cols = 300;
  const std::vector<float> x = matrix(rows, cols, 1);
  int checked = 0;
  for (const std::string& name : scale_rule_names()) {
    const ScaleRule& rule = scale_rule_by_name(name);
    for (const char* fmt : {"e4m3", "e5m2", "e2m1", "e3m2fn", "ue8m0"})
      for (const Tile tile : {Tile{1, 128}, Tile{128, 128}, Tile{1, 32}, Tile{1, 16}, Tile{16, 16}, Tile{0, 0}, Tile{1, 0},
                              Tile{128, 1}, Tile{3, 5}, Tile{32, 1}}) {
        std::vector<float> xs = x;
        if (!format_by_name(fmt).is_signed)
          for (float& v : xs) v = std::fabs(v);
        checked += expect_paths_agree(xs, rows, cols, tile, fmt, rule);
      }
  }
  EXPECT_GT(checked, 100);
}

// The reference: one tile at a time, one element at a time.
void reference(const std::vector<float>& x, std::size_t rows, std::size_t cols, Tile tile, const Format& f,
               const ScaleRule& rule, std::vector<std::uint32_t>& bits, std::vector<float>& scales) {
  const std::size_t tr = tile.rows ? tile.rows : rows, tc = tile.cols ? tile.cols : cols;
  const std::size_t gr = (rows + tr - 1) / tr, gc = (cols + tc - 1) / tc;
  bits.assign(rows * cols, 0);
  scales.assign(gr * gc, 0.0f);
  EncodeOptions cast;
  cast.overflow = rule.cast_overflow;
  const auto fmax = static_cast<float>(f.max_finite());
  for (std::size_t br = 0; br < gr; ++br)
    for (std::size_t bc = 0; bc < gc; ++bc) {
      float amax = 0.0f;
      for (std::size_t r = br * tr; r < std::min(rows, (br + 1) * tr); ++r)
        for (std::size_t c = bc * tc; c < std::min(cols, (bc + 1) * tc); ++c) amax = amax_step(amax, x[r * cols + c], rule.amax_nan);
      const TileScale s = compute_tile_scale(amax, rule, f);
      scales[br * gc + bc] = s.dequant;
      for (std::size_t r = br * tr; r < std::min(rows, (br + 1) * tr); ++r)
        for (std::size_t c = bc * tc; c < std::min(cols, (bc + 1) * tc); ++c) {
          float v = apply_scale(x[r * cols + c], s, rule.apply);
          if (rule.clamp_before_cast) v = v < -fmax ? -fmax : (v > fmax ? fmax : v);
          bits[r * cols + c] = encode(static_cast<double>(v), f, cast);
        }
    }
}

TEST(QuantizeInto, SingleLevelRulesMatchThePerElementReference) {
  const std::size_t rows = 260, cols = 384;
  const std::vector<float> x = matrix(rows, cols, 3);
  int checked = 0;
  for (const std::string& name : scale_rule_names()) {
    const ScaleRule& rule = scale_rule_by_name(name);
    if (rule.two_level() || rule.four_over_six || rule.cast_rounding != CastRounding::NearestEven) continue;
    for (const Tile tile : {Tile{1, 128}, Tile{128, 128}, Tile{1, 32}, Tile{0, 0}}) {
      QTensor q;
      try {
        q = quantize(x.data(), rows, cols, tile, "e4m3", rule);
      } catch (const std::invalid_argument&) {
        continue;  // a tile this rule does not take
      }
      std::vector<std::uint32_t> bits;
      std::vector<float> scales;
      reference(x, rows, cols, tile, format_by_name("e4m3"), rule, bits, scales);
      EXPECT_EQ(q.bits.words(), bits) << name;
      ASSERT_EQ(q.scales.size(), scales.size());
      for (std::size_t i = 0; i < scales.size(); ++i)
        EXPECT_TRUE(q.scales[i] == scales[i] || (std::isnan(q.scales[i]) && std::isnan(scales[i]))) << name << " tile " << i;
      ++checked;
    }
  }
  EXPECT_GE(checked, 20);
}

TEST(QuantizeInto, BandsTooTallForTheFusedPassTakeThreePassesWithTheSameBits) {
  const std::size_t rows = 130, cols = 8200;  // a 128-row band of 1.05 M elements
  const std::vector<float> x = matrix(rows, cols, 2);
  for (const char* name : {"deepseek", "deepseek_ue8m0", "te"}) {
    const ScaleRule& rule = scale_rule_by_name(name);
    EXPECT_TRUE(expect_paths_agree(x, rows, cols, Tile{128, 128}, "e4m3", rule));
    const QTensor q = quantize(x.data(), rows, cols, Tile{128, 128}, "e4m3", rule);
    std::vector<std::uint32_t> bits;
    std::vector<float> scales;
    reference(x, rows, cols, Tile{128, 128}, format_by_name("e4m3"), rule, bits, scales);
    EXPECT_EQ(q.bits.words(), bits) << name;
    for (std::size_t i = 0; i < scales.size(); ++i)
      EXPECT_TRUE(q.scales[i] == scales[i] || (std::isnan(q.scales[i]) && std::isnan(scales[i]))) << name << " tile " << i;
  }
}

TEST(QuantizeInto, ErrorsNameOut) {
  const std::vector<float> x(256, 1.0f);
  std::vector<std::uint8_t> bits(256);
  std::vector<float> scales(2);
  const ScaleRule& rule = scale_rule_by_name("deepseek");
  try {
    quantize_into(x.data(), 2, 128, Tile{1, 128}, "e4m3", rule, {bits.data(), 16, scales.data(), nullptr});
    FAIL() << "a 16-bit destination for e4m3 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("out: elements of format e4m3 are 8 bits wide"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_into(x.data(), 2, 128, Tile{1, 128}, "e4m3", rule, {bits.data(), 8, nullptr, nullptr}),
               std::invalid_argument);
  EXPECT_THROW(quantize_into(x.data(), 2, 128, Tile{1, 128}, "e4m3", scale_rule_by_name("deepgemm_ue8m0"),
                             {bits.data(), 8, scales.data(), nullptr}),
               std::invalid_argument);
}

// A QTensor keeps its patterns at the format's storage width (1 byte for 8-bit formats, 2 for
// bf16/fp16, 4 for fp32), written by the same fused pass as quantize_into, so both give the same
// bits, on every dispatch variant this CPU runs, for matrices holding zeros, float32 subnormals,
// max-finite values, ties, NaN and Inf, with odd shapes (ragged edge tiles).
TEST(QTensorBits, StoredAtTheStorageWidthAndEqualToQuantizeIntoOnEveryVariant) {
  const std::size_t rows = 131, cols = 301;
  std::vector<float> x = matrix(rows, cols, 5);
  x[7] = std::numeric_limits<float>::denorm_min();
  x[8] = -std::numeric_limits<float>::denorm_min() * 3.0f;
  x[9] = std::numeric_limits<float>::max();
  x[10] = -std::numeric_limits<float>::max();
  for (std::size_t c = 0; c < 128; ++c) x[40 * cols + c] = 448.0f * (c % 2 ? 1.0f : -1.0f);  // amax 448: scale 1
  x[40 * cols + 1] = 1.0625f;  // halfway between E4M3 1.0 and 1.125: ties to even
  x[40 * cols + 3] = 0x1p-10f;  // halfway between 0 and the smallest E4M3 subnormal 2^-9
  for (std::size_t c = 0; c < cols; ++c) x[60 * cols + c] = 0x1p-140f;  // a row of float32 subnormals
  const struct { const char* fmt; int width; } cases[] = {{"e4m3", 8}, {"e2m1", 8}, {"e5m2", 8}, {"bf16", 16}, {"fp16", 16}};
  int checked = 0;
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    for (const auto& c : cases)
      for (const char* name : {"deepseek", "te", "deepgemm_ue8m0", "mx", "nvfp4"})
        for (const Tile tile : {Tile{1, 128}, Tile{128, 128}, Tile{1, 16}, Tile{1, 32}}) {
          const ScaleRule& rule = scale_rule_by_name(name);
          QTensor q;
          try {
            q = quantize(x.data(), rows, cols, tile, c.fmt, rule);
          } catch (const std::invalid_argument&) {
            continue;  // a tile or format this rule does not take
          }
          EXPECT_EQ(q.bits.width_bits(), c.width) << c.fmt;
          EXPECT_EQ(q.bits.size(), rows * cols) << c.fmt;
          EXPECT_NO_THROW(validate_qtensor(q));
          if (!rule.two_level()) {
            EXPECT_TRUE(expect_paths_agree(x, rows, cols, tile, c.fmt, rule)) << isa_name(isa);
          }
          ++checked;
        }
  }
  EXPECT_GE(checked, 20);
}

TEST(QTensorBits, Fp32ElementsTakeFourBytes) {
  const std::vector<float> x = matrix(3, 130, 6);
  const QTensor q = quantize(x.data(), 3, 130, Tile{1, 128}, "fp32", scale_rule_by_name("deepseek"));
  EXPECT_EQ(q.bits.width_bits(), 32);
  EXPECT_TRUE(expect_paths_agree(x, 3, 130, Tile{1, 128}, "fp32", scale_rule_by_name("deepseek")));
}

// Bad patterns are errors naming the argument: a storage width other than the format's, a pattern
// outside the format (bit 4 of an E2M1 byte), a pattern wider than its storage, an unknown width.
TEST(QTensorBits, WrongWidthsAndPatternsOutsideTheFormatAreErrors) {
  const std::vector<float> x = matrix(4, 64, 7);
  QTensor q = quantize(x.data(), 4, 64, Tile{1, 32}, "e2m1", scale_rule_by_name("mx"));
  const auto message = [&](const QTensor& t) {
    try {
      validate_qtensor(t, "w");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  QTensor wide = q;
  wide.bits = ElementBits::from_values(q.bits.begin(), q.bits.end(), 16);
  EXPECT_NE(message(wide).find("w: element patterns stored 16 bits wide, but format 'e2m1' is stored in 8-bit"), std::string::npos)
      << message(wide);
  QTensor outside = q;  // a deep copy: q stays valid
  outside.bits.set(200, 0x10);
  EXPECT_NE(message(outside).find("w: element 200 has bits above the 4-bit format 'e2m1'"), std::string::npos) << message(outside);
  EXPECT_EQ(message(q), "no error");
  EXPECT_NE(q.bits, outside.bits);
  EXPECT_THROW(q.bits.set(0, 0x100), std::invalid_argument);
  EXPECT_THROW(ElementBits(4, 12), std::invalid_argument);
  EXPECT_THROW(q.bits.data<std::uint16_t>(), std::logic_error);
}

}  // namespace
}  // namespace fp8lab

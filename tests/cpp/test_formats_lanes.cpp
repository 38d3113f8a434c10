// The casts' hot loops (formats/lanes.hpp) under every instruction-set variant this CPU runs,
// against the scalar encode()/decode() they twin: the float32 lane encoder (Encoder::encode,
// encode_array) for every format, rounding, overflow mode and flush setting, on every value of the
// small formats with its float32 neighbours and the midpoints between values (the rounding
// boundaries), specials and random bit patterns; and the 256-entry table decoder for every pattern
// of every format stored in 8 bits, as float32 and float64, bit for bit (NaN payloads included).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

#include "common/isa.hpp"
#include "formats/encode.hpp"

namespace fp8lab {
namespace {

std::vector<float> probes(const Format& f) {
  std::vector<float> x = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 0x1p-149f, -0x1p-149f, 0x1p-126f, 0x1.fffffep127f,
                          -0x1.fffffep127f, 0x1.fffffcp-127f};
  if (f.total_bits() <= 12) {
    std::vector<double> values;
    for (std::uint32_t b = 0; b < (1u << f.total_bits()); ++b)
      if (!is_nan_bits(b, f)) values.push_back(decode(b, f));
    std::sort(values.begin(), values.end());
    for (std::size_t i = 0; i < values.size(); ++i) {
      const auto v = static_cast<float>(values[i]);
      for (const float y : {v, std::nextafter(v, INFINITY), std::nextafter(v, -INFINITY)}) x.push_back(y);
      if (i + 1 < values.size()) {
        const auto mid = static_cast<float>((values[i] + values[i + 1]) / 2);  // exact: a tie
        for (const float y : {mid, std::nextafter(mid, INFINITY), std::nextafter(mid, -INFINITY)}) x.push_back(y);
      }
    }
    const auto top = static_cast<float>(f.max_finite());
    for (const float y : {top * 1.0625f, top * 1.0625f * 1.0001f, top * 2.0f}) {
      x.push_back(y);
      x.push_back(-y);
    }
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 1 << 14; ++i) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  for (int i = 0; i < 1 << 12; ++i)  // inside the format's range, where most codes are made
    x.push_back(std::ldexp(std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng),
                           std::uniform_int_distribution<int>(f.min_normal_exponent() - f.mantissa_bits - 2,
                                                              std::min(f.max_exponent() + 1, 127))(rng)));
  return x;
}

TEST(EncodeLanes, EveryVariantGivesTheScalarEncodersBits) {
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    for (const std::string& name : format_names()) {
      const Format& f = format_by_name(name);
      const std::vector<float> x = probes(f);
      for (const Rounding r : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down})
        for (const Overflow o : {Overflow::Saturate, Overflow::InfOrNan})
          for (const bool flush : {false, true}) {
            EncodeOptions opt;
            opt.rounding = r;
            opt.overflow = o;
            opt.flush_subnormals = flush;
            std::vector<std::uint32_t> got(x.size());
            Encoder(f, opt).encode_u32(x.data(), x.size(), got.data());
            std::vector<std::uint8_t> got8(x.size());
            if (f.storage_bits() == 8) encode_array(x.data(), x.size(), f, opt, got8.data());
            for (std::size_t i = 0; i < x.size(); ++i) {
              const std::uint32_t want = encode(static_cast<double>(x[i]), f, opt);
              ASSERT_EQ(got[i], want) << isa_name(isa) << " " << name << " " << rounding_name(r) << " "
                                      << overflow_name(o) << " flush " << flush << " x = " << std::hexfloat << x[i];
              if (f.storage_bits() == 8) {
                ASSERT_EQ(got8[i], want) << isa_name(isa) << " " << name << " encode_array";
              }
            }
          }
    }
  }
}

template <class Out>
void expect_table_decode_is_decode(const Format& f, const char* isa) {
  const std::uint32_t patterns = 1u << f.total_bits();
  // Every pattern, repeated past one parallel chunk (2^18 elements) so that several chunks run.
  std::vector<std::uint8_t> in((1u << 19) + 77);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::uint8_t>((i * 7) % patterns);
  std::vector<Out> got(in.size());
  decode_array(in.data(), in.size(), f, got.data());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto want = static_cast<Out>(decode(in[i], f));
    ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(Out)), 0)
        << isa << " " << f.name << " pattern " << int(in[i]) << " as " << sizeof(Out) * 8 << "-bit float";
  }
}

TEST(DecodeTable, EveryPatternOfEveryByteFormatIsDecodesBits) {
  int formats = 0;
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    for (const std::string& name : format_names()) {
      const Format& f = format_by_name(name);
      if (f.storage_bits() != 8) continue;
      ++formats;
      expect_table_decode_is_decode<float>(f, std::string(isa_name(isa)).c_str());
      expect_table_decode_is_decode<double>(f, std::string(isa_name(isa)).c_str());
    }
  }
  EXPECT_GE(formats, 8);
}

TEST(DecodeTable, PatternsWiderThanTheFormatAreStillRefused) {
  const Format& f = format_by_name("e2m1");  // 4 bits in a byte
  std::vector<std::uint8_t> in(1000, 3);
  in[700] = 0x10;
  std::vector<float> out(in.size());
  EXPECT_THROW(decode_array(in.data(), in.size(), f, out.data()), std::invalid_argument);
}

}  // namespace
}  // namespace fp8lab

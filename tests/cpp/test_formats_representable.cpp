// The branch-free representability test (formats/representable) against the encoder's round trip,
// x is a value of fmt iff decode(encode(x)) == x with overflow to Inf/NaN (NaN iff fmt has one),
// for every format of the table within float32 and every instruction-set variant: every value of
// the format and its float32 neighbours, float32 subnormals, and random float32 bit patterns.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "common/isa.hpp"
#include "formats/encode.hpp"
#include "formats/representable.hpp"

namespace fp8lab {
namespace {

bool round_trips(float x, const Format& fmt) {
  if (std::isnan(x)) return fmt.has_nan();
  EncodeOptions exact;
  exact.overflow = Overflow::InfOrNan;  // an out-of-range value must not saturate into "representable"
  return round_to_format(x, fmt, exact) == static_cast<double>(x);
}

TEST(Representable, AgreesWithTheEncoderRoundTrip) {
  for (const Isa isa : runnable_isas()) {  // every instruction-set build of the scan
    const ScopedIsa use(isa);
    std::mt19937 rng(5);
    for (const std::string& name : format_names()) {
      const Format& fmt = format_by_name(name);
      const RepresentableTest test(fmt);
      std::vector<float> probes;
      if (fmt.total_bits() <= 16)
        for (std::uint32_t b = 0; b < (1u << fmt.total_bits()); ++b) {
          const float v = static_cast<float>(decode(b, fmt));
          for (const float x : {v, std::nextafter(v, INFINITY), std::nextafter(v, -INFINITY), -v, v * 0.75f}) probes.push_back(x);
        }
      for (int i = 0; i < 200000; ++i) probes.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
      for (std::uint32_t m : {1u, 2u, 3u, 0x400000u, 0x7FFFFFu}) probes.push_back(std::bit_cast<float>(m));  // subnormals
      for (const float x : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-127f, 0x1p127f, 0x1.fffffep127f}) probes.push_back(x);
      std::size_t first = probes.size();
      for (std::size_t i = 0; i < probes.size(); ++i) {
        const bool want = round_trips(probes[i], fmt);
        ASSERT_EQ(test(probes[i]), want) << isa_name(isa) << " " << name << " x = " << std::hexfloat << probes[i];
        if (!want && first == probes.size()) first = i;
      }
      EXPECT_EQ(test.first_bad(probes.data(), probes.size()), first) << name;
    }
  }
}

TEST(Representable, RefusesFormatsWiderThanFloat32) {
  Format wide = format_by_name("fp32");
  wide.mantissa_bits = 30;
  EXPECT_THROW(RepresentableTest{wide}, std::invalid_argument);
}

}  // namespace
}  // namespace fp8lab

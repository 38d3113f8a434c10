// The semantics table and encode/decode on hand-checked values (hex floats, as APFloat's tests).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "formats/encode.hpp"
#include "formats/fnuz.hpp"

namespace fp8lab {
namespace {

const Format& F(const char* name) { return format_by_name(name); }

TEST(FormatTable, LimitsFromTheRowAlone) {
  EXPECT_EQ(F("e4m3").max_finite(), 448.0);
  EXPECT_EQ(F("e5m2").max_finite(), 57344.0);
  EXPECT_EQ(F("fp16").max_finite(), 65504.0);
  EXPECT_EQ(F("bf16").max_finite(), 0x1.FEp127);
  EXPECT_EQ(F("fp32").max_finite(), static_cast<double>(std::numeric_limits<float>::max()));
  EXPECT_EQ(F("e2m1").max_finite(), 6.0);
  EXPECT_EQ(F("ue8m0").max_finite(), 0x1p127);
  EXPECT_EQ(F("e5m6").max_finite(), 0x1.FCp15);  // 65024
  EXPECT_EQ(F("e4m3").min_positive(), 0x1p-9);
  EXPECT_EQ(F("e5m2").min_positive(), 0x1p-16);
  EXPECT_EQ(F("ue8m0").min_positive(), 0x1p-127);
  EXPECT_EQ(F("e2m1").min_positive(), 0.5);
  EXPECT_EQ(F("e4m3").canonical_nan(), 0x7Fu);
  EXPECT_EQ(F("ue8m0").canonical_nan(), 0xFFu);
  EXPECT_EQ(F("e5m6").storage_bits(), 16);
  EXPECT_EQ(F("e2m1").storage_bits(), 8);
}

TEST(FormatTable, ParsesAnyExmyAndRejectsUnknownNames) {
  const Format& f = F("e3m4");
  EXPECT_EQ(f.bias, 3);
  EXPECT_EQ(f.max_finite(), 0x1.Fp3);  // IEEE-like: top finite binade field 6, 2^(6-3); 1.1111b * 8 = 15.5
  EXPECT_THROW(F("e4m3fnu"), std::invalid_argument);
  EXPECT_THROW(F("e0m3"), std::invalid_argument);
  EXPECT_THROW(F("e8m30"), std::invalid_argument);  // 39 bits
  try {
    F("fp8");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fmt: unknown format 'fp8'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("e4m3"), std::string::npos);
  }
}

TEST(FormatTable, EveryRowIsItsSchemaAndRoundTripsThroughJson) {
  for (const Format& f : format_rows()) {
    const Format back = format_from_json(f.to_json());
    EXPECT_TRUE(back == f) << f.name;
    EXPECT_EQ(back.name, f.name);
    EXPECT_EQ(back.source, f.source);
    EXPECT_EQ(back.to_json(), f.to_json());
    EXPECT_FALSE(f.source.empty()) << f.name << " cites no source";
    EXPECT_EQ(&format_by_name(f.name), &f);
    if (!f.ml_dtypes.empty()) {
      EXPECT_EQ(&format_by_name(f.ml_dtypes), &f) << f.ml_dtypes;
    }
  }
  EXPECT_EQ(F("e4m3").to_json().find("\"nan_encoding\":\"all_ones\",\"non_finite\":\"nan_only\""),
            F("e4m3").to_json().find("\"nan_encoding\""));
}

// LLVM's fltSemantics pairs; each error names the field, the value and what it takes.
TEST(FormatTable, SchemaRejectsInconsistentRows) {
  auto error_of = [](const std::string& json) {
    try {
      format_from_json(json);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string base = R"({"name":"x","exponent_bits":4,"mantissa_bits":3,"bias":7,)";
  EXPECT_NE(error_of(base + R"("non_finite":"ieee754","nan_encoding":"all_ones"})").find("Format.nan_encoding = \"all_ones\""),
            std::string::npos);
  EXPECT_NE(error_of(base + R"("non_finite":"nan_only","nan_encoding":"ieee"})").find("Format.nan_encoding"),
            std::string::npos);
  EXPECT_NE(error_of(base + R"("non_finite":"nan_only","nan_encoding":"negative_zero","is_signed":false})")
                .find("a signed format with a zero"),
            std::string::npos);
  EXPECT_NE(error_of(base + R"("non_finite":"nan_ony"})").find("Format.non_finite: unknown value 'nan_ony'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"exponent_bits":12})").find("Format.exponent_bits = 12"), std::string::npos);
  EXPECT_NE(error_of(R"({"exponent_bits":8,"mantissa_bits":30})").find("2 to 32 bits"), std::string::npos);
  EXPECT_NE(error_of(R"({"exponent_bits":"4"})").find("Format.exponent_bits"), std::string::npos);
  EXPECT_NE(error_of(R"({"signed":true})").find("signed"), std::string::npos);  // unknown key
}

// The NegativeZero encoding, on a row declared in JSON (AMD FNUZ layout: bias 8, NaN 0x80).
TEST(FormatTable, NegativeZeroNanEncodingHasNoNegativeZero) {
  const Format f = format_from_json(
      R"({"name":"fnuz","exponent_bits":4,"mantissa_bits":3,"bias":8,"non_finite":"nan_only","nan_encoding":"negative_zero"})");
  EXPECT_EQ(f.max_finite(), 240.0);          // 0x7F = 1.875 * 2^7: the all-ones binade is finite
  EXPECT_EQ(f.min_positive(), 0x1p-10);
  EXPECT_EQ(f.canonical_nan(), 0x80u);
  EXPECT_FALSE(f.has_negative_zero());
  EXPECT_TRUE(is_nan_bits(0x80u, f));
  EXPECT_FALSE(is_nan_bits(0xFFu, f));
  EXPECT_EQ(decode(0xFFu, f), -240.0);
  EXPECT_EQ(encode(-0.0, f), 0x00u);
  EXPECT_EQ(encode(-0x1p-12, f), 0x00u);     // rounds to zero: +0, never the NaN pattern
  EncodeOptions flush;
  flush.flush_subnormals = true;
  EXPECT_EQ(encode(-0x1p-9, f, flush), 0x00u);
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  EXPECT_EQ(encode(-1e9, f, nosat), 0x80u);  // no Inf: NaN, whatever the sign
  EXPECT_EQ(encode(1e9, f), 0x7Fu);
  EXPECT_EQ(encode(-std::numeric_limits<double>::infinity(), f), 0xFFu);
  EXPECT_EQ(encode(std::numeric_limits<double>::quiet_NaN(), f), 0x80u);
  // The bulk float path (the lane twin) agrees, flush included.
  const float x[] = {-0.0f, -0x1p-12f, -0x1p-9f, -1e9f, 3.0f, -3.0f};
  std::uint8_t out[6];
  encode_array(x, 6, f, flush, out);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], encode(x[i], f, flush)) << x[i];
  EXPECT_EQ(out[2], 0x00u);
}

TEST(FormatTable, ExplicitIeeeSpellingAndMlDtypesAliases) {
  EXPECT_TRUE(F("e3m4_ieee") == F("e3m4"));
  EXPECT_EQ(F("e3m4_ieee").name, "e3m4_ieee");
  EXPECT_TRUE(F("e4m3_ieee").has_inf());  // the IEEE-like layout, not OCP E4M3
  EXPECT_EQ(F("e4m3_ieee").max_finite(), 240.0);
  EXPECT_EQ(&F("float8_e4m3fn"), &F("e4m3"));
  EXPECT_EQ(&F("bfloat16"), &F("bf16"));
}

// OCP MX v1.0 FP6: the limits and patterns written from the specification's value formula.
TEST(FormatTable, OcpFp6RowsAreFiniteOnlyAndSaturate) {
  const Format& e2m3 = F("e2m3fn");
  const Format& e3m2 = F("e3m2fn");
  EXPECT_EQ(e2m3.total_bits(), 6);
  EXPECT_EQ(e2m3.max_finite(), 7.5);        // 2^(3-1) * 1.875
  EXPECT_EQ(e2m3.min_normal(), 1.0);        // 2^(1-1)
  EXPECT_EQ(e2m3.min_positive(), 0.125);    // 2^0 * 1/8
  EXPECT_EQ(e3m2.max_finite(), 28.0);       // 2^(7-3) * 1.75
  EXPECT_EQ(e3m2.min_normal(), 0.25);       // 2^(1-3)
  EXPECT_EQ(e3m2.min_positive(), 0.0625);   // 2^-2 * 1/4
  EXPECT_FALSE(e2m3.has_nan() || e2m3.has_inf() || e3m2.has_nan() || e3m2.has_inf());
  EXPECT_EQ(decode(0x1Fu, e2m3), 7.5);
  EXPECT_EQ(decode(0x3Fu, e2m3), -7.5);
  EXPECT_EQ(decode(0x01u, e2m3), 0.125);
  EXPECT_EQ(decode(0x1Fu, e3m2), 28.0);
  EXPECT_EQ(decode(0x01u, e3m2), 0.0625);
  EXPECT_TRUE(std::signbit(decode(0x20u, e2m3)));
  EXPECT_THROW(decode(0x40u, e2m3), std::invalid_argument);
  const double inf = std::numeric_limits<double>::infinity();
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  EXPECT_EQ(encode(1e9, e2m3, nosat), 0x1Fu);  // no Inf/NaN: always saturates
  EXPECT_EQ(encode(-inf, e3m2, nosat), 0x3Fu);
  EXPECT_EQ(encode(std::numeric_limits<double>::quiet_NaN(), e2m3), 0x1Fu);  // +max, as __nv_cvt_float_to_fp6
  EXPECT_EQ(encode(7.75, e2m3), 0x1Fu);
  EXPECT_EQ(encode(1.0625, e2m3), 0x08u);   // tie between 1 (0x08) and 1.125: even
  EXPECT_EQ(encode(1.1875, e2m3), 0x0Au);   // tie between 1.125 and 1.25: even
  EXPECT_EQ(encode(-0x1p-5, e3m2), 0x20u);  // half the smallest subnormal ties to -0
  EXPECT_EQ(encode(24.0, e3m2), 0x1Eu);
  EXPECT_EQ(encode(26.0, e3m2), 0x1Eu);     // tie between 24 and 28: even
}

// The short names meant the IEEE-like layouts before the OCP rows existed: an error, not a change.
TEST(FormatTable, BareFp6NamesAreAmbiguous) {
  for (const char* name : {"e2m3", "e3m2"}) {
    try {
      F(name);
      ADD_FAILURE() << name << " was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(std::string("fmt: '") + name + "' is ambiguous"), std::string::npos) << w;
      EXPECT_NE(w.find(std::string(name) + "fn"), std::string::npos) << w;
      EXPECT_NE(w.find(std::string(name) + "_ieee"), std::string::npos) << w;
    }
  }
  EXPECT_TRUE(F("e3m2_ieee").has_inf());
  EXPECT_EQ(F("e3m2_ieee").max_finite(), 14.0);  // the old meaning of "e3m2": field 6, 2^3 * 1.75
  EXPECT_EQ(&F("float6_e3m2fn"), &F("e3m2fn"));
}

// AMD FNUZ: limits written from LLVM's Float8E4M3FNUZ {maxExp 7, minExp -7, precision 4} and
// Float8E5M2FNUZ {15, -15, 3} (NanOnly, NegativeZero).
TEST(FormatTable, FnuzRowsHaveOneNanAndNoNegativeZero) {
  const Format& a = F("e4m3fnuz");
  const Format& b = F("e5m2fnuz");
  EXPECT_EQ(a.max_finite(), 240.0);  // 0x7F: 2^7 * 1.875
  EXPECT_EQ(a.min_normal(), 0x1p-7);
  EXPECT_EQ(a.min_positive(), 0x1p-10);
  EXPECT_EQ(b.max_finite(), 57344.0);  // 0x7F: 2^15 * 1.75
  EXPECT_EQ(b.min_normal(), 0x1p-15);
  EXPECT_EQ(b.min_positive(), 0x1p-17);
  for (const Format* f : {&a, &b}) {
    int nans = 0;
    for (std::uint32_t p = 0; p < 256; ++p) nans += is_nan_bits(p, *f) ? 1 : 0;
    EXPECT_EQ(nans, 1) << f->name;
    EXPECT_EQ(f->canonical_nan(), 0x80u);
    EXPECT_FALSE(f->has_inf());
    EXPECT_EQ(encode(-0.0, *f), 0x00u);
    EXPECT_EQ(encode(-std::numeric_limits<double>::denorm_min(), *f), 0x00u);
    EXPECT_EQ(encode(std::numeric_limits<double>::quiet_NaN(), *f), 0x80u);
    EncodeOptions nosat;
    nosat.overflow = Overflow::InfOrNan;
    EXPECT_EQ(encode(-1e30, *f, nosat), 0x80u);
    EXPECT_EQ(encode(1e30, *f), 0x7Fu);
  }
}

// vLLM normalize_e4m3fn_to_e4m3fnuz: the same pattern, scale x 2; every pattern of both pairs.
TEST(FormatTable, OcpToFnuzKeepsEveryValueWithTheScaleDoubled) {
  for (const char* name : {"e4m3", "e5m2"}) {
    const Format& ocp = F(name);
    const Format& fnuz = fnuz_twin(ocp);
    EXPECT_EQ(&fnuz_twin(fnuz), &ocp);
    for (std::uint32_t p = 0; p < 256; ++p) {
      const std::uint32_t q = ocp_to_fnuz_bits(p, ocp, fnuz);
      const double v = decode(p, ocp);
      if (std::isnan(v) || std::isinf(v)) {
        EXPECT_EQ(q, 0x80u) << name << " " << p;
        continue;
      }
      EXPECT_EQ(q, v == 0 ? 0u : p) << name << " " << p;
      EXPECT_EQ(kOcpToFnuzScale * decode(q, fnuz), v) << name << " " << p;  // exact, zero tolerance
      EXPECT_EQ(fnuz_to_ocp_bits(q, fnuz, ocp), v == 0 ? 0u : p) << name << " " << p;
    }
  }
  // E4M3FNUZ 240 is 480 in OCP terms, beyond E4M3's 448: saturated, or NaN without saturation.
  EXPECT_EQ(fnuz_to_ocp_bits(0x7Fu, F("e4m3fnuz"), F("e4m3")), 0x7Eu);
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  EXPECT_EQ(fnuz_to_ocp_bits(0xFFu, F("e4m3fnuz"), F("e4m3"), nosat), 0xFFu);  // -480: NaN, signed as CUDA NOSAT
  EXPECT_EQ(fnuz_to_ocp_bits(0x80u, F("e5m2fnuz"), F("e5m2")), 0x7Fu);  // NaN
  EXPECT_THROW(ocp_to_fnuz_bits(0, F("e4m3"), F("e5m2fnuz")), std::invalid_argument);
  EXPECT_THROW(fnuz_twin(F("bf16")), std::invalid_argument);
}

TEST(Encode, RoundsNearestEvenAtMidpoints) {
  // Between 1 and 1.125 in e4m3 the midpoint 1.0625 ties to the even 1.0; 1.1875 ties up to 1.25.
  EXPECT_EQ(encode(1.0625, F("e4m3")), 0x38u);
  EXPECT_EQ(encode(1.1875, F("e4m3")), 0x3Au);
  EXPECT_EQ(encode(std::nextafter(1.0625, 2.0), F("e4m3")), 0x39u);
  // 464 is the midpoint between 448 and the (NaN) 480 slot: even wins, so it stays finite.
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  EXPECT_EQ(encode(464.0, F("e4m3"), nosat), 0x7Eu);
  EXPECT_EQ(encode(std::nextafter(464.0, 500.0), F("e4m3"), nosat), 0x7Fu);
  EXPECT_EQ(encode(1e9, F("e4m3")), 0x7Eu);
  EXPECT_EQ(encode(-1e9, F("e5m2"), nosat), 0xFCu);
}

TEST(Encode, DirectedRoundingsAndOverflowStops) {
  EncodeOptions o;
  o.overflow = Overflow::InfOrNan;
  o.rounding = Rounding::TowardZero;
  EXPECT_EQ(encode(1e9, F("e5m2"), o), 0x7Bu);  // toward zero stops at max finite
  o.rounding = Rounding::Up;
  EXPECT_EQ(encode(-1e9, F("e5m2"), o), 0xFBu);
  EXPECT_EQ(encode(1.01, F("e4m3"), o), 0x39u);
  o.rounding = Rounding::Down;
  EXPECT_EQ(encode(1.01, F("e4m3"), o), 0x38u);
  EXPECT_EQ(encode(-1.01, F("e4m3"), o), 0xB9u);
}

TEST(Encode, SubnormalsAndFlush) {
  EXPECT_EQ(encode(0x1p-9, F("e4m3")), 0x01u);
  EXPECT_EQ(encode(0x1p-10, F("e4m3")), 0x00u);            // tie with 0: even
  EXPECT_EQ(encode(0x1.8p-10, F("e4m3")), 0x01u);
  EXPECT_EQ(encode(-0x1p-9, F("e4m3")), 0x81u);
  EncodeOptions flush;
  flush.flush_subnormals = true;
  EXPECT_EQ(encode(0x1p-9, F("e4m3"), flush), 0x00u);
  EXPECT_EQ(encode(-0x1p-9, F("e4m3"), flush), 0x80u);
  EXPECT_EQ(encode(0x1p-6, F("e4m3"), flush), 0x08u);      // min normal survives
  EXPECT_EQ(decode(0x07u, F("e4m3")), 0x1.Cp-7);
}

TEST(Encode, Ue8m0HasNoZeroAndIgnoresSign) {
  EXPECT_EQ(encode(0.0, F("ue8m0")), 0x00u);
  EXPECT_EQ(encode(1.0, F("ue8m0")), 0x7Fu);
  EXPECT_EQ(encode(-2.0, F("ue8m0")), 0x80u);
  EXPECT_EQ(encode(1.5, F("ue8m0")), 0x80u);  // tie: even exponent field 0x80
  EXPECT_EQ(decode(0x00u, F("ue8m0")), 0x1p-127);
  EXPECT_TRUE(std::isnan(decode(0xFFu, F("ue8m0"))));
}

TEST(Encode, NanAndInf) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(encode(nan, F("e4m3")), 0x7Fu);
  EXPECT_EQ(encode(-nan, F("bf16")), 0x7FFFu);
  EXPECT_EQ(encode(nan, F("e2m1")), 0x7u);   // FP4 has no NaN: +max, as CUDA
  EXPECT_EQ(encode(inf, F("e4m3")), 0x7Eu);  // saturate
  EncodeOptions nosat;
  nosat.overflow = Overflow::InfOrNan;
  EXPECT_EQ(encode(inf, F("e4m3"), nosat), 0x7Fu);
  EXPECT_EQ(encode(-inf, F("fp16"), nosat), 0xFC00u);
  EXPECT_TRUE(std::isinf(decode(0x7C00u, F("fp16"))));
  EXPECT_THROW(decode(0x100u, F("e4m3")), std::invalid_argument);
}

TEST(Encode, DoubleInputRoundsOnceNotTwice) {
  // x just above the bf16 midpoint 1 + 2^-8 but below it after a float32 rounding: a double
  // rounding through float32 would give 1.0, the direct rounding gives 1 + 2^-7.
  const double x = 1.0 + 0x1p-8 + 0x1p-40;
  EXPECT_EQ(static_cast<double>(static_cast<float>(x)), 1.0 + 0x1p-8);
  EXPECT_EQ(encode(x, F("bf16")), 0x3F81u);
}

TEST(Encode, StochasticIsAFunctionOfSeedAndIndex) {
  EncodeOptions o;
  o.rounding = Rounding::Stochastic;
  o.seed = 42;
  int ups = 0;
  for (std::uint64_t i = 0; i < 4000; ++i) {
    const std::uint32_t b = encode(1.03125, F("e4m3"), o, i);  // 1/4 of the way from 1 to 1.125
    EXPECT_EQ(b, encode(1.03125, F("e4m3"), o, i));
    EXPECT_TRUE(b == 0x38u || b == 0x39u);
    ups += b == 0x39u;
  }
  // Binomial(4000, 0.25): mean 1000, sd 27.4; 5 sd either way.
  EXPECT_NEAR(ups, 1000, 137);
}

}  // namespace
}  // namespace fp8lab

namespace fp8lab {
namespace {

TEST(Encoder, SameBitsAsEncodeAndEncodeArray) {
  std::vector<float> x;
  for (int i = -2000; i <= 2000; ++i) x.push_back(static_cast<float>(i) * 0.37f + (i % 7) * 1e-3f);
  x.push_back(1e30f);
  x.push_back(-0.0f);
  for (const char* name : {"e4m3", "e5m2", "bf16", "ue8m0", "e2m1", "fp32"}) {
    const Format& f = format_by_name(name);
    for (auto r : {Rounding::NearestEven, Rounding::Stochastic, Rounding::Up}) {
      EncodeOptions o;
      o.rounding = r;
      o.seed = 3;
      const Encoder enc(f, o);
      std::vector<std::uint32_t> serial(x.size()), bulk(x.size());
      std::vector<std::uint8_t> s8(x.size()), b8(x.size());
      std::vector<std::uint16_t> s16(x.size()), b16(x.size());
      void* sp = f.storage_bits() == 8 ? static_cast<void*>(s8.data()) : f.storage_bits() == 16 ? static_cast<void*>(s16.data()) : serial.data();
      void* bp = f.storage_bits() == 8 ? static_cast<void*>(b8.data()) : f.storage_bits() == 16 ? static_cast<void*>(b16.data()) : bulk.data();
      enc.encode(x.data(), x.size(), sp, 100);
      encode_array(x.data(), x.size(), f, o, bp, 100);
      EXPECT_EQ(s8, b8);
      EXPECT_EQ(s16, b16);
      EXPECT_EQ(serial, bulk);
      for (std::size_t i = 0; i < x.size(); i += 13) {
        const std::uint32_t one = f.storage_bits() == 8 ? s8[i] : f.storage_bits() == 16 ? s16[i] : serial[i];
        EXPECT_EQ(enc(x[i], 100 + i), encode(x[i], f, o, 100 + i)) << name;
        EXPECT_EQ(one, encode(x[i], f, o, 100 + i)) << name << " at " << x[i];
      }
    }
  }
}

}  // namespace
}  // namespace fp8lab

#include "common/bf16.hpp"

namespace fp8lab {
namespace {

TEST(RoundToBf16, IsEncodeToBf16OnFloat32Inputs) {
  // The shared fast helper (common/bf16.hpp) against the general encoder: every float32 whose
  // low 16 bits are one of the rounding-relevant patterns, for every top half, NaN and Inf included.
  const Format& bf16 = format_by_name("bf16");
  EncodeOptions ieee;
  ieee.overflow = Overflow::InfOrNan;
  std::size_t bad = 0;
  for (std::uint32_t hi = 0; hi < 0x10000u; ++hi) {
    for (std::uint32_t lo : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, 0x4000u, 0xC000u}) {
      const std::uint32_t u = (hi << 16) | lo;
      const float x = std::bit_cast<float>(u);
      const std::uint32_t want = encode(static_cast<double>(x), bf16, ieee);
      const std::uint32_t got = std::bit_cast<std::uint32_t>(round_to_bf16(x)) >> 16;
      if (got != want && ++bad <= 5) ADD_FAILURE() << std::hex << "x bits 0x" << u << ": got 0x" << got << ", want 0x" << want;
    }
  }
  EXPECT_EQ(bad, 0u);
}

}  // namespace
}  // namespace fp8lab

// One semantics table for every number format fp8lab knows (after LLVM's fltSemantics): a format
// is a row of data, and rounding, overflow and decoding are written once against that row. The
// row is a declared schema (format_schema(), common/schema.hpp): its canonical JSON, its strict
// reader and the Python format_info() come from that one field list.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"

namespace fp8lab {

// Which values the format has beyond the finite ones (LLVM APFloat fltNonfiniteBehavior).
enum class NonFinite : std::uint8_t {
  // IEEE 754: Inf and NaN, both in the all-ones exponent binade. fp32, bf16, fp16, e5m2 (OCP
  // OFP8 v1.0), e5m6 (DeepSeek-V3 §3.3 "custom E5M6", taken IEEE-like).
  IEEE754,
  // NaN but no Inf: the binade IEEE gives to Inf/NaN holds finite values. OCP E4M3 ("E4M3FN",
  // max 448), OCP MX E8M0, AMD's FNUZ formats. Where NaN sits is `NanEncoding`.
  NanOnly,
  // Every pattern is a finite number: OCP MX FP6 E2M3/E3M2 and FP4 E2M1.
  FiniteOnly,
};

// Which patterns are NaN (LLVM APFloat fltNanEncoding).
enum class NanEncoding : std::uint8_t {
  // Exponent all ones with a non-zero mantissa (IEEE 754). Also the value LLVM gives FiniteOnly
  // formats, which have no NaN: there it means nothing.
  IEEE,
  // Exponent and mantissa all ones, either sign: OCP E4M3 (S.1111.111), OCP MX E8M0 (0xFF).
  AllOnes,
  // The negative-zero pattern (sign set, all else clear) is the only NaN and there is no -0:
  // AMD's FNUZ formats (MI300 ISA "FP8/BF8"; LLVM Float8E4M3FNUZ / Float8E5M2FNUZ).
  NegativeZero,
};

// Whether exponent field 0 encodes zero and subnormals (IEEE) or is an ordinary binade
// (UE8M0: 0x00 is 2^-127, and there is no zero).
enum class ZeroExponent : std::uint8_t { Subnormal, Normal };

// The fields are declared in format_schema() (format.cpp); members are in the order the table's
// designated initialisers write them.
struct Format {
  std::string name;
  int exponent_bits = 0;
  int mantissa_bits = 0;  // explicit fraction bits (precision = mantissa_bits + 1)
  int bias = 0;
  bool is_signed = true;
  NonFinite non_finite = NonFinite::IEEE754;
  NanEncoding nan_encoding = NanEncoding::IEEE;
  ZeroExponent zero_exponent = ZeroExponent::Subnormal;
  std::string ml_dtypes{};  // the ml_dtypes / numpy type of the same semantics, "" when none
  std::string source{};     // the specification the row is read from

  // Derived facts, computed from the row above (never stored twice).
  int total_bits() const { return (is_signed ? 1 : 0) + exponent_bits + mantissa_bits; }
  // Width of the unsigned integer that stores one value: 8, 16 or 32.
  int storage_bits() const;
  std::uint32_t sign_mask() const { return is_signed ? (1u << (exponent_bits + mantissa_bits)) : 0u; }
  std::uint32_t exponent_field_max() const { return (1u << exponent_bits) - 1u; }
  // Unbiased exponent of the smallest normal binade.
  int min_normal_exponent() const { return zero_exponent == ZeroExponent::Subnormal ? 1 - bias : -bias; }
  // Unbiased exponent of the largest binade that holds finite values.
  int max_exponent() const;
  // Largest finite value's significand as an integer of (mantissa_bits + 1) bits.
  std::uint64_t max_finite_significand() const;
  double max_finite() const;
  double min_normal() const;
  double min_positive() const;  // smallest subnormal, or the smallest normal when there are none
  bool has_inf() const { return non_finite == NonFinite::IEEE754; }
  bool has_nan() const { return non_finite != NonFinite::FiniteOnly; }
  bool has_zero() const { return zero_exponent == ZeroExponent::Subnormal; }
  // FNUZ formats spend the -0 pattern on NaN: a negative result that rounds to zero is +0.
  bool has_negative_zero() const { return is_signed && has_zero() && nan_encoding != NanEncoding::NegativeZero; }
  bool has_subnormals() const { return zero_exponent == ZeroExponent::Subnormal && mantissa_bits > 0; }
  // The NaN this library produces. IEEE and AllOnes: sign clear, every exponent and mantissa bit
  // set, what CUDA's host conversions return for any NaN input (0x7F for E4M3 and E5M2, 0x7FFF
  // for bf16 and fp16; checked in tests/cpp/test_formats_cuda.cpp). NegativeZero: the one NaN,
  // 0x80. Undefined for FiniteOnly formats.
  std::uint32_t canonical_nan() const;
  std::uint32_t inf_bits(bool negative) const;  // only for IEEE754 formats

  // Same semantics (name, ml_dtypes and source aside).
  bool operator==(const Format& other) const;
  // Canonical JSON of the row (format_schema(), keys sorted).
  std::string to_json() const;
};

// The Format row's declared fields; validate() checks that the enums agree with each other (as
// LLVM's fltSemantics asserts do) and that the layout fits 32 bits.
const schema::Schema<Format>& format_schema();
// A format written as JSON (every field of format_schema(), absent ones keep the defaults), checked.
Format format_from_json(std::string_view text);
std::span<const schema::EnumRow<NonFinite>> non_finite_table();
std::span<const schema::EnumRow<NanEncoding>> nan_encoding_table();

// A row of the table by its name or its ml_dtypes name ("e4m3" or "float8_e4m3fn"), or any
// "eXmY" with 1 <= X <= 11, 0 <= Y <= 52, X + Y + 1 <= 32: the IEEE-like layout (bias
// 2^(X-1) - 1, Inf and NaN), also spelled "eXmY_ieee". A bare "eXmY" that is the start of a
// row's name ("e3m2" of "e3m2fn") is an error naming both readings: it meant the IEEE-like
// layout before the row existed, and a silent change of meaning is worse than an error.
// Unknown names throw std::invalid_argument naming the argument and listing the valid names.
const Format& format_by_name(std::string_view name);
// The rows' names, in table order.
std::vector<std::string> format_names();
// The rows themselves, in table order.
std::span<const Format> format_rows();
// An IEEE-like format from parameters (bias defaults to 2^(exponent_bits-1) - 1).
Format make_ieee_like_format(int exponent_bits, int mantissa_bits, int bias = -1);

}  // namespace fp8lab

// One semantics table for every number format fp8lab knows (after LLVM's fltSemantics): a format
// is a row of data, and rounding, overflow and decoding are written once against that row.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp8lab {

// What the all-ones exponent field means. Named after the conventions, each with its source.
enum class NonFinite : std::uint8_t {
  // IEEE 754: exponent all ones is Inf (mantissa 0) or NaN (mantissa != 0). fp32, bf16, fp16,
  // e5m2 (OCP OFP8 spec v1.0), e5m6 (DeepSeek-V3 §3.3 "custom E5M6", taken IEEE-like).
  IEEE,
  // No infinities; only S.1111.111 (exponent and mantissa all ones) is NaN, the rest of the top
  // binade is finite. OCP E4M3 ("E4M3FN", max 448) and OCP MX E8M0 (0xFF is NaN).
  NanOnlyAllOnes,
  // Every pattern is a finite number: OCP MX FP4 E2M1 (max 6).
  FiniteOnly,
};

// Whether exponent field 0 encodes zero and subnormals (IEEE) or is an ordinary binade
// (UE8M0: 0x00 is 2^-127, and there is no zero).
enum class ZeroExponent : std::uint8_t { Subnormal, Normal };

struct Format {
  std::string name;
  int exponent_bits = 0;
  int mantissa_bits = 0;  // explicit fraction bits (precision = mantissa_bits + 1)
  int bias = 0;
  bool is_signed = true;
  NonFinite non_finite = NonFinite::IEEE;
  ZeroExponent zero_exponent = ZeroExponent::Subnormal;

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
  bool has_inf() const { return non_finite == NonFinite::IEEE; }
  bool has_nan() const { return non_finite != NonFinite::FiniteOnly; }
  bool has_zero() const { return zero_exponent == ZeroExponent::Subnormal; }
  bool has_subnormals() const { return zero_exponent == ZeroExponent::Subnormal && mantissa_bits > 0; }
  // The NaN this library produces: sign clear, every exponent and mantissa bit set. It is what
  // CUDA's host conversions return for any NaN input (0x7F for E4M3 and E5M2, 0x7FFF for bf16 and
  // fp16; checked in tests/cpp/test_formats_cuda.cpp). Undefined for FiniteOnly formats.
  std::uint32_t canonical_nan() const;
  std::uint32_t inf_bits(bool negative) const;  // only for IEEE formats

  bool operator==(const Format& other) const;
  // Canonical JSON of the row (keys sorted), used by spec hashing and traces.
  std::string to_json() const;
};

// The named formats: fp32 bf16 fp16 e4m3 e5m2 e5m6 ue8m0 e2m1. Also accepts any "eXmY" with
// 1 <= X <= 11, 0 <= Y <= 52 and X + Y + 1 <= 32 (IEEE-like, bias 2^(X-1) - 1).
// Unknown names throw std::invalid_argument naming the argument and listing the valid names.
const Format& format_by_name(std::string_view name);
std::vector<std::string> format_names();
// An IEEE-like format from parameters (bias defaults to 2^(exponent_bits-1) - 1).
Format make_ieee_like_format(int exponent_bits, int mantissa_bits, int bias = -1);

}  // namespace fp8lab

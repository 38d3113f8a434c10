// Encoding real numbers into a Format and decoding them back. One rounding routine serves every
// format and every mode; inputs are float64 (float32 converts to float64 exactly, so a float32
// input is rounded once, straight to the target: no double rounding).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"
#include "formats/format.hpp"

namespace fp8lab {

enum class Rounding : std::uint8_t { NearestEven, TowardZero, Up, Down, Stochastic };
// Saturate: results beyond the largest finite value, and infinities, become ±max finite
// (CUDA __NV_SATFINITE). InfOrNan: they become ±Inf, or NaN where the format has no Inf
// (CUDA __NV_NOSAT, IEEE overflow; directed roundings that point back toward zero stop at
// max finite, as IEEE 754 §7.4 says). FiniteOnly formats always saturate.
enum class Overflow : std::uint8_t { Saturate, InfOrNan };

struct EncodeOptions {
  Rounding rounding = Rounding::NearestEven;
  Overflow overflow = Overflow::Saturate;
  // Results that would be subnormal become (signed) zero. Subnormal inputs are still read exactly.
  bool flush_subnormals = false;
  // Stochastic rounding: the random word for element i is stochastic_bits(seed, i), so a result
  // depends only on (x, seed, i) — not on order or thread count.
  std::uint64_t seed = 0;
};

Rounding rounding_by_name(std::string_view name);  // "nearest_even", "toward_zero", "up", "down", "stochastic"
Overflow overflow_by_name(std::string_view name);  // "saturate", "inf_or_nan"
std::string_view rounding_name(Rounding r);
std::string_view overflow_name(Overflow o);
std::vector<std::string> rounding_names();
std::vector<std::string> overflow_names();
// The (name, value) rows of the two enums, for the spec schemas that hold them.
std::span<const schema::EnumRow<Rounding>> rounding_table();
std::span<const schema::EnumRow<Overflow>> overflow_table();

// The 32 random bits used to round element `index` stochastically: a counter-based hash
// (SplitMix64 finaliser over seed and index). Round away from zero iff
// the top 32 bits of the discarded fraction + stochastic_bits >= 2^32, so P(away) equals the
// fraction truncated to 32 bits.
std::uint32_t stochastic_bits(std::uint64_t seed, std::uint64_t index);

namespace detail {
// Everything round_pack (formats/round_pack.hpp) needs about (format, options), worked out once
// (encode.cpp).
struct EncodePlan {
  int m;                        // target mantissa bits
  int emin;                     // target min normal exponent
  int qmin;                     // quantum exponent of the lowest binade: emin - m
  std::uint64_t code_offset;    // 2^m when exponent field 0 is a normal binade (UE8M0), else 0
  std::uint32_t max_code;       // largest finite magnitude pattern
  std::uint32_t sign_bit;
  std::uint32_t nan_code;       // what NaN inputs become
  std::uint32_t inf_code;       // magnitude pattern infinite inputs become
  // Magnitude pattern of a finite result beyond max_code, by sign: max_code when saturating, when
  // the format has no Inf or NaN, or when the rounding points back toward zero (IEEE 754 §7.4);
  // else Inf, or NaN where the format has no Inf.
  std::uint32_t overflow_pos, overflow_neg;
  bool signed_zero;  // a zero result keeps the sign (false: +0, and UE8M0's 0x00, which has no zero)
  bool flush;
  bool is_signed;
  Rounding rounding;
  std::uint64_t seed;
};
}  // namespace detail

// encode() with the (format, options) work done once: for callers that encode many values
// (quantisers, GEMM outputs). Same bits as encode() and encode_array().
class Encoder {
 public:
  explicit Encoder(const Format& fmt, const EncodeOptions& options = {});
  std::uint32_t operator()(double x, std::uint64_t index = 0) const;
  // Serial bulk encode (vectorised for float32 input) with no threads of its own, for callers
  // that are already parallel. `out` holds n elements of format().storage_bits() width.
  void encode(const float* in, std::size_t n, void* out, std::uint64_t first_index = 0) const;
  // The same into 32-bit words, whatever the format's storage width (QTensor keeps uint32 bits).
  void encode_u32(const float* in, std::size_t n, std::uint32_t* out, std::uint64_t first_index = 0) const;
  const Format& format() const { return *fmt_; }

 private:
  const Format* fmt_;
  detail::EncodePlan plan_;
};

// Encodes x into fmt's bit pattern (right-aligned in the returned word). NaN gives
// fmt.canonical_nan(); formats without NaN (FP4) give +max finite, as CUDA.
std::uint32_t encode(double x, const Format& fmt, const EncodeOptions& options = {}, std::uint64_t index = 0);
// Exact value of a bit pattern. Bits above fmt.total_bits() must be zero (std::invalid_argument).
double decode(std::uint32_t bits, const Format& fmt);
bool is_nan_bits(std::uint32_t bits, const Format& fmt);
bool is_inf_bits(std::uint32_t bits, const Format& fmt);

// decode(encode(x)): x rounded to the format, as a double.
inline double round_to_format(double x, const Format& fmt, const EncodeOptions& options = {}, std::uint64_t index = 0) {
  return decode(encode(x, fmt, options, index), fmt);
}

// Bulk conversion, parallel over elements (the result does not depend on the thread count).
// `out` points to n elements of fmt.storage_bits() width (uint8_t, uint16_t or uint32_t).
// Element i uses index `first_index + i` for stochastic rounding.
void encode_array(const float* in, std::size_t n, const Format& fmt, const EncodeOptions& options, void* out,
                  std::uint64_t first_index = 0);
void encode_array(const double* in, std::size_t n, const Format& fmt, const EncodeOptions& options, void* out,
                  std::uint64_t first_index = 0);
void decode_array(const void* in, std::size_t n, const Format& fmt, double* out);
void decode_array(const void* in, std::size_t n, const Format& fmt, float* out);  // exact for formats within fp32

}  // namespace fp8lab

// Encoding float32 or float64 into any Format, every rounding and overflow mode: the input's
// fields go to the one round-and-pack (formats/round_pack.hpp); float32 arrays take its lane twin
// (formats/encode_lanes.cpp), 8-bit patterns decode through a table. Written on integers so that
// it is exact, branch-light and vectorisable.
#include "formats/encode.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "common/parallel.hpp"
#include "formats/lanes.hpp"
#include "formats/round_pack.hpp"

namespace fp8lab {

namespace detail {

EncodePlan make_encode_plan(const Format& f, const EncodeOptions& o) {
  EncodePlan p{};
  p.m = f.mantissa_bits;
  p.emin = f.min_normal_exponent();
  p.qmin = p.emin - p.m;
  p.code_offset = f.has_zero() ? 0 : (std::uint64_t{1} << p.m);
  p.max_code = static_cast<std::uint32_t>(
      (f.max_finite_significand() + (static_cast<std::uint64_t>(f.max_exponent() - p.emin) << p.m)) - p.code_offset);
  p.sign_bit = f.sign_mask();
  // CUDA's host conversions turn every NaN into the positive all-ones pattern, and, for FP4
  // (no NaN), into +max finite (cuda_fp4.h __nv_cvt_float_to_fp4; see test_formats_cuda).
  p.nan_code = f.has_nan() ? f.canonical_nan() : p.max_code;
  const std::uint32_t beyond = f.has_inf() ? f.inf_bits(false) : f.has_nan() ? f.canonical_nan() : p.max_code;
  const bool to_max_always = o.overflow == Overflow::Saturate || !f.has_nan();
  p.inf_code = to_max_always ? p.max_code : beyond;
  // IEEE 754 §7.4: roundings that point back toward zero stop at the largest finite value.
  auto stops = [&](bool negative) {
    return o.rounding == Rounding::TowardZero || (o.rounding == Rounding::Up && negative) ||
           (o.rounding == Rounding::Down && !negative);
  };
  p.overflow_pos = to_max_always || stops(false) ? p.max_code : beyond;
  p.overflow_neg = to_max_always || stops(true) ? p.max_code : beyond;
  p.signed_zero = f.has_negative_zero();
  p.flush = o.flush_subnormals && f.has_subnormals();
  p.is_signed = f.is_signed;
  p.rounding = o.rounding;
  p.seed = o.seed;
  return p;
}

}  // namespace detail

namespace {

using Plan = detail::EncodePlan;

Plan make_plan(const Format& f, const EncodeOptions& o) { return detail::make_encode_plan(f, o); }

template <class T>
struct Ieee;
template <>
struct Ieee<float> {
  using U = std::uint32_t;
  static constexpr int kMant = 23, kExpMax = 255, kBias = 127, kWidth = 32;
};
template <>
struct Ieee<double> {
  using U = std::uint64_t;
  static constexpr int kMant = 52, kExpMax = 2047, kBias = 1023, kWidth = 64;
};

// Whether the plan can be run straight on T's bits: the target's lowest binade must not lie below
// T's (else T's subnormals would need normalising first) and its precision must not exceed T's.
template <class T>
bool fits(const Plan& p) {
  return p.m <= Ieee<T>::kMant && p.emin >= 1 - Ieee<T>::kBias;
}

std::uint64_t splitmix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 1. NaN and Inf inputs; 2. the significand and its quantum exponent; 3. round_pack (formats/
// round_pack.hpp): the target quantum, rounding on the remainder, the code, underflow, flush,
// overflow, the sign.
template <class T>
inline std::uint32_t encode_one(T x, const Plan& p, std::uint64_t index) {
  using U = typename Ieee<T>::U;
  constexpr int kMant = Ieee<T>::kMant;
  const U u = std::bit_cast<U>(x);
  const bool negative_input = (u >> (Ieee<T>::kWidth - 1)) != 0;
  const bool negative = negative_input && p.is_signed;  // unsigned formats take |x|, as CUDA's E8M0
  const U magnitude = u & (~U{0} >> 1);
  const int exponent_field = static_cast<int>(magnitude >> kMant);
  const U fraction = magnitude & ((U{1} << kMant) - 1);
  // 1.
  if (exponent_field == Ieee<T>::kExpMax) {
    if (fraction != 0) return p.nan_code;
    return p.inf_code | (negative ? p.sign_bit : 0u);
  }
  // 2.
  const U significand = exponent_field != 0 ? (fraction | (U{1} << kMant)) : fraction;
  const int quantum_exp = std::max(exponent_field, 1) - Ieee<T>::kBias - kMant;
  // 3.
  return round_pack(p, negative, significand, quantum_exp, false, index);
}

template <class T>
std::uint32_t encode_value(T x, const Plan& p, std::uint64_t index) {
  if (fits<T>(p)) return encode_one<T>(x, p, index);
  return encode_one<double>(static_cast<double>(x), p, index);
}

template <class Out, class T>
void encode_range(const T* in, std::size_t n, const Plan& p, Out* out, std::uint64_t first_index) {
  if constexpr (std::is_same_v<T, float>) {
    // The lane twin (formats/encode_lanes.cpp, dispatched by instruction set).
    if (lanes_take(p)) return encode_float_lanes(in, n, p, out, static_cast<int>(8 * sizeof(Out)));
  }
  if (fits<T>(p)) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(encode_one<T>(in[i], p, first_index + i));
  } else {
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(encode_one<double>(static_cast<double>(in[i]), p, first_index + i));
  }
}

// Cuts the array into fixed chunks (independent of the thread count) and encodes them in parallel.
template <class Out, class T>
void encode_block(const T* in, std::size_t n, const Format& fmt, const EncodeOptions& options, Out* out,
                  std::uint64_t first_index) {
  const Plan p = make_plan(fmt, options);
  constexpr std::size_t kGrain = 1 << 16;
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    encode_range<Out, T>(in + begin, end - begin, p, out + begin, first_index + begin);
  });
}

template <class T>
void encode_array_any(const T* in, std::size_t n, const Format& fmt, const EncodeOptions& options, void* out,
                      std::uint64_t first_index) {
  switch (fmt.storage_bits()) {
    case 8: return encode_block(in, n, fmt, options, static_cast<std::uint8_t*>(out), first_index);
    case 16: return encode_block(in, n, fmt, options, static_cast<std::uint16_t*>(out), first_index);
    default: return encode_block(in, n, fmt, options, static_cast<std::uint32_t*>(out), first_index);
  }
}

template <class In, class Out>
void decode_range(const In* in, std::size_t n, const Format& fmt, Out* out) {
  parallel_for(n, 1 << 16, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) out[i] = static_cast<Out>(decode(in[i], fmt));
  });
}

// 8-bit storage: every pattern's value looked up in a 256-entry table of decode()'s results (the
// same conversion to Out as decode_range), so the bits are decode_range's. A chunk holding a
// pattern above the format's width goes through decode_range's loop, which throws naming it.
template <class Out>
void decode_bytes(const std::uint8_t* in, std::size_t n, const Format& fmt, Out* out) {
  const std::uint32_t patterns = 1u << fmt.total_bits();
  Out table[256];
  for (std::uint32_t b = 0; b < 256; ++b) table[b] = b < patterns ? static_cast<Out>(decode(b, fmt)) : Out{0};
  parallel_for(n, 1 << 18, [&](std::size_t begin, std::size_t end) {
    if (patterns < 256) {
      std::uint8_t high = 0;
      for (std::size_t i = begin; i < end; ++i) high = std::max(high, in[i]);
      if (high >= patterns) return decode_range(in + begin, end - begin, fmt, out + begin);
    }
    if constexpr (std::is_same_v<Out, float>) decode_bytes_f32(in + begin, end - begin, table, out + begin);
    else decode_bytes_f64(in + begin, end - begin, table, out + begin);
  });
}

template <class Out>
void decode_array_any(const void* in, std::size_t n, const Format& fmt, Out* out) {
  switch (fmt.storage_bits()) {
    case 8: return decode_bytes(static_cast<const std::uint8_t*>(in), n, fmt, out);
    case 16: return decode_range(static_cast<const std::uint16_t*>(in), n, fmt, out);
    default: return decode_range(static_cast<const std::uint32_t*>(in), n, fmt, out);
  }
}

}  // namespace

bool lanes_take(const detail::EncodePlan& p) { return fits<float>(p) && p.rounding != Rounding::Stochastic; }

std::uint32_t stochastic_bits(std::uint64_t seed, std::uint64_t index) {
  return static_cast<std::uint32_t>(splitmix64(splitmix64(seed) ^ (index * 0x9E3779B97F4A7C15ull)) >> 32);
}

Encoder::Encoder(const Format& fmt, const EncodeOptions& options) : fmt_(&fmt), plan_(make_plan(fmt, options)) {}

std::uint32_t Encoder::operator()(double x, std::uint64_t index) const { return encode_value<double>(x, plan_, index); }

void Encoder::encode(const float* in, std::size_t n, void* out, std::uint64_t first_index) const {
  switch (fmt_->storage_bits()) {
    case 8: return encode_range(in, n, plan_, static_cast<std::uint8_t*>(out), first_index);
    case 16: return encode_range(in, n, plan_, static_cast<std::uint16_t*>(out), first_index);
    default: return encode_range(in, n, plan_, static_cast<std::uint32_t*>(out), first_index);
  }
}

void Encoder::encode_u32(const float* in, std::size_t n, std::uint32_t* out, std::uint64_t first_index) const {
  encode_range(in, n, plan_, out, first_index);
}

std::uint32_t encode(double x, const Format& fmt, const EncodeOptions& options, std::uint64_t index) {
  return encode_value<double>(x, make_plan(fmt, options), index);
}

double decode(std::uint32_t bits, const Format& f) {
  if (f.total_bits() < 32 && (bits >> f.total_bits()) != 0)
    throw std::invalid_argument("bits: 0x" + std::to_string(bits) + " has bits set above the " +
                                std::to_string(f.total_bits()) + "-bit format " + f.name);
  const bool negative = (bits & f.sign_mask()) != 0;
  const std::uint32_t magnitude = bits & ~f.sign_mask();
  const std::uint32_t exponent_field = magnitude >> f.mantissa_bits;
  const std::uint32_t fraction = magnitude & ((1u << f.mantissa_bits) - 1u);
  if (is_nan_bits(bits, f)) return std::numeric_limits<double>::quiet_NaN();
  if (is_inf_bits(bits, f)) return negative ? -std::numeric_limits<double>::infinity()
                                            : std::numeric_limits<double>::infinity();
  double value;
  if (exponent_field == 0 && f.has_zero()) {
    value = std::ldexp(static_cast<double>(fraction), f.min_normal_exponent() - f.mantissa_bits);
  } else {
    const double significand = static_cast<double>((std::uint64_t{1} << f.mantissa_bits) | fraction);
    value = std::ldexp(significand, static_cast<int>(exponent_field) - f.bias - f.mantissa_bits);
  }
  return negative ? -value : value;
}

bool is_nan_bits(std::uint32_t bits, const Format& f) {
  if (!f.has_nan()) return false;
  const std::uint32_t magnitude = bits & ~f.sign_mask();
  switch (f.nan_encoding) {
    case NanEncoding::IEEE:
      return (magnitude >> f.mantissa_bits) == f.exponent_field_max() &&
             (magnitude & ((1u << f.mantissa_bits) - 1u)) != 0;
    case NanEncoding::AllOnes: return magnitude == f.canonical_nan();
    case NanEncoding::NegativeZero: return bits == f.canonical_nan();
  }
  return false;
}

bool is_inf_bits(std::uint32_t bits, const Format& f) {
  return f.has_inf() && (bits & ~f.sign_mask()) == f.inf_bits(false);
}

void encode_array(const float* in, std::size_t n, const Format& fmt, const EncodeOptions& options, void* out,
                  std::uint64_t first_index) {
  encode_array_any(in, n, fmt, options, out, first_index);
}
void encode_array(const double* in, std::size_t n, const Format& fmt, const EncodeOptions& options, void* out,
                  std::uint64_t first_index) {
  encode_array_any(in, n, fmt, options, out, first_index);
}
void decode_array(const void* in, std::size_t n, const Format& fmt, double* out) {
  decode_array_any(in, n, fmt, out);
}
void decode_array(const void* in, std::size_t n, const Format& fmt, float* out) {
  decode_array_any(in, n, fmt, out);
}

namespace {
constexpr std::array<schema::EnumRow<Rounding>, 5> kRounding{{{"nearest_even", Rounding::NearestEven},
                                                              {"toward_zero", Rounding::TowardZero},
                                                              {"up", Rounding::Up},
                                                              {"down", Rounding::Down},
                                                              {"stochastic", Rounding::Stochastic}}};
constexpr std::array<schema::EnumRow<Overflow>, 2> kOverflow{
    {{"saturate", Overflow::Saturate}, {"inf_or_nan", Overflow::InfOrNan}}};

template <class E>
E mode_by_name(std::span<const schema::EnumRow<E>> table, std::string_view name, const char* arg) {
  for (const auto& r : table)
    if (r.name == name) return r.value;
  throw std::invalid_argument(std::string(arg) + ": unknown mode '" + std::string(name) + "'; valid modes: " +
                              schema::join_names(schema::enum_names(table)));
}
}  // namespace

std::span<const schema::EnumRow<Rounding>> rounding_table() { return kRounding; }
std::span<const schema::EnumRow<Overflow>> overflow_table() { return kOverflow; }
Rounding rounding_by_name(std::string_view name) { return mode_by_name(rounding_table(), name, "rounding"); }
Overflow overflow_by_name(std::string_view name) { return mode_by_name(overflow_table(), name, "overflow"); }
std::string_view rounding_name(Rounding r) { return schema::enum_name(rounding_table(), r); }
std::string_view overflow_name(Overflow o) { return schema::enum_name(overflow_table(), o); }
std::vector<std::string> rounding_names() { return schema::enum_names(rounding_table()); }
std::vector<std::string> overflow_names() { return schema::enum_names(overflow_table()); }

}  // namespace fp8lab

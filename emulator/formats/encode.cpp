// The one rounding routine: float32 or float64 in, any Format out, every rounding and overflow
// mode. Written on integers so that it is exact, branch-light and vectorisable.
#include "formats/encode.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "common/parallel.hpp"

namespace fp8lab {

namespace {

// Everything the inner loop needs about (format, options), worked out once per call.
struct Plan {
  int m;                    // target mantissa bits
  int emin;                 // target min normal exponent
  int qmin;                 // quantum exponent of the lowest binade: emin - m
  std::uint64_t code_offset;  // 2^m when exponent field 0 is a normal binade (UE8M0), else 0
  std::uint32_t max_code;   // largest finite magnitude pattern
  std::uint32_t sign_bit;
  std::uint32_t nan_code;   // what NaN inputs become
  std::uint32_t overflow_code;  // magnitude pattern of an overflow that does not stop at max finite
  bool overflow_to_max_always;  // saturate, or no Inf/NaN to go to
  bool has_zero;
  bool flush;
  bool is_signed;
  Rounding rounding;
  std::uint64_t seed;
};

Plan make_plan(const Format& f, const EncodeOptions& o) {
  Plan p{};
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
  p.overflow_code = f.has_inf() ? f.inf_bits(false) : f.has_nan() ? f.canonical_nan() : p.max_code;
  p.overflow_to_max_always = o.overflow == Overflow::Saturate || !f.has_nan();
  p.has_zero = f.has_zero();
  p.flush = o.flush_subnormals && f.has_subnormals();
  p.is_signed = f.is_signed;
  p.rounding = o.rounding;
  p.seed = o.seed;
  return p;
}

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

// 1. NaN and Inf inputs; 2. the significand and its quantum exponent E; 3. the target quantum
// q = max(exponent, emin) - m; 4. shift out s = q - E bits and round on the remainder; 5. the
// code: carries out of the significand run into the exponent field by themselves because the
// code is n + ((q - qmin) << m); 6. underflow to zero, flush, overflow; 7. the sign.
template <class T>
inline std::uint32_t encode_one(T x, const Plan& p, std::uint64_t index) {
  using U = typename Ieee<T>::U;
  constexpr int kMant = Ieee<T>::kMant;
  const U u = std::bit_cast<U>(x);
  const bool negative_input = (u >> (Ieee<T>::kWidth - 1)) != 0;
  const bool negative = negative_input && p.is_signed;  // unsigned formats take |x|, as CUDA's E8M0
  const std::uint32_t sign = negative ? p.sign_bit : 0u;
  const U magnitude = u & (~U{0} >> 1);
  const int exponent_field = static_cast<int>(magnitude >> kMant);
  const U fraction = magnitude & ((U{1} << kMant) - 1);

  // 1.
  if (exponent_field == Ieee<T>::kExpMax) {
    if (fraction != 0) return p.nan_code;
    return (p.overflow_to_max_always ? p.max_code : p.overflow_code) | sign;
  }
  // 2.
  const U significand = exponent_field != 0 ? (fraction | (U{1} << kMant)) : fraction;
  const int quantum_exp = std::max(exponent_field, 1) - Ieee<T>::kBias - kMant;
  // 3.
  const int q = std::max(quantum_exp + kMant, p.emin) - p.m;
  // 4.
  const int s = std::min(q - quantum_exp, Ieee<T>::kWidth - 1);
  U n = significand >> s;
  const U rem = significand & ((U{1} << s) - 1);
  bool up = false;
  if (rem != 0) {
    const U half = U{1} << (s - 1);
    switch (p.rounding) {
      case Rounding::NearestEven: up = rem > half || (rem == half && (n & 1) != 0); break;
      case Rounding::TowardZero: break;
      case Rounding::Up: up = !negative; break;
      case Rounding::Down: up = negative; break;
      case Rounding::Stochastic: {
        const std::uint64_t r = static_cast<std::uint64_t>(rem);
        const std::uint64_t frac32 = s >= 32 ? (r >> (s - 32)) : (r << (32 - s));
        up = frac32 + stochastic_bits(p.seed, index) >= (std::uint64_t{1} << 32);
        break;
      }
    }
  }
  n += up ? 1 : 0;
  // 5. and 6.
  if (n == 0) return p.has_zero ? sign : 0u;  // no zero (UE8M0): the smallest value, 0x00
  const std::uint64_t code = static_cast<std::uint64_t>(n) +
                             (static_cast<std::uint64_t>(q - p.qmin) << p.m) - p.code_offset;
  if (p.flush && code < (std::uint64_t{1} << p.m)) return sign;
  if (code > p.max_code) {
    if (p.overflow_to_max_always) return p.max_code | sign;
    // IEEE 754 §7.4: roundings that point back toward zero stop at the largest finite value.
    const bool stops = p.rounding == Rounding::TowardZero || (p.rounding == Rounding::Up && negative) ||
                       (p.rounding == Rounding::Down && !negative);
    return (stops ? p.max_code : p.overflow_code) | sign;
  }
  // 7.
  return static_cast<std::uint32_t>(code) | sign;
}

template <class T>
std::uint32_t encode_value(T x, const Plan& p, std::uint64_t index) {
  if (fits<T>(p)) return encode_one<T>(x, p, index);
  return encode_one<double>(static_cast<double>(x), p, index);
}

template <class Out, class T>
void encode_range(const T* in, std::size_t n, const Plan& p, Out* out, std::uint64_t first_index) {
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

template <class Out>
void decode_array_any(const void* in, std::size_t n, const Format& fmt, Out* out) {
  switch (fmt.storage_bits()) {
    case 8: return decode_range(static_cast<const std::uint8_t*>(in), n, fmt, out);
    case 16: return decode_range(static_cast<const std::uint16_t*>(in), n, fmt, out);
    default: return decode_range(static_cast<const std::uint32_t*>(in), n, fmt, out);
  }
}

}  // namespace

std::uint32_t stochastic_bits(std::uint64_t seed, std::uint64_t index) {
  return static_cast<std::uint32_t>(splitmix64(splitmix64(seed) ^ (index * 0x9E3779B97F4A7C15ull)) >> 32);
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
  const std::uint32_t magnitude = bits & ~f.sign_mask();
  switch (f.non_finite) {
    case NonFinite::IEEE:
      return (magnitude >> f.mantissa_bits) == f.exponent_field_max() &&
             (magnitude & ((1u << f.mantissa_bits) - 1u)) != 0;
    case NonFinite::NanOnlyAllOnes: return magnitude == f.canonical_nan();
    case NonFinite::FiniteOnly: return false;
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

Rounding rounding_by_name(std::string_view name) {
  for (auto r : {Rounding::NearestEven, Rounding::TowardZero, Rounding::Up, Rounding::Down, Rounding::Stochastic})
    if (rounding_name(r) == name) return r;
  throw std::invalid_argument("rounding: unknown mode '" + std::string(name) +
                              "'; valid modes: nearest_even, toward_zero, up, down, stochastic");
}

Overflow overflow_by_name(std::string_view name) {
  for (auto o : {Overflow::Saturate, Overflow::InfOrNan})
    if (overflow_name(o) == name) return o;
  throw std::invalid_argument("overflow: unknown mode '" + std::string(name) + "'; valid modes: saturate, inf_or_nan");
}

std::string_view rounding_name(Rounding r) {
  switch (r) {
    case Rounding::NearestEven: return "nearest_even";
    case Rounding::TowardZero: return "toward_zero";
    case Rounding::Up: return "up";
    case Rounding::Down: return "down";
    case Rounding::Stochastic: return "stochastic";
  }
  return "?";
}

std::string_view overflow_name(Overflow o) { return o == Overflow::Saturate ? "saturate" : "inf_or_nan"; }

std::vector<std::string> rounding_names() { return {"nearest_even", "toward_zero", "up", "down", "stochastic"}; }
std::vector<std::string> overflow_names() { return {"saturate", "inf_or_nan"}; }

}  // namespace fp8lab

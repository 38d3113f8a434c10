#include "gemm/kulisch.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "formats/round_pack.hpp"
#include "formats/row_constants.hpp"

namespace fp8lab {

FloatParts float_parts(float x) {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
  // mag * 2^e with FP32's fields (subnormals and zero at 2^-149; formats/row_constants.hpp).
  std::uint32_t mag = binary32::significand_of_bits(b);
  int e = binary32::exponent_of_bits(b) - binary32::kMantissaBits;
  if (mag == 0) return {0, 0};
  const int tz = std::countr_zero(mag);
  mag >>= tz;
  e += tz;
  const auto m = static_cast<std::int32_t>(mag);
  return {(b >> 31) ? -m : m, e};
}

void KulischAccumulator::add(unsigned __int128 magnitude, bool negative, int exponent) {
  if (magnitude == 0) return;
  const int shift = exponent - kMinExponent;
  if (shift < 0 || shift + 128 > (kDigits - 2) * 32)
    throw std::range_error("KulischAccumulator: term exponent " + std::to_string(exponent) + " out of range");
  const int idx = shift / 32, off = shift % 32;
  // magnitude << off spans up to 160 bits: five 32-bit digits.
  const unsigned __int128 low = magnitude << off;
  const std::uint64_t top = off ? static_cast<std::uint64_t>(magnitude >> (128 - off)) : 0;
  const std::int64_t parts[5] = {
      static_cast<std::int64_t>(static_cast<std::uint32_t>(low)),
      static_cast<std::int64_t>(static_cast<std::uint32_t>(low >> 32)),
      static_cast<std::int64_t>(static_cast<std::uint32_t>(low >> 64)),
      static_cast<std::int64_t>(static_cast<std::uint32_t>(low >> 96)),
      static_cast<std::int64_t>(top),
  };
  if (negative)
    for (int i = 0; i < 5; ++i) digits_[idx + i] -= parts[i];
  else
    for (int i = 0; i < 5; ++i) digits_[idx + i] += parts[i];
}

void KulischAccumulator::add(float x) {
  const FloatParts p = float_parts(x);
  if (p.m != 0) add(static_cast<__int128>(p.m), p.e);
}

bool KulischAccumulator::is_zero() const {
  // Carry-save words can cancel across digits, so normalise a copy first.
  std::int64_t carry = 0;
  for (int i = 0; i < kDigits; ++i) {
    const std::int64_t v = digits_[i] + carry;
    if ((v & 0xFFFFFFFF) != 0) return false;
    carry = v >> 32;  // arithmetic shift: floor division by 2^32
  }
  return carry == 0;
}

double KulischAccumulator::round(int precision, int min_exponent, int max_exponent) const {
  // 1. Propagate carries: digits become 32-bit two's-complement words of one wide integer.
  std::array<std::uint32_t, kDigits> w{};
  std::int64_t carry = 0;
  for (int i = 0; i < kDigits; ++i) {
    const std::int64_t v = digits_[i] + carry;
    w[i] = static_cast<std::uint32_t>(v & 0xFFFFFFFF);
    carry = v >> 32;
  }
  // 2. Sign: the top word is all ones for a negative total (range leaves two words of headroom).
  const bool negative = carry < 0 || (w[kDigits - 1] >> 31) != 0;
  if (negative) {  // two's-complement negation of the whole word array
    std::uint64_t c = 1;
    for (int i = 0; i < kDigits; ++i) {
      const std::uint64_t v = static_cast<std::uint64_t>(static_cast<std::uint32_t>(~w[i])) + c;
      w[i] = static_cast<std::uint32_t>(v);
      c = v >> 32;
    }
  }
  // 3. The top nonzero word; gather 96 bits from it down, and a sticky bit for the rest.
  int top = kDigits - 1;
  while (top >= 0 && w[top] == 0) --top;
  if (top < 0) return 0.0;  // exact zero is +0
  unsigned __int128 mant = 0;
  for (int i = top; i > top - 3; --i) mant = (mant << 32) | (i >= 0 ? w[i] : 0u);
  bool sticky = false;
  for (int i = top - 3; i >= 0; --i) sticky |= w[i] != 0;
  const int lsb = kMinExponent + (top - 2) * 32;  // weight of mant's bit 0
  return round_exact(negative, mant, lsb, sticky, precision, min_exponent, max_exponent);
}

namespace {
// x * 2^e, as std::ldexp; with 2^e a normal double, one multiplication (the exact kernel rounds
// every output here, and ldexp's general path cost it a sixth of its time).
double times_power_of_two(double x, int e) {
  if (e < -1022 || e > 1023) return std::ldexp(x, e);
  return x * std::bit_cast<double>(static_cast<std::uint64_t>(e + 1023) << 52);
}
}  // namespace

double round_exact(bool negative, unsigned __int128 mag, int lsb, bool sticky, int precision, int min_exponent,
                   int max_exponent) {
  if (mag == 0 && !sticky) return 0.0;
  // Round to `precision` bits, nearest even, with gradual underflow at min_exponent: the
  // result has at most precision + 1 <= 54 bits (a carry), so the double below is exact.
  const Rounded<unsigned __int128> r =
      round_to_grid(negative, mag, lsb, sticky, precision, min_exponent - precision + 1, Rounding::NearestEven);
  double result = times_power_of_two(static_cast<double>(static_cast<std::uint64_t>(r.sig)), r.exp);
  if (std::isinf(result) || (max_exponent < 1023 && result >= times_power_of_two(1.0, max_exponent + 1)))
    result = std::numeric_limits<double>::infinity();
  return negative ? -result : result;
}

}  // namespace fp8lab

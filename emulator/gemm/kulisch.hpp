// An exact fixed-point accumulator (after Kulisch) wide enough for any sum of products of four
// FP32 numbers (two elements, two scales): every term m * 2^e with |m| < 2^128 and
// -600 <= e, e + 128 <= 560 is added without rounding, and the total is rounded once.
// Carry-save digits of 32 bits in int64 words: an addition touches at most 5 words and never
// carries; each word absorbs 2^31 additions before the final normalisation.
#pragma once

#include <array>
#include <cstdint>

namespace fp8lab {

class KulischAccumulator {
 public:
  static constexpr int kMinExponent = -608;  // weight of the lowest bit (a multiple of 32)
  static constexpr int kDigits = 40;         // 1280 bits: up to 2^672, sign included

  void clear() { digits_.fill(0); }
  // Adds (negative ? -1 : 1) * magnitude * 2^exponent. Throws std::range_error outside the range.
  void add(unsigned __int128 magnitude, bool negative, int exponent);
  void add(__int128 value, int exponent) {
    add(value < 0 ? -static_cast<unsigned __int128>(value) : static_cast<unsigned __int128>(value), value < 0,
        exponent);
  }
  // Adds a finite float exactly.
  void add(float x);
  // The exact sum rounded once, to nearest even, to a binary format with `precision` significant
  // bits, minimum normal exponent `min_exponent` (gradual underflow below it) and maximum exponent
  // `max_exponent` (beyond it: ±Inf). Returned as the (exactly representable) double.
  double round(int precision, int min_exponent, int max_exponent) const;
  double to_double() const { return round(53, -1022, 1023); }
  bool is_zero() const;

 private:
  std::array<std::int64_t, kDigits> digits_{};
};

// (negative ? -1 : 1) * (mag + sticky) * 2^lsb rounded once, to nearest even, as
// KulischAccumulator::round says (sticky only below mag's lowest bit, mag at least 2 bits wider
// than precision when set). Returned as the (exactly representable) double; exact zero is +0.
double round_exact(bool negative, unsigned __int128 mag, int lsb, bool sticky, int precision, int min_exponent,
                   int max_exponent);

// m * 2^e with m a signed integer of at most 24 bits (odd, or zero): the exact decomposition of a
// finite float.
struct FloatParts {
  std::int32_t m;
  int e;
};
FloatParts float_parts(float x);

}  // namespace fp8lab

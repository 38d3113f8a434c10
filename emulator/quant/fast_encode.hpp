// A per-call encode plan for the quantiser's inner loop: float32 in, element bits out, with
// formats/encode.hpp's semantics (nearest-even; the given Overflow; no flushing). Finite values
// strictly below the format's max finite take a short exact path; everything else (NaN, Inf,
// overflow, unsigned or exotic formats) goes to formats' encode(), so the two cannot disagree on
// the special cases. tests/cpp/test_quant_fast_encode.cpp checks it against encode() on every
// float32 pattern of chosen ranges and on random patterns.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace fp8lab {

class FastEncoder {
 public:
  FastEncoder(const Format& fmt, Overflow overflow);
  std::uint32_t operator()(float x) const {
    const std::uint32_t xb = std::bit_cast<std::uint32_t>(x);
    const float a = std::bit_cast<float>(xb & 0x7FFFFFFFu);
    if (!fast_ || !(a < max_finite_) || (!signed_ && (xb >> 31) != 0)) return slow(x);
    const std::uint32_t sign = (xb >> 31) ? sign_mask_ : 0u;
    if (a == 0.0f) return sign;
    // The value's quantum in the target: 2^(max(e, emin) - m). a / quantum is exact (a power of
    // two), its nearest-even integer n is the magnitude pattern minus the binade offset; a carry
    // out of the significand moves into the exponent field by itself.
    const int e = std::ilogb(a);
    const int qe = (e > emin_ ? e : emin_) - m_;
    const double n = std::nearbyint(std::ldexp(static_cast<double>(a), -qe));  // default mode: nearest-even
    const auto ni = static_cast<std::uint32_t>(n);
    if (e < emin_) return sign | ni;  // subnormal (n == 2^m is the smallest normal, also right)
    return sign | ((static_cast<std::uint32_t>(e - emin_) << m_) + ni);
  }

 private:
  std::uint32_t slow(float x) const;
  const Format* fmt_;
  EncodeOptions options_;
  float max_finite_ = 0.0f;
  std::uint32_t sign_mask_ = 0;
  int m_ = 0, emin_ = 0;
  bool fast_ = false, signed_ = true;
};

}  // namespace fp8lab

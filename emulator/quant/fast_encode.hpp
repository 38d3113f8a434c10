// A per-call encode plan for the quantiser's inner loop: float32 in, element bits out, with
// formats/encode.hpp's semantics (nearest-even; the given Overflow; no flushing). Finite values
// strictly below the format's max finite take a short exact path; everything else (NaN, Inf,
// overflow, unsigned or exotic formats) goes to formats' encode(), so the two cannot disagree on
// the special cases. tests/cpp/test_quant_fast_encode.cpp checks it against encode() on every
// float32 pattern of chosen ranges and on random patterns.
#pragma once

#include <bit>
#include <cstdint>

#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace fp8lab {

class FastEncoder {
 public:
  FastEncoder(const Format& fmt, Overflow overflow);
  std::uint32_t operator()(float x) const {
    const std::uint32_t xb = std::bit_cast<std::uint32_t>(x);
    // Formats of <= 8 bits: the result for every float32 sharing x's top 16 bits, when they all
    // agree (encode is monotone, so checking the bucket's two ends decides it); 0xFFFF otherwise.
    if (table_ != nullptr) {
      const std::uint16_t t = table_[xb >> 16];
      if (t != kAmbiguous) return t;
    }
    return scalar(xb, x);
  }

 private:
  static constexpr std::uint16_t kAmbiguous = 0xFFFF;
  std::uint32_t scalar(std::uint32_t xb, float x) const {
    const std::uint32_t ab = xb & 0x7FFFFFFFu;
    const std::uint32_t sign = (xb >> 31) ? sign_mask_ : 0u;
    // Short path: normal float32 magnitudes below max finite; zero is exact. Everything else
    // (float32 subnormals, overflow, Inf, NaN, negative input to an unsigned format) goes slow.
    if (ab == 0) return signed_ || !(xb >> 31) ? sign : slow(x);
    if (!fast_ || ab >= max_finite_bits_ || ab < 0x00800000u || (!signed_ && (xb >> 31))) return slow(x);
    // x = sig * 2^(e - 23) with sig = 1.mant (24 bits). The target quantum is 2^(max(e, emin) - m),
    // so `shift` low bits of sig are rounded off, nearest-even; a carry out of the significand
    // moves into the exponent field by itself.
    const int e = static_cast<int>(ab >> 23) - 127;
    const std::uint32_t sig = (ab & 0x7FFFFFu) | 0x800000u;
    const int shift = 23 - m_ + (e < emin_ ? emin_ - e : 0);
    std::uint32_t n;
    if (shift > 25) {
      n = 0;  // below half the smallest subnormal
    } else if (shift == 0) {
      n = sig;
    } else {
      const std::uint32_t half = 1u << (shift - 1);
      const std::uint32_t rem = sig & ((half << 1) - 1u);
      n = sig >> shift;
      n += (rem > half || (rem == half && (n & 1u))) ? 1u : 0u;
    }
    if (e < emin_) return sign | n;  // subnormal (n == 2^m is the smallest normal, also right)
    return sign | ((static_cast<std::uint32_t>(e - emin_) << m_) + n);
  }

  std::uint32_t slow(float x) const;
  const std::uint16_t* table_ = nullptr;
  const Format* fmt_;
  EncodeOptions options_;
  std::uint32_t max_finite_bits_ = 0;  // float32 bits of the format's max finite value
  std::uint32_t sign_mask_ = 0;
  int m_ = 0, emin_ = 0;
  bool fast_ = false, signed_ = true;
};

}  // namespace fp8lab

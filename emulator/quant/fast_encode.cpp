#include "quant/fast_encode.hpp"

namespace fp8lab {

FastEncoder::FastEncoder(const Format& fmt, Overflow overflow) : fmt_(&fmt) {
  options_.rounding = Rounding::NearestEven;
  options_.overflow = overflow;
  m_ = fmt.mantissa_bits;
  emin_ = fmt.min_normal_exponent();
  sign_mask_ = fmt.sign_mask();
  signed_ = fmt.is_signed;
  max_finite_ = static_cast<float>(fmt.max_finite());
  // The short path needs IEEE-style low binades (exponent field 0 = zero and subnormals), a
  // significand that fits float32's, a max finite that float32 holds exactly and a lowest quantum
  // at or above float32's smallest subnormal... below that every float32 is exact anyway, but
  // keep the proof simple: formats wider than float32's range go the slow way.
  fast_ = fmt.zero_exponent == ZeroExponent::Subnormal && m_ <= 23 && emin_ - m_ >= -149 &&
          static_cast<double>(max_finite_) == fmt.max_finite();
}

std::uint32_t FastEncoder::slow(float x) const { return encode(static_cast<double>(x), *fmt_, options_); }

}  // namespace fp8lab

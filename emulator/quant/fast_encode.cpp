#include "quant/fast_encode.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fp8lab {

FastEncoder::FastEncoder(const Format& fmt, Overflow overflow) : fmt_(&fmt) {
  options_.rounding = Rounding::NearestEven;
  options_.overflow = overflow;
  m_ = fmt.mantissa_bits;
  emin_ = fmt.min_normal_exponent();
  sign_mask_ = fmt.sign_mask();
  signed_ = fmt.is_signed;
  const float mf = static_cast<float>(fmt.max_finite());
  max_finite_bits_ = std::bit_cast<std::uint32_t>(mf);
  // The short path needs IEEE-style low binades (exponent field 0 = zero and subnormals), a
  // significand no wider than float32's, a max finite that float32 holds exactly, and a lowest
  // quantum at or above float32's smallest subnormal.
  fast_ = fmt.zero_exponent == ZeroExponent::Subnormal && m_ <= 23 && emin_ - m_ >= -149 &&
          static_cast<double>(mf) == fmt.max_finite();
  if (fmt.total_bits() <= 8) {
    // Built once per (format, overflow) and kept: 65536 buckets, two encodes each.
    static std::mutex mu;
    static std::map<std::pair<std::string, int>, std::unique_ptr<std::vector<std::uint16_t>>> cache;
    const std::lock_guard<std::mutex> lock(mu);
    auto& slot = cache[{fmt.to_json(), static_cast<int>(overflow)}];
    if (!slot) {
      auto t = std::make_unique<std::vector<std::uint16_t>>(65536);
      for (std::uint32_t k = 0; k < 65536; ++k) {
        const std::uint32_t lo = k << 16, hi = lo | 0xFFFFu;
        const std::uint32_t a = scalar(lo, std::bit_cast<float>(lo)), b = scalar(hi, std::bit_cast<float>(hi));
        (*t)[k] = a == b ? static_cast<std::uint16_t>(a) : kAmbiguous;
      }
      slot = std::move(t);
    }
    table_ = slot->data();
  }
}

std::uint32_t FastEncoder::slow(float x) const { return encode(static_cast<double>(x), *fmt_, options_); }

}  // namespace fp8lab

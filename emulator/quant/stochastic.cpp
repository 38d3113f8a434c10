// Stochastic rounding with given random bits: see stochastic.hpp. The rounding itself is the one
// round-and-pack (formats/round_pack.hpp) with the random word handed over.
#include "quant/stochastic.hpp"

#include <bit>
#include <stdexcept>
#include <string>

#include "formats/round_pack.hpp"

namespace fp8lab {

namespace {

void check_width(int width) {
  if (width < 1 || width > 32)
    throw std::invalid_argument("width: random bits per value must be in [1, 32], got " + std::to_string(width));
}

std::uint32_t round_one(float x, const detail::EncodePlan& p, std::uint32_t rbits, int width) {
  if (width < 32 && (rbits >> width) != 0)
    throw std::invalid_argument("rbits: value " + std::to_string(rbits) + " has bits above its width " +
                                std::to_string(width));
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const bool negative = (u >> 31) != 0 && p.is_signed;
  const std::uint32_t mag = u & 0x7FFFFFFFu;
  const int field = static_cast<int>(mag >> 23);
  const std::uint32_t fraction = mag & 0x7FFFFFu;
  if (field == 255) return fraction != 0 ? p.nan_code : (p.inf_code | (negative ? p.sign_bit : 0u));
  const std::uint32_t sig = field != 0 ? (fraction | 0x800000u) : fraction;
  const int quantum = (field != 0 ? field : 1) - 127 - 23;
  // round_to_grid moves away iff (top 32 discarded bits) + random >= 2^32; with the width bits at
  // the top of the word that is exactly (top `width` discarded bits) + rbits >= 2^width.
  return round_pack_random(p, negative, sig, quantum, false, width == 32 ? rbits : rbits << (32 - width));
}

detail::EncodePlan sr_plan(const Format& fmt) {
  EncodeOptions o;
  o.rounding = Rounding::Stochastic;
  o.overflow = Overflow::Saturate;  // .satfinite
  return detail::make_encode_plan(fmt, o);
}

}  // namespace

std::uint32_t round_stochastic_bits(float x, const Format& fmt, std::uint32_t rbits, int width) {
  check_width(width);
  return round_one(x, sr_plan(fmt), rbits, width);
}

void round_stochastic_bits(const float* x, const std::uint32_t* rbits, std::size_t n, const Format& fmt, int width,
                           std::uint32_t* out) {
  check_width(width);
  if (n != 0 && (x == nullptr || rbits == nullptr || out == nullptr))
    throw std::invalid_argument("x: null pointer for a non-empty array");
  const detail::EncodePlan p = sr_plan(fmt);
  for (std::size_t i = 0; i < n; ++i) out[i] = round_one(x[i], p, rbits[i], width);
}

}  // namespace fp8lab

// OCP <-> FNUZ FP8 with the factor-2 scale rule (formats/fnuz.hpp).
#include "formats/fnuz.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace fp8lab {

namespace {

// The pair must differ by the bias alone, by one, for the factor 2 to be exact on every pattern.
bool is_pair(const Format& ocp, const Format& fnuz);

void check_pair(const Format& ocp, const Format& fnuz) {
  if (!is_pair(ocp, fnuz))
    throw std::invalid_argument("fnuz: '" + fnuz.name + "' is not the FNUZ twin of '" + ocp.name +
                                "'; expected an 8-bit pair with the same widths, the FNUZ bias one more than the OCP "
                                "bias and the negative_zero NaN encoding (e4m3 -> e4m3fnuz, e5m2 -> e5m2fnuz)");
}

bool is_pair(const Format& ocp, const Format& fnuz) {
  return fnuz.nan_encoding == NanEncoding::NegativeZero && ocp.nan_encoding != NanEncoding::NegativeZero &&
         ocp.exponent_bits == fnuz.exponent_bits && ocp.mantissa_bits == fnuz.mantissa_bits &&
         fnuz.bias == ocp.bias + 1 && ocp.is_signed && ocp.storage_bits() == 8;
}

}  // namespace

const Format& fnuz_twin(const Format& fmt) {
  for (const Format& f : format_rows())
    if (is_pair(fmt, f) || is_pair(f, fmt)) return f;
  throw std::invalid_argument("fmt: '" + fmt.name + "' has no OCP/FNUZ twin in the format table (pairs: " +
                              "e4m3/e4m3fnuz, e5m2/e5m2fnuz)");
}

std::uint32_t ocp_to_fnuz_bits(std::uint32_t bits, const Format& ocp, const Format& fnuz) {
  check_pair(ocp, fnuz);
  if (is_nan_bits(bits, ocp) || is_inf_bits(bits, ocp)) return fnuz.canonical_nan();
  if ((bits & ~ocp.sign_mask()) == 0) return 0u;  // +-0: FNUZ has one zero
  return bits;
}

std::uint32_t fnuz_to_ocp_bits(std::uint32_t bits, const Format& fnuz, const Format& ocp, const EncodeOptions& options) {
  check_pair(ocp, fnuz);
  return encode(kOcpToFnuzScale * decode(bits, fnuz), ocp, options);  // exact product; NaN -> the OCP NaN
}

void ocp_to_fnuz_array(const std::uint8_t* in, std::size_t n, const Format& ocp, const Format& fnuz, std::uint8_t* out) {
  check_pair(ocp, fnuz);
  std::uint8_t table[256];
  for (std::uint32_t b = 0; b < 256; ++b) table[b] = static_cast<std::uint8_t>(ocp_to_fnuz_bits(b, ocp, fnuz));
  for (std::size_t i = 0; i < n; ++i) out[i] = table[in[i]];
}

void fnuz_to_ocp_array(const std::uint8_t* in, std::size_t n, const Format& fnuz, const Format& ocp,
                       const EncodeOptions& options, std::uint8_t* out) {
  check_pair(ocp, fnuz);
  std::uint8_t table[256];
  for (std::uint32_t b = 0; b < 256; ++b) table[b] = static_cast<std::uint8_t>(fnuz_to_ocp_bits(b, fnuz, ocp, options));
  for (std::size_t i = 0; i < n; ++i) out[i] = table[in[i]];
}

}  // namespace fp8lab

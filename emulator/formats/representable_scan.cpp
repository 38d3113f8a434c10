// The representability scan (formats/representable.hpp), built once per instruction set
// (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): gemm's and dot's operand checks run it on every
// element. tests/cpp/test_formats_representable.cpp runs every variant against the encoder.
#include <algorithm>
#include <bit>

#include "common/isa.hpp"
#include "formats/representable.hpp"

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// 1 when x is not a value (see the header), 0 when it is: integer selects and bitwise & and |
// on 0/1 values only (no branches, no short-circuit), so that loops over it vectorise.
inline std::uint32_t bad_bit(float x, float max_finite, float min_positive, int min_exp, int mant_bits,
                             std::uint32_t is_signed, std::uint32_t zero, std::uint32_t nan, std::uint32_t inf) {
  const std::uint32_t b = lanes_cast<std::uint32_t>(x), mag = b & 0x7FFFFFFFu;
  const std::uint32_t field = mag >> 23;
  const std::uint32_t normal = field != 0;
  // x = sig * 2^(e - 23) (float32 subnormals: field 0, e = -126); x's binade e_true (for a
  // subnormal, that of sig, read from sig converted to float: exact, and it vectorises).
  const std::uint32_t sig = (mag & 0x7FFFFFu) | (normal << 23);
  const int e = static_cast<int>(field) - 127 + static_cast<int>(1 - normal);
  const int sub = static_cast<int>(lanes_cast<std::uint32_t>(static_cast<float>(static_cast<int>(sig))) >> 23) - 127 - 149;
  const int e_true = sub ^ ((e ^ sub) & -static_cast<int>(normal));  // normal ? e : sub, without a branch
  // The format's quantum there is 2^q, q = max(e_true, emin) - m: the bits of sig below it (at
  // most all 24) must be zero.
  const int q = std::max(e_true, min_exp) - mant_bits;
  const int cut = std::min(std::max(q - (e - 23), 0), 24);
  const std::uint32_t low = sig & ((1u << cut) - 1u);
  const float a = lanes_cast<float>(mag);
  const std::uint32_t finite_ok = static_cast<std::uint32_t>(low == 0) & static_cast<std::uint32_t>(a >= min_positive) &
                                  static_cast<std::uint32_t>(a <= max_finite) & (is_signed | ((b >> 31) ^ 1u));
  const std::uint32_t is_zero = mag == 0, is_inf = mag == 0x7F800000u, is_nan = mag > 0x7F800000u;
  const std::uint32_t ok = (is_zero & zero) | (is_inf & inf) | (is_nan & nan) |
                           (((is_zero | is_inf | is_nan) ^ 1u) & finite_ok);
  return ok ^ 1u;
}

// 0 when all of v[0, n) are values.
std::uint32_t flags(const float* v, std::size_t n, const RepresentableRow& row) {
  const float mf = row.max_finite, mp = row.min_positive;
  const int me = row.min_exp, mb = row.mant_bits;
  const std::uint32_t s = row.is_signed, z = row.zero, na = row.nan, in = row.inf;
  std::uint32_t any = 0;
  for (std::size_t i = 0; i < n; ++i) any |= bad_bit(v[i], mf, mp, me, mb, s, z, na, in);
  return any;
}

}  // namespace

std::size_t representable_first_bad(const float* v, std::size_t n, const RepresentableRow& row) {
  constexpr std::size_t kBlock = 4096;  // scan in blocks; only a block with an offender is searched
  for (std::size_t b0 = 0; b0 < n; b0 += kBlock) {
    const std::size_t b1 = std::min(n, b0 + kBlock);
    if (flags(v + b0, b1 - b0, row) == 0) continue;
    for (std::size_t i = b0; i < b1; ++i)
      if (flags(v + i, 1, row) != 0) return i;
  }
  return n;
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(std::size_t, representable_first_bad, (const float* v, std::size_t n, const RepresentableRow& row),
                      (v, n, row))

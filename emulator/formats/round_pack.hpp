// The one round-and-pack (after Berkeley SoftFloat's s_roundPackToF32.c and LLVM APFloat's
// lostFraction): every operation that produces a value of a Format hands its exact result to it
// as a sign, an integer significand, an exponent and a sticky bit, and it rounds by the Rounding
// mode and packs by the Format row (formats/encode.cpp's EncodePlan). Callers: encode, the
// tensor-core composers (accum/fused_dot_add.cpp), the Kulisch accumulator (gemm/kulisch.cpp).
// The lane twin that stays apart: the Hopper FP8 vector kernel (gemm/hopper_fp8_kernel.cpp,
// checked against fused_dot_add by test_gemm). tests/cpp/test_round_pack.cpp checks this file
// against an oracle that enumerates each target format's values.
#pragma once

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "formats/encode.hpp"

namespace fp8lab {

// Where the discarded part of a significand lies against half of the last kept bit (APFloat's
// lostFraction: lfExactlyZero, lfLessThanHalf, lfExactlyHalf, lfMoreThanHalf).
enum class LostFraction : std::uint8_t { Zero, BelowHalf, Half, AboveHalf };

namespace detail {

template <class U>
constexpr int bit_width_of(U v) {
  if constexpr (std::numeric_limits<U>::digits <= 64) {
    return std::bit_width(v);
  } else {
    const auto hi = static_cast<std::uint64_t>(v >> 64);
    return hi != 0 ? 64 + std::bit_width(hi) : std::bit_width(static_cast<std::uint64_t>(v));
  }
}

// The whole Format row and options, worked out for round_pack (formats/encode.cpp).
EncodePlan make_encode_plan(const Format& fmt, const EncodeOptions& options);

}  // namespace detail

// What sig / 2^shift (shift >= 1) leaves below its integer part, `sticky` being a non-zero
// remainder below sig's last bit. Shifts of the type's width and more discard all of sig.
template <class U>
constexpr LostFraction lost_fraction(U sig, int shift, bool sticky) {
  constexpr int kWidth = std::numeric_limits<U>::digits;
  if (shift > kWidth) return (sig != 0 || sticky) ? LostFraction::BelowHalf : LostFraction::Zero;
  const U rem = shift == kWidth ? sig : (sig & ((U{1} << shift) - 1));
  const U half = U{1} << (shift - 1);
  if (rem > half || (rem == half && sticky)) return LostFraction::AboveHalf;
  if (rem == half) return LostFraction::Half;
  return (rem != 0 || sticky) ? LostFraction::BelowHalf : LostFraction::Zero;
}

// Whether a magnitude whose kept part ends in `kept_odd` and loses `lost` moves one unit away
// from zero (IEEE 754-2019 §4.3). Stochastic rounding is decided from the fraction's top bits
// (round_to_grid), not from `lost`.
constexpr bool rounds_away(Rounding mode, bool negative, bool kept_odd, LostFraction lost) {
  if (lost == LostFraction::Zero) return false;
  switch (mode) {
    case Rounding::NearestEven: return lost == LostFraction::AboveHalf || (lost == LostFraction::Half && kept_odd);
    case Rounding::TowardZero: return false;
    case Rounding::Up: return !negative;
    case Rounding::Down: return negative;
    case Rounding::Stochastic: return false;
  }
  return false;
}

// A value on a grid: sig * 2^exp. After a carry sig may be 2^precision (one binade up); round_pack
// lets that carry run into the exponent field.
template <class U>
struct Rounded {
  U sig;
  int exp;
};

// (negative ? -1 : 1) * (sig + sticky) * 2^exp rounded to `precision` significant bits, on no
// finer quantum than 2^min_quantum (gradual underflow; pass INT_MIN / 2 for none). `random`
// is the element's stochastic_bits, read only by Rounding::Stochastic: the result moves away
// from zero iff the discarded fraction's top 32 bits + random >= 2^32. Precondition: sticky is
// set only when sig is at least two bits wider than the grid keeps (so that it lies below half
// a quantum), as every caller arranges.
template <class U>
constexpr Rounded<U> round_to_grid(bool negative, U sig, int exp, bool sticky, int precision, int min_quantum,
                                   Rounding mode, std::uint32_t random = 0) {
  constexpr int kWidth = std::numeric_limits<U>::digits;
  const int top = exp + detail::bit_width_of(sig) - 1;  // exponent of the leading bit
  const int q = std::max(top - (precision - 1), min_quantum);
  const int shift = q - exp;
  if (shift <= 0) return {static_cast<U>(sig << -shift), q};  // exact: at most `precision` bits
  const U kept = shift >= kWidth ? U{0} : static_cast<U>(sig >> shift);
  bool away = false;
  if (mode == Rounding::TowardZero) {
    // Truncation: nothing to look at below the kept bits (the tensor cores' common case).
  } else if (mode == Rounding::Stochastic) {
    // The top 32 bits of the fraction rem / 2^shift, with the true shift, so that the
    // probability does not depend on the significand's type.
    using Wide = std::conditional_t<(kWidth <= 64), std::uint64_t, U>;
    constexpr int kWide = std::numeric_limits<Wide>::digits;
    const Wide rem = shift >= kWidth ? sig : static_cast<U>(sig & ((U{1} << shift) - 1));
    const Wide frac32 = shift >= 32 ? (shift - 32 >= kWide ? Wide{0} : rem >> (shift - 32)) : (rem << (32 - shift));
    away = static_cast<std::uint64_t>(frac32) + random >= (std::uint64_t{1} << 32);
  } else {
    away = rounds_away(mode, negative, (kept & 1u) != 0, lost_fraction(sig, shift, sticky));
  }
  return {static_cast<U>(kept + (away ? 1u : 0u)), q};
}

// The round-and-pack: (negative ? -1 : 1) * (sig + sticky) * 2^exp as the bit pattern of the
// plan's format (right-aligned), rounded by the plan's mode, with its zero, flush and overflow
// rules. `index` picks the stochastic bits. Finite inputs only: NaN and Inf are the caller's.
// round_pack_random is the same with the stochastic word given (PTX cvt.rs's rbits, aligned to
// the top of the word: quant/stochastic.hpp) instead of drawn from (seed, index).
template <class U>
inline std::uint32_t round_pack_random(const detail::EncodePlan& p, bool negative, U sig, int exp, bool sticky,
                                       std::uint32_t random) {
  const std::uint32_t sign = negative ? p.sign_bit : 0u;
  const Rounded<U> r = round_to_grid(negative, sig, exp, sticky, p.m + 1, p.qmin, p.rounding, random);
  // No -0 (FNUZ: that pattern is NaN) or no zero at all (UE8M0: 0x00, the smallest value): +0.
  const std::uint32_t zero = p.signed_zero ? sign : 0u;
  if (r.sig == 0) return zero;
  // The code is n + ((q - qmin) << m): a carry out of the significand runs into the exponent
  // field by itself.
  const std::uint64_t code = static_cast<std::uint64_t>(r.sig) +
                             (static_cast<std::uint64_t>(r.exp - p.qmin) << p.m) - p.code_offset;
  if (p.flush && code < (std::uint64_t{1} << p.m)) return zero;
  if (code > p.max_code) return (negative ? p.overflow_neg : p.overflow_pos) | sign;
  return static_cast<std::uint32_t>(code) | sign;
}

template <class U>
inline std::uint32_t round_pack(const detail::EncodePlan& p, bool negative, U sig, int exp, bool sticky,
                                std::uint64_t index = 0) {
  const std::uint32_t random = p.rounding == Rounding::Stochastic ? stochastic_bits(p.seed, index) : 0u;
  return round_pack_random(p, negative, sig, exp, sticky, random);
}

}  // namespace fp8lab

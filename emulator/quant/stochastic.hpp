// Stochastic rounding driven by given random bits, as PTX `cvt.rs.satfinite` takes them (its
// `rbits` operand), so that SR is a deterministic function of (x, rbits) that can be checked bit
// for bit against a kernel that records its random bits.
//
// The model: the `width` random bits r are added, as an unsigned integer, to the top `width` bits
// of the part of x's significand that the destination format discards (aligned at the most
// significant discarded bit, the rest of that part below them ignored); a carry out rounds the
// magnitude away from zero: P(away) = floor(frac * 2^width) / 2^width. satfinite: +-Inf and values
// beyond the largest finite become +-max; NaN becomes the format's NaN, or +max where it has none
// (E2M1: "NaN becomes positive MAX_NORM", TransformerEngine util/ptx.cuh).
// Widths: 16 per value for .bf16x2/.f16x2 (a 16-bit half of rbits, as the B200 measurements of
// cvt.rs.satfinite.bf16x2.f32 model it: carry = ((bits & 0xFFFF) + r16) >> 16), 8 per value for the
// x4 forms (TransformerEngine util/ptx.cuh: cvt.rs.satfinite.e2m1x4.f32 "takes 8 random bits per
// element" from rbits). Which byte of rbits feeds which lane is not modelled: callers pass each
// element's own bits. The PTX ISA text itself was not available to this repository's authors.
#pragma once

#include <cstddef>
#include <cstdint>

#include "formats/format.hpp"

namespace fp8lab {

// x rounded to fmt by the model above; width in [1, 32], rbits < 2^width. Throws
// std::invalid_argument naming the argument otherwise.
std::uint32_t round_stochastic_bits(float x, const Format& fmt, std::uint32_t rbits, int width);
// Element-wise over n values (rbits[i] for x[i]); out holds n codes.
void round_stochastic_bits(const float* x, const std::uint32_t* rbits, std::size_t n, const Format& fmt, int width,
                           std::uint32_t* out);

}  // namespace fp8lab

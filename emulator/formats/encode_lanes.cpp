// The lane twin of encode_one and round_pack (formats/encode.cpp, formats/round_pack.hpp) for
// float32 arrays, and the table decoder: the casts' hot loops, compiled once per instruction set
// (formats/lanes.hpp). The encoder has no early returns and no rounding switch inside the loop, so
// the compiler vectorises it: every decision is a select on 32-bit lanes, and every flag of the
// plan is folded into a constant first (loop-invariant branches make GCC split the loop and give
// up). Same arithmetic and steps as the scalar path; tests/cpp/test_formats_lanes.cpp checks every
// variant against encode() bit for bit, and test_formats_cuda checks both against CUDA.
#include "formats/lanes.hpp"

#include <bit>

#include "common/isa.hpp"

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using Plan = detail::EncodePlan;

struct LanePlan {
  std::uint32_t sign_keep;       // 1 for signed formats, 0 for unsigned (|x| is taken)
  std::uint32_t sign_bit;
  std::int32_t emin, m, qmin;
  std::uint32_t code_offset;
  std::uint32_t max_code;
  std::uint32_t flush_limit;     // codes below this become zero (0 when not flushing)
  std::uint32_t zero_sign_keep;  // 1 when the format has -0; 0 for UE8M0 (no zero) and FNUZ (-0 is NaN)
  std::uint32_t overflow_pos, overflow_neg;  // result magnitude of a finite overflow, by sign
  std::uint32_t inf_result;      // magnitude for +-Inf inputs
  std::uint32_t nan_code;
};

template <Rounding R>
LanePlan make_lane_plan(const Plan& p) {
  LanePlan l{};
  l.sign_keep = p.is_signed ? 1u : 0u;
  l.sign_bit = p.sign_bit;
  l.emin = p.emin;
  l.m = p.m;
  l.qmin = p.qmin;
  l.code_offset = static_cast<std::uint32_t>(p.code_offset);
  l.max_code = p.max_code;
  l.flush_limit = p.flush ? (1u << p.m) : 0u;
  l.zero_sign_keep = p.signed_zero ? 1u : 0u;
  // p.rounding is R (encode_float_lanes dispatches on it). Nearest and toward-zero overflow alike
  // for both signs: saying so at compile time lets the compiler drop a select on the sign per lane.
  l.overflow_pos = p.overflow_pos;
  l.overflow_neg = R == Rounding::Up || R == Rounding::Down ? p.overflow_neg : p.overflow_pos;
  l.inf_result = p.inf_code;
  l.nan_code = p.nan_code;
  return l;
}

template <Rounding R>
inline std::uint32_t encode_float_lane(std::uint32_t u, const LanePlan& p) {
  const std::uint32_t negative = (u >> 31) & p.sign_keep;
  const std::uint32_t sign = negative * p.sign_bit;
  const std::uint32_t magnitude = u & 0x7FFFFFFFu;
  const std::int32_t exponent_field = static_cast<std::int32_t>(magnitude >> 23);
  const std::uint32_t fraction = magnitude & 0x7FFFFFu;
  const std::uint32_t significand = exponent_field != 0 ? (fraction | 0x800000u) : fraction;
  const std::int32_t e1 = exponent_field > 1 ? exponent_field : 1;
  const std::int32_t quantum_exp = e1 - 150;
  const std::int32_t top = e1 - 127 > p.emin ? e1 - 127 : p.emin;
  const std::int32_t q = top - p.m;
  const std::int32_t shift_wide = q - quantum_exp;
  const std::uint32_t s = static_cast<std::uint32_t>(shift_wide < 31 ? shift_wide : 31);
  std::uint32_t n = significand >> s;
  const std::uint32_t rem = significand & ((1u << s) - 1u);
  std::uint32_t up;
  if constexpr (R == Rounding::NearestEven) {
    const std::uint32_t half = (1u << s) >> 1;
    up = static_cast<std::uint32_t>(rem > half) | (static_cast<std::uint32_t>(rem == half && rem != 0) & n);
    up &= 1u;
  } else if constexpr (R == Rounding::TowardZero) {
    up = 0;
  } else if constexpr (R == Rounding::Up) {
    up = static_cast<std::uint32_t>(rem != 0) & (negative ^ 1u);
  } else {
    up = static_cast<std::uint32_t>(rem != 0) & negative;
  }
  n += up;
  const std::uint32_t code = n + (static_cast<std::uint32_t>(q - p.qmin) << p.m) - p.code_offset;
  const bool zero = n == 0 || code < p.flush_limit;
  std::uint32_t r = code > p.max_code ? (negative ? p.overflow_neg : p.overflow_pos) : code;
  r = zero ? 0u : r;
  r |= zero ? sign * p.zero_sign_keep : sign;
  r = exponent_field == 255 ? (fraction != 0 ? p.nan_code : (p.inf_result | sign)) : r;
  return r;
}

// Nearest-even, the common case, in about half the operations of encode_float_lane, for targets
// whose codes start at zero (code_offset 0), that drop at least one fraction bit (m <= 22) and whose
// quantum 2^qmin is at least 2^-125. The target's normal binades: the integer add-and-shift that
// rounds half to even through the last kept bit and carries a rounded-up fraction into the
// exponent. Its subnormals: one float32 addition of 2^(qmin + 23), whose ulp is the target's
// quantum, so that IEEE round-to-nearest-even rounds exactly once (the input is below 2^emin, so
// the sum stays in that binade). float32 subnormal inputs round to zero there whatever they are,
// so a DAZ mode could not change a result. An infinite input's code lies beyond max_code, and
// under nearest-even an infinity becomes what an overflow becomes (make_encode_plan), so it takes
// the overflow select; only NaN needs its own. The codes then go as in encode_float_lane.
struct NearestPlan {
  std::uint32_t sign_shift;      // u >> sign_shift puts float32's sign on the target's sign bit
  std::uint32_t sign_bit;        // 0 for unsigned formats (|x| is taken)
  std::uint32_t sh;              // 23 - m: fraction bits dropped in the normal binades
  std::uint32_t rebias;          // (126 + emin) << m: float32 exponent field to the target's
  std::uint32_t min_normal;      // float32 bits of 2^emin
  float magic;                   // 2^(qmin + 23)
  std::uint32_t magic_bits;
  std::uint32_t max_code;
  std::uint32_t zero_limit;      // codes below this become zero: 1, or 2^m when flushing
  std::uint32_t zero_sign;       // sign_bit when a zero keeps its sign, else 0
  std::uint32_t overflow;        // magnitude of an overflow and of an infinity
  std::uint32_t nan_code;
};

bool nearest_takes(const Plan& p) {
  return p.rounding == Rounding::NearestEven && p.code_offset == 0 && p.m <= 22 && p.qmin >= -125 &&
         p.overflow_pos == p.overflow_neg && p.inf_code == p.overflow_pos;
}

NearestPlan make_nearest_plan(const Plan& p) {
  NearestPlan l{};
  l.sign_bit = p.is_signed ? p.sign_bit : 0u;
  l.sign_shift = static_cast<std::uint32_t>(31 - (l.sign_bit ? std::countr_zero(l.sign_bit) : 0));
  l.sh = static_cast<std::uint32_t>(23 - p.m);
  l.rebias = static_cast<std::uint32_t>(126 + p.emin) << p.m;
  l.min_normal = static_cast<std::uint32_t>(p.emin + 127) << 23;
  l.magic_bits = static_cast<std::uint32_t>(p.qmin + 23 + 127) << 23;
  l.magic = lanes_cast<float>(l.magic_bits);
  l.max_code = p.max_code;
  l.zero_limit = p.flush ? (1u << p.m) : 1u;
  l.zero_sign = p.signed_zero ? l.sign_bit : 0u;
  l.overflow = p.overflow_pos;
  l.nan_code = p.nan_code;
  return l;
}

// Whether a zero result needs a select of its own: when it would not keep its sign (no -0: FNUZ,
// UE8M0) or when subnormal results are flushed. Otherwise a zero code with the sign ORed in is
// already the signed zero.
bool zero_needs_select(const NearestPlan& p) { return p.zero_limit != 1u || p.zero_sign != p.sign_bit; }

// c ? a : b for c in {0, 1}. GCC if-converts the plain ternaries of nearest_lane into AVX-512's
// mask registers (30% faster than masks), but for AVX2 and SSE2 leaves branches and a scalar loop:
// there the select is written with masks.
inline std::uint32_t pick(std::uint32_t c, std::uint32_t a, std::uint32_t b) {
#if defined(__AVX512F__)
  return c ? a : b;
#else
  const std::uint32_t m = 0u - c;
  return (a & m) | (b & ~m);
#endif
}

template <bool kZeroSelect>
inline std::uint32_t nearest_lane(std::uint32_t u, const NearestPlan& p) {
  const std::uint32_t sign = (u >> p.sign_shift) & p.sign_bit;
  const std::uint32_t magnitude = u & 0x7FFFFFFFu;
  const std::uint32_t normal = ((magnitude + ((1u << (p.sh - 1)) - 1u) + ((magnitude >> p.sh) & 1u)) >> p.sh) - p.rebias;
  const std::uint32_t small = lanes_cast<std::uint32_t>(lanes_cast<float>(magnitude) + p.magic) - p.magic_bits;
  const std::uint32_t code = pick(magnitude >= p.min_normal, normal, small);
  std::uint32_t r = pick(code > p.max_code, p.overflow, code) | sign;
  if constexpr (kZeroSelect) r = pick(code < p.zero_limit, sign & p.zero_sign, r);
  return pick(magnitude > 0x7F800000u, p.nan_code, r);
}

template <class Out>
void nearest_lanes(const float* __restrict in, std::size_t n, const Plan& plan, Out* __restrict out) {
  const NearestPlan p = make_nearest_plan(plan);  // a local copy, as in lanes()
  if (zero_needs_select(p)) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(nearest_lane<true>(lanes_cast<std::uint32_t>(in[i]), p));
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(nearest_lane<false>(lanes_cast<std::uint32_t>(in[i]), p));
  }
}

template <Rounding R, class Out>
void lanes(const float* __restrict in, std::size_t n, const Plan& plan, Out* __restrict out) {
  // A local copy: stores through a uint8_t* may alias anything, and would otherwise force the
  // plan to be reloaded every element and block vectorisation.
  const LanePlan p = make_lane_plan<R>(plan);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(encode_float_lane<R>(lanes_cast<std::uint32_t>(in[i]), p));
}

template <class Out>
void lanes_by_rounding(const float* in, std::size_t n, const Plan& p, Out* out) {
  switch (p.rounding) {
    case Rounding::NearestEven:
      if (nearest_takes(p)) return nearest_lanes(in, n, p, out);
      return lanes<Rounding::NearestEven>(in, n, p, out);
    case Rounding::TowardZero: return lanes<Rounding::TowardZero>(in, n, p, out);
    case Rounding::Up: return lanes<Rounding::Up>(in, n, p, out);
    case Rounding::Down: return lanes<Rounding::Down>(in, n, p, out);
    case Rounding::Stochastic: break;  // not taken (lanes_take)
  }
}

template <class T>
void table_lookup(const std::uint8_t* __restrict in, std::size_t n, const T* __restrict table, T* __restrict out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = table[in[i]];
}

}  // namespace

void encode_float_lanes(const float* in, std::size_t n, const detail::EncodePlan& plan, void* out, int out_bits) {
  switch (out_bits) {
    case 8: return lanes_by_rounding(in, n, plan, static_cast<std::uint8_t*>(out));
    case 16: return lanes_by_rounding(in, n, plan, static_cast<std::uint16_t*>(out));
    default: return lanes_by_rounding(in, n, plan, static_cast<std::uint32_t*>(out));
  }
}

void decode_bytes_f32(const std::uint8_t* in, std::size_t n, const float* table, float* out) {
  table_lookup(in, n, table, out);
}
void decode_bytes_f64(const std::uint8_t* in, std::size_t n, const double* table, double* out) {
  table_lookup(in, n, table, out);
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, encode_float_lanes,
                      (const float* in, std::size_t n, const detail::EncodePlan& plan, void* out, int out_bits),
                      (in, n, plan, out, out_bits))
FP8LAB_DISPATCH_ENTRY(void, decode_bytes_f32, (const std::uint8_t* in, std::size_t n, const float* table, float* out),
                      (in, n, table, out))
FP8LAB_DISPATCH_ENTRY(void, decode_bytes_f64, (const std::uint8_t* in, std::size_t n, const double* table, double* out),
                      (in, n, table, out))

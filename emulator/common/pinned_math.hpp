// Pinned transcendental functions: results that are a pure function of the input bits, on every
// compiler, C library and machine. libm's expf/exp are not correctly rounded and differ between
// glibc versions, musl, MSVC and CUDA's __expf/expf, so an emulator that called them would give
// different routing decisions on different hosts. Everything here uses only IEEE-754 + - * / and
// explicit std::fma on doubles (no contraction: the build uses -ffp-contract=off), plus exact
// scaling by powers of two; where the double evaluation cannot decide the float rounding, the
// result is settled with Boost.Multiprecision (a Ziv-style "round, and recompute if unsure").
#pragma once

#include "common/bf16.hpp"  // round_to_bf16, the last step of sigmoid_bf16

#include <cstddef>
#include <cstdint>

namespace fp8lab {

// exp(x) correctly rounded to float32 (round to nearest, ties to even — ties never occur: exp of a
// non-zero float is transcendental, and exp(0) = 1 exactly). Subnormal results are rounded
// correctly too; exp(x) > FLT_MAX + half an ulp gives +inf; NaN gives a quiet NaN; exp(-inf) = +0.
float exp_f32(float x);

// exp(x) evaluated in double with only + - * and std::fma (no libm): the same bits everywhere,
// relative error below 2^-50 (a few double ulps) for |x| <= 708; NOT correctly rounded. Overflow
// gives +inf for x > 709.78, underflow gives +0 for x < -745.2 (results in the double subnormal
// range lose relative accuracy gradually, as any double would). NaN gives a quiet NaN.
// Meant for callers that need a platform-independent exp in double (e.g. softmax references).
double exp_f64_pinned(double x);

// The logistic sigmoid 1 / (1 + exp(-x)), correctly rounded to float32 (nearest even; the only
// exactly representable value is sigmoid(0) = 0.5). Defined as the correctly rounded value of the
// real function — not as a composition of rounded steps — because that is the one definition that
// does not depend on how exp and the division were implemented; any sane float32 kernel (torch's
// sigmoid on CUDA/CPU computes in float32) lands within an ulp or two of it, and the MoE verdicts
// budget for exactly that difference. NaN gives a quiet NaN; sigmoid(-inf) = +0, sigmoid(+inf) = 1.
float sigmoid_f32(float x);

// sigmoid as torch computes it on a bfloat16 tensor: the bf16 input is widened to float32, the
// sigmoid is computed in float32 and the result is rounded to bfloat16 once (round to nearest
// even) — PyTorch's CPU/CUDA kernels for reduced-precision floats use an `opmath` of float.
// Here: round_to_bf16(sigmoid_f32(x)) (common/bf16.hpp). The float32 step is correctly rounded, so this is a double
// rounding (real -> f32 -> bf16), which is what the kernels do too. The input is used as given
// (callers pass a value already rounded to bf16 when modelling a bf16 tensor). Returns the bf16
// value as a float (exactly representable).
float sigmoid_bf16(float x);

// out[i] = sigmoid_f32(x[i]) for i < n, the same bits: most elements by the vectorised twin below,
// the rest (NaN, 0, |x| outside [-104, 40], and the rare results the double evaluation cannot
// decide) by sigmoid_f32 itself. x and out must not overlap. Serial (callers split the work).
void sigmoid_f32_array(const float* x, std::size_t n, float* out);
// The twin, built once per instruction set (common/pinned_math_lanes.cpp, common/isa.hpp): out[i]
// is sigmoid_f32(x[i]) wherever unsure[i] is 0; where it is 1, sigmoid_f32 must be called.
void sigmoid_f32_lanes(const float* x, std::size_t n, float* out, std::uint8_t* unsure);


// How many evaluations (exp_f32 and sigmoid_f32 together) needed the multiprecision fallback since
// the process started. For tests and benchmarks: shows that the fallback path is exercised.
std::uint64_t pinned_math_fallback_count();

namespace detail {
// The multiprecision paths on their own (always taken, counted as fallbacks): tests compare them
// with the fast paths over whole ranges, so the rarely taken fallback is itself verified.
float exp_f32_multiprecision(float x);      // finite x in [-104, 89]
float sigmoid_f32_multiprecision(float x);  // finite x
}  // namespace detail

}  // namespace fp8lab

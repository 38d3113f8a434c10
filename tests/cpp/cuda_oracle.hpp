// NVIDIA's own definition of the conversions: the host-side functions of cuda_fp8.h, cuda_bf16.h,
// cuda_fp16.h, cuda_fp4.h and cuda_fp6.h, paired with the fp8lab (format, rounding, overflow) each one is.
// Used by test_formats_cuda (boundary values + a fixed 2^24 sample) and exhaustive_casts (all
// 2^32 float32 inputs). Header-only use of CUDA: no device, no nvcc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <vector>

#include "formats/encode.hpp"

namespace fp8lab::testing {

struct CudaCast {
  const char* name;
  const char* fmt;
  Rounding rounding;
  Overflow overflow;
  std::uint32_t (*from_float)(float);
  std::uint32_t (*from_double)(double);  // nullptr where CUDA has no double entry point
};

inline EncodeOptions options_of(const CudaCast& c) {
  EncodeOptions o;
  o.rounding = c.rounding;
  o.overflow = c.overflow;
  return o;
}

// clang-format off
inline const std::vector<CudaCast>& cuda_casts() {
  static const std::vector<CudaCast> casts = {
    {"__nv_cvt_float_to_fp8(E4M3, SATFINITE)", "e4m3", Rounding::NearestEven, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp8(x, __NV_SATFINITE, __NV_E4M3); }},
    {"__nv_cvt_float_to_fp8(E4M3, NOSAT)", "e4m3", Rounding::NearestEven, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp8(x, __NV_NOSAT, __NV_E4M3); }},
    {"__nv_cvt_float_to_fp8(E5M2, SATFINITE)", "e5m2", Rounding::NearestEven, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp8(x, __NV_SATFINITE, __NV_E5M2); }},
    {"__nv_cvt_float_to_fp8(E5M2, NOSAT)", "e5m2", Rounding::NearestEven, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp8(x, __NV_NOSAT, __NV_E5M2); }},
    {"__float2bfloat16_rn", "bf16", Rounding::NearestEven, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); },
     [](double x) -> std::uint32_t { return __bfloat16_as_ushort(__double2bfloat16(x)); }},
    {"__float2bfloat16_rz", "bf16", Rounding::TowardZero, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __bfloat16_as_ushort(__float2bfloat16_rz(x)); }, nullptr},
    {"__float2bfloat16_ru", "bf16", Rounding::Up, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __bfloat16_as_ushort(__float2bfloat16_ru(x)); }, nullptr},
    {"__float2bfloat16_rd", "bf16", Rounding::Down, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __bfloat16_as_ushort(__float2bfloat16_rd(x)); }, nullptr},
    {"__float2half_rn", "fp16", Rounding::NearestEven, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __half_as_ushort(__float2half_rn(x)); },
     [](double x) -> std::uint32_t { return __half_as_ushort(__double2half(x)); }},
    {"__float2half_rz", "fp16", Rounding::TowardZero, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __half_as_ushort(__float2half_rz(x)); }, nullptr},
    {"__float2half_ru", "fp16", Rounding::Up, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __half_as_ushort(__float2half_ru(x)); }, nullptr},
    {"__float2half_rd", "fp16", Rounding::Down, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __half_as_ushort(__float2half_rd(x)); }, nullptr},
    // E8M0 takes |x| (the sign is ignored); cudaRoundPosInf rounds the magnitude up.
    {"__nv_cvt_float_to_e8m0(SATFINITE, RZ)", "ue8m0", Rounding::TowardZero, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero); }, nullptr},
    {"__nv_cvt_float_to_e8m0(NOSAT, RZ)", "ue8m0", Rounding::TowardZero, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundZero); }, nullptr},
    {"__nv_cvt_float_to_e8m0(SATFINITE, RU)", "ue8m0", Rounding::Up, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf); }, nullptr},
    {"__nv_cvt_float_to_e8m0(NOSAT, RU)", "ue8m0", Rounding::Up, Overflow::InfOrNan,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundPosInf); }, nullptr},
    // FP4 always saturates (it has no Inf or NaN).
    {"__nv_cvt_float_to_fp4(E2M1, RN)", "e2m1", Rounding::NearestEven, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest); }, nullptr},
    {"__nv_cvt_float_to_fp4(E2M1, RZ)", "e2m1", Rounding::TowardZero, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundZero); }, nullptr},
    // FP6 always saturates (no Inf or NaN); NaN gives +max (0x1F), as FP4's gives +6.
    {"__nv_cvt_float_to_fp6(E2M3, RN)", "e2m3fn", Rounding::NearestEven, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp6(x, __NV_E2M3, cudaRoundNearest); }},
    {"__nv_cvt_float_to_fp6(E2M3, RZ)", "e2m3fn", Rounding::TowardZero, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundZero); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp6(x, __NV_E2M3, cudaRoundZero); }},
    {"__nv_cvt_float_to_fp6(E3M2, RN)", "e3m2fn", Rounding::NearestEven, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp6(x, __NV_E3M2, cudaRoundNearest); }},
    {"__nv_cvt_float_to_fp6(E3M2, RZ)", "e3m2fn", Rounding::TowardZero, Overflow::Saturate,
     [](float x) -> std::uint32_t { return __nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundZero); },
     [](double x) -> std::uint32_t { return __nv_cvt_double_to_fp6(x, __NV_E3M2, cudaRoundZero); }},
  };
  return casts;
}
// clang-format on

}  // namespace fp8lab::testing

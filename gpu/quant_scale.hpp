// The FP8 quantiser's per-tile arithmetic (scale from amax by the ScaleRule's steps, element
// scaling and cast), written once for host and device: the kernel (sm90_fp8_quant.cu) calls it on
// the GPU, and gpu/tests/test_gpu_host.cpp runs the very same code on the host (with cuda_fp8.h's
// host conversion) against the emulator's quantize(), so the logic is checked without a device.
// Every FP32 operation is a single correctly rounded IEEE operation on both sides (device:
// __fdiv_rn/__fmul_rn; host: -ffp-contract=off).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>
#include <cstring>

#include "gpu/layout.hpp"

namespace fp8lab::gpu {

struct QuantRule {
  int amax_nan;  // AmaxNan: 0 propagate, 1 ignore
  int floor_at;  // FloorAt: 0 none, 1 amax, 2 scale
  float epsilon;
  int form;      // ScaleForm: 0 amax/fmax, 1 amax*(1/fmax), 2 fmax/amax (MX not supported)
  int pow2;      // Pow2: 0 none, 1 ceil log2, 2 exponent-bits ceil, 3 mask mantissa
  bool te_special_cases;
  int apply;     // Apply: 0 divide, 1 reciprocal multiply, 2 multiply
  bool clamp_before_cast;
  bool saturate;  // cast_overflow == Saturate
  bool ue8m0;     // storage == Ue8m0
};

struct QuantScale {
  float apply, dequant;
  unsigned char ue8m0;
};

inline constexpr float kE4m3Max = 448.0f;  // OCP E4M3FN largest finite

FP8LAB_HD inline std::uint32_t q_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
FP8LAB_HD inline float q_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}
FP8LAB_HD inline float q_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
FP8LAB_HD inline float q_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FP8LAB_HD inline bool q_nan(float x) { return (q_bits(x) & 0x7FFFFFFFu) > 0x7F800000u; }
FP8LAB_HD inline bool q_inf(float x) { return (q_bits(x) & 0x7FFFFFFFu) == 0x7F800000u; }
FP8LAB_HD inline bool q_finite(float x) { return (q_bits(x) & 0x7F800000u) != 0x7F800000u; }
// floor(log2 |v|) for finite v != 0, subnormals included, exactly from the bits.
FP8LAB_HD inline int q_ilogb(float v) {
  const std::uint32_t b = q_bits(v) & 0x7FFFFFFFu;
  const int e = int(b >> 23);
  if (e != 0) return e - 127;
  int p = 22;
  while (p > 0 && !(b & (1u << p))) --p;
  return p - 149;
}
// 2^e for e in [-149, 127].
FP8LAB_HD inline float q_pow2(int e) {
  return e >= -126 ? q_float(std::uint32_t(e + 127) << 23) : q_float(1u << (e + 149));
}

// One tile's scale from its amax (quant/scale_rule.cpp compute_tile_scale, step by step).
FP8LAB_HD inline QuantScale quant_tile_scale(float amax, const QuantRule& r) {
  if (r.floor_at == 1 && amax < r.epsilon) amax = r.epsilon;  // false for NaN, like torch.clamp
  float v = 1.0f;
  bool special = false;
  if (r.form == 0) {
    v = q_div(amax, kE4m3Max);
  } else if (r.form == 1) {
    v = q_mul(amax, q_div(1.0f, kE4m3Max));
  } else {
    if (r.te_special_cases && (q_inf(amax) || amax == 0.0f)) {
      v = 1.0f;
      special = true;
    } else {
      v = q_div(kE4m3Max, amax);
      if (r.te_special_cases && q_inf(v)) v = q_float(0x7F7FFFFFu);  // FLT_MAX
      if (r.te_special_cases && q_nan(v)) v = 1.0f;
    }
  }
  if (r.floor_at == 2 && v < r.epsilon) v = r.epsilon;
  if (!special) {
    if (r.pow2 == 1) {  // 2^ceil(log2 v), exactly
      if (q_finite(v) && v > 0.0f) {
        int e = q_ilogb(v);
        if (v != q_pow2(e)) ++e;
        v = e > 127 ? q_float(0x7F800000u) : q_pow2(e);
      }
    } else if (r.pow2 == 2) {  // DeepGEMM ceil_to_ue8m0: exponent field + (mantissa != 0), in [1, 254]
      const std::uint32_t b = q_bits(v) & 0x7FFFFFFFu;
      std::uint32_t e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0 ? 1u : 0u);
      e = e < 1u ? 1u : e > 254u ? 254u : e;
      v = q_float(e << 23);
    } else if (r.pow2 == 3) {  // TE: clear the multiplier's mantissa
      v = q_float(q_bits(v) & 0xFF800000u);
    }
  }
  QuantScale s;
  if (r.form == 2) {
    s.apply = v;
    s.dequant = q_div(1.0f, v);
  } else {
    s.apply = r.apply == 1 ? q_div(1.0f, v) : v;
    s.dequant = v;
  }
  s.ue8m0 = 0;
  if (r.ue8m0) {
    const float d = s.dequant;
    bool ok = q_finite(d) && d > 0.0f;
    int e = 0;
    if (ok) {
      e = q_ilogb(d);
      ok = e >= -127 && e <= 127 && d == q_pow2(e < -149 ? -149 : e);
    }
    s.ue8m0 = ok ? static_cast<unsigned char>(e + 127) : 0xFF;
    s.dequant = ok ? d : q_float(0x7FFFFFFFu);
  }
  return s;
}

// Folds |x| into a running amax: NaN propagates (torch) or is skipped (fmaxf), as the rule says.
FP8LAB_HD inline float quant_amax_step(float acc, float x, int amax_nan) {
  const float a = q_float(q_bits(x) & 0x7FFFFFFFu);
  if (q_nan(a)) return amax_nan == 0 ? a : acc;
  if (q_nan(acc)) return acc;
  return a > acc ? a : acc;
}
// Combines two partial amaxes (the shared-memory reduction): order-free.
FP8LAB_HD inline float quant_amax_combine(float a, float b, int amax_nan) {
  if (q_nan(a) || q_nan(b)) return amax_nan == 0 ? q_float(0x7FFFFFFFu) : (q_nan(a) ? b : a);
  return a > b ? a : b;
}

// One element: scale, optional clamp to +-448 (NaN passes), cast to E4M3 with round-to-nearest-even
// (cuda_fp8.h: satfinite, or NOSAT where |x| > 464 becomes NaN).
FP8LAB_HD inline unsigned char quant_element(float x, const QuantScale& s, const QuantRule& r) {
  float q = r.apply == 0 ? q_div(x, s.apply) : q_mul(x, s.apply);
  if (r.clamp_before_cast) q = q > kE4m3Max ? kE4m3Max : q < -kE4m3Max ? -kE4m3Max : q;
  return __nv_cvt_float_to_fp8(q, r.saturate ? __NV_SATFINITE : __NV_NOSAT, __NV_E4M3);
}

}  // namespace fp8lab::gpu

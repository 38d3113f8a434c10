// The FP8 block quantiser kernel (see the header). The scale steps follow quant/scale_rule.hpp's
// ScaleRule field by field; each step cites the same sources the emulator's rule table cites.
#include "gpu/sm90_fp8_quant.hpp"

#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"

namespace fp8lab::gpu {

namespace {

struct DeviceRule {
  int amax_nan;  // AmaxNan
  int floor_at;  // FloorAt
  float epsilon;
  int form;      // ScaleForm (not MxSharedExponent)
  int pow2;      // Pow2
  bool te_special_cases;
  int apply;     // Apply
  bool clamp_before_cast;
  bool saturate;  // cast_overflow == Saturate
  bool ue8m0;     // storage == Ue8m0
};

constexpr float kFmax = 448.0f;  // E4M3 (OCP E4M3FN) largest finite
constexpr int kThreads = 256;

__device__ __forceinline__ bool is_nan(float x) { return x != x; }
__device__ __forceinline__ bool is_finite(float x) { return fabsf(x) <= 3.402823466e38f; }

// floor(log2 v) for finite v > 0, subnormals included (exact, from the bits).
__device__ __forceinline__ int ilogb_bits(float v) {
  const unsigned b = __float_as_uint(v) & 0x7FFFFFFFu;
  const int e = int(b >> 23);
  if (e != 0) return e - 127;
  return -127 - (__clz(b) - 9);  // subnormal: leading one of the 23-bit mantissa
}
// 2^e as a float for e in [-149, 127].
__device__ __forceinline__ float pow2_bits(int e) {
  return e >= -126 ? __uint_as_float(unsigned(e + 127) << 23) : __uint_as_float(1u << (e + 149));
}

struct Scale {
  float apply, dequant;
  unsigned char ue8m0;
};

__device__ Scale tile_scale(float amax, const DeviceRule& r) {
  if (r.floor_at == 1 && amax < r.epsilon) amax = r.epsilon;  // FloorAt::Amax; false for NaN
  float v = 1.0f;
  bool special = false;
  if (r.form == 0) {
    v = __fdiv_rn(amax, kFmax);
  } else if (r.form == 1) {
    v = __fmul_rn(amax, __fdiv_rn(1.0f, kFmax));
  } else {
    if (r.te_special_cases && (isinf(amax) || amax == 0.0f)) {
      v = 1.0f;
      special = true;
    } else {
      v = __fdiv_rn(kFmax, amax);
      if (r.te_special_cases && isinf(v)) v = 3.402823466e38f;
      if (r.te_special_cases && is_nan(v)) v = 1.0f;
    }
  }
  if (r.floor_at == 2 && v < r.epsilon) v = r.epsilon;  // FloorAt::Scale
  if (!special) {
    if (r.pow2 == 1) {  // CeilLog2, exactly
      if (is_finite(v) && v > 0.0f) {
        int e = ilogb_bits(v);
        if (v != pow2_bits(e)) ++e;
        v = e > 127 ? __int_as_float(0x7F800000) : pow2_bits(e);
      }
    } else if (r.pow2 == 2) {  // DeepGEMM ceil_to_ue8m0: exponent field + (mantissa != 0), in [1, 254]
      const unsigned b = __float_as_uint(v) & 0x7FFFFFFFu;
      unsigned e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0 ? 1u : 0u);
      e = e < 1u ? 1u : e > 254u ? 254u : e;
      v = __uint_as_float(e << 23);
    } else if (r.pow2 == 3) {  // TE: clear the mantissa
      v = __uint_as_float(__float_as_uint(v) & 0xFF800000u);
    }
  }
  Scale s;
  if (r.form == 2) {
    s.apply = v;
    s.dequant = __fdiv_rn(1.0f, v);
  } else {
    s.apply = r.apply == 1 ? __fdiv_rn(1.0f, v) : v;
    s.dequant = v;
  }
  s.ue8m0 = 0;
  if (r.ue8m0) {
    const float d = s.dequant;
    bool ok = is_finite(d) && d > 0.0f;
    int e = 0;
    if (ok) {
      e = ilogb_bits(d);
      ok = e >= -127 && e <= 127 && d == pow2_bits(e < -149 ? -149 : e);
    }
    s.ue8m0 = ok ? static_cast<unsigned char>(e + 127) : 0xFF;
    s.dequant = ok ? d : __int_as_float(0x7FFFFFFF);
  }
  return s;
}

__device__ __forceinline__ float amax_combine(float a, float b, int nan_mode) {
  if (is_nan(a) || is_nan(b)) return nan_mode == 0 ? __int_as_float(0x7FFFFFFF) : (is_nan(a) ? b : a);
  return a > b ? a : b;
}

__global__ void __launch_bounds__(kThreads) quantize_tiles_kernel(const float* x, unsigned rows, unsigned cols,
                                                                  unsigned tr, unsigned tc, unsigned grid_cols,
                                                                  DeviceRule rule, unsigned char* bits,
                                                                  float* scales, unsigned char* ue8m0) {
  const unsigned tile = blockIdx.x, r0 = (tile / grid_cols) * tr, c0 = (tile % grid_cols) * tc;
  const unsigned r1 = min(r0 + tr, rows), c1 = min(c0 + tc, cols);
  const unsigned w = c1 - c0, n = (r1 - r0) * w;
  float amax = 0.0f;
  for (unsigned i = threadIdx.x; i < n; i += kThreads) {
    const float a = fabsf(x[std::size_t(r0 + i / w) * cols + c0 + i % w]);
    if (is_nan(a)) {
      if (rule.amax_nan == 0) amax = a;
    } else if (!is_nan(amax) && a > amax) {
      amax = a;
    }
  }
  __shared__ float red[kThreads];
  red[threadIdx.x] = amax;
  __syncthreads();
  for (unsigned s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = amax_combine(red[threadIdx.x], red[threadIdx.x + s], rule.amax_nan);
    __syncthreads();
  }
  const Scale sc = tile_scale(red[0], rule);
  if (threadIdx.x == 0) {
    scales[tile] = sc.dequant;
    if (ue8m0) ue8m0[tile] = sc.ue8m0;
  }
  for (unsigned i = threadIdx.x; i < n; i += kThreads) {
    const std::size_t at = std::size_t(r0 + i / w) * cols + c0 + i % w;
    float q = rule.apply == 0 ? __fdiv_rn(x[at], sc.apply) : __fmul_rn(x[at], sc.apply);
    if (rule.clamp_before_cast) q = q > kFmax ? kFmax : q < -kFmax ? -kFmax : q;  // NaN passes
    bits[at] = __nv_cvt_float_to_fp8(q, rule.saturate ? __NV_SATFINITE : __NV_NOSAT, __NV_E4M3);
  }
}

DeviceRule device_rule(const ScaleRule& r) {
  return DeviceRule{static_cast<int>(r.amax_nan), static_cast<int>(r.floor_at), r.epsilon, static_cast<int>(r.form),
                    static_cast<int>(r.pow2), r.te_special_cases, static_cast<int>(r.apply), r.clamp_before_cast,
                    r.cast_overflow == Overflow::Saturate, r.storage == ScaleStorage::Ue8m0};
}

static_assert(static_cast<int>(AmaxNan::Propagate) == 0 && static_cast<int>(FloorAt::Amax) == 1 &&
              static_cast<int>(FloorAt::Scale) == 2 && static_cast<int>(ScaleForm::AmaxOverFmax) == 0 &&
              static_cast<int>(ScaleForm::AmaxTimesInvFmax) == 1 && static_cast<int>(ScaleForm::FmaxOverAmax) == 2 &&
              static_cast<int>(Pow2::CeilLog2) == 1 && static_cast<int>(Pow2::ExponentBitsCeil) == 2 &&
              static_cast<int>(Pow2::MaskMantissa) == 3 && static_cast<int>(Apply::Divide) == 0 &&
              static_cast<int>(Apply::ReciprocalMultiply) == 1,
              "DeviceRule mirrors the enum values of quant/scale_rule.hpp");

}  // namespace

void validate_sm90_fp8_quantize(const float* x, std::size_t rows, std::size_t cols, Tile, const ScaleRule& rule) {
  if (!x && rows * cols != 0) throw std::invalid_argument("x: null pointer for a " + std::to_string(rows) + " x " +
                                                          std::to_string(cols) + " input");
  rule.validate();
  if (rule.form == ScaleForm::MxSharedExponent) {
    throw std::invalid_argument("rule: '" + rule.name + "' uses the MX shared exponent; sm90_fp8_quantize does not");
  }
  if (rows > (1u << 30) || cols > (1u << 30)) throw std::invalid_argument("rows, cols: each must be < 2^30");
}

QTensor sm90_fp8_quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, const ScaleRule& rule) {
  validate_sm90_fp8_quantize(x, rows, cols, tile, rule);
  QTensor q;
  q.rows = rows;
  q.cols = cols;
  q.fmt = "e4m3";
  q.tile = tile;
  q.rule = rule.name;
  const std::size_t tiles = q.tile_grid_rows() * q.tile_grid_cols();
  q.bits.assign(rows * cols, 0);
  q.scales.assign(tiles, 1.0f);
  if (rule.storage == ScaleStorage::Ue8m0) q.scale_bits_ue8m0.assign(tiles, 0);
  if (tiles == 0) return q;
  require_device("sm90_fp8_quantize");
  DeviceBuffer<float> dx(std::vector<float>(x, x + rows * cols));
  DeviceBuffer<unsigned char> dbits(rows * cols), due8m0(rule.storage == ScaleStorage::Ue8m0 ? tiles : 0);
  DeviceBuffer<float> dscales(tiles);
  quantize_tiles_kernel<<<unsigned(tiles), kThreads>>>(dx.data(), unsigned(rows), unsigned(cols),
                                                       unsigned(q.tile_rows_eff()), unsigned(q.tile_cols_eff()),
                                                       unsigned(q.tile_grid_cols()), device_rule(rule), dbits.data(),
                                                       dscales.data(), due8m0.data());
  check_cuda(cudaGetLastError(), "quantize_tiles_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "quantize_tiles_kernel");
  const auto b = dbits.to_host();
  for (std::size_t i = 0; i < b.size(); ++i) q.bits[i] = b[i];
  q.scales = dscales.to_host();
  if (rule.storage == ScaleStorage::Ue8m0) {
    const auto u = due8m0.to_host();
    q.scale_bits_ue8m0.assign(u.begin(), u.end());
  }
  return q;
}

}  // namespace fp8lab::gpu

// The FP8 block quantiser kernel (see the header). The scale steps follow quant/scale_rule.hpp's
// ScaleRule field by field; each step cites the same sources the emulator's rule table cites.
#include "gpu/sm90_fp8_quant.hpp"

#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"
#include "gpu/quant_scale.hpp"

namespace fp8lab::gpu {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) quantize_tiles_kernel(const float* x, unsigned rows, unsigned cols,
                                                                  unsigned tr, unsigned tc, unsigned grid_cols,
                                                                  QuantRule rule, unsigned char* bits,
                                                                  float* scales, unsigned char* ue8m0) {
  const unsigned tile = blockIdx.x, r0 = (tile / grid_cols) * tr, c0 = (tile % grid_cols) * tc;
  const unsigned r1 = min(r0 + tr, rows), c1 = min(c0 + tc, cols);
  const unsigned w = c1 - c0, n = (r1 - r0) * w;
  float amax = 0.0f;
  for (unsigned i = threadIdx.x; i < n; i += kThreads)
    amax = quant_amax_step(amax, x[std::size_t(r0 + i / w) * cols + c0 + i % w], rule.amax_nan);
  __shared__ float red[kThreads];
  red[threadIdx.x] = amax;
  __syncthreads();
  for (unsigned s = kThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = quant_amax_combine(red[threadIdx.x], red[threadIdx.x + s], rule.amax_nan);
    __syncthreads();
  }
  const QuantScale sc = quant_tile_scale(red[0], rule);
  if (threadIdx.x == 0) {
    scales[tile] = sc.dequant;
    if (ue8m0) ue8m0[tile] = sc.ue8m0;
  }
  for (unsigned i = threadIdx.x; i < n; i += kThreads) {
    const std::size_t at = std::size_t(r0 + i / w) * cols + c0 + i % w;
    bits[at] = quant_element(x[at], sc, rule);
  }
}

static_assert(static_cast<int>(AmaxNan::Propagate) == 0 && static_cast<int>(FloorAt::Amax) == 1 &&
              static_cast<int>(FloorAt::Scale) == 2 && static_cast<int>(ScaleForm::AmaxOverFmax) == 0 &&
              static_cast<int>(ScaleForm::AmaxTimesInvFmax) == 1 && static_cast<int>(ScaleForm::FmaxOverAmax) == 2 &&
              static_cast<int>(Pow2::CeilLog2) == 1 && static_cast<int>(Pow2::ExponentBitsCeil) == 2 &&
              static_cast<int>(Pow2::MaskMantissa) == 3 && static_cast<int>(Apply::Divide) == 0 &&
              static_cast<int>(Apply::ReciprocalMultiply) == 1,
              "QuantRule mirrors the enum values of quant/scale_rule.hpp");

}  // namespace

QuantRule quant_rule_of(const ScaleRule& r) {
  return QuantRule{static_cast<int>(r.amax_nan), static_cast<int>(r.floor_at), r.epsilon, static_cast<int>(r.form),
                    static_cast<int>(r.pow2), r.te_special_cases, static_cast<int>(r.apply), r.clamp_before_cast,
                    r.cast_overflow == Overflow::Saturate, r.storage == ScaleStorage::Ue8m0};
}

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
  q.bits = ElementBits(rows * cols, 8);  // E4M3: one byte per element
  q.scales.assign(tiles, 1.0f);
  if (rule.storage == ScaleStorage::Ue8m0) q.scale_bits_ue8m0.assign(tiles, 0);
  if (tiles == 0) return q;
  require_device("sm90_fp8_quantize");
  DeviceBuffer<float> dx(std::vector<float>(x, x + rows * cols));
  DeviceBuffer<unsigned char> dbits(rows * cols), due8m0(rule.storage == ScaleStorage::Ue8m0 ? tiles : 0);
  DeviceBuffer<float> dscales(tiles);
  quantize_tiles_kernel<<<unsigned(tiles), kThreads>>>(dx.data(), unsigned(rows), unsigned(cols),
                                                       unsigned(q.tile_rows_eff()), unsigned(q.tile_cols_eff()),
                                                       unsigned(q.tile_grid_cols()), quant_rule_of(rule), dbits.data(),
                                                       dscales.data(), due8m0.data());
  check_cuda(cudaGetLastError(), "quantize_tiles_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "quantize_tiles_kernel");
  const auto b = dbits.to_host();
  for (std::size_t i = 0; i < b.size(); ++i) q.bits.set(i, b[i]);
  q.scales = dscales.to_host();
  if (rule.storage == ScaleStorage::Ue8m0) {
    const auto u = due8m0.to_host();
    q.scale_bits_ue8m0.assign(u.begin(), u.end());
  }
  return q;
}

}  // namespace fp8lab::gpu

// NVFP4 4over6: see nvfp4.hpp. Every step is the float32 arithmetic of the reference, in its order.
#include "quant/nvfp4.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "common/parallel.hpp"
#include "formats/encode.hpp"

namespace fp8lab {

namespace {

// One row of a tile: sum over its columns, in order, of |fl32(fl32(fl32(q * sf) * gamax) / denom) - x|
// where q is x * enc clamped to +-fmax and rounded to the element format (the candidate's FP4).
float row_error(const float* xr, std::size_t n, const TileScale& c, const Encoder& enc, const Format& fmt, float fmax,
                float gamax, float denom) {
  float err = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    float v = xr[i] * c.apply;
    v = v < -fmax ? -fmax : (v > fmax ? fmax : v);
    const float q = static_cast<float>(decode(enc(v), fmt));
    const float val = ((q * c.dequant) * gamax) / denom;
    err = err + std::fabs(val - xr[i]);
  }
  return err;  // padding columns (x = 0) add |0 - 0| = 0
}

// _sum_4over6_2d_error: 16 row errors reduced as rows[0:8] + rows[8:16], then halves again.
float tree_sum16(std::array<float, 16> e) {
  for (std::size_t w = 8; w >= 1; w /= 2)
    for (std::size_t i = 0; i < w; ++i) e[i] = e[i] + e[i + w];
  return e[0];
}

}  // namespace

void choose_four_over_six(const FourOverSixInput& in, const ScaleRule& rule, const Format& fmt,
                          std::vector<TileScale>& ts) {
  const float fmax = static_cast<float>(fmt.max_finite());
  const float denom = fmax * static_cast<float>(rule.global_scale_max);
  const Encoder enc(fmt, EncodeOptions{});
  const std::size_t gc = (in.cols + in.tile_cols - 1) / in.tile_cols;
  parallel_for(ts.size(), 16, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      // decode_scale_base = fl32(vec_max / 6) * S_enc; map4 = base * 1.5, map6 = base.
      const float base = ((*in.tile_amax)[i] / fmax) * in.global_encode;
      const TileScale c4 = nvfp4_block_scale(base * 1.5f, in.global_encode);
      const TileScale c6 = nvfp4_block_scale(base, in.global_encode);
      const std::size_t r0 = (i / gc) * in.tile_rows, c0 = (i % gc) * in.tile_cols;
      const std::size_t nr = std::min(in.tile_rows, in.rows - r0), nc = std::min(in.tile_cols, in.cols - c0);
      std::array<float, 16> e4{}, e6{};
      for (std::size_t r = 0; r < nr; ++r) {
        const float* xr = in.x + (r0 + r) * in.cols + c0;
        e4[r] = row_error(xr, nc, c4, enc, fmt, fmax, in.tensor_amax, denom);
        e6[r] = row_error(xr, nc, c6, enc, fmt, fmax, in.tensor_amax, denom);
      }
      const bool pick4 = in.tile_rows == 1 ? e4[0] < e6[0] : tree_sum16(e4) < tree_sum16(e6);  // ties: map-to-6
      ts[i] = pick4 ? c4 : c6;
    }
  });
}

}  // namespace fp8lab

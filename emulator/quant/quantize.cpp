// The block quantiser: three deterministic passes (per-row partial amax, per-tile scale, elements),
// each a parallel_for whose chunking does not depend on the thread count; max is exact and
// order-free, so the bits never depend on it either.
#include "quant/quantize.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "quant/nvfp4.hpp"
#include "quant/stochastic.hpp"

namespace fp8lab {

namespace {

std::string shape_str(std::size_t r, std::size_t c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; }

void check_tile_for_rule(const ScaleRule& rule, std::size_t rows, std::size_t cols, Tile tile) {
  // NVFP4 blocks are 16 elements along K: 1x16 (activations, gradients) or 16x16 (weights), the two
  // tilings TransformerEngine's NVFP4 quantizer takes (and 4over6's error reduction assumes).
  if (rule.two_level() && !(tile.cols == 16 && (tile.rows == 1 || tile.rows == 16)))
    throw std::invalid_argument("tile: rule '" + rule.name + "' (NVFP4 two-level scales) takes tiles (1, 16) or (16, 16), got " +
                                shape_str(tile.rows, tile.cols));
  if (rule.tile_elements == 0 || rows == 0 || cols == 0) return;
  const std::size_t tr = tile.rows == 0 ? rows : tile.rows, tc = tile.cols == 0 ? cols : tile.cols;
  if (tr * tc != rule.tile_elements)
    throw std::invalid_argument("tile: rule '" + rule.name + "' needs tiles of exactly " +
                                std::to_string(rule.tile_elements) + " elements (e.g. (1, " +
                                std::to_string(rule.tile_elements) + ")), got " + shape_str(tr, tc) + " = " +
                                std::to_string(tr * tc) + " elements for a " + shape_str(rows, cols) + " matrix");
}

// CastRounding::NearestTiesToZero on top of the nearest-even codes: a value exactly halfway below
// its nearest-even result moves one code toward zero, and a zero result is +0. Differences of a
// float32 and two format values are exact in double. NaN codes are left as encoded.
void ties_toward_zero(const float* v, std::size_t n, std::uint32_t* codes, const Format& f) {
  const std::uint32_t sign = f.sign_mask();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t mag = codes[i] & ~sign;
    if (!std::isfinite(v[i])) continue;
    if (mag != 0) {
      const double a = std::fabs(static_cast<double>(v[i])), hi = decode(mag, f), lo = decode(mag - 1, f);
      if (a < hi && a - lo == hi - a) --mag;
    }
    codes[i] = mag == 0 ? 0u : (codes[i] & sign) | mag;
  }
}

// An unsigned element format (UE8M0) has no sign bit: encoding a negative element would drop its
// sign silently, so it is an error (quantise |x| if magnitudes are what is meant). -0 and NaN pass.
void check_sign(const float* x, std::size_t rows, std::size_t cols, const Format& fmt) {
  if (fmt.is_signed) return;
  for (std::size_t i = 0; i < rows * cols; ++i)
    if (x[i] < 0.0f) {
      char v[32];
      std::snprintf(v, sizeof v, "%.9g", static_cast<double>(x[i]));
      throw std::invalid_argument("x: element [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "] = " + v +
                                  " is negative, but format " + fmt.name +
                                  " is unsigned (no sign bit); quantise |x| or use a signed format");
    }
}

// Checked before the parallel element pass, so a bad word is an error naming it, not a throw inside a worker.
void check_random_bits(const StochasticBits& sr, std::size_t n) {
  if (sr.width < 1 || sr.width > 32)
    throw std::invalid_argument("width: random bits per value must be in [1, 32], got " + std::to_string(sr.width));
  if (n != 0 && sr.rbits == nullptr) throw std::invalid_argument("rbits: null pointer for a non-empty matrix");
  for (std::size_t i = 0; i < n && sr.width < 32; ++i)
    if ((sr.rbits[i] >> sr.width) != 0)
      throw std::invalid_argument("rbits: word " + std::to_string(i) + " = " + std::to_string(sr.rbits[i]) +
                                  " has bits above its width " + std::to_string(sr.width));
}

}  // namespace

QTensor quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt_name,
                 const ScaleRule& rule, const StochasticBits* sr) {
  const Format& fmt = format_by_name(fmt_name);  // throws naming the format
  rule.validate();
  if (x == nullptr && rows * cols != 0) throw std::invalid_argument("x: null pointer for a non-empty matrix");
  if (sr != nullptr) check_random_bits(*sr, rows * cols);
  if (fmt.storage_bits() > 32) throw std::invalid_argument("fmt: element format wider than 32 bits");
  check_tile_for_rule(rule, rows, cols, tile);
  check_sign(x, rows, cols, fmt);

  QTensor q;
  q.rows = rows;
  q.cols = cols;
  q.fmt = fmt.name;
  q.tile = tile;
  q.rule = rule.name;
  q.rule_spec = rule.to_json();
  q.bits.assign(rows * cols, 0u);
  const std::size_t gr = q.tile_grid_rows(), gc = q.tile_grid_cols();
  const std::size_t tr = q.tile_rows_eff(), tc = q.tile_cols_eff();
  q.scales.assign(gr * gc, 1.0f);
  if (rows == 0 || cols == 0) return q;

  // 1. Partial amax of each row's segment in each tile column.
  std::vector<float> part(rows * gc, 0.0f);
  const AmaxNan nan = rule.amax_nan;
  parallel_for(rows, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      for (std::size_t t = 0; t < gc; ++t) {
        const std::size_t c1 = std::min(cols, (t + 1) * tc);
        // |x| compared as integers: for non-NaN floats the order of (bits & 0x7FFFFFFF) is the order
        // of |x|, and NaN patterns lie above +Inf, so a plain max propagates NaN; Ignore zeroes
        // them first. Branch-free, so the compiler vectorises it.
        std::uint32_t acc = 0;
        if (nan == AmaxNan::Propagate) {
          for (std::size_t c = t * tc; c < c1; ++c) acc = std::max(acc, std::bit_cast<std::uint32_t>(xr[c]) & 0x7FFFFFFFu);
        } else {
          for (std::size_t c = t * tc; c < c1; ++c) {
            const std::uint32_t u = std::bit_cast<std::uint32_t>(xr[c]) & 0x7FFFFFFFu;
            acc = std::max(acc, u > 0x7F800000u ? 0u : u);
          }
        }
        part[r * gc + t] = std::bit_cast<float>(acc);
      }
    }
  });
  // 2. Tile amax (max over the tile's rows: exact in any order) and scale. Two-level rules first
  // take the tensor's amax (the max of the partial amaxes) and its encode scale S_enc.
  const auto fold = [nan](float acc, float p) {
    return (p != p) ? (nan == AmaxNan::Propagate ? p : acc) : (p > acc ? p : acc);
  };
  float tensor_amax = 0.0f, global_encode = 1.0f;
  if (rule.two_level()) {
    for (const float p : part) tensor_amax = fold(tensor_amax, p);
    global_encode = nvfp4_global_encode(tensor_amax, rule, fmt);
    q.global_scale = 1.0f / global_encode;  // global_decode_scale = 1 / global_encode_scale
    q.global_amax = tensor_amax;
  }
  std::vector<TileScale> ts(gr * gc);
  std::vector<float> tile_amax(gr * gc);
  parallel_for(gr * gc, 256, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      const std::size_t br = i / gc, bc = i % gc;
      float acc = 0.0f;
      const std::size_t r1 = std::min(rows, (br + 1) * tr);
      for (std::size_t r = br * tr; r < r1; ++r) acc = fold(acc, part[r * gc + bc]);
      tile_amax[i] = acc;
      ts[i] = compute_tile_scale(acc, rule, fmt, global_encode);
    }
  });
  if (rule.four_over_six)
    choose_four_over_six({x, rows, cols, tr, tc, &tile_amax, global_encode, tensor_amax}, rule, fmt, ts);
  for (std::size_t i = 0; i < ts.size(); ++i) q.scales[i] = ts[i].dequant;
  if (rule.storage == ScaleStorage::Ue8m0) {
    q.scale_bits_ue8m0.resize(ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) q.scale_bits_ue8m0[i] = ts[i].ue8m0;
  }
  // 3. Elements.
  EncodeOptions cast;
  cast.overflow = rule.cast_overflow;
  const Encoder enc(fmt, cast);
  const float fmax = static_cast<float>(fmt.max_finite());
  const bool clamp = rule.clamp_before_cast;
  const bool divide = rule.apply == Apply::Divide;
  parallel_for(rows, 16, [&](std::size_t r0, std::size_t r1) {
    float buf[256];
    for (std::size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      std::uint32_t* out = q.bits.data() + r * cols;
      const TileScale* trow = ts.data() + (r / tr) * gc;
      for (std::size_t t = 0; t < gc; ++t) {
        const float s = trow[t].apply;
        const std::size_t c1 = std::min(cols, (t + 1) * tc);
        // Scale (and clamp) a chunk in plain loops the compiler vectorises, then encode it in bulk.
        for (std::size_t c0 = t * tc; c0 < c1; c0 += 256) {
          const std::size_t len = std::min<std::size_t>(256, c1 - c0);
          if (divide) {
            for (std::size_t i = 0; i < len; ++i) buf[i] = xr[c0 + i] / s;
          } else {
            for (std::size_t i = 0; i < len; ++i) buf[i] = xr[c0 + i] * s;
          }
          if (clamp) {
            // torch.clamp: NaN stays NaN; -fmax/+fmax bound everything else (Inf included).
            for (std::size_t i = 0; i < len; ++i) buf[i] = buf[i] < -fmax ? -fmax : (buf[i] > fmax ? fmax : buf[i]);
          }
          if (sr != nullptr) {
            round_stochastic_bits(buf, sr->rbits + r * cols + c0, len, fmt, sr->width, out + c0);
            continue;
          }
          enc.encode_u32(buf, len, out + c0);
          if (rule.cast_rounding == CastRounding::NearestTiesToZero) ties_toward_zero(buf, len, out + c0, fmt);
        }
      }
    }
  });
  return q;
}

QTensor quantize(const double* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt,
                 const ScaleRule& rule) {
  if (x == nullptr && rows * cols != 0) throw std::invalid_argument("x: null pointer for a non-empty matrix");
  std::vector<float> f(rows * cols);
  for (std::size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(x[i]);
    if (static_cast<double>(f[i]) != x[i] && !std::isnan(x[i]))
      throw std::invalid_argument("x: element [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) +
                                  "] is not a float32 value; the scale rules compute in float32, cast first");
  }
  return quantize(f.data(), rows, cols, tile, fmt, rule);
}

void validate_qtensor(const QTensor& q, std::string_view arg_view) {
  const std::string arg(arg_view);
  const Format& f = format_by_name(q.fmt);
  if (q.bits.size() != q.rows * q.cols)
    throw std::invalid_argument(arg + ": " + std::to_string(q.bits.size()) + " element patterns for a " +
                                shape_str(q.rows, q.cols) + " matrix");
  const std::size_t ns = q.tile_grid_rows() * q.tile_grid_cols();
  if (q.scales.size() != ns)
    throw std::invalid_argument(arg + ": " + std::to_string(q.scales.size()) + " scales, expected " +
                                std::to_string(ns) + " for tile " + shape_str(q.tile.rows, q.tile.cols) + " on a " +
                                shape_str(q.rows, q.cols) + " matrix");
  const std::uint32_t limit = f.total_bits() >= 32 ? 0xFFFFFFFFu : ((1u << f.total_bits()) - 1u);
  for (std::size_t i = 0; i < q.bits.size(); ++i)
    if (q.bits[i] > limit)
      throw std::invalid_argument(arg + ": element " + std::to_string(i) + " has bits above the " +
                                  std::to_string(f.total_bits()) + "-bit format '" + f.name + "'");
  if (!q.scale_bits_ue8m0.empty()) {
    if (q.scale_bits_ue8m0.size() != ns)
      throw std::invalid_argument(arg + ": " + std::to_string(q.scale_bits_ue8m0.size()) +
                                  " UE8M0 scale bytes, expected " + std::to_string(ns));
    for (std::size_t i = 0; i < ns; ++i) {
      const std::uint8_t b = q.scale_bits_ue8m0[i];
      const float want = b == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(b) - 127);
      const float got = q.scales[i];
      if (!(got == want || (std::isnan(got) && std::isnan(want))))
        throw std::invalid_argument(arg + ": scale " + std::to_string(i) + " is " + std::to_string(got) +
                                    " but its UE8M0 byte " + std::to_string(int(b)) + " means 2^" +
                                    std::to_string(int(b) - 127));
    }
  }
}

const ScaleRule& rule_of(const QTensor& q) {
  if (!q.rule_spec.empty()) {
    thread_local ScaleRule custom;
    custom = scale_rule_from_json(q.rule_spec);
    return custom;
  }
  return scale_rule_by_name(q.rule);
}

namespace {

// element * scale in T: binary64 (exact for every format and scale here) or binary32 (one rounding,
// as a kernel's FP32 dequantisation).
template <class T>
std::vector<T> dequantize_as(const QTensor& q) {
  validate_qtensor(q, "q");
  std::vector<T> out(q.rows * q.cols);
  const Format& f = q.format();
  parallel_for(q.rows, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t c = 0; c < q.cols; ++c)
        out[r * q.cols + c] = static_cast<T>(decode(q.bits[r * q.cols + c], f)) * static_cast<T>(q.dequant_scale(r, c)) *
                              static_cast<T>(q.global_scale);  // exact for single-level rules (global 1)
  });
  return out;
}

}  // namespace

std::vector<double> dequantize(const QTensor& q) { return dequantize_as<double>(q); }

std::vector<float> dequantize_fp32(const QTensor& q) { return dequantize_as<float>(q); }

QTensor retile(const QTensor& q, Tile tile) {
  const ScaleRule rule = rule_of(q);  // a copy: rule_of may hand out a thread-local
  const std::vector<float> x = dequantize_fp32(q);
  return quantize(x.data(), q.rows, q.cols, tile, q.fmt, rule);
}

}  // namespace fp8lab

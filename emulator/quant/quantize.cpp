// The block quantiser. Single-level rules: one fused pass per band of tiles (amax, scale, cast),
// bands in parallel. Two-level (NVFP4) and 4over6 rules, and very tall tiles: three passes
// (per-row partial amax, per-tile scale, elements). Every pass is a parallel_for whose chunking does not depend on the thread count, and
// a tile's amax folds its rows' segment amaxes in row order on both paths, so the bits never
// depend on the path or the threads.
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

const Format& checked_format(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt_name,
                             const ScaleRule& rule, const StochasticBits* sr = nullptr) {
  const Format& fmt = format_by_name(fmt_name);  // throws naming the format
  rule.validate();
  if (x == nullptr && rows * cols != 0) throw std::invalid_argument("x: null pointer for a non-empty matrix");
  if (sr != nullptr) check_random_bits(*sr, rows * cols);
  if (fmt.storage_bits() > 32) throw std::invalid_argument("fmt: element format wider than 32 bits");
  check_tile_for_rule(rule, rows, cols, tile);
  check_sign(x, rows, cols, fmt);
  return fmt;
}

// The amax of x[0, n) as the float of the largest |x| bit pattern: for non-NaN floats the order
// of (bits & 0x7FFFFFFF) is the order of |x|, and NaN patterns lie above +Inf, so a plain max
// propagates NaN; Ignore zeroes them first. Branch-free integer max, so the compiler vectorises it.
float segment_amax(const float* x, std::size_t n, AmaxNan nan) {
  std::uint32_t acc = 0;
  if (nan == AmaxNan::Propagate) {
    for (std::size_t c = 0; c < n; ++c) acc = std::max(acc, std::bit_cast<std::uint32_t>(x[c]) & 0x7FFFFFFFu);
  } else {
    for (std::size_t c = 0; c < n; ++c) {
      const std::uint32_t u = std::bit_cast<std::uint32_t>(x[c]) & 0x7FFFFFFFu;
      acc = std::max(acc, u & (0u - static_cast<std::uint32_t>(u <= 0x7F800000u)));  // a mask: a select stays scalar
    }
  }
  return std::bit_cast<float>(acc);
}

// A tile's amax from its rows' segment amaxes, folded in row order (max is exact; a NaN row's value
// is kept as the rule says, the last NaN row's under Propagate).
inline float fold_amax(float acc, float p, AmaxNan nan) {
  return (p != p) ? (nan == AmaxNan::Propagate ? p : acc) : (p > acc ? p : acc);
}

// Step 3 of every rule, for one row: scale each element by its tile's scale (x / s or x * m) and
// clamp, in float32, in chunks of up to 2048 elements (plain loops the compiler vectorises), then
// encode each chunk in one bulk call into Out (uint32 words, or the format's storage width), or
// round it stochastically with the given random bits in place of the rule's cast.
class RowCaster {
 public:
  RowCaster(const Format& fmt, const ScaleRule& rule, const StochasticBits* sr)
      : fmt_(fmt), rule_(rule), enc_(fmt, cast_options(rule)), fmax_(static_cast<float>(fmt.max_finite())), sr_(sr) {}

  // x and out: row r of n elements, cut into tiles of tc columns whose scales are tiles[].
  template <class Out>
  void operator()(const float* x, std::size_t r, std::size_t n, std::size_t tc, const TileScale* tiles, Out* out) const {
    x += r * n;
    out += r * n;
    constexpr std::size_t kChunk = 2048;
    float buf[kChunk];
    std::uint32_t codes[kChunk];
    for (std::size_t c0 = 0; c0 < n; c0 += kChunk) {
      const std::size_t c1 = std::min(n, c0 + kChunk), len = c1 - c0;
      for (std::size_t pos = c0; pos < c1;) {
        const std::size_t t = pos / tc, end = std::min(c1, (t + 1) * tc);
        const float s = tiles[t].apply;
        if (rule_.apply == Apply::Divide) {
          for (std::size_t i = pos; i < end; ++i) buf[i - c0] = x[i] / s;
        } else {
          for (std::size_t i = pos; i < end; ++i) buf[i - c0] = x[i] * s;
        }
        pos = end;
      }
      if (rule_.clamp_before_cast) {
        // torch.clamp: NaN stays NaN; -fmax/+fmax bound everything else (Inf included).
        const float fmax = fmax_;
        for (std::size_t i = 0; i < len; ++i) buf[i] = buf[i] < -fmax ? -fmax : (buf[i] > fmax ? fmax : buf[i]);
      }
      if (sr_ != nullptr) {
        round_stochastic_bits(buf, sr_->rbits + r * n + c0, len, fmt_, sr_->width, codes);
        for (std::size_t i = 0; i < len; ++i) out[c0 + i] = static_cast<Out>(codes[i]);
      } else if (rule_.cast_rounding == CastRounding::NearestTiesToZero) {
        enc_.encode_u32(buf, len, codes);
        ties_toward_zero(buf, len, codes, fmt_);
        for (std::size_t i = 0; i < len; ++i) out[c0 + i] = static_cast<Out>(codes[i]);
      } else if constexpr (sizeof(Out) == 4) {
        enc_.encode_u32(buf, len, out + c0);
      } else {
        enc_.encode(buf, len, out + c0);  // Out is the format's storage width (quantize_into checks)
      }
    }
  }

 private:
  static EncodeOptions cast_options(const ScaleRule& rule) {
    EncodeOptions cast;
    cast.overflow = rule.cast_overflow;
    return cast;
  }
  const Format& fmt_;
  const ScaleRule& rule_;
  Encoder enc_;
  float fmax_;
  const StochasticBits* sr_;
};

// The matrix cut into tiles of tr x tc (ragged at the edges), and where the results go.
struct Tiling {
  const float* x;
  std::size_t rows, cols, tr, tc;
  const StochasticBits* sr;  // null: the rule's cast
  std::size_t grid_rows() const { return (rows + tr - 1) / tr; }
  std::size_t grid_cols() const { return (cols + tc - 1) / tc; }
  std::size_t seg_len(std::size_t t) const { return std::min(cols, (t + 1) * tc) - t * tc; }
};

// Rules whose tile scale depends on its own tile only, on bands of tiles up to this many elements
// (a 128 x 7168 band is 0.9 M): one fused pass per band of tr rows, the bands in parallel. Per row
// (a sequential read), each segment's amax folds into its tile's; then the band's scales; then
// its rows are cast while the band is still in cache. Two-level (NVFP4) rules need the tensor's
// amax first, 4over6 compares candidates, and taller bands would leave the cache: three passes.
constexpr std::size_t kBandElements = std::size_t{1} << 20;
bool by_bands(const ScaleRule& rule, const Tiling& m) {
  return !rule.two_level() && !rule.four_over_six && m.tr * m.cols <= kBandElements;
}

template <class Out>
void quantize_bands(const Tiling& m, const Format& fmt, const ScaleRule& rule, Out* bits, std::vector<TileScale>& ts) {
  const std::size_t gc = m.grid_cols();
  const RowCaster cast(fmt, rule, m.sr);
  const AmaxNan nan = rule.amax_nan;
  // About 64 K elements per chunk of bands; chunks depend on the shape only.
  const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 16) / (m.tr * m.cols));
  parallel_for(m.grid_rows(), grain, [&](std::size_t b0, std::size_t b1) {
    std::vector<float> amax(gc);
    for (std::size_t b = b0; b < b1; ++b) {
      const std::size_t r0 = b * m.tr, r1 = std::min(m.rows, r0 + m.tr);
      std::fill(amax.begin(), amax.end(), 0.0f);
      for (std::size_t r = r0; r < r1; ++r)
        for (std::size_t t = 0; t < gc; ++t)
          amax[t] = fold_amax(amax[t], segment_amax(m.x + r * m.cols + t * m.tc, m.seg_len(t), nan), nan);
      TileScale* band = ts.data() + b * gc;
      for (std::size_t t = 0; t < gc; ++t) band[t] = compute_tile_scale(amax[t], rule, fmt);
      for (std::size_t r = r0; r < r1; ++r) cast(m.x, r, m.cols, m.tc, band, bits);
    }
  });
}

// A two-level rule's tensor-level results: the global decode scale S_dec = 1 / S_enc and the
// tensor amax S_enc came from (QTensor's global_scale and global_amax); 1 and 0 otherwise.
struct TensorLevel {
  float scale = 1.0f, amax = 0.0f;
};

// Every rule: 1. each row's segment amaxes; 2. tile amaxes and scales (two-level rules first take
// the tensor's amax and its encode scale S_enc; 4over6 then picks among candidates); 3. elements.
template <class Out>
TensorLevel quantize_three_passes(const Tiling& m, const Format& fmt, const ScaleRule& rule, Out* bits, std::vector<TileScale>& ts) {
  const std::size_t gc = m.grid_cols(), rows = m.rows, cols = m.cols, tr = m.tr, tc = m.tc;
  std::vector<float> part(rows * gc, 0.0f);
  const AmaxNan nan = rule.amax_nan;
  parallel_for(rows, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t t = 0; t < gc; ++t) part[r * gc + t] = segment_amax(m.x + r * cols + t * tc, m.seg_len(t), nan);
  });
  const auto fold = [nan](float acc, float p) { return fold_amax(acc, p, nan); };
  float tensor_amax = 0.0f, global_encode = 1.0f;
  if (rule.two_level()) {
    for (const float p : part) tensor_amax = fold(tensor_amax, p);
    global_encode = nvfp4_global_encode(tensor_amax, rule, fmt);
  }
  std::vector<float> tile_amax(ts.size());
  parallel_for(ts.size(), 256, [&](std::size_t i0, std::size_t i1) {
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
    choose_four_over_six({m.x, rows, cols, tr, tc, &tile_amax, global_encode, tensor_amax}, rule, fmt, ts);
  const RowCaster cast(fmt, rule, m.sr);
  parallel_for(rows, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) cast(m.x, r, cols, tc, ts.data() + (r / tr) * gc, bits);
  });
  return {1.0f / global_encode, rule.two_level() ? tensor_amax : 0.0f};  // global_decode_scale = 1 / global_encode_scale
}

// The bits into Out and the tile scales into ts (grid size).
template <class Out>
TensorLevel quantize_tiles(const Tiling& m, const Format& fmt, const ScaleRule& rule, Out* bits, std::vector<TileScale>& ts) {
  if (m.rows == 0 || m.cols == 0) return {};
  ts.resize(m.grid_rows() * m.grid_cols());
  if (by_bands(rule, m)) {
    quantize_bands(m, fmt, rule, bits, ts);
    return {};
  }
  return quantize_three_passes(m, fmt, rule, bits, ts);
}

Tiling tiling(const float* x, std::size_t rows, std::size_t cols, Tile tile, const StochasticBits* sr = nullptr) {
  return {x, rows, cols, tile.rows == 0 ? rows : tile.rows, tile.cols == 0 ? cols : tile.cols, sr};
}

// quantize_tiles into `bits` of the format's storage width (8, 16 or 32 bits per element): the one
// fused path both the QTensor and the out= entry points take.
TensorLevel quantize_tiles_at_width(const Tiling& m, const Format& fmt, const ScaleRule& rule, void* bits,
                                    std::vector<TileScale>& ts) {
  switch (fmt.storage_bits()) {
    case 8: return quantize_tiles(m, fmt, rule, static_cast<std::uint8_t*>(bits), ts);
    case 16: return quantize_tiles(m, fmt, rule, static_cast<std::uint16_t*>(bits), ts);
    default: return quantize_tiles(m, fmt, rule, static_cast<std::uint32_t*>(bits), ts);
  }
}

}  // namespace

float quantize_into(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt_name,
                    const ScaleRule& rule, const QuantizeOut& out) {
  const Format& fmt = checked_format(x, rows, cols, tile, fmt_name, rule);
  const bool ue8m0 = rule.storage == ScaleStorage::Ue8m0;
  if (rows * cols != 0 && (out.bits == nullptr || (ue8m0 ? out.scale_bytes == nullptr : out.scales == nullptr)))
    throw std::invalid_argument(std::string("out: rule '") + rule.name + "' needs element bits and " +
                                (ue8m0 ? "UE8M0 scale bytes" : "float32 scales"));
  if (out.bits_width != fmt.storage_bits())
    throw std::invalid_argument("out: elements of format " + fmt.name + " are " + std::to_string(fmt.storage_bits()) +
                                " bits wide, not " + std::to_string(out.bits_width));
  const Tiling m = tiling(x, rows, cols, tile);
  std::vector<TileScale> ts;
  const TensorLevel global = quantize_tiles_at_width(m, fmt, rule, out.bits, ts);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    if (out.scales) out.scales[i] = ts[i].dequant;
    if (out.scale_bytes) out.scale_bytes[i] = ts[i].ue8m0;
  }
  return global.scale;
}

QTensor quantize(const float* x, std::size_t rows, std::size_t cols, Tile tile, std::string_view fmt_name,
                 const ScaleRule& rule, const StochasticBits* sr) {
  const Format& fmt = checked_format(x, rows, cols, tile, fmt_name, rule, sr);
  QTensor q;
  q.rows = rows;
  q.cols = cols;
  q.fmt = fmt.name;
  q.tile = tile;
  q.rule = rule.name;
  q.rule_spec = rule.to_json();
  // At the storage width and not zero-filled: the pass below writes every element.
  q.bits = ElementBits::uninitialized(rows * cols, fmt.storage_bits());
  std::vector<TileScale> ts;
  const TensorLevel global = quantize_tiles_at_width(tiling(x, rows, cols, tile, sr), fmt, rule, q.bits.raw(), ts);
  q.global_scale = global.scale;
  q.global_amax = global.amax;
  q.scales.assign(q.tile_grid_rows() * q.tile_grid_cols(), 1.0f);
  for (std::size_t i = 0; i < ts.size(); ++i) q.scales[i] = ts[i].dequant;
  if (rule.storage == ScaleStorage::Ue8m0 && !ts.empty()) {
    q.scale_bits_ue8m0.resize(ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) q.scale_bits_ue8m0[i] = ts[i].ue8m0;
  }
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
  if (!q.bits.empty() && q.bits.width_bits() != f.storage_bits())
    throw std::invalid_argument(arg + ": element patterns stored " + std::to_string(q.bits.width_bits()) +
                                " bits wide, but format '" + f.name + "' is stored in " +
                                std::to_string(f.storage_bits()) + "-bit elements");
  const std::uint32_t limit = f.total_bits() >= 32 ? 0xFFFFFFFFu : ((1u << f.total_bits()) - 1u);
  const std::size_t n = q.bits.size();
  // A branch-free scan first (it vectorises); the index only when something is out of range.
  const bool bad = q.bits.visit([&](const auto* b) {
    std::uint32_t over = 0;
    for (std::size_t i = 0; i < n; ++i) over |= static_cast<std::uint32_t>(b[i]) & ~limit;
    return over != 0;
  });
  for (std::size_t i = 0; bad && i < n; ++i)
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
// as a kernel's FP32 dequantisation). The old statement, per element:
//   out[r, c] = T(decode(bits[r, c])) * T(dequant_scale(r, c)) * T(global_scale).
// Computed here with a table of every pattern's T(decode) (formats up to 16 bits, when the tensor
// has at least as many elements as the table; validate_qtensor has checked that every pattern
// fits the format) and one scale per row and tile, so the inner loop is a load and the same two
// multiplies in the same order: the same bits (tests/cpp/test_quant.cpp DequantizeTable*).
template <class T>
void dequantize_as(const QTensor& q, T* out) {
  validate_qtensor(q, "q");
  const Format& f = q.format();
  std::vector<T> table;
  if (f.total_bits() <= 16 && q.rows * q.cols >= (std::size_t{1} << f.total_bits())) {
    table.resize(std::size_t{1} << f.total_bits());
    for (std::uint32_t b = 0; b < table.size(); ++b) table[b] = static_cast<T>(decode(b, f));
  }
  const T g = static_cast<T>(q.global_scale);
  const std::size_t cols = q.cols, tr = q.tile_rows_eff(), tc = q.tile_cols_eff(), gc = q.tile_grid_cols();
  parallel_for(q.rows, 64, [&](std::size_t r0, std::size_t r1) {
    q.bits.visit([&](const auto* bits) {
      for (std::size_t r = r0; r < r1; ++r) {
        const float* srow = &q.scales[(r / tr) * gc];
        const auto* b = bits + r * cols;
        T* o = out + r * cols;
        for (std::size_t j = 0; j < gc; ++j) {
          const T sc = static_cast<T>(srow[j]);
          const std::size_t c0 = j * tc, c1 = std::min(cols, c0 + tc);
          if (!table.empty()) {
            const T* t = table.data();
            for (std::size_t c = c0; c < c1; ++c) o[c] = t[b[c]] * sc * g;
          } else {
            for (std::size_t c = c0; c < c1; ++c) o[c] = static_cast<T>(decode(b[c], f)) * sc * g;
          }
        }
      }
    });
  });
}

template <class T>
std::vector<T> dequantize_as(const QTensor& q) {
  validate_qtensor(q, "q");
  std::vector<T> out(q.rows * q.cols);
  dequantize_as(q, out.data());
  return out;
}

}  // namespace

void dequantize_into(const QTensor& q, double* out) { dequantize_as(q, out); }
void dequantize_fp32_into(const QTensor& q, float* out) { dequantize_as(q, out); }

std::vector<double> dequantize(const QTensor& q) { return dequantize_as<double>(q); }

std::vector<float> dequantize_fp32(const QTensor& q) { return dequantize_as<float>(q); }

QTensor retile(const QTensor& q, Tile tile) {
  const ScaleRule rule = rule_of(q);  // a copy: rule_of may hand out a thread-local
  const std::vector<float> x = dequantize_fp32(q);
  return quantize(x.data(), q.rows, q.cols, tile, q.fmt, rule);
}

}  // namespace fp8lab

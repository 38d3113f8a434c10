#include "gemm/operand.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "quant/quantize.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab {
namespace {

std::string at(std::size_t r, std::size_t c) { return "[" + std::to_string(r) + ", " + std::to_string(c) + "]"; }

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// q's elements as floats (exact: <= 24 significant bits, fp32 exponent range; NaN and Inf kept, the
// GEMM's NaN/Inf policy in gemm/non_finite.hpp says what they give). Formats up to 16 bits go
// through a table of every pattern, in parallel chunks: one load per element, no per-element
// decode call (the Python GEMM path builds its operands here on every call). The first pattern
// outside the format, by index, is the error.
void decode_elements(const QTensor& q, const Format& f, const std::string& arg, PooledVector<float>& out) {
  const std::size_t n = q.bits.size();
  const std::uint32_t limit = f.total_bits() >= 32 ? 0xFFFFFFFFu : (1u << f.total_bits()) - 1u;
  std::vector<float> table;
  if (f.total_bits() <= 16) {
    table.resize(std::size_t{limit} + 1);
    for (std::uint32_t b = 0; b <= limit; ++b) table[b] = static_cast<float>(decode(b, f));
  }
  out.resize(n);
  constexpr std::size_t kGrain = 1 << 16;
  std::vector<std::size_t> first_bad((n + kGrain - 1) / kGrain, n);
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    q.bits.visit([&](const auto* bits) {  // the patterns at their storage width
      float* o = out.data();
      bool bad = false;
      if (table.empty()) {
        for (std::size_t i = begin; i < end; ++i) {
          bad |= bits[i] > limit;
          o[i] = static_cast<float>(decode(bits[i] & limit, f));
        }
      } else {
        const float* t = table.data();
        for (std::size_t i = begin; i < end; ++i) {
          bad |= bits[i] > limit;
          o[i] = t[bits[i] & limit];
        }
      }
      if (bad)
        for (std::size_t i = begin; i < end; ++i)
          if (bits[i] > limit) {
            first_bad[begin / kGrain] = i;
            return;
          }
    });
  });
  for (const std::size_t i : first_bad)
    if (i != n)
      throw std::invalid_argument(arg + ": element " + at(i / q.cols, i % q.cols) + " has bits " +
                                  std::to_string(q.bits[i]) + " outside the " + std::to_string(f.total_bits()) +
                                  "-bit format " + f.name);
}

}  // namespace

GemmOperand operand_from_qtensor(const QTensor& q, std::string_view arg_view) {
  const std::string arg(arg_view);
  const Format& f = format_by_name(q.fmt);  // throws naming the format
  if (f.mantissa_bits > 23 || f.exponent_bits > 8)
    throw std::invalid_argument(arg + ": element format " + f.name + " is wider than fp32; gemm takes formats within fp32");
  if (q.bits.size() != q.rows * q.cols)
    throw std::invalid_argument(arg + ": QTensor holds " + std::to_string(q.bits.size()) + " element patterns for a " +
                                std::to_string(q.rows) + " x " + std::to_string(q.cols) + " shape");
  if (q.rows && q.cols && q.scales.size() != q.tile_grid_rows() * q.tile_grid_cols())
    throw std::invalid_argument(arg + ": QTensor holds " + std::to_string(q.scales.size()) + " scales for a " +
                                std::to_string(q.tile_grid_rows()) + " x " + std::to_string(q.tile_grid_cols()) +
                                " tile grid");
  GemmOperand x;
  // Only a tensor with a global scale or amax needs its rule (hand-built QTensors may name none).
  const bool global = q.global_scale != 1.0f || q.global_amax != 0.0f;
  const ScaleRule* rule_ptr = global ? &rule_of(q) : nullptr;
  if (global && rule_ptr->two_level()) {
    const ScaleRule& rule = *rule_ptr;
    // S_dec must be the one the amax gives (quant/quantize.cpp): the epilogue's alpha is formed
    // from the amax, the exact reference from S_dec, and the two must describe the same tensor.
    if (std::isinf(q.global_amax) || std::isnan(q.global_amax))
      throw std::invalid_argument(arg + ": two-level QTensor (rule '" + rule.name + "') has tensor amax " +
                                  num(q.global_amax) + " (its input held Inf or NaN); the epilogue's alpha = "
                                  "amax_A * amax_B / (fmax * " + std::to_string(rule.global_scale_max) +
                                  ")^2 would not be finite, so the NVFP4 GEMM refuses it");
    const float encode = nvfp4_global_encode(q.global_amax, rule, f);
    if (!std::isfinite(q.global_scale) || !(q.global_amax >= 0.0f) || !std::isfinite(q.global_amax) ||
        q.global_scale != 1.0f / encode)
      throw std::invalid_argument(arg + ": two-level QTensor (rule '" + rule.name + "') has global_scale " +
                                  num(q.global_scale) + " and global_amax " + num(q.global_amax) +
                                  "; gemm needs a finite amax and S_dec = 1 / fl(" +
                                  std::to_string(rule.global_scale_max) + " * fmax / amax) (pass global_amax to "
                                  "from_parts)");
    x.global_scale = q.global_scale;
    x.global_amax = q.global_amax;
    x.global_numerator = static_cast<float>(rule.global_scale_max) * static_cast<float>(f.max_finite());
  } else if (global) {
    throw std::invalid_argument(arg + ": QTensor has a global scale " + num(q.global_scale) + " (amax " +
                                num(q.global_amax) + ") but its rule '" + rule_ptr->name + "' has one level of scales");
  }
  x.rows = q.rows;
  x.cols = q.cols;
  x.fmt = f.name;
  x.quantised = true;
  x.tile_rows = q.rows == 0 ? 1 : q.tile_rows_eff();
  x.tile_cols = q.cols == 0 ? 1 : q.tile_cols_eff();
  x.scales = q.scales;
  for (std::size_t i = 0; i < x.scales.size(); ++i)
    if (!std::isfinite(x.scales[i]))
      throw std::invalid_argument(arg + ": scale " + std::to_string(i) + " is " + num(x.scales[i]) +
                                  "; gemm needs finite scales");
  decode_elements(q, f, arg, x.elements);
  return x;
}

GemmOperand operand_from_floats(const float* values, std::size_t rows, std::size_t cols, std::string_view arg) {
  return operand_from_floats(PooledVector<float>(values, values + rows * cols), rows, cols, arg);
}

GemmOperand operand_from_floats(PooledVector<float>&& values, std::size_t rows, std::size_t cols, std::string_view arg) {
  if (values.size() != rows * cols)
    throw std::invalid_argument(std::string(arg) + ": holds " + std::to_string(values.size()) + " values for a " +
                                std::to_string(rows) + " x " + std::to_string(cols) + " shape");
  GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = "fp32";
  x.tile_rows = rows ? rows : 1;
  x.tile_cols = cols ? cols : 1;
  x.scales.assign(rows && cols ? 1 : 0, 1.0f);
  x.elements = std::move(values);  // NaN and Inf kept (gemm/non_finite.hpp)
  return x;
}

bool scales_constant_over(const GemmOperand& x, std::size_t len) {
  if (x.rows == 0 || x.cols == 0) return true;
  for (std::size_t k0 = 0; k0 < x.cols; k0 += len) {
    const std::size_t k1 = std::min(x.cols, k0 + len) - 1;
    if (k0 / x.tile_cols == k1 / x.tile_cols) continue;
    for (std::size_t r = 0; r < x.rows; ++r)
      for (std::size_t k = k0 + 1; k <= k1; ++k)
        if (x.scale(r, k) != x.scale(r, k0)) return false;
  }
  return true;
}

}  // namespace fp8lab

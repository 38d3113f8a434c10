#include "gemm/operand.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "formats/encode.hpp"

namespace fp8lab {
namespace {

std::string at(std::size_t r, std::size_t c) { return "[" + std::to_string(r) + ", " + std::to_string(c) + "]"; }

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
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
  x.elements.resize(q.bits.size());
  const std::uint32_t limit = f.total_bits() >= 32 ? 0xFFFFFFFFu : (1u << f.total_bits()) - 1u;
  for (std::size_t i = 0; i < q.bits.size(); ++i) {
    if (q.bits[i] > limit)
      throw std::invalid_argument(arg + ": element " + at(i / q.cols, i % q.cols) + " has bits " +
                                  std::to_string(q.bits[i]) + " outside the " + std::to_string(f.total_bits()) +
                                  "-bit format " + f.name);
    // Exact: <= 24 significant bits, fp32 exponent range. NaN and Inf elements are kept: the
    // GEMM's NaN/Inf policy (gemm/non_finite.hpp) says what they give.
    x.elements[i] = static_cast<float>(decode(q.bits[i], f));
  }
  return x;
}

GemmOperand operand_from_floats(const float* values, std::size_t rows, std::size_t cols, std::string_view arg_view) {
  const std::string arg(arg_view);
  GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = "fp32";
  x.tile_rows = rows ? rows : 1;
  x.tile_cols = cols ? cols : 1;
  x.scales.assign(rows && cols ? 1 : 0, 1.0f);
  x.elements.assign(values, values + rows * cols);  // NaN and Inf kept (gemm/non_finite.hpp)
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

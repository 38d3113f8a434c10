// Block-scaled tensor-core GEMM: see block_scaled.hpp.
#include "gemm/block_scaled.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"

namespace fp8lab {

namespace {

// The UE8M0 exponent of a power-of-two scale (validated by validate_block_scaled).
int scale_exponent(float s) { return std::ilogb(s); }

// One instruction's operands: k elements from column kc (zero-padded past K) and the scale
// exponents of its scale blocks.
struct Slice {
  std::vector<float> pa, pb;
  std::vector<int> ea, eb;
};

void load(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model, std::size_t i, std::size_t j,
          std::size_t kc, Slice& s) {
  const std::size_t k = static_cast<std::size_t>(model.k), sb = static_cast<std::size_t>(model.scale_block);
  const std::size_t kn = std::min(k, a.cols - kc);
  std::fill(s.pa.begin(), s.pa.end(), 0.0f);
  std::fill(s.pb.begin(), s.pb.end(), 0.0f);
  std::copy_n(a.row(i) + kc, kn, s.pa.begin());
  std::copy_n(b.row(j) + kc, kn, s.pb.begin());
  for (std::size_t blk = 0; blk * sb < k; ++blk) {
    const std::size_t kk = std::min(kc + blk * sb, a.cols - 1);  // a padded block reuses the last scale
    s.ea[blk] = scale_exponent(a.scale(i, kk));
    s.eb[blk] = scale_exponent(b.scale(j, kk));
  }
}

Slice make_slice(const TensorCoreModel& model) {
  const std::size_t k = static_cast<std::size_t>(model.k), nb = k / static_cast<std::size_t>(model.scale_block);
  return {std::vector<float>(k), std::vector<float>(k), std::vector<int>(nb), std::vector<int>(nb)};
}

void check_operand(const GemmOperand& x, const char* arg, std::size_t block) {
  for (std::size_t t = 0; t < x.scales.size(); ++t) {
    const float s = x.scales[t];
    const int e = s > 0.0f && std::isfinite(s) ? std::ilogb(s) : 1000;
    if (e < -127 || e > 127 || std::ldexp(1.0f, e) != s)
      throw std::invalid_argument(std::string(arg) + ": scale " + std::to_string(t) + " is " + std::to_string(s) +
                                  "; a block-scaled instruction takes UE8M0 scales (powers of two in [2^-127, 2^127])");
  }
  if (!scales_constant_over(x, block))
    throw std::invalid_argument(std::string(arg) + ": its scales (tile " + std::to_string(x.tile_rows) + " x " +
                                std::to_string(x.tile_cols) + ") vary within the instruction's scale block of " +
                                std::to_string(block) + " elements along K");
}

}  // namespace

void validate_block_scaled(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model) {
  const auto block = static_cast<std::size_t>(model.scale_block);
  check_operand(a, "a", block);
  check_operand(b, "b", block);
}

std::vector<float> block_scaled_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols, k = static_cast<std::size_t>(model.k);
  std::vector<float> acc(M * N, 0.0f);
  parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
    Slice s = make_slice(model);
    for (std::size_t e = e0; e < e1; ++e) {
      float d = 0.0f;
      for (std::size_t kc = 0; kc < K; kc += k) {
        load(a, b, model, e / N, e % N, kc, s);
        d = fused_dot_add_block_scaled(s.pa.data(), s.pb.data(), s.ea.data(), s.eb.data(), d, model);
      }
      acc[e] = d;
    }
  });
  return acc;
}

ChainBound block_scaled_chain_bound(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                    std::size_t i, std::size_t j) {
  const std::size_t K = a.cols, k = static_cast<std::size_t>(model.k), sb = static_cast<std::size_t>(model.scale_block);
  const auto clamped = [](double x, int emin) { return std::max(std::ilogb(x), emin); };
  Slice s = make_slice(model);
  ChainBound out{0.0f, 0.0};
  for (std::size_t kc = 0; kc < K; kc += k) {
    load(a, b, model, i, j, kc, s);
    const float c_in = out.value;
    out.value = fused_dot_add_block_scaled(s.pa.data(), s.pb.data(), s.ea.data(), s.eb.data(), c_in, model);
    // Step 2 (bounds.hpp): terms are aligned to u = 2^(emax - F), emax over C and the products'
    // exponents clamp(ea) + clamp(eb) + scale exponents; each term not a multiple of u errs < u.
    int emax = c_in != 0 ? clamped(c_in, -126) : std::numeric_limits<int>::min();
    for (std::size_t t = 0; t < k; ++t)
      if (s.pa[t] != 0 && s.pb[t] != 0)
        emax = std::max(emax, clamped(s.pa[t], model.input_min_exponent) + clamped(s.pb[t], model.input_min_exponent) +
                                  s.ea[t / sb] + s.eb[t / sb]);
    if (emax != std::numeric_limits<int>::min()) {
      const int ue = emax - model.alignment_frac_bits;
      const auto inexact = [&](double v) {
        const double q = std::ldexp(std::fabs(v), -ue);
        return q != std::floor(q);
      };
      int n = c_in != 0 && inexact(c_in) ? 1 : 0;
      for (std::size_t t = 0; t < k; ++t)
        n += inexact(std::ldexp(static_cast<double>(s.pa[t]) * s.pb[t], s.ea[t / sb] + s.eb[t / sb])) ? 1 : 0;
      out.err += n * std::ldexp(1.0, ue);
    }
    // Step 4: truncation to P significant bits; a result below 2^-125 may land on FP32's subnormal grid.
    if (out.value != 0) out.err += std::ldexp(1.0, std::ilogb(out.value) + 1 - model.output_precision);
    if (std::fabs(out.value) < 0x1p-125) out.err += 0x1p-149;
  }
  return out;
}

}  // namespace fp8lab

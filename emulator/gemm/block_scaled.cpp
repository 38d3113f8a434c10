// Block-scaled tensor-core GEMM: see block_scaled.hpp.
#include "gemm/block_scaled.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "formats/format.hpp"
#include "formats/representable.hpp"
#include "formats/row_constants.hpp"
#include "gemm/block_scaled_kernel.hpp"
#include "gemm/instruction_bound.hpp"

namespace fp8lab {

namespace {

// One instruction's operands: k elements from column kc (zero-padded past K) and the scale values
// of its scale blocks (values of the model's scale format, passed as they are: the instruction
// decodes them, accum/tensor_core.hpp fused_dot_add_scaled).
struct Slice {
  std::vector<float> pa, pb;
  std::vector<float> sa, sb;
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
    s.sa[blk] = a.scale(i, kk);
    s.sb[blk] = b.scale(j, kk);
  }
}

Slice make_slice(const TensorCoreModel& model) {
  const std::size_t k = static_cast<std::size_t>(model.k), nb = k / static_cast<std::size_t>(model.scale_block);
  return {std::vector<float>(k), std::vector<float>(k), std::vector<float>(nb), std::vector<float>(nb)};
}

std::string upper(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

void check_operand(const GemmOperand& x, const char* arg, const TensorCoreModel& model) {
  const Format& sf = format_by_name(model.scale_format);
  const std::size_t t = RepresentableTest(sf).first_bad(x.scales.data(), x.scales.size());
  if (t != x.scales.size())
    throw std::invalid_argument(std::string(arg) + ": scale " + std::to_string(t) + " is " +
                                std::to_string(x.scales[t]) + "; instruction " + model.name + " takes " +
                                upper(sf.name) + " scales (values of the format row '" + sf.name + "': from " +
                                std::to_string(sf.min_positive()) + " to " + std::to_string(sf.max_finite()) + ")");
  const auto block = static_cast<std::size_t>(model.scale_block);
  if (!scales_constant_over(x, block))
    throw std::invalid_argument(std::string(arg) + ": its scales (tile " + std::to_string(x.tile_rows) + " x " +
                                std::to_string(x.tile_cols) + ") vary within the instruction's scale block of " +
                                std::to_string(block) + " elements along K");
}

}  // namespace

void validate_block_scaled(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model) {
  check_operand(a, "a", model);
  check_operand(b, "b", model);
  if (a.two_level() != b.two_level())
    throw std::invalid_argument(std::string(a.two_level() ? "b" : "a") +
                                ": has one level of scales but the other operand is two-level (NVFP4); the epilogue's "
                                "alpha is formed from both operands' tensor amaxes (quantise both with a two-level rule)");
}

void refuse_two_level(const GemmOperand& a, const GemmOperand& b, const char* why) {
  for (const auto* x : {&a, &b})
    if (x->two_level())
      throw std::invalid_argument(std::string(x == &a ? "a" : "b") +
                                  ": is two-level (NVFP4: a global scale after the tile scales); its global scale enters "
                                  "as the epilogue's alpha of a block-scaled tensor-core GEMM (accumulate='tensorcore' "
                                  "on a *_mxf4nvf4_* or *_mxf8f6f4_* instruction), not " +
                                  std::string(why));
}

float block_scaled_alpha(const GemmOperand& a, const GemmOperand& b) {
  if (!a.two_level()) return 1.0f;
  // TransformerEngine common/recipe/nvfp4.cu: factor_inv = 1.0 / (6.0 * 6.0 * 448.0 * 448.0) in
  // double, stored as float; alpha = alpha_in * amax_A * amax_B * factor_inv left to right in float.
  const auto factor_inv =
      static_cast<float>(1.0 / (static_cast<double>(a.global_numerator) * static_cast<double>(b.global_numerator)));
  const float alpha_in = 1.0f;
  return ((alpha_in * a.global_amax) * b.global_amax) * factor_inv;
}

namespace {

// Output (i, j)'s accumulator: accum's instruction chained over K.
float chain(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model, std::size_t i, std::size_t j,
            Slice& s) {
  float d = 0.0f;
  for (std::size_t kc = 0; kc < a.cols; kc += static_cast<std::size_t>(model.k)) {
    load(a, b, model, i, j, kc, s);
    d = fused_dot_add_scaled(s.pa.data(), s.pb.data(), s.sa.data(), s.sb.data(), d, model);
  }
  return d;
}

}  // namespace

std::vector<float> block_scaled_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                           bool fast) {
  const std::size_t M = a.rows, N = b.rows;
  std::vector<float> acc;
  if (fast)
    acc = block_scaled_kernel(a, b, model, [&](std::size_t i, std::size_t j) {
      Slice s = make_slice(model);
      return chain(a, b, model, i, j, s);
    });
  if (acc.size() != M * N) {
    acc.assign(M * N, 0.0f);
    parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
      Slice s = make_slice(model);
      for (std::size_t e = e0; e < e1; ++e) acc[e] = chain(a, b, model, e / N, e % N, s);
    });
  }
  if (a.two_level()) {
    const float alpha = block_scaled_alpha(a, b);
    for (float& v : acc) v = alpha * v;  // cuBLASLt's D = alpha * acc, FP32 scale type
  }
  return acc;
}

ChainBound block_scaled_chain_bound(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                    std::size_t i, std::size_t j) {
  const std::size_t K = a.cols, k = static_cast<std::size_t>(model.k);
  Slice s = make_slice(model);
  ChainBound out{0.0f, 0.0};
  for (std::size_t kc = 0; kc < K; kc += k) {
    load(a, b, model, i, j, kc, s);
    const float c_in = out.value;
    out.value = fused_dot_add_scaled(s.pa.data(), s.pb.data(), s.sa.data(), s.sb.data(), c_in, model);
    // Chained instructions add their bounds: C carries the previous error exactly into the sum.
    out.err += scaled_instruction_error(s.pa.data(), s.pb.data(), s.sa.data(), s.sb.data(), c_in, out.value, model);
  }
  if (a.two_level()) {
    // v = fl(alpha * acc) against G * S (G = S_dec_A * S_dec_B, exact in binary64; S the exact sum,
    // |S - acc| <= err): |v - G S| <= |alpha| err + |alpha - G| (|acc| + err) + u32 |v| + 2^-149.
    const float alpha = block_scaled_alpha(a, b);
    const double g = static_cast<double>(a.global_scale) * b.global_scale;
    const double acc = std::fabs(out.value);
    out.value = alpha * out.value;
    out.err = std::fabs(alpha) * out.err + std::fabs(alpha - g) * (acc + out.err) +
              binary32::kUnitRoundoff * std::fabs(out.value) + binary32::kLeastSubnormal;
  }
  return out;
}

}  // namespace fp8lab

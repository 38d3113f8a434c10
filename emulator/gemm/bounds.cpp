#include "gemm/bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "accum/tensor_core.hpp"
#include "common/parallel.hpp"
#include "formats/row_constants.hpp"
#include "gemm/block_scaled.hpp"
#include "gemm/bound_kernel.hpp"
#include "gemm/bound_steps.hpp"
#include "gemm/fp32_bound_kernel.hpp"
#include "gemm/hopper_fp8_kernel.hpp"
#include "gemm/instruction_bound.hpp"
#include "gemm/non_finite.hpp"

namespace fp8lab {
namespace {

using bound_steps::combine_with_bound;
using bound_steps::finish;
using bound_steps::Fp32Track;
using bound_steps::kEta;
using bound_steps::kInf;
using bound_steps::kSafety;
using bound_steps::kU32;

// floor(log2|x|) clamped below at emin (x != 0).
int clamped_exponent(double x, int emin) { return std::max(std::ilogb(x), emin); }

// Bound of one product fl(x*y) of dequantised operands (x = fl(a*sa), y = fl(b*sb)) against
// (a*sa)*(b*sb); also returns the computed product.
struct ProductTrack {
  float p;
  double err;
};
ProductTrack product_with_bound(float a, float sa, float b, float sb) {
  const float x = a * sa, y = b * sb, p = x * y;
  const double ex = kU32 * std::fabs(x) + kEta, ey = kU32 * std::fabs(y) + kEta;
  const double ax = std::fabs(x), ay = std::fabs(y);
  // |xy - XY| <= |x - X||y| + |X||y - Y| with |X| <= |x| + ex.
  return {p, kU32 * std::fabs(p) + kEta + ex * ay + (ax + ex) * ey};
}

Fp32Track pairwise_with_bound(const ProductTrack* t, std::size_t n) {
  if (n == 0) return {0.0f, 0.0};
  if (n == 1) return {t[0].p, t[0].err};
  const std::size_t h = n / 2;  // the split gemm's pairwise_sum uses
  const Fp32Track l = pairwise_with_bound(t, h), r = pairwise_with_bound(t + h, n - h);
  const float v = l.v + r.v;
  return {v, l.err + r.err + kU32 * std::fabs(v)};
}

// Exact accumulation: one rounding of the exact sum into the output format.
void exact_gemm_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
                      const GemmOptions& options, std::vector<double>& bound) {
  const std::size_t M = a.rows, N = b.rows;
  const int p = output_precision(spec.out), emin = output_min_exponent(spec.out);
  // The bound is sized by the rounded result, so the result is needed: RNE errs by at most
  // half an ULP of the result's binade (2^-p * |D|), or half the smallest subnormal.
  const std::vector<double> d = gemm(a, b, spec, c, options);
  for (std::size_t e = 0; e < M * N; ++e)
    bound[e] = std::isfinite(d[e]) ? (std::ldexp(std::fabs(d[e]), -p) + std::ldexp(1.0, emin - p)) * kSafety : kInf;
}

// Sequential or pairwise FP32 sums of the products, one running bound per output; with
// allow_fast, on the blocked kernel (gemm/fp32_bound_kernel.hpp: the same doubles).
void fp32_gemm_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
                     bool allow_fast, std::vector<double>& bound) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const bool pairwise = spec.accumulate == Accumulate::Fp32Pairwise;
  if (allow_fast) {
    std::vector<float> acc(M * N);
    std::vector<double> err(M * N);
    fp32_chain_bounds(a, b, pairwise, acc.data(), err.data());
    parallel_for(M * N, 1024, [&](std::size_t e0, std::size_t e1) {
      for (std::size_t e = e0; e < e1; ++e) bound[e] = finish(acc[e], err[e], c, e, spec.out);
    });
    return;
  }
  parallel_for(M * N, 64, [&](std::size_t e0, std::size_t e1) {
    std::vector<ProductTrack> t(K);
    for (std::size_t e = e0; e < e1; ++e) {
      const std::size_t i = e / N, j = e % N;
      for (std::size_t k = 0; k < K; ++k) t[k] = product_with_bound(a.row(i)[k], a.scale(i, k), b.row(j)[k], b.scale(j, k));
      Fp32Track acc{0.0f, 0.0};
      if (pairwise) {
        acc = pairwise_with_bound(t.data(), K);
      } else {
        for (std::size_t k = 0; k < K; ++k) {
          acc.v = acc.v + t[k].p;
          acc.err += t[k].err + kU32 * std::fabs(acc.v);
        }
      }
      bound[e] = finish(acc.v, acc.err, c, e, spec.out);
    }
  });
}

// One output's tensor-core chain, promoted or not: the fused form's steps, block by block (the
// per-element certificate; the blocked one in gemm/bound_kernel.cpp adds the same doubles).
// pa, pb: scratch of the instruction's k.
double tensor_core_element_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                 const TensorCoreModel& model, std::size_t NC, const float* c, std::size_t i,
                                 std::size_t j, std::vector<float>& pa, std::vector<float>& pb) {
  const std::size_t K = a.cols;
  const auto blk = static_cast<std::size_t>(model.block > 0 ? model.block : model.k);
  const float* x = a.row(i);
  const float* y = b.row(j);
  Fp32Track acc{0.0f, 0.0};
  for (std::size_t kb = 0; kb < K; kb += NC) {
    const std::size_t ke = std::min(K, kb + NC);
    float p = 0.0f;
    double bp = 0.0;
    // Fused blocks in order; a ragged tail is zero-padded, which adds nothing.
    for (std::size_t kc = kb; kc < ke; kc += blk) {
      const std::size_t kn = std::min(blk, ke - kc);
      // The block alone through accum's model: its data in slot 0, zeros elsewhere.
      std::fill(pa.begin(), pa.end(), 0.0f);
      std::fill(pb.begin(), pb.end(), 0.0f);
      std::copy_n(x + kc, kn, pa.begin());
      std::copy_n(y + kc, kn, pb.begin());
      const float c_in = p;
      if (model.form == DotForm::PairedTwoLevel) {  // the other block of the instruction is zero: exact
        p = fused_dot_add(pa.data(), pb.data(), c_in, model);
        bp += paired_block_error(pa.data(), pb.data(), static_cast<int>(blk), c_in, p, model);
        continue;
      }
      if (model.exact_sum) {
        // One FP32 rounding (either direction) of the exact sum: one FP32 ULP of the result;
        // with C after the products, of S_p, then fl32(S_p + C).
        p = fused_dot_add(pa.data(), pb.data(), c_in, model);
        const float sp = model.c_after_products ? fused_dot_add(pa.data(), pb.data(), 0.0f, model) : p;
        if (sp != 0) bp += std::ldexp(1.0, std::ilogb(sp) + 1 - binary32::kPrecision);
        if (model.c_after_products) bp += kU32 * std::fabs(p);
        bp += kEta;
        continue;
      }
      // Step 2: the alignment exponent over the aligned terms, and how many are not
      // multiples of u (C is not among them when it is added after the products).
      const bool c_aligned = !model.c_after_products && c_in != 0;
      int emax = std::numeric_limits<int>::min();
      if (c_aligned) emax = clamped_exponent(c_in, binary32::kMinExponent);
      for (std::size_t k = kc; k < kc + kn; ++k)
        if (x[k] != 0 && y[k] != 0)
          emax = std::max(emax, clamped_exponent(x[k], model.input_min_exponent) +
                                    clamped_exponent(y[k], model.input_min_exponent));
      double block_err = 0.0;
      float normalised;  // the value steps 3-4 produced (S_p, or D)
      if (model.c_after_products) {
        normalised = fused_dot_add(pa.data(), pb.data(), 0.0f, model);
        p = fused_dot_add(pa.data(), pb.data(), c_in, model);
        block_err += kU32 * std::fabs(p);  // fl32(S_p + C)
      } else {
        p = fused_dot_add(pa.data(), pb.data(), c_in, model);
        normalised = p;
      }
      if (emax != std::numeric_limits<int>::min()) {
        const int ue = emax - model.alignment_frac_bits;
        int inexact = 0;
        auto not_multiple = [&](double t) {
          const double q = std::ldexp(std::fabs(t), -ue);
          return q != std::floor(q);
        };
        if (c_aligned && not_multiple(c_in)) ++inexact;
        for (std::size_t k = kc; k < kc + kn; ++k)
          if (not_multiple(static_cast<double>(x[k]) * y[k])) ++inexact;
        block_err += inexact * std::ldexp(1.0, ue);
      }
      // Step 4: rounding to P significant bits costs at most one ULP_P of the result.
      if (normalised != 0) block_err += std::ldexp(1.0, std::ilogb(normalised) + 1 - model.output_precision);
      if (std::fabs(p) < 2 * binary32::kMinNormal) block_err += kEta;  // onto FP32's subnormal grid
      bp += block_err;
    }
    acc = combine_with_bound(spec.combine, p, bp, a.scale(i, kb), b.scale(j, kb), acc);
  }
  return finish(acc.v, acc.err, c, i * b.rows + j, spec.out);
}

// The Hopper FP8 presets on the blocked certificate (gemm/bound_kernel.hpp: the same doubles);
// outputs whose row of A or of B holds a NaN or Inf take the per-element one, as gemm() takes
// the per-instruction path for them. False when the kernel does not cover the spec here.
bool blocked_tensor_core_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                               const TensorCoreModel& model, std::size_t NC, const float* c, std::vector<double>& bound) {
  const std::optional<Fp8Operands> operands = hopper_fp8_operands(model);
  if (!operands || !hopper_fp8_kernel_models(model, *operands)) return false;
  const std::size_t M = a.rows, N = b.rows;
  const NonFiniteRows ra = non_finite_rows(a), rb = non_finite_rows(b);
  std::vector<float> acc(M * N);
  std::vector<double> err(M * N);
  const std::size_t promote_every = spec.accumulate == Accumulate::Promoted ? NC : 0;
  if (ra.any || rb.any)
    hopper_fp8_chain_bounds(finite_part(a), finite_part(b), model, promote_every, spec.combine, acc.data(), err.data());
  else
    hopper_fp8_chain_bounds(a, b, model, promote_every, spec.combine, acc.data(), err.data());
  parallel_for(M * N, 1024, [&](std::size_t e0, std::size_t e1) {
    std::vector<float> pa(static_cast<std::size_t>(model.k)), pb(pa.size());
    for (std::size_t e = e0; e < e1; ++e)
      bound[e] = ra.row[e / N] || rb.row[e % N]
                     ? tensor_core_element_bound(a, b, spec, model, NC, c, e / N, e % N, pa, pb)
                     : finish(acc[e], err[e], c, e, spec.out);
  });
  return true;
}

// Tensor-core chains, promoted or not.
void tensor_core_gemm_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
                            bool allow_fast, std::vector<double>& bound) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const TensorCoreModel& model = tensor_core_by_name(spec.instruction);
  // The certificate follows the fused form's steps (accum/tensor_core.hpp); the other forms'
  // per-instruction terms are in gemm/instruction_bound.hpp.
  if (model.scale_block > 0) {  // block-scaled: one chain over K, scales inside (gemm/block_scaled.hpp)
    parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
      for (std::size_t e = e0; e < e1; ++e) {
        const ChainBound cb = block_scaled_chain_bound(a, b, model, e / N, e % N);
        bound[e] = finish(cb.value, cb.err, c, e, spec.out);
      }
    });
    return;
  }
  const std::size_t NC = spec.accumulate == Accumulate::Promoted ? static_cast<std::size_t>(spec.promote_every)
                                                                  : std::max<std::size_t>(K, 1);
  if (allow_fast && blocked_tensor_core_bound(a, b, spec, model, NC, c, bound)) return;
  parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
    std::vector<float> pa(static_cast<std::size_t>(model.k)), pb(pa.size());
    for (std::size_t e = e0; e < e1; ++e) bound[e] = tensor_core_element_bound(a, b, spec, model, NC, c, e / N, e % N, pa, pb);
  });
}

}  // namespace

std::vector<double> gemm_error_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                     const float* c, const GemmOptions& options) {
  validate_gemm(a, b, spec);
  std::vector<double> bound(a.rows * b.rows);
  if (spec.accumulate == Accumulate::Exact)
    exact_gemm_bound(a, b, spec, c, options, bound);
  else if (spec.accumulate == Accumulate::Fp32Sequential || spec.accumulate == Accumulate::Fp32Pairwise)
    fp32_gemm_bound(a, b, spec, c, options.allow_fast_kernel, bound);
  else
    tensor_core_gemm_bound(a, b, spec, c, options.allow_fast_kernel, bound);
  return bound;
}

}  // namespace fp8lab

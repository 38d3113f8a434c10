#include "gemm/bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "accum/tensor_core.hpp"
#include "common/buffer_pool.hpp"
#include "common/parallel.hpp"
#include "formats/row_constants.hpp"
#include "gemm/block_scaled.hpp"
#include "gemm/bound_kernel.hpp"
#include "gemm/bound_steps.hpp"
#include "gemm/fp32_kernel.hpp"
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

// The FP32 modes' running bound replayed product by product in binary64 (gemm/bounds.hpp, "FP32
// accumulation"): the fallback where the value kernel's sums do not apply (K > kFp32SumsMaxK, or
// a sum overflowed binary32 while the value is finite). Returns the bound of the accumulator.
double fp32_replayed_error(const GemmOperand& a, const GemmOperand& b, bool pairwise, std::size_t i, std::size_t j,
                           std::vector<ProductTrack>& t) {
  const std::size_t K = a.cols;
  t.resize(K);
  for (std::size_t k = 0; k < K; ++k) t[k] = product_with_bound(a.row(i)[k], a.scale(i, k), b.row(j)[k], b.scale(j, k));
  if (pairwise) return pairwise_with_bound(t.data(), K).err;
  Fp32Track acc{0.0f, 0.0};
  for (std::size_t k = 0; k < K; ++k) {
    acc.v = acc.v + t[k].p;
    acc.err += t[k].err + kU32 * std::fabs(acc.v);
  }
  return acc.err;
}

// sum_k |fl(e_k * s_k)| of row r of an operand, in binary64, in k order (X1 / Y1 of the sums' bound).
// The scale is read once per tile (op.scale's division per element cost more than the sum).
double magnitude_sum(const GemmOperand& op, std::size_t r) {
  double sum = 0.0;
  const float* e = op.row(r);
  for (std::size_t k0 = 0; k0 < op.cols; k0 += op.tile_cols) {
    const float s = op.scale(r, k0);
    for (std::size_t k = k0; k < std::min(op.cols, k0 + op.tile_cols); ++k) sum += std::fabs(e[k] * s);
  }
  return sum;
}

// magnitude_sum of rows [r0, r0 + kSide) side by side: each row's own sum in k order (the same
// doubles), but kSide addition chains in flight instead of one (the sum of one row waits on the
// latency of every binary64 addition).
constexpr std::size_t kSide = 8;
void magnitude_sums(const GemmOperand& op, std::size_t r0, double* out) {
  double sum[kSide] = {};
  for (std::size_t k0 = 0; k0 < op.cols; k0 += op.tile_cols) {
    float s[kSide];
    const float* e[kSide];
    for (std::size_t i = 0; i < kSide; ++i) {
      s[i] = op.scale(r0 + i, k0);
      e[i] = op.row(r0 + i);
    }
    const std::size_t k1 = std::min(op.cols, k0 + op.tile_cols);
    for (std::size_t k = k0; k < k1; ++k)
      for (std::size_t i = 0; i < kSide; ++i) sum[i] += std::fabs(e[i][k] * s[i]);
  }
  for (std::size_t i = 0; i < kSide; ++i) out[i] = sum[i];
}

// magnitude_sum of every row of op into out[0 .. op.rows).
void all_magnitude_sums(const GemmOperand& op, double* out) {
  const std::size_t groups = op.rows / kSide;
  parallel_for(groups + op.rows % kSide, 2, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      if (t < groups) magnitude_sums(op, t * kSide, out + t * kSide);
      else {
        const std::size_t r = groups * kSide + (t - groups);
        out[r] = magnitude_sum(op, r);
      }
    }
  });
}

// The per-element value and sums (the oracle of gemm/fp32_kernel.hpp's fp32_gemm_accumulate_sums):
// the same binary32 operations in the same order.
struct Fp32Sums {
  float v, psum, nsum;
};
float pairwise_node_sum(const float* p, std::size_t n, float& nsum) {
  if (n == 1) return p[0];
  const std::size_t h = n / 2;
  const float l = pairwise_node_sum(p, h, nsum);
  const float r = pairwise_node_sum(p + h, n - h, nsum);
  const float v = l + r;
  nsum = nsum + std::fabs(v);
  return v;
}
Fp32Sums fp32_element_sums(const GemmOperand& a, const GemmOperand& b, bool pairwise, std::size_t i, std::size_t j,
                           std::vector<float>& p) {
  const std::size_t K = a.cols;
  p.resize(K);
  Fp32Sums s{0.0f, 0.0f, 0.0f};
  for (std::size_t k = 0; k < K; ++k) {
    const float x = a.row(i)[k] * a.scale(i, k), y = b.row(j)[k] * b.scale(j, k);
    p[k] = x * y;
    s.psum = s.psum + std::fabs(p[k]);
    if (!pairwise) {
      s.v = s.v + p[k];
      s.nsum = s.nsum + std::fabs(s.v);
    }
  }
  if (pairwise && K > 0) s.v = pairwise_node_sum(p.data(), K, s.nsum);
  return s;
}

// The bound of output (i, j) from its accumulator and sums (bound_steps::fp32_sums_bound), or the
// replayed one where those do not apply; an infinite accumulator needs neither (finish gives Inf).
// sums_factor: bound_steps::fp32_sums_factor(K).
double fp32_accumulator_error(const GemmOperand& a, const GemmOperand& b, bool pairwise, std::size_t i, std::size_t j,
                              const Fp32Sums& s, double xsum, double ysum, double sums_factor,
                              std::vector<ProductTrack>& t) {
  const std::size_t K = a.cols;
  if (!std::isfinite(s.v)) return 0.0;
  if (K <= bound_steps::kFp32SumsMaxK && std::isfinite(s.psum) && std::isfinite(s.nsum))
    return bound_steps::fp32_sums_bound(K, sums_factor, s.psum, s.nsum, xsum, ysum);
  return fp32_replayed_error(a, b, pairwise, i, j, t);
}

// Sequential or pairwise FP32 sums of the products, the bound from the value kernel's sums; with
// allow_fast, the values and sums from the blocked kernel (gemm/fp32_kernel.hpp: the same floats).
void fp32_gemm_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
                     bool allow_fast, std::vector<double>& bound) {
  const std::size_t M = a.rows, N = b.rows;
  const bool pairwise = spec.accumulate == Accumulate::Fp32Pairwise;
  if (allow_fast) {
    PooledVector<float> acc(M * N, 0.0f), psum(M * N, 0.0f), nsum(M * N, 0.0f);  // reused between calls
    fp32_gemm_accumulate_sums(a, b, pairwise, acc.data(), psum.data(), nsum.data());
    std::vector<double> xsum(M), ysum(N);
    all_magnitude_sums(a, xsum.data());
    all_magnitude_sums(b, ysum.data());
    const double factor = bound_steps::fp32_sums_factor(a.cols);
    parallel_for(M, std::max<std::size_t>(1, 1024 / std::max<std::size_t>(N, 1)), [&](std::size_t i0, std::size_t i1) {
      std::vector<ProductTrack> t;
      for (std::size_t i = i0; i < i1; ++i)
        for (std::size_t j = 0, e = i * N; j < N; ++j, ++e) {
          const Fp32Sums s{acc[e], psum[e], nsum[e]};
          bound[e] = finish(acc[e], fp32_accumulator_error(a, b, pairwise, i, j, s, xsum[i], ysum[j], factor, t), c, e,
                            spec.out);
        }
    });
    return;
  }
  parallel_for(M * N, 64, [&](std::size_t e0, std::size_t e1) {
    std::vector<ProductTrack> t;
    std::vector<float> p;
    for (std::size_t e = e0; e < e1; ++e) {
      const std::size_t i = e / N, j = e % N;
      const Fp32Sums s = fp32_element_sums(a, b, pairwise, i, j, p);
      const double err = fp32_accumulator_error(a, b, pairwise, i, j, s, magnitude_sum(a, i), magnitude_sum(b, j),
                                                bound_steps::fp32_sums_factor(a.cols), t);
      bound[e] = finish(s.v, err, c, e, spec.out);
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
  PooledVector<float> acc(M * N, 0.0f);  // reused between calls (common/buffer_pool.hpp)
  PooledVector<double> err(M * N, 0.0);
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

std::vector<double> fp32_replayed_error_bound(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                              const float* c) {
  validate_gemm(a, b, spec);
  if (spec.accumulate != Accumulate::Fp32Sequential && spec.accumulate != Accumulate::Fp32Pairwise)
    throw std::invalid_argument("fp32_replayed_error_bound: spec.accumulate must be fp32 or fp32_pairwise");
  const std::size_t M = a.rows, N = b.rows;
  const bool pairwise = spec.accumulate == Accumulate::Fp32Pairwise;
  std::vector<double> bound(M * N);
  parallel_for(M * N, 64, [&](std::size_t e0, std::size_t e1) {
    std::vector<ProductTrack> t;
    std::vector<float> p;
    for (std::size_t e = e0; e < e1; ++e) {
      const std::size_t i = e / N, j = e % N;
      const Fp32Sums s = fp32_element_sums(a, b, pairwise, i, j, p);
      bound[e] = finish(s.v, fp32_replayed_error(a, b, pairwise, i, j, t), c, e, spec.out);
    }
  });
  return bound;
}

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

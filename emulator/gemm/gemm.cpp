#include "gemm/gemm.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "accum/tensor_core.hpp"
#include "common/parallel.hpp"
#include "common/profile.hpp"
#include "formats/representable.hpp"
#include "gemm/block_scaled.hpp"
#include "gemm/combine.hpp"
#include "gemm/exact.hpp"
#include "gemm/fp32_kernel.hpp"
#include "gemm/hopper_fp8_kernel.hpp"
#include "gemm/non_finite.hpp"
#include "gemm/tc_lanes_kernel.hpp"

namespace fp8lab {
namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Elements must be values of the instruction's input format: the tensor core has no way to hold
// anything else (quantise first).
void check_representable(const GemmOperand& x, const char* arg, const Format& fmt, const std::string& instruction) {
  const std::size_t i = RepresentableTest(fmt).first_bad_parallel(x.elements.data(), x.elements.size());
  if (i != x.elements.size()) {
    const double v = x.elements[i];
    // The names as read aloud: "an e4m3", "an fp16", but "a bf16", "a ue8m0".
    const char* article = fmt.name[0] == 'b' || fmt.name[0] == 'u' ? " is not a " : " is not an ";
    throw std::invalid_argument(std::string(arg) + ": element [" + std::to_string(i / x.cols) + ", " +
                                std::to_string(i % x.cols) + "] = " + num(v) + article + fmt.name +
                                " value, the input format of instruction " + instruction +
                                "; quantise it first or use accumulate='fp32'/'exact'");
  }
}

void check_scales(const GemmOperand& x, const char* arg, std::size_t len, const std::string& why) {
  if (!scales_constant_over(x, len))
    throw std::invalid_argument(std::string(arg) + ": its scales (tile " + std::to_string(x.tile_rows) + " x " +
                                std::to_string(x.tile_cols) + ") vary within " + why);
}

std::vector<float> dequantised_fp32(const GemmOperand& x) {
  std::vector<float> v(x.elements.size());
  for (std::size_t r = 0; r < x.rows; ++r)
    for (std::size_t k = 0; k < x.cols; ++k) v[r * x.cols + k] = x.row(r)[k] * x.scale(r, k);
  return v;
}

float pairwise_sum(const float* x, std::size_t n) {
  if (n == 0) return 0.0f;
  if (n == 1) return x[0];
  const std::size_t h = n / 2;  // left half [0, n/2), right half [n/2, n)
  const float l = pairwise_sum(x, h);
  const float r = pairwise_sum(x + h, n - h);
  return l + r;
}

std::vector<float> fp32_accumulate(const GemmOperand& a, const GemmOperand& b, bool pairwise) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const std::vector<float> x = dequantised_fp32(a), y = dequantised_fp32(b);
  std::vector<float> out(M * N);
  parallel_for(M * N, 64, [&](std::size_t e0, std::size_t e1) {
    std::vector<float> prod(K);
    for (std::size_t e = e0; e < e1; ++e) {
      const float* xi = x.data() + (e / N) * K;
      const float* yj = y.data() + (e % N) * K;
      if (pairwise) {
        for (std::size_t k = 0; k < K; ++k) prod[k] = xi[k] * yj[k];
        out[e] = pairwise_sum(prod.data(), K);
      } else {
        float acc = 0.0f;
        for (std::size_t k = 0; k < K; ++k) {
          const float p = xi[k] * yj[k];
          acc = acc + p;
        }
        out[e] = acc;
      }
    }
  });
  return out;
}

// The generic path for one output: every instruction through accum's fused_dot_add, which applies
// the NaN/Inf policy (gemm/non_finite.hpp) inside the tensor core; the FP32 partial sums carry it on.
// pa, pb: scratch of the instruction's K.
float tensor_core_element(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model, std::size_t NC,
                          Combine combine, std::size_t i, std::size_t j, std::vector<float>& pa, std::vector<float>& pb) {
  const std::size_t K = a.cols, kI = pa.size();
  float acc = 0.0f;
  for (std::size_t kb = 0; kb < K; kb += NC) {
    const std::size_t ke = std::min(K, kb + NC);
    float p = 0.0f;
    for (std::size_t kc = kb; kc < ke; kc += kI) {
      const std::size_t kn = std::min(kI, ke - kc);
      if (kn == kI) {
        p = fused_dot_add(a.row(i) + kc, b.row(j) + kc, p, model);
      } else {  // ragged tail: zero-padded
        std::fill(pa.begin(), pa.end(), 0.0f);
        std::fill(pb.begin(), pb.end(), 0.0f);
        std::copy_n(a.row(i) + kc, kn, pa.begin());
        std::copy_n(b.row(j) + kc, kn, pb.begin());
        p = fused_dot_add(pa.data(), pb.data(), p, model);
      }
    }
    acc = combine_partial(combine, p, a.scale(i, kb), b.scale(j, kb), acc);
  }
  return acc;
}

std::size_t promotion_interval(std::size_t promote_every, std::size_t K) {
  return promote_every == 0 ? std::max<std::size_t>(K, 1) : promote_every;
}

std::vector<float> tensor_core_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                          std::size_t promote_every, Combine combine) {
  const std::size_t M = a.rows, N = b.rows;
  const auto kI = static_cast<std::size_t>(tensor_core_k(model));
  const std::size_t NC = promotion_interval(promote_every, a.cols);
  std::vector<float> out(M * N);
  parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
    std::vector<float> pa(kI), pb(kI);
    for (std::size_t e = e0; e < e1; ++e) out[e] = tensor_core_element(a, b, model, NC, combine, e / N, e % N, pa, pb);
  });
  return out;
}

// The vector kernels (kernel(a, b): Hopper FP8's, or the fused presets' tc_lanes) take finite
// operands only: with a NaN or Inf anywhere it runs on the finite parts and the outputs of the rows
// and columns holding them are recomputed by the generic path. The finite case pays one pass over
// A and B (O((M + N) K) against the kernel's O(M N K)).
template <class Kernel>
std::vector<float> fast_accumulate(const GemmOperand& a, const GemmOperand& b, const TensorCoreModel& model,
                                   std::size_t promote_every, Combine combine, const Kernel& kernel) {
  const NonFiniteRows ra = non_finite_rows(a), rb = non_finite_rows(b);
  if (!ra.any && !rb.any) return kernel(a, b);
  std::vector<float> out = kernel(finite_part(a), finite_part(b));
  const std::size_t M = a.rows, N = b.rows, NC = promotion_interval(promote_every, a.cols);
  const auto kI = static_cast<std::size_t>(tensor_core_k(model));
  parallel_for(M * N, 16, [&](std::size_t e0, std::size_t e1) {
    std::vector<float> pa(kI), pb(kI);
    for (std::size_t e = e0; e < e1; ++e)
      if (ra.row[e / N] || rb.row[e % N]) out[e] = tensor_core_element(a, b, model, NC, combine, e / N, e % N, pa, pb);
  });
  return out;
}

// Exact accumulation of real numbers has no NaN or Inf: the finite parts go through the exact
// sum, and every output with a non-finite term takes the policy's class.
std::vector<double> exact_with_policy(const GemmOperand& a, const GemmOperand& b, const float* c, OutputFormat out,
                                      bool fast) {
  const NonFiniteRows ra = non_finite_rows(a), rb = non_finite_rows(b);
  const std::size_t M = a.rows, N = b.rows;
  bool c_bad = false;
  for (std::size_t e = 0; c && e < M * N; ++e) c_bad |= !std::isfinite(c[e]);
  if (!ra.any && !rb.any && !c_bad) return gemm_exact(a, b, c, out, fast);
  std::vector<float> c_finite;
  if (c) {
    c_finite.assign(c, c + M * N);
    for (float& v : c_finite)
      if (!std::isfinite(v)) v = 0.0f;
  }
  std::vector<double> d = gemm_exact(finite_part(a), finite_part(b), c ? c_finite.data() : nullptr, out, fast);
  for (std::size_t e = 0; e < M * N; ++e)
    if (ra.row[e / N] || rb.row[e % N] || (c && !std::isfinite(c[e])))
      if (const std::optional<double> v = non_finite_dot(a, b, e / N, e % N, c)) d[e] = *v;
  return d;
}

}  // namespace

void validate_gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec) {
  if (a.cols != b.cols)
    throw std::invalid_argument("b: has K = " + std::to_string(b.cols) + " columns but a has K = " +
                                std::to_string(a.cols) + " (b is given N x K, DeepGEMM's NT layout)");
  const bool on_tensor_core = spec.accumulate == Accumulate::TensorCore || spec.accumulate == Accumulate::Promoted;
  if (!on_tensor_core || tensor_core_by_name(spec.instruction).scale_block == 0)
    refuse_two_level(a, b, ("accumulate='" + std::string(accumulate_name(spec.accumulate)) + "'" +
                            (on_tensor_core ? " on instruction " + spec.instruction : std::string()))
                               .c_str());
  if (!on_tensor_core) return;
  const TensorCoreModel& model = tensor_core_by_name(spec.instruction);
  const int kI = tensor_core_k(model);
  const std::size_t K = a.cols;
  if (model.scale_block > 0) {
    // Block-scaled (MX) instructions apply the scales themselves (gemm/block_scaled.hpp).
    if (spec.accumulate != Accumulate::TensorCore)
      throw std::invalid_argument("accumulate: instruction " + spec.instruction +
                                  " applies block scales inside the instruction and accumulates in the tensor core "
                                  "for the whole K; it takes accumulate='tensorcore', not promotion");
    validate_block_scaled(a, b, model);
  } else if (spec.accumulate == Accumulate::Promoted) {
    if (spec.promote_every <= 0 || spec.promote_every % kI != 0)
      throw std::invalid_argument("promote_every: " + std::to_string(spec.promote_every) +
                                  " is not a positive multiple of the instruction K = " + std::to_string(kI) + " of " +
                                  spec.instruction);
    const std::string why = "a promotion interval of " + std::to_string(spec.promote_every) +
                            " elements; promote_every must not cross a scale tile";
    check_scales(a, "a", static_cast<std::size_t>(spec.promote_every), why);
    check_scales(b, "b", static_cast<std::size_t>(spec.promote_every), why);
  } else {
    const std::string why = "K; accumulate='tensorcore' applies the scales once, after the whole chain "
                            "(use per-tensor or per-row scales, or accumulate='promoted')";
    check_scales(a, "a", std::max<std::size_t>(K, 1), why);
    check_scales(b, "b", std::max<std::size_t>(K, 1), why);
  }
  check_representable(a, "a", format_by_name(model.input_format), spec.instruction);
  check_representable(b, "b", format_by_name(b_input_format(model)), spec.instruction);
}

void gemm_into(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
               const std::function<double*(std::size_t)>& result, const GemmOptions& options) {
  {
    const StageTimer timer(Stage::RepresentabilityChecks);  // fp8lab profile (common/profile.hpp)
    validate_gemm(a, b, spec);
  }
  const std::size_t M = a.rows, N = b.rows;
  std::optional<StageTimer> kernel_timer(std::in_place, Stage::Kernel);
  if (spec.accumulate == Accumulate::Exact) {
    const std::vector<double> e = exact_with_policy(a, b, c, spec.out, options.allow_fast_kernel);
    std::copy(e.begin(), e.end(), result(M * N));
    return;
  }
  std::vector<float> acc;
  switch (spec.accumulate) {
    case Accumulate::Fp32Sequential:
    case Accumulate::Fp32Pairwise: {
      const bool pairwise = spec.accumulate == Accumulate::Fp32Pairwise;
      acc = options.allow_fast_kernel ? fp32_gemm_accumulate(a, b, pairwise) : fp32_accumulate(a, b, pairwise);
      break;
    }
    default: {
      const TensorCoreModel& model = tensor_core_by_name(spec.instruction);
      if (model.scale_block > 0) {
        acc = block_scaled_accumulate(a, b, model, options.allow_fast_kernel);
        break;
      }
      const std::size_t nc = spec.accumulate == Accumulate::Promoted ? static_cast<std::size_t>(spec.promote_every) : 0;
      const std::optional<Fp8Operands> fast = hopper_fp8_operands(model);
      if (options.allow_fast_kernel && fast)
        acc = fast_accumulate(a, b, model, nc, spec.combine, [&](const GemmOperand& x, const GemmOperand& y) {
          return hopper_fp8_gemm_accumulate(x, y, nc, spec.combine, *fast);
        });
      else if (options.allow_fast_kernel && tc_lanes_kernel_models(model))  // the other fused presets
        acc = fast_accumulate(a, b, model, nc, spec.combine, [&](const GemmOperand& x, const GemmOperand& y) {
          return tc_lanes_gemm_accumulate(x, y, model, nc, spec.combine);
        });
      else
        acc = tensor_core_accumulate(a, b, model, nc, spec.combine);
    }
  }
  kernel_timer.reset();
  const StageTimer rounding_timer(Stage::OutputRounding);
  double* d = result(M * N);
  parallel_for(M * N, 1 << 16, [&](std::size_t e0, std::size_t e1) {
    for (std::size_t e = e0; e < e1; ++e) {
      float v = acc[e];
      if (c) v = v + c[e];
      d[e] = spec.out == OutputFormat::Bf16 ? round_to_bf16(v) : v;
    }
  });
  // Freed inside the stage: returning M x N floats' 4 KiB pages to the system costs up to ~1 ms
  // per MB on a loaded machine, time the profile should show (bench_gemm_python).
  std::vector<float>().swap(acc);
}

std::vector<double> gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec, const float* c,
                         const GemmOptions& options) {
  std::vector<double> d;
  gemm_into(a, b, spec, c, [&](std::size_t n) {
    d.resize(n);
    return d.data();
  }, options);
  return d;
}

}  // namespace fp8lab

#include "mla/forward.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"
#include "mla/attention_tile.hpp"
#include "mla/numerics.hpp"
#include "mla/rope.hpp"
#include "mla/weight_cache.hpp"
#include "gemm/bounds.hpp"
#include "gemm/gemm.hpp"
#include "gemm/recipe.hpp"
#include "quant/quantize.hpp"

namespace fp8lab::mla {

Form form_by_name(std::string_view name) {
  if (name == "naive") return Form::Naive;
  if (name == "absorbed") return Form::Absorbed;
  throw std::invalid_argument("form: unknown value '" + std::string(name) + "' (expected naive or absorbed)");
}
std::string_view form_name(Form f) { return f == Form::Naive ? "naive" : "absorbed"; }

namespace {

const GemmRecipe& fp8_linear_recipe() { return gemm_recipe(kFp8LinearRecipe); }

// The dot_f32 GEMM (mla/attention_tile.hpp) over a grid of blocks of kRowBlock rows of A by
// kDotGemmPanel rows of B: items [b, e) of the grid, in order, into out (row stride ldo).
constexpr std::size_t kRowBlock = 128;
std::size_t dot_grid(std::size_t M, std::size_t N) {
  return (M + kRowBlock - 1) / kRowBlock * ((N + kDotGemmPanel - 1) / kDotGemmPanel);
}
void dot_grid_items(const float* A, std::size_t M, const float* B, std::size_t N, std::size_t K, bool b_bf16,
                    float* out, std::size_t ldo, std::size_t b, std::size_t e) {
  std::vector<float> scratch(dot_f32_gemm_scratch(kRowBlock, kDotGemmPanel));
  const std::size_t panels = (N + kDotGemmPanel - 1) / kDotGemmPanel;
  for (std::size_t item = b; item < e; ++item) {
    const std::size_t m0 = item / panels * kRowBlock, j0 = item % panels * kDotGemmPanel;
    mla_dot_f32_gemm(A + m0 * K, std::min(kRowBlock, M - m0), B + j0 * K, std::min(kDotGemmPanel, N - j0), K, K,
                     b_bf16, out + m0 * ldo + j0, ldo, scratch.data());
  }
}

// y[i, j] = R(dot_f32(A[i], R_b(B[j]))) for A [M, K] and B [N, K] (R_b: BF16 when b_bf16), the
// grid's blocks in parallel.
std::vector<float> dot_rows(const float* A, std::size_t M, const float* B, std::size_t N, std::size_t K, bool b_bf16,
                            MatmulFormat R) {
  std::vector<float> y(M * N);
  parallel_for(dot_grid(M, N), 1, [&](std::size_t b, std::size_t e) {
    dot_grid_items(A, M, B, N, K, b_bf16, y.data(), N, b, e);
    for (std::size_t item = b; item < e; ++item) {  // the rounding R of the block's rows just written
      const std::size_t panels = (N + kDotGemmPanel - 1) / kDotGemmPanel;
      const std::size_t m0 = item / panels * kRowBlock, j0 = item % panels * kDotGemmPanel;
      for (std::size_t i = m0; i < std::min(M, m0 + kRowBlock); ++i)
        for (std::size_t j = j0; j < std::min(N, j0 + kDotGemmPanel); ++j) y[i * N + j] = round_to(R, y[i * N + j]);
    }
  });
  return y;
}

// y[t, o] = R(dot(R(x[t]), R(W[o]))) for x [T, in], W [out, in]; FP8: see MatmulFormat::Fp8.
std::vector<float> project_rows(const float* x, std::size_t T, std::size_t in, std::span<const float> W,
                                std::size_t out, MatmulFormat f) {
  if (f == MatmulFormat::Fp8) {
    const GemmRecipe& r = fp8_linear_recipe();
    const QTensor qx = quantize_operand(x, T, in, r.a);
    const std::shared_ptr<const QTensor> qw = quantized_weights(W, out, in, r.b);  // kept between calls (weight_cache.hpp)
    const std::vector<double> y = gemm(operand_from_qtensor(qx, "x"), operand_from_qtensor(*qw, "weight"), r.gemm);
    return std::vector<float>(y.begin(), y.end());  // BF16 values, exact in float
  }
  if (f == MatmulFormat::Bf16TensorCore) {
    std::vector<float> xb(x, x + T * in), wb(W.begin(), W.end());
    for (auto& v : xb) v = round_to_bf16(v);
    for (auto& v : wb) v = round_to_bf16(v);
    GemmOperand a = operand_from_floats(xb.data(), T, in, "x"), b = operand_from_floats(wb.data(), out, in, "weight");
    a.fmt = b.fmt = "bf16";  // the values are BF16 exactly; the instruction reads BF16 operands
    GemmSpec gs;
    gs.accumulate = Accumulate::TensorCore;
    gs.instruction = "hopper_bf16";
    gs.out = OutputFormat::Bf16;
    const std::vector<double> y = gemm(a, b, gs);
    return std::vector<float>(y.begin(), y.end());
  }
  std::vector<float> xr(x, x + T * in);
  for (auto& v : xr) v = round_to(f, v);
  return dot_rows(xr.data(), T, W.data(), out, in, f != MatmulFormat::Fp32, f);  // W rounded to f inside
}

void rms_norm(float* x, std::size_t n, std::span<const float> gain, double eps, MatmulFormat f) {
  const float ss = dot_f32(x, x, n);
  const float ms = ss / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(ms + static_cast<float>(eps));
  for (std::size_t i = 0; i < n; ++i) {
    const float y = x[i] * r;
    x[i] = round_to(f, y * gain[i]);
  }
}

// The rows of W_UK (first nope rows of head h in wkv_b) and W_UV (next v rows) of a wkv_b-shaped
// array (a vector or span: the weights as given, the absorbed form's wkv_b_absorbed, or the exact
// wkv_b_exact).
template <class V>
auto w_uk(const V& wkv_b, const MlaSpec& s, int h, int d) {
  return &wkv_b[(static_cast<std::size_t>(h) * (s.nope + s.v) + d) * s.kv_lora];
}
template <class V>
auto w_uv(const V& wkv_b, const MlaSpec& s, int h, int d) {
  return &wkv_b[(static_cast<std::size_t>(h) * (s.nope + s.v) + s.nope + d) * s.kv_lora];
}

// Higham's gamma_n for binary64 (the a-posteriori sums of the FP8 activation-quantisation effect).
double gamma64(double n) { return n * 0x1p-53 / (1.0 - n * 0x1p-53); }

double abs_dot(const float* a, const float* b, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(a[i]) * b[i]);
  return s;
}

// Softmax of one row of n scores into p, each probability rounded to R.
void softmax_row(const float* s, std::size_t n, MatmulFormat R, float* p) {
  float m = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  std::vector<float> e(n);
  float S = 0;
  for (std::size_t j = 0; j < n; ++j) {
    e[j] = exp_pinned(s[j] - m);
    S = S + e[j];
  }
  for (std::size_t j = 0; j < n; ++j) p[j] = round_to(R, e[j] / S);
}

// softmax_row's certified relative error for scores with errors delta: rho such that
// |p_computed - p_exact| <= rho * p_exact before the final rounding R.
double softmax_rho(const float* s, const double* delta, std::size_t n) {
  // One key: a = 0 exactly, e = 1, S = 1, p = 1 with no error at all.
  if (n <= 1) return 0.0;
  float m = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  double dmax = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const float a = s[j] - m;
    dmax = std::max(dmax, delta[j] + kU32 * std::fabs(static_cast<double>(a)));
  }
  // exp(a_j) = exp(s_j - m) e^{theta_j}, |theta_j| <= delta_j + u|a_j| <= dmax (score error and
  // the rounding of the subtraction); each exp is correctly rounded (1 +- kUExp); the FP32 sum of
  // n positive terms is within (1 +- gamma(n-1)); the division adds (1 +- u). Numerator and
  // denominator move at most e^{dmax} each way, so p / p_exact is within [1/(1+rho), 1+rho].
  const double g = gamma32(static_cast<double>(n - 1));
  return std::exp(2 * dmax) * (1 + kUExp) * (1 + kU32) * (1 + kU32) / ((1 - kUExp) * (1 - g)) - 1;
}

}  // namespace

namespace {

// The entry points below check the weights once (validate_weights: sizes, and a scan of every
// value for NaN/Inf, ~750 MB at DeepSeek-V3's dims) and then call these *_checked steps, which
// take the weights as checked.
Projected project_checked(const float* x, std::size_t T, const MlaWeightsView& w, const MlaSpec& s, long start_pos) {
  if (T == 0) throw std::invalid_argument("x: at least one token is needed");
  if (start_pos < 0) throw std::invalid_argument("start_pos: must be >= 0, got " + std::to_string(start_pos));
  for (std::size_t i = 0; i < T * s.hidden; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument("x: element " + std::to_string(i) + " is not finite");
  const std::size_t H = s.heads, qk = s.qk_head(), hid = s.hidden;
  Projected p;
  p.tokens = T;
  std::vector<float> q;
  MatmulFormat qf;
  if (s.q_lora > 0) {
    std::vector<float> qa = project_rows(x, T, hid, w.wq_a, s.q_lora, s.wq_a);
    for (std::size_t t = 0; t < T; ++t) rms_norm(&qa[t * s.q_lora], s.q_lora, w.q_norm, s.rms_eps, s.wq_a);
    q = project_rows(qa.data(), T, s.q_lora, w.wq_b, H * qk, s.wq_b);
    qf = s.wq_b;
  } else {
    q = project_rows(x, T, hid, w.wq, H * qk, s.wq_b);
    qf = s.wq_b;
  }
  std::vector<float> kv = project_rows(x, T, hid, w.wkv_a, s.cache_dim(), s.wkv_a);
  const auto freqs = rope_inverse_frequencies(s);
  std::vector<float> c(freqs.size()), sn(freqs.size());
  p.q_nope.resize(T * H * s.nope);
  p.q_pe.resize(T * H * s.rope);
  p.latent.resize(T * s.kv_lora);
  p.k_pe.resize(T * s.rope);
  for (std::size_t t = 0; t < T; ++t) {
    rope_cos_sin(s, freqs, start_pos + static_cast<long>(t), c.data(), sn.data());
    for (std::size_t h = 0; h < H; ++h) {
      const float* row = &q[(t * H + h) * qk];
      std::copy(row, row + s.nope, &p.q_nope[(t * H + h) * s.nope]);
      float* pe = &p.q_pe[(t * H + h) * s.rope];
      std::copy(row + s.nope, row + qk, pe);
      apply_rope(s, c.data(), sn.data(), pe);
      for (int i = 0; i < s.rope; ++i) pe[i] = round_to(qf, pe[i]);
    }
    float* lat = &p.latent[t * s.kv_lora];
    std::copy(&kv[t * s.cache_dim()], &kv[t * s.cache_dim()] + s.kv_lora, lat);
    rms_norm(lat, s.kv_lora, w.kv_norm, s.rms_eps, s.wkv_a);
    float* kpe = &p.k_pe[t * s.rope];
    std::copy(&kv[t * s.cache_dim()] + s.kv_lora, &kv[t * s.cache_dim()] + s.cache_dim(), kpe);
    apply_rope(s, c.data(), sn.data(), kpe);
    for (int i = 0; i < s.rope; ++i) kpe[i] = round_to(s.wkv_a, kpe[i]);
  }
  return p;
}

// The checkpoint's tensor (viewed, not copied) or w.wkv_b quantised, kept between calls
// (weight_cache.hpp).
std::shared_ptr<const QTensor> wkv_b_fp8_checked(const MlaWeightsView& w, const MlaSpec& s) {
  const std::size_t rows = static_cast<std::size_t>(s.heads) * (s.nope + s.v), cols = s.kv_lora;
  if (!w.has_wkv_b_fp8()) return quantized_weights(w.wkv_b, rows, cols, fp8_linear_recipe().b);
  (void)operand_from_qtensor(*w.wkv_b_fp8, "weights.wkv_b_fp8");  // finite elements and scales, consistent sizes
  return std::shared_ptr<const QTensor>(std::shared_ptr<const QTensor>(), w.wkv_b_fp8);  // the caller owns it
}

std::vector<double> wkv_b_exact_checked(const MlaWeightsView& w, const MlaSpec& s) {
  if (s.wkv_b != MatmulFormat::Fp8) return std::vector<double>(w.wkv_b.begin(), w.wkv_b.end());
  return dequantize(*wkv_b_fp8_checked(w, s));  // e4m3 * scale: <= 4 + 24 significant bits, exact in binary64
}

// wkv_b as the absorbed einsums multiply it (wkv_b_absorbed): under fp32/bf16 w's own wkv_b, read
// in place (no copy of its H * (nope + v) * kv_lora floats per call); under fp8 the dequantised
// weights, which `hold` keeps.
std::span<const float> absorbed_weights(const MlaWeightsView& w, const MlaSpec& s, std::vector<float>& hold) {
  if (s.wkv_b != MatmulFormat::Fp8) return w.wkv_b;
  // kernel.py weight_dequant_kernel: y = x.to(float32) * s (one FP32 rounding), stored in the
  // default dtype (BF16 in the reference; R_attn here, so an FP32 attention keeps FP32 weights).
  hold = dequantize_fp32(*wkv_b_fp8_checked(w, s));
  for (auto& v : hold) v = round_to(s.attn, v);
  return hold;
}

// absorbed_query with the absorbed weights wa (absorbed_weights).
std::vector<float> absorbed_query_of(const Projected& p, std::span<const float> wa, const MlaSpec& s) {
  const std::size_t T = p.tokens, H = s.heads, C = s.kv_lora, D = s.cache_dim();
  const std::size_t N = s.nope;
  std::vector<float> out(T * H * D);
  // Per head: q_abs[t, c] = R_attn(dot_f32(q_nope[t, h], W_UK[h][:, c])), the GEMM of the head's
  // queries [T, nope] and W_UK's columns (transposed to [C, nope]).
  parallel_for(H, 1, [&](std::size_t b, std::size_t e) {
    std::vector<float> qh(T * N), wt(C * N), y(T * C);
    for (std::size_t h = b; h < e; ++h) {
      for (std::size_t t = 0; t < T; ++t) std::copy_n(&p.q_nope[(t * H + h) * N], N, &qh[t * N]);
      for (std::size_t d = 0; d < N; ++d) {
        const float* row = w_uk(wa, s, static_cast<int>(h), static_cast<int>(d));
        for (std::size_t c = 0; c < C; ++c) wt[c * N + d] = row[c];
      }
      dot_grid_items(qh.data(), T, wt.data(), C, N, false, y.data(), C, 0, dot_grid(T, C));
      for (std::size_t t = 0; t < T; ++t) {
        const std::size_t i = t * H + h;
        for (std::size_t c = 0; c < C; ++c) out[i * D + c] = round_to(s.attn, y[t * C + c]);
        std::copy(&p.q_pe[i * s.rope], &p.q_pe[i * s.rope] + s.rope, &out[i * D + C]);
      }
    }
  });
  return out;
}

}  // namespace

Projected project(const float* x, std::size_t T, const MlaWeightsView& w, const MlaSpec& s, long start_pos) {
  validate_weights(w, s);
  return project_checked(x, T, w, s, start_pos);
}

std::vector<float> absorbed_query(const Projected& p, const MlaWeightsView& w, const MlaSpec& s) {
  validate_weights(w, s);
  std::vector<float> hold;
  return absorbed_query_of(p, absorbed_weights(w, s, hold), s);
}

QTensor wkv_b_fp8(const MlaWeightsView& w, const MlaSpec& s) {
  validate_weights(w, s);
  return *wkv_b_fp8_checked(w, s);
}

std::vector<double> wkv_b_exact(const MlaWeightsView& w, const MlaSpec& s) {
  validate_weights(w, s);
  return wkv_b_exact_checked(w, s);
}

std::vector<float> wkv_b_absorbed(const MlaWeightsView& w, const MlaSpec& s) {
  validate_weights(w, s);
  std::vector<float> hold;
  const std::span<const float> wa = absorbed_weights(w, s, hold);
  return hold.empty() ? std::vector<float>(wa.begin(), wa.end()) : hold;
}

// Naive keys/values and their bound. Exact value: k[t, o] = sum_c W[o, c] c[t, c], W = wkv_b_exact.
//  fp32 / bf16: k^ = R(fl(dot(R(c), R(W)))) (numerics.hpp order). Error = the dot's rounding,
//    gamma32(depth) sum |c^ w^|, + what rounding the operands moved, sum |c^ w^ - c w| <=
//    sum (dc |w^| + |c^| dw + dc dw), + the result rounding uR |k^|.
//  fp8 (the FP8 linear): c_q = dequant(act_quant(c)) (1x128, E4M3, "deepseek"), W = e4m3 * scale
//    exactly, D = gemm(c_q, W) with BF16 output. Split the error at the exact product of the
//    quantised operands, K_q = sum_c c_q W:
//      |D - k| <= |D - K_q| + |K_q - k|.
//    1. |D - K_q| <= gemm_error_bound(c_q, W) (gemm/bounds.hpp: a running bound of the promoted FP8
//       GEMM: tensor-core alignment and truncation, FP32 promotion, and the BF16 output rounding,
//       replayed on the actual values), so the BF16 rounding of the result is already inside it.
//    2. K_q - k = sum_c (c_q - c) W =: delta, the activation quantisation's effect, known exactly
//       a posteriori: every c_q is exact in binary64 (E4M3 element x FP32 scale), c is FP32 and W
//       is exact in binary64, so delta is evaluated in binary64 with |fl(delta) - delta| <=
//       gamma64(C + 2) sum_c |c_q - c| |W| (one subtraction - exact by Sterbenz's lemma, as c_q is
//       within a factor 2 of c or 0 - one product, C - 1 additions; Higham 3.1). We use |fl(delta)| + that term instead of the cruder
//       sum_c |c_q - c| |W| (which also bounds |delta|, but ignores the cancellation of the
//       quantisation errors' signs, ~sqrt(C) times looser on random data).
//    The bound is evaluated in binary64 (a few C operations per element) and multiplied by
//    (1 + 2^-40), far above the relative rounding of that evaluation.
namespace {

// wkv_b_naive with the FP8 error kept in two parts: bound = (gemm bound + the evaluation error of
// delta) and the signed delta itself (empty unless FP8), so attention() can let the signs of delta
// cancel in q . delta and sum_j p_j delta_j instead of summing their magnitudes (see there).
std::vector<float> naive_kv_parts(const float* latent, std::size_t T, const MlaWeightsView& w, const MlaSpec& s,
                                  std::vector<double>* bound, std::vector<double>* delta_out) {
  const std::size_t C = s.kv_lora, N = static_cast<std::size_t>(s.heads) * (s.nope + s.v);
  for (std::size_t i = 0; i < T * C; ++i)
    if (!std::isfinite(latent[i])) throw std::invalid_argument("latent: element " + std::to_string(i) + " is not finite");
  if (s.wkv_b == MatmulFormat::Fp8) {
    const GemmRecipe& r = fp8_linear_recipe();
    const QTensor qx = quantize_operand(latent, T, C, r.a);
    const std::shared_ptr<const QTensor> qwp = wkv_b_fp8_checked(w, s);
    const QTensor& qw = *qwp;
    const GemmOperand a = operand_from_qtensor(qx, "latent"), b = operand_from_qtensor(qw, "weights.wkv_b_fp8");
    const std::vector<double> y = gemm(a, b, r.gemm);
    if (bound) {
      *bound = gemm_error_bound(a, b, r.gemm);
      delta_out->assign(T * N, 0.0);
      const std::vector<double> cq = dequantize(qx), we = dequantize(qw);
      const double g64 = gamma64(static_cast<double>(C + 2));
      parallel_for(T * N, 64, [&](std::size_t bb, std::size_t ee) {
        for (std::size_t i = bb; i < ee; ++i) {
          const std::size_t t = i / N, o = i % N;
          double delta = 0, mag = 0;
          for (std::size_t c = 0; c < C; ++c) {
            const double d = cq[t * C + c] - static_cast<double>(latent[t * C + c]);
            delta += d * we[o * C + c];
            mag += std::fabs(d * we[o * C + c]);
          }
          (*bound)[i] = ((*bound)[i] + g64 * mag) * (1 + 0x1p-40);
          (*delta_out)[i] = delta;
        }
      });
    }
    return std::vector<float>(y.begin(), y.end());  // BF16 values, exact in float
  }
  const double uB = unit_roundoff(s.wkv_b);
  std::vector<float> cr(latent, latent + T * C);
  for (auto& x : cr) x = round_to(s.wkv_b, x);
  std::vector<float> y = dot_rows(cr.data(), T, w.wkv_b.data(), N, C, s.wkv_b != MatmulFormat::Fp32, s.wkv_b);
  if (!bound) return y;
  std::vector<float> wr(w.wkv_b.begin(), w.wkv_b.end());
  for (auto& x : wr) x = round_to(s.wkv_b, x);
  bound->assign(T * N, 0.0);
  parallel_for(T * N, 64, [&](std::size_t bb, std::size_t ee) {
    for (std::size_t i = bb; i < ee; ++i) {
      const std::size_t t = i / N, o = i % N;
      const float* c = &cr[t * C];
      const float* wrow = &wr[o * C];
      const float k = y[i];
      // What rounding the operands to the projection's format moved: |c^ w^ - c w| summed.
      double in = 0;
      if (s.wkv_b != MatmulFormat::Fp32)
        for (std::size_t j = 0; j < C; ++j) {
          const double dc = std::fabs(static_cast<double>(cr[t * C + j]) - latent[t * C + j]);
          const double dw = std::fabs(static_cast<double>(wr[o * C + j]) - w.wkv_b[o * C + j]);
          in += dc * std::fabs(wr[o * C + j]) + std::fabs(cr[t * C + j]) * dw + dc * dw;
        }
      (*bound)[i] = gamma32(dot_depth(C)) * abs_dot(c, wrow, C) + in + uB * std::fabs(k);
    }
  });
  return y;
}

}  // namespace

std::vector<float> wkv_b_naive(const float* latent, std::size_t T, const MlaWeightsView& w, const MlaSpec& s,
                               std::vector<double>* bound) {
  validate_weights(w, s);
  std::vector<double> delta;
  std::vector<float> y = naive_kv_parts(latent, T, w, s, bound, &delta);
  if (bound && !delta.empty())
    for (std::size_t i = 0; i < bound->size(); ++i) (*bound)[i] = ((*bound)[i] + std::fabs(delta[i])) * (1 + 0x1p-40);
  return y;
}

namespace {

// The keys of a call: the prefix's tokens (positions before the call), then the call's own.
struct Keys {
  std::size_t prefix = 0, count = 0;
  std::vector<float> latent, k_pe;
};

Keys keys_of(const Projected& p, const Projected* prefix, const MlaSpec& s) {
  Keys k;
  k.prefix = prefix ? prefix->tokens : 0;
  k.count = k.prefix + p.tokens;
  if (prefix) {
    if (prefix->latent.size() != prefix->tokens * s.kv_lora || prefix->k_pe.size() != prefix->tokens * s.rope)
      throw std::invalid_argument("prefix: latent must be [tokens, kv_lora] and k_pe [tokens, rope]");
    for (float v : prefix->latent)
      if (!std::isfinite(v)) throw std::invalid_argument("prefix: latent holds a non-finite value");
    for (float v : prefix->k_pe)
      if (!std::isfinite(v)) throw std::invalid_argument("prefix: k_pe holds a non-finite value");
    k.latent = prefix->latent;
    k.k_pe = prefix->k_pe;
  }
  k.latent.insert(k.latent.end(), p.latent.begin(), p.latent.end());
  k.k_pe.insert(k.k_pe.end(), p.k_pe.begin(), p.k_pe.end());
  return k;
}

// The score dot of attn_ops deepseek_reference before its scale, as inference/model.py computes it
// in BF16 (forward.hpp step 2r): naive (split == n) R(dot(q, k)); absorbed (split = kv_lora)
// R(fl(R(dot(q_abs, c)) + R(dot(q_pe, k_pe)))): two einsums, each rounded to BF16 by torch, and
// their BF16 sum (torch adds BF16 tensors in FP32 and rounds the sum to BF16). Each rounding to
// BF16 adds kUBf16 times its result to the bound (round to nearest: |R(y) - y| <= u |R(y)|), the
// FP32 addition kU32 |dn + dp| (exact unless the exponents differ by more than 16; kept rather
// than argued away).
float reference_score_dot(const float* q, const float* k, std::size_t split, std::size_t n, double* err) {
  if (split == n) {
    const float d = round_to_bf16(dot_f32(q, k, n));
    if (err) *err = kUBf16 * std::fabs(d);
    return d;
  }
  const float dn = round_to_bf16(dot_f32(q, k, split)), dp = round_to_bf16(dot_f32(q + split, k + split, n - split));
  const float sum = dn + dp;
  const float d = round_to_bf16(sum);
  if (err)
    *err = kUBf16 * (std::fabs(dn) + std::fabs(dp) + std::fabs(d)) + kU32 * std::fabs(static_cast<double>(sum));
  return d;
}

}  // namespace

namespace {

// What one attention call multiplies: keys and values per (key token, kv head), queries per
// (token, head), and, absorbed, the weights its einsums use. Values only; their errors are
// OperandErrors'.
struct AttentionOperands {
  std::size_t kv_heads = 1;  // naive: one key/value row per (token, head); absorbed: per token
  std::size_t KD = 0, VD = 0;  // key and value widths
  std::vector<float> K, V, Q;
  std::span<const float> wa;   // absorbed: wkv_b as the einsums multiply it (absorbed_weights)
  std::vector<float> wa_hold;  // what wa views when it is not the caller's wkv_b (FP8)
  AttentionOperands() = default;
  AttentionOperands(AttentionOperands&&) = default;  // wa stays valid: a moved vector keeps its buffer
  AttentionOperands(const AttentionOperands&) = delete;
  std::size_t kv_row(std::size_t j, std::size_t h) const { return j * kv_heads + (kv_heads == 1 ? 0 : h); }
};

// Under attn_ops deepseek_reference the absorbed score is two einsums (nope over the first
// kv_lora columns, rope over the rest); naive is one (reference_score_dot).
std::size_t score_split(const AttentionOperands& o, const MlaSpec& s, Form form) {
  return form == Form::Naive ? o.KD : static_cast<std::size_t>(s.kv_lora);
}

// kv: the naive form's keys|values of every key token (naive_kv_parts), empty when absorbed.
AttentionOperands attention_operands(const Projected& p, const Keys& keys, const std::vector<float>& kv,
                                     const MlaWeightsView& w, const MlaSpec& s, Form form) {
  const std::size_t T = p.tokens, H = s.heads, C = s.kv_lora, R = s.rope, TK = keys.count;
  AttentionOperands o;
  o.KD = form == Form::Naive ? static_cast<std::size_t>(s.qk_head()) : C + R;
  o.VD = form == Form::Naive ? static_cast<std::size_t>(s.v) : C;
  o.kv_heads = form == Form::Naive ? H : 1;
  o.K.resize(TK * o.kv_heads * o.KD);
  o.V.resize(TK * o.kv_heads * o.VD);
  o.Q.resize(T * H * o.KD);
  const std::size_t KD = o.KD, VD = o.VD;
  if (form == Form::Naive) {
    const std::size_t KV = static_cast<std::size_t>(s.nope + s.v);
    for (std::size_t i = 0; i < TK * H; ++i) {
      const std::size_t t = i / H;
      std::copy(&kv[i * KV], &kv[i * KV] + s.nope, &o.K[i * KD]);
      std::copy(&keys.k_pe[t * R], &keys.k_pe[t * R] + R, &o.K[i * KD + s.nope]);
      std::copy(&kv[i * KV + s.nope], &kv[i * KV + s.nope] + s.v, &o.V[i * VD]);
    }
    for (std::size_t i = 0; i < T * H; ++i) {
      std::copy(&p.q_nope[i * s.nope], &p.q_nope[i * s.nope] + s.nope, &o.Q[i * KD]);
      std::copy(&p.q_pe[i * R], &p.q_pe[i * R] + R, &o.Q[i * KD + s.nope]);
    }
  } else {
    o.wa = absorbed_weights(w, s, o.wa_hold);
    for (std::size_t t = 0; t < TK; ++t) {
      std::copy(&keys.latent[t * C], &keys.latent[t * C] + C, &o.K[t * KD]);
      std::copy(&keys.k_pe[t * R], &keys.k_pe[t * R] + R, &o.K[t * KD + C]);
      std::copy(&keys.latent[t * C], &keys.latent[t * C] + C, &o.V[t * VD]);
    }
    o.Q = absorbed_query_of(p, o.wa, s);
  }
  return o;
}

// One (token, head) row's values, kept for its bound: scaled scores before (sp) and after (sc)
// the rounding to the attention format, probabilities, and the rounded P.V accumulator.
struct RowValues {
  std::vector<float> sp, sc, pr, acc;
  std::vector<float> gemm;  // mla_dot_f32_gemm's scratch for one query row
  RowValues(std::size_t keys, std::size_t VD)
      : sp(keys), sc(keys), pr(keys), acc(VD), gemm(dot_f32_gemm_scratch(1, std::max(keys, VD), false)) {}
};

// Row i = (t, h) over its n causal keys: scores, softmax, P.V and, absorbed, W_UV; writes s.v
// outputs to out.
void attend_row(const AttentionOperands& o, const MlaSpec& s, Form form, float scale, std::size_t i, std::size_t n,
                RowValues& r, float* out) {
  const std::size_t h = i % static_cast<std::size_t>(s.heads), KD = o.KD, VD = o.VD;
  const bool reference = s.attn_ops == AttnOps::DeepseekReference;
  const float* q = &o.Q[i * KD];
  if (!reference)  // the row's n dots at once (key j's row at kv_row(j, h)), each in dot_f32's order
    mla_dot_f32_gemm(q, 1, &o.K[o.kv_row(0, h) * KD], n, KD, o.kv_heads * KD, false, r.sp.data(), n, r.gemm.data());
  for (std::size_t j = 0; j < n; ++j) {
    const float d = reference ? reference_score_dot(q, &o.K[o.kv_row(j, h) * KD], score_split(o, s, form), KD, nullptr)
                              : r.sp[j];
    r.sp[j] = d * scale;
    r.sc[j] = round_to(s.attn, r.sp[j]);
  }
  softmax_row(r.sc.data(), n, s.attn, r.pr.data());
  // acc[c] = sum_j fl(p_j * v_j[c]) in key order (mla_pv_rows: the scalar loop's sums, vectorised
  // across c on this CPU's instruction set); value row j of head h at kv_row(j, h).
  mla_pv_rows(r.pr.data(), 1, n, &o.V[o.kv_row(0, h) * VD], o.kv_heads * VD, VD, r.acc.data());
  for (std::size_t c = 0; c < VD; ++c) r.acc[c] = round_to(s.attn, r.acc[c]);
  if (form == Form::Naive) {
    std::copy(r.acc.begin(), r.acc.begin() + s.v, out);
    return;
  }
  // W_UV's v rows of head h are consecutive: out = R_attn(dot_f32(acc, W_UV[d])) for all d at once.
  mla_dot_f32_gemm(r.acc.data(), 1, w_uv(o.wa, s, static_cast<int>(h), 0), s.v, s.kv_lora, s.kv_lora, false, out, s.v,
                   r.gemm.data());
  for (int d = 0; d < s.v; ++d) out[d] = round_to(s.attn, out[d]);
}

// attend_row without what its bound needs, for the heads [h0, h0 + hb) of token row t (rows
// i = t * heads + h) at once: writes each head's rounded P.V accumulator (VD floats; absorbed: the
// latent o_lat before W_UV, naive: the output) to acc + (h - h0) * VD. Absorbed, the heads share
// their key and value rows, so their scores are one dot GEMM (hb query rows against the n keys:
// each key row read once for the group) and their P.V one pass over the values (mla_pv_rows);
// naive, hb is 1. Each head's bits are attend_row's: every dot keeps numerics.hpp's order, every
// accumulator its key order, and exp_f32_batch is exp_f32 (= exp_pinned) on every input.
struct GroupScratch {
  std::vector<float> sc, gemm;
  GroupScratch(std::size_t heads, std::size_t keys)
      : sc(heads * keys), gemm(dot_f32_gemm_scratch(heads, std::max<std::size_t>(keys, 1), false)) {}
};

constexpr std::size_t kHeadGroup = 4;

void attend_group(const AttentionOperands& o, const MlaSpec& s, Form form, float scale, std::size_t t, std::size_t h0,
                  std::size_t hb, std::size_t n, GroupScratch& g, float* acc) {
  const std::size_t H = s.heads, KD = o.KD, VD = o.VD, i0 = t * H + h0;
  const bool reference = s.attn_ops == AttnOps::DeepseekReference;
  float* sc = g.sc.data();  // [hb][n]: scores, then exp's arguments, then probabilities
  const float* q = &o.Q[i0 * KD];
  if (!reference)  // hb rows of Q (consecutive heads) against key rows kv_row(j, h0), j < n
    mla_dot_f32_gemm(q, hb, &o.K[o.kv_row(0, h0) * KD], n, KD, o.kv_heads * KD, false, sc, n, g.gemm.data());
  for (std::size_t hh = 0; hh < hb; ++hh) {
    float* x = sc + hh * n;
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t j = 0; j < n; ++j) {  // attend_row's scores and softmax_row's max
      const float d = reference ? reference_score_dot(q + hh * KD, &o.K[o.kv_row(j, h0 + hh) * KD],
                                                      score_split(o, s, form), KD, nullptr)
                                : x[j];
      x[j] = round_to(s.attn, d * scale);
      m = std::max(m, x[j]);
    }
    for (std::size_t j = 0; j < n; ++j) x[j] = x[j] - m;
  }
  exp_f32_batch(sc, sc, hb * n);
  for (std::size_t hh = 0; hh < hb; ++hh) {
    float* e = sc + hh * n;
    float S = 0;
    for (std::size_t j = 0; j < n; ++j) S = S + e[j];
    for (std::size_t j = 0; j < n; ++j) e[j] = round_to(s.attn, e[j] / S);
  }
  mla_pv_rows(sc, hb, n, &o.V[o.kv_row(0, h0) * VD], o.kv_heads * VD, VD, acc);
  for (std::size_t c = 0; c < hb * VD; ++c) acc[c] = round_to(s.attn, acc[c]);
}

// attention's values without a bound: rows in groups of heads (attend_group), then, absorbed, W_UV
// per head as one dot GEMM over a chunk of kTokenChunk tokens (each head's v x kv_lora weights read
// once per chunk instead of once per (token, head) row; the chunk bounds the latent buffer at
// kTokenChunk x heads x kv_lora floats). out: [T, heads, v]. Bit-identical to attend_row per row.
constexpr std::size_t kTokenChunk = 128;

void attend_all(const AttentionOperands& o, const Keys& keys, const Projected& p, const MlaSpec& s, Form form,
                float scale, float* out) {
  const std::size_t T = p.tokens, H = s.heads, VD = o.VD, OD = s.v, C = s.kv_lora;
  const bool absorbed = form == Form::Absorbed;
  const std::size_t hg = absorbed ? kHeadGroup : 1, groups = (H + hg - 1) / hg;
  const std::size_t chunk = absorbed ? std::min(T, kTokenChunk) : T;
  std::vector<float> lat(absorbed ? chunk * H * VD : 0);  // absorbed: o_lat [chunk, heads, kv_lora]
  for (std::size_t t0 = 0; t0 < T; t0 += chunk) {
    const std::size_t tc = std::min(chunk, T - t0);
    float* acc_out = absorbed ? lat.data() : out + t0 * H * VD;  // naive: VD = v, straight to out
    parallel_for(tc * groups, 1, [&](std::size_t b, std::size_t e) {
      GroupScratch g(hg, keys.count);
      for (std::size_t item = b; item < e; ++item) {
        const std::size_t t = item / groups, h0 = item % groups * hg, hb = std::min(hg, H - h0);
        attend_group(o, s, form, scale, t0 + t, h0, hb, keys.prefix + t0 + t + 1, g, &acc_out[(t * H + h0) * VD]);
      }
    });
    if (!absorbed) continue;
    parallel_for(H, 1, [&](std::size_t b, std::size_t e) {
      std::vector<float> a(tc * C);
      for (std::size_t h = b; h < e; ++h) {
        for (std::size_t t = 0; t < tc; ++t) std::copy_n(&lat[(t * H + h) * C], C, &a[t * C]);
        // out[t, h, d] = dot_f32(o_lat[t, h], W_UV[h][d]): attend_row's W_UV GEMM for the chunk's tokens.
        float* o_h = out + t0 * H * OD + h * OD;
        dot_grid_items(a.data(), tc, w_uv(o.wa, s, static_cast<int>(h), 0), OD, C, false, o_h, H * OD, 0,
                       dot_grid(tc, OD));
        for (std::size_t t = 0; t < tc; ++t)
          for (std::size_t d = 0; d < OD; ++d) o_h[t * H * OD + d] = round_to(s.attn, o_h[t * H * OD + d]);
      }
    });
  }
}

}  // namespace

// Bound derivation (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3; all errors
// measured against the exact attention of the shared inputs, carried per element as E):
//  - a dot of computed inputs a^, b^ with |a^ - a| <= Ea, |b^ - b| <= Eb in numerics.hpp's order:
//      |fl(a^.b^) - a.b| <= gamma(depth) sum|a^ b^| + sum (Ea|b^| + |a^|Eb + Ea Eb);
//  - a rounding R to a format of unit roundoff uR adds uR |R(y)| (round to nearest);
//  - a score error delta_j becomes a relative error rho of p (softmax_rho);
//  - P.V summed over n keys in key order: gamma(n) sum|p^ v^| + sum (Ep|v^| + |p^|Ev + Ep Ev).
namespace {

// What is known of the operands' errors, for attention's bound (OperandErrors' derivation):
// magnitudes E* and exactly known signed parts D* (evaluated in binary64).
// Naive with FP8 wkv_b: the activation quantisation's signed effect on each key/value element,
// delta (forward.hpp wkv_b_naive), is DK/DV; EK/EV then hold only the rest (gemm bound + delta's
// own evaluation error). With k^ - k = e + delta, |e| <= EK:
//   q . k^ - q . k = q . e + q . delta, so |.| <= sum |q| EK + |fl(q . delta)| + g64 sum |q delta|
// (q is exact in the naive form: the shared input), and in P.V
//   sum p^ v^ - sum p v = sum (p^ - p) v^ + sum p^ (e + delta) - sum (p^ - p)(e + delta),
//   |.| <= sum EP |v^| + sum |p^| EV + |fl(sum p^ delta)| + g64 sum |p^ delta| + sum EP (EV + |delta|).
// The signed sums let the quantisation errors cancel as they do in the computation, instead of
// adding their magnitudes (~sqrt(nope) and ~sqrt(keys) tighter on random data). g64 = gamma64 of
// the sum's length, for its binary64 evaluation.
// Absorbed: the einsums' weights w^ and their signed distance dW = w^ - W from the exact weights
// (empty unless wkv_b is FP8: then w^ = R_attn(fl32(e4m3 * scale)), W = e4m3 * scale). dW is
// known exactly, so its effect is carried signed, like DK/DV:
//   q_abs: Q^ - Q = r + DQ with DQ_c = sum_d q_d dW[d, c] (binary64, error <= g64 sum |q_d dW|,
//          added to EQ) and |r| <= gamma32 sum |q w^| + uA |Q^| (the FP32 dot and R_attn);
//   scores: (Q^ - Q) . c = DQ . c + r . c, |.| <= |fl(DQ . c)| + g64 sum |DQ c| + sum EQ |c|;
//   W_UV:  acc^ . w^ - a . W = (acc^ - a) . w^ + acc^ . dW - (acc^ - a) . dW,
//          |.| <= sum EA |w^| + |fl(acc^ . dW)| + g64 sum |acc^ dW| + sum EA |dW|.
struct OperandErrors {
  std::vector<double> EK, EV, DK, DV;  // keys and values
  std::vector<double> EQ, DQ;          // queries
  std::vector<double> dW;              // absorbed with FP8 wkv_b: w^ - W
};

// EKV, DKV: naive_kv_parts' bound and signed effect for the naive form's keys|values.
OperandErrors operand_errors(const Projected& p, const AttentionOperands& o, const std::vector<double>& EKV,
                             const std::vector<double>& DKV, const MlaWeightsView& w, const MlaSpec& s, Form form) {
  const std::size_t T = p.tokens, H = s.heads, C = s.kv_lora, KD = o.KD, VD = o.VD;
  const double uA = unit_roundoff(s.attn);
  OperandErrors e;
  e.EK.assign(o.K.size(), 0.0);
  e.EV.assign(o.V.size(), 0.0);
  e.EQ.assign(o.Q.size(), 0.0);
  if (form == Form::Naive) {
    const std::size_t KV = static_cast<std::size_t>(s.nope + s.v), TK = o.K.size() / (H * KD);
    if (!DKV.empty()) {
      e.DK.assign(o.K.size(), 0.0);  // rope columns: no quantisation effect
      e.DV.assign(o.V.size(), 0.0);
    }
    for (std::size_t i = 0; i < TK * H; ++i) {
      for (int d = 0; d < s.nope; ++d) {
        e.EK[i * KD + d] = EKV[i * KV + d];
        if (!e.DK.empty()) e.DK[i * KD + d] = DKV[i * KV + d];
      }
      for (int d = 0; d < s.v; ++d) {
        e.EV[i * VD + d] = EKV[i * KV + s.nope + d];
        if (!e.DV.empty()) e.DV[i * VD + d] = DKV[i * KV + s.nope + d];
      }
    }
    return e;
  }
  if (s.wkv_b == MatmulFormat::Fp8) {
    const std::vector<double> we = wkv_b_exact_checked(w, s);
    e.dW.resize(we.size());
    for (std::size_t i = 0; i < we.size(); ++i) e.dW[i] = static_cast<double>(o.wa[i]) - we[i];  // exact (Sterbenz: w^ is within a factor 2 of W)
    e.DQ.assign(o.Q.size(), 0.0);  // the q_pe columns: exact
  }
  for (std::size_t i = 0; i < T * H; ++i) {
    const int h = static_cast<int>(i % H);
    for (std::size_t c = 0; c < C; ++c) {
      // |fl(q . w^) - q . w^| <= gamma sum |q w^|, plus R_attn; the weights' own error q . dW
      // goes to DQ (signed, see above) with its binary64 evaluation error in EQ.
      double a = 0, dq = 0, dqa = 0;
      for (int d = 0; d < s.nope; ++d) {
        const double qd = p.q_nope[i * s.nope + d];
        a += std::fabs(qd * w_uk(o.wa, s, h, d)[c]);
        if (!e.dW.empty()) {
          dq += qd * w_uk(e.dW, s, h, d)[c];
          dqa += std::fabs(qd * w_uk(e.dW, s, h, d)[c]);
        }
      }
      e.EQ[i * KD + c] = gamma32(dot_depth(s.nope)) * a + gamma64(static_cast<double>(s.nope)) * dqa + uA * std::fabs(o.Q[i * KD + c]);
      if (!e.dW.empty()) e.DQ[i * KD + c] = dq;
    }
  }
  return e;
}

// One row's bound terms, reused across rows.
struct RowBoundScratch {
  std::vector<double> delta, EP, EA, PD, PDA;
  RowBoundScratch(std::size_t keys, std::size_t VD, bool signed_values)
      : delta(keys), EP(keys), EA(VD), PD(signed_values ? VD : 0), PDA(signed_values ? VD : 0) {}
};

// Each score's error delta_j: the dot's (Higham 3.1 with the operands' errors), its scaling by an
// FP32 multiplication, and the rounding to the attention format.
void score_errors(const AttentionOperands& o, const OperandErrors& e, const MlaSpec& s, Form form, float scale,
                  std::size_t i, std::size_t n, const RowValues& r, double* delta) {
  const std::size_t h = i % static_cast<std::size_t>(s.heads), KD = o.KD;
  const bool reference = s.attn_ops == AttnOps::DeepseekReference;
  const double uA = unit_roundoff(s.attn);
  const float* q = &o.Q[i * KD];
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t kr = o.kv_row(j, h);
    const float* k = &o.K[kr * KD];
    // Under deepseek_reference the nope and rope dots of the absorbed form run separately; each
    // one's gamma32(dot_depth(part)) sum|q k| over its part is at most the first term. eref: the
    // reference's extra roundings, before the scale.
    double eref = 0;
    if (reference) reference_score_dot(q, k, score_split(o, s, form), KD, &eref);
    double edot = gamma32(dot_depth(KD)) * abs_dot(q, k, KD) + eref;
    for (std::size_t c = 0; c < KD; ++c) {
      const double eq = e.EQ[i * KD + c], ek = e.EK[kr * KD + c];
      edot += eq * std::fabs(k[c]) + std::fabs(q[c]) * ek + eq * ek;
    }
    if (!e.DQ.empty()) {  // absorbed with FP8 wkv_b: k is exact (EK zero)
      double dk = 0, dka = 0;
      for (std::size_t c = 0; c < KD; ++c) {
        dk += e.DQ[i * KD + c] * k[c];
        dka += std::fabs(e.DQ[i * KD + c] * k[c]);
      }
      edot += std::fabs(dk) + gamma64(static_cast<double>(KD)) * dka;
    }
    if (!e.DK.empty()) {  // naive: EQ is zero (q exact)
      double qd = 0, qda = 0;
      for (std::size_t c = 0; c < KD; ++c) {
        qd += static_cast<double>(q[c]) * e.DK[kr * KD + c];
        qda += std::fabs(static_cast<double>(q[c]) * e.DK[kr * KD + c]);
      }
      edot += std::fabs(qd) + gamma64(static_cast<double>(KD)) * qda;
    }
    delta[j] = edot * scale + kU32 * std::fabs(r.sp[j]) + uA * std::fabs(r.sc[j]);
  }
}

// The error of the P.V accumulator after its rounding, EA (the P.V line of the derivation above).
void pv_errors(const AttentionOperands& o, const OperandErrors& e, const MlaSpec& s, std::size_t i, std::size_t n,
               const RowValues& r, RowBoundScratch& b) {
  const std::size_t h = i % static_cast<std::size_t>(s.heads), VD = o.VD;
  const double uA = unit_roundoff(s.attn);
  std::fill(b.EA.begin(), b.EA.end(), 0.0);
  std::fill(b.PD.begin(), b.PD.end(), 0.0);
  std::fill(b.PDA.begin(), b.PDA.end(), 0.0);
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t vr = o.kv_row(j, h);
    const float* v = &o.V[vr * VD];
    for (std::size_t c = 0; c < VD; ++c) {
      const double ev = e.EV[vr * VD + c];
      b.EA[c] += gamma32(static_cast<double>(n)) * std::fabs(static_cast<double>(r.pr[j]) * v[c]) +
                 b.EP[j] * std::fabs(v[c]) + std::fabs(r.pr[j]) * ev + b.EP[j] * ev;
      if (!e.DV.empty()) {
        const double dv = e.DV[vr * VD + c];
        b.PD[c] += static_cast<double>(r.pr[j]) * dv;
        b.PDA[c] += std::fabs(static_cast<double>(r.pr[j]) * dv);
        b.EA[c] += b.EP[j] * std::fabs(dv);
      }
    }
  }
  if (!e.DV.empty())
    for (std::size_t c = 0; c < VD; ++c) b.EA[c] += std::fabs(b.PD[c]) + gamma64(static_cast<double>(n)) * b.PDA[c];
  for (std::size_t c = 0; c < VD; ++c) b.EA[c] += uA * std::fabs(r.acc[c]);
}

// Row i's bound from its values r and outputs out (attend_row's), written to bound[0 .. s.v).
void bound_row(const AttentionOperands& o, const OperandErrors& e, const MlaSpec& s, Form form, float scale,
               std::size_t i, std::size_t n, const RowValues& r, const float* out, RowBoundScratch& b, double* bound) {
  const double uA = unit_roundoff(s.attn);
  score_errors(o, e, s, form, scale, i, n, r, b.delta.data());
  const double rho = softmax_rho(r.sc.data(), b.delta.data(), n);
  for (std::size_t j = 0; j < n; ++j)
    // Both p and p^ lie in [0, 1], so 1 caps the bound when rho is too large to say more.
    // (+ 2^-120: an exp result below FP32's normal range is accurate only to 2^-149 absolute.)
    b.EP[j] = rho >= 0.5 ? 1.0
                         : std::min(1.0, rho * (1 + uA) * std::fabs(r.pr[j]) / (1 - rho) + uA * std::fabs(r.pr[j]) +
                                             0x1p-120);
  pv_errors(o, e, s, i, n, r, b);
  if (form == Form::Naive) {
    std::copy(b.EA.begin(), b.EA.begin() + s.v, bound);
    return;
  }
  const std::size_t C = s.kv_lora;
  const int h = static_cast<int>(i % static_cast<std::size_t>(s.heads));
  for (int d = 0; d < s.v; ++d) {
    const float* wrow = w_uv(o.wa, s, h, d);
    double eo = gamma32(dot_depth(C)) * abs_dot(r.acc.data(), wrow, C);
    for (std::size_t c = 0; c < C; ++c) eo += b.EA[c] * std::fabs(wrow[c]);
    if (!e.dW.empty()) {  // the W_UV line of the derivation above
      const double* drow = w_uv(e.dW, s, h, d);
      double ad = 0, ada = 0;
      for (std::size_t c = 0; c < C; ++c) {
        ad += static_cast<double>(r.acc[c]) * drow[c];
        ada += std::fabs(static_cast<double>(r.acc[c]) * drow[c]);
        eo += b.EA[c] * std::fabs(drow[c]);
      }
      eo += std::fabs(ad) + gamma64(static_cast<double>(C)) * ada;
    }
    bound[d] = eo + uA * std::fabs(out[d]);
  }
}

// attention with w checked; q_absorbed, if given, receives the absorbed form's queries
// (absorbed_query: forward returns them without computing them twice).
std::vector<float> attention_checked(const Projected& p, const MlaWeightsView& w, const MlaSpec& s, Form form,
                                     std::vector<double>* bound, const Projected* prefix,
                                     std::vector<float>* q_absorbed = nullptr) {
  const Keys keys = keys_of(p, prefix, s);
  std::vector<float> kv;         // naive: keys|values of every key token,
  std::vector<double> EKV, DKV;  // with a bound: their error bound and signed FP8 effect
  if (form == Form::Naive) kv = naive_kv_parts(keys.latent.data(), keys.count, w, s, bound ? &EKV : nullptr, &DKV);
  AttentionOperands o = attention_operands(p, keys, kv, w, s, form);
  OperandErrors e;
  if (bound) e = operand_errors(p, o, EKV, DKV, w, s, form);
  const std::size_t H = s.heads, OD = s.v;
  const float scale = softmax_scale_value(s);
  std::vector<float> out(p.tokens * H * OD);
  if (!bound) {  // the values alone: rows in head groups, W_UV per head (attend_all)
    attend_all(o, keys, p, s, form, scale, out.data());
  } else {  // each row's values and the bound that needs them (attend_row: the reference of attend_all)
    bound->assign(out.size(), 0.0);
    parallel_for(p.tokens * H, 1, [&](std::size_t b, std::size_t end) {
      RowValues r(keys.count, o.VD);
      RowBoundScratch rb(keys.count, o.VD, !e.DV.empty());
      for (std::size_t i = b; i < end; ++i) {
        const std::size_t n = keys.prefix + i / H + 1;  // causal: the prefix and the call's keys up to t
        attend_row(o, s, form, scale, i, n, r, &out[i * OD]);
        bound_row(o, e, s, form, scale, i, n, r, &out[i * OD], rb, &(*bound)[i * OD]);
      }
    });
    for (auto& b : *bound) b = b * (1 + 0x1p-40) + 0x1p-1000;
  }
  if (q_absorbed) *q_absorbed = form == Form::Absorbed ? std::move(o.Q) : absorbed_query_of(p, absorbed_weights(w, s, o.wa_hold), s);
  return out;
}

}  // namespace

std::vector<float> attention(const Projected& p, const MlaWeightsView& w, const MlaSpec& s, Form form,
                             std::vector<double>* bound, const Projected* prefix) {
  validate_weights(w, s);
  return attention_checked(p, w, s, form, bound, prefix);
}

std::vector<double> exact_attention(const Projected& p, const MlaWeightsView& w, const MlaSpec& s, double scale,
                                    const Projected* prefix) {
  const std::size_t T = p.tokens, H = s.heads, C = s.kv_lora, R = s.rope;
  const Keys keys = keys_of(p, prefix, s);
  const std::size_t P0 = keys.prefix;
  const std::vector<double> W = wkv_b_exact(w, s);  // under FP8: the dequantised e4m3 * scale
  std::vector<double> out(T * H * s.v);
  parallel_for(T * H, 1, [&](std::size_t b, std::size_t e) {
    std::vector<double> sc(keys.count), acc(s.v);
    std::vector<double> K(static_cast<std::size_t>(s.nope)), Vv;
    for (std::size_t i = b; i < e; ++i) {
      const std::size_t t = i / H, h = i % H;
      double m = -INFINITY;
      const std::size_t last = P0 + t;
      for (std::size_t j = 0; j <= last; ++j) {
        double d = 0;
        for (int dd = 0; dd < s.nope; ++dd) {
          double k = 0;
          const double* wr = w_uk(W, s, static_cast<int>(h), dd);
          for (std::size_t c = 0; c < C; ++c) k += wr[c] * keys.latent[j * C + c];
          d += static_cast<double>(p.q_nope[i * s.nope + dd]) * k;
        }
        for (std::size_t r = 0; r < R; ++r) d += static_cast<double>(p.q_pe[i * R + r]) * keys.k_pe[j * R + r];
        sc[j] = d * scale;
        m = std::max(m, sc[j]);
      }
      double S = 0;
      for (std::size_t j = 0; j <= last; ++j) {
        sc[j] = exp_f64_pinned(sc[j] - m);
        S += sc[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::size_t j = 0; j <= last; ++j)
        for (int dd = 0; dd < s.v; ++dd) {
          double v = 0;
          const double* wr = w_uv(W, s, static_cast<int>(h), dd);
          for (std::size_t c = 0; c < C; ++c) v += wr[c] * keys.latent[j * C + c];
          acc[dd] += sc[j] / S * v;
        }
      for (int dd = 0; dd < s.v; ++dd) out[i * s.v + dd] = acc[dd];
    }
  });
  return out;
}

std::vector<float> output_projection(const std::vector<float>& o, std::size_t T, const MlaWeightsView& w, const MlaSpec& s) {
  return project_rows(o.data(), T, static_cast<std::size_t>(s.heads) * s.v, w.wo, s.hidden, s.wo);
}

ForwardResult forward(const float* x, std::size_t T, const MlaWeightsView& w, const MlaSpec& s, Form form, long start_pos,
                      const Projected* prefix, std::vector<float>* q_absorbed) {
  validate_weights(w, s);  // once for the three steps
  ForwardResult r;
  r.projected = project_checked(x, T, w, s, start_pos);
  r.attn = attention_checked(r.projected, w, s, form, nullptr, prefix, q_absorbed);
  r.out = output_projection(r.attn, T, w, s);
  return r;
}

FormsComparison compare_forms(const Projected& p, const MlaWeightsView& w, const MlaSpec& s, const Projected* prefix) {
  FormsComparison fc;
  validate_weights(w, s);
  fc.absorbed = attention_checked(p, w, s, Form::Absorbed, &fc.bound_absorbed, prefix);
  fc.naive = attention_checked(p, w, s, Form::Naive, &fc.bound_naive, prefix);
  fc.exact = exact_attention(p, w, s, softmax_scale_value(s), prefix);
  const std::size_t n = fc.absorbed.size();
  std::vector<double> got(n), expected(n), bound(n);
  double maxexact = 0;
  for (double v : fc.exact) maxexact = std::max(maxexact, std::fabs(v));
  for (std::size_t i = 0; i < n; ++i) {
    got[i] = fc.absorbed[i];
    expected[i] = fc.naive[i];
    bound[i] = fc.bound_absorbed[i] + fc.bound_naive[i];
    const double d = std::fabs(got[i] - expected[i]);
    fc.max_abs_difference = std::max(fc.max_abs_difference, d);
    if (bound[i] > 0) fc.max_observed_over_bound = std::max(fc.max_observed_over_bound, d / bound[i]);
  }
  fc.max_rel_difference = maxexact > 0 ? fc.max_abs_difference / maxexact : 0;
  CompareInputs in;
  in.got = got.data();
  in.expected = expected.data();
  in.exact = expected.data();  // |absorbed - naive| against the sum of both bounds
  in.bound = bound.data();
  in.count = n;
  in.shape = {p.tokens, static_cast<std::size_t>(s.heads), static_cast<std::size_t>(s.v)};
  const bool bf = s.attn == MatmulFormat::Bf16;
  in.output_mantissa_bits = bf ? 7 : 23;
  in.what = "mla absorbed vs naive";
  fc.verdict = compare(in);
  return fc;
}

}  // namespace fp8lab::mla

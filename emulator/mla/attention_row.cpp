#include "mla/attention_row.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "common/bf16.hpp"
#include "common/pinned_math.hpp"
#include "mla/numerics.hpp"

namespace fp8lab::mla {

SplitPlan split_plan(std::size_t items, std::size_t per_block, int num_splits) {
  SplitPlan p;
  p.blocks = (items + per_block - 1) / per_block;
  if (p.blocks == 0) return p;
  const std::size_t S = static_cast<std::size_t>(num_splits);
  p.per_split = (p.blocks + S - 1) / S;
  p.splits = (p.blocks + p.per_split - 1) / p.per_split;
  return p;
}

float combine_splits(const float* m, const float* l, const float* acc, std::size_t nj, std::size_t ml_stride,
                     std::size_t acc_stride, std::size_t C, float sink, float* out, std::uint16_t* out_bits,
                     float* N) {
  float M = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < nj; ++j) M = std::max(M, m[j * ml_stride]);
  float Lsum = 0;
  std::fill(N, N + C, 0.0f);
  for (std::size_t j = 0; j < nj; ++j) {
    const float w = exp_pinned(m[j * ml_stride] - M);
    Lsum = Lsum + l[j * ml_stride] * w;
    const float* a = &acc[j * acc_stride];
    for (std::size_t c = 0; c < C; ++c) {
      const float x = a[c] * w;
      N[c] = N[c] + x;
    }
  }
  // The sink joins the denominator only: exp(sink - M) is its weight on the row's scale. -inf adds
  // nothing (skipped, so the bits are those of no sink); +inf makes every output 0.
  const float denom = sink == -std::numeric_limits<float>::infinity() ? Lsum : Lsum + exp_pinned(sink - M);
  for (std::size_t c = 0; c < C; ++c) {
    const float o = round_to_bf16(N[c] / denom);
    out[c] = o;
    out_bits[c] = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(o) >> 16);
  }
  return M + log_f32(Lsum);
}

// Bound of |kernel - exact| of one row (Higham ch. 3 conventions; u = 2^-24). It is written for
// any kernel of this shape, not only for this emulator's order: every FP32 step may round to
// nearest or truncate (error < 2u, e.g. a tensor-core accumulator), sums may go in any order
// (gamma of the full length, not of numerics.hpp's shorter lane depth), and exp may be an
// approximation within 2^-21 relative (CUDA ex2.approx is within 2 ulp). So a FlashMLA-style
// kernel that meets the spec (FP32 accumulation, BF16 P when decode_p = bf16) is judged fairly:
//  - score: |s^_t - s_t| <= delta_t = scale * gamma(2 D) * sum|q k_t| + 2u |s^_t|;
//  - every weight the kernel forms is exp(s_t - M) times e^{theta}, |theta| <= Delta =
//    max delta + 3u R, R the score range: the subtraction s_t - m' (<= u R), the rescale
//    arguments m - m' along the split (they sum to <= R, each rounded: <= u R) and the combine's
//    m_j - M (<= u R; 2u for truncation); plus at most per_split + 2 exps (1 + 2^-21 each) and at
//    most K = tokens_in_split + 2 per_split + S + 8 roundings of products and sums, so
//    weight-and-sum = exact (1 + theta'), |theta'| <= rho = e^Delta (1+2^-21)^(per_split+2) (1+gamma(2K)) - 1
//    for both L and (times (1 + u_P) for P's rounding) the numerator N;
//  - out = N / L: |N^/L^ - N/L| <= (rho_N + rho) / (1 - rho) * sum_t p_t |v_t| (first order in
//    each, exact algebra), then the division (u) and BF16 rounding (2^-8) of the result;
//  - lse = M + log(L^): |lse^ - lse| <= rho/(1 - rho) + u |log L^| + u |lse^|.
// A row is bounded over its own V rows (scores, R, A, the underflow term, tokens_in_split) with
// per_split and S of the kernel's plan: a row meets at most per_split tiles per split and at most
// S splits.
RowReference row_reference(const float* qh, const float* rows, std::size_t V, std::size_t D, std::size_t C,
                           double scale, const RowBoundPlan& plan) {
  // any_kernel: the constants of the comment above. Otherwise this emulator's decode exactly as
  // written - round to nearest (u), numerics.hpp's lane depth, correctly rounded exp.
  const bool any = plan.any_kernel;
  const double uS = any ? 2 * kU32 : kU32;
  const double uE = any ? 0x1p-21 : kUExp;
  auto gam = [&](double n) { return any ? gamma32(2 * n) : gamma32(n); };
  const double uP = unit_roundoff(plan.decode_p);
  RowReference r;
  r.out.assign(C, 0.0);
  r.out_bound.assign(C, 0.0);
  r.abs_weighted.assign(C, 0.0);
  std::vector<double> sc(V);
  double mx = -INFINITY, mn = INFINITY, dmax = 0, vmax = 0;
  for (std::size_t t = 0; t < V; ++t) {
    double d = 0, a = 0;
    for (std::size_t c = 0; c < D; ++c) {
      const double pr = static_cast<double>(qh[c]) * rows[t * D + c];  // exact in binary64
      d += pr;
      a += std::fabs(pr);
      vmax = std::max(vmax, std::fabs(static_cast<double>(rows[t * D + c])));
    }
    sc[t] = d * scale;
    const double e = std::fabs(scale) * (any ? gam(static_cast<double>(D)) : gamma32(dot_depth(D))) * a;
    const double delta = (e + uS * std::fabs(sc[t])) / (1 - uS);
    mx = std::max(mx, sc[t]);
    mn = std::min(mn, sc[t]);
    dmax = std::max(dmax, delta);
  }
  double Ls = 0;
  for (std::size_t t = 0; t < V; ++t) {
    sc[t] = exp_f64_pinned(sc[t] - mx);
    Ls += sc[t];
  }
  for (std::size_t t = 0; t < V; ++t) {
    const double p = sc[t] / Ls;
    for (std::size_t c = 0; c < C; ++c) {
      r.out[c] += p * rows[t * D + c];
      r.abs_weighted[c] += p * std::fabs(static_cast<double>(rows[t * D + c]));
    }
  }
  r.lse = mx + std::log(Ls);
  const double R = (mx - mn) + 2 * dmax;
  const double Delta = dmax + 3 * uS * R;
  const double K = static_cast<double>(plan.tokens_split) + 2.0 * plan.per_split + plan.num_splits + 8;
  r.rho = std::exp(Delta) * std::pow(1 + uE, static_cast<double>(plan.per_split + 2)) * (1 + gam(K)) - 1;
  r.rho_n = (1 + r.rho) * (1 + uP) - 1;
  const double rel = (r.rho_n + r.rho) / (1 - r.rho);
  // Weights below FP32's normal range (exp of an argument under -87) lose the relative accuracy
  // above; each is off by at most 2^-126 absolute against L >= 1, hence the absolute term
  // (tokens * 2^-120 * max|v|) for out and (tokens * 2^-120) for lse.
  r.vmax = vmax;
  r.underflow = static_cast<double>(V) * 0x1p-120;
  for (std::size_t c = 0; c < C; ++c)
    r.out_bound[c] = out_element_bound(r.out[c], r.abs_weighted[c], rel, r.underflow * vmax, 1, any);
  const double lerr = r.rho / (1 - r.rho);
  const double logL = std::log(Ls) + lerr;
  r.lse_bound = (lerr + r.underflow + uS * std::fabs(logL) + uS * (std::fabs(r.lse) + lerr + 1e-30) * (1 + kU32) * 2) *
                    (1 + 0x1p-40) + 0x1p-1000;
  r.max_score = mx;
  r.max_delta = dmax;
  return r;
}

double out_element_bound(double o, double A, double rel, double absolute, double extra_u, bool any) {
  const double uS = any ? 2 * kU32 : kU32;
  const double e1 = rel * A + absolute;
  const double ydiv = (std::fabs(o) + e1) * (1 + extra_u * uS);
  return (e1 + extra_u * uS * ydiv + kUBf16 * ydiv * (1 + kUBf16)) * (1 + 0x1p-40) + 0x1p-1000;
}

}  // namespace fp8lab::mla

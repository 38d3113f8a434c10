#include "mla/decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"
#include "mla/numerics.hpp"

namespace fp8lab::mla {

namespace {

struct SplitPlan {
  std::size_t blocks = 0, per_split = 0, splits = 0;  // splits actually holding a block
};

SplitPlan plan(std::size_t L, const MlaSpec& s) {
  SplitPlan p;
  p.blocks = (L + s.page - 1) / s.page;
  if (p.blocks == 0) return p;
  const std::size_t S = static_cast<std::size_t>(s.num_splits);
  p.per_split = (p.blocks + S - 1) / S;
  p.splits = (p.blocks + p.per_split - 1) / p.per_split;
  return p;
}

void check_q(const float* q, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(q[i])) throw std::invalid_argument("q: element " + std::to_string(i) + " is not finite");
}

std::uint16_t bf16_bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<std::uint16_t>(u >> 16);
}

// Keys query i (0-based) of Q sees in a sequence of L tokens: FlashMLA's get_mask_len gives
// mask_len = s_q - 1 - i and the right border seqlen_k - mask_len, so causal query i sees keys
// [0, L - Q + i] (L - Q + 1 + i of them, none when that is <= 0); without causal all L.
std::size_t visible_keys(std::size_t L, std::size_t Q, std::size_t i, bool causal) {
  if (!causal) return L;
  const std::size_t hidden = Q - 1 - i;
  return L > hidden ? L - hidden : 0;
}

void check_shape(const PagedCache& cache, const MlaSpec& s, std::size_t Q, std::size_t H) {
  s.validate();
  validate_cache(cache, s);
  if (Q == 0) throw std::invalid_argument("s_q: expected at least 1 query token per sequence, got 0");
  if (H != static_cast<std::size_t>(s.heads))
    throw std::invalid_argument("q: expected " + std::to_string(s.heads) + " heads (spec.heads), got " + std::to_string(H));
}

}  // namespace

DecodeResult decode(const float* q, std::size_t H, const PagedCache& cache, const MlaSpec& s) {
  // One query: the causal mask hides nothing (FlashMLA sets is_causal = false for s_q = 1), so the
  // 1-query path does not go through the mask at all.
  return decode(q, 1, H, cache, s, false);
}

DecodeResult decode(const float* q, std::size_t Q, std::size_t H, const PagedCache& cache, const MlaSpec& s,
                    bool causal) {
  check_shape(cache, s, Q, H);
  const std::size_t B = cache.batch, C = s.kv_lora, D = s.cache_dim(), P = s.page;
  const std::size_t QH = Q * H;  // rows of one sequence, query-major (FlashMLA's q_seq_per_hk packing)
  check_q(q, B * QH * D);
  const float scale = softmax_scale_value(s);
  const std::size_t S = static_cast<std::size_t>(s.num_splits);
  // Partial results per (sequence, split, row): m, l and acc.
  std::vector<float> pm(B * S * QH, -std::numeric_limits<float>::infinity()), pl(B * S * QH, 0.0f);
  std::vector<float> pacc(B * S * QH * C, 0.0f);
  parallel_for(B * S, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rows(P * D), sc(P);
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t b = item / S, j = item % S;
      const std::size_t L = static_cast<std::size_t>(cache.seqlens[b]);
      const SplitPlan sp = plan(L, s);  // from the full length, whatever the mask
      if (j >= sp.splits) continue;
      const std::size_t kb0 = j * sp.per_split, kb1 = std::min(sp.blocks, kb0 + sp.per_split);
      for (std::size_t kb = kb0; kb < kb1; ++kb) {
        const std::size_t phys = static_cast<std::size_t>(cache.block_table[b * cache.max_blocks_per_seq + kb]);
        const std::size_t n = std::min(P, L - kb * P);  // valid tokens of this block
        // Only rows some query sees are read (the last query sees the most).
        const std::size_t most = visible_keys(L, Q, Q - 1, causal);
        const std::size_t nread = most > kb * P ? std::min(n, most - kb * P) : 0;
        for (std::size_t t = 0; t < nread; ++t)
          read_row(&cache.bytes[(phys * P + t) * cache.row_bytes], s, &rows[t * D]);
        for (std::size_t i = 0; i < Q; ++i) {
          const std::size_t vis = visible_keys(L, Q, i, causal);
          if (vis <= kb * P) continue;  // the whole tile is masked for this query: state unchanged
          const std::size_t ni = std::min(n, vis - kb * P);
          for (std::size_t h = 0; h < H; ++h) {
            const std::size_t row = i * H + h;
            const float* qh = q + (b * QH + row) * D;
            float& m = pm[item * QH + row];
            float& l = pl[item * QH + row];
            float* ah = &pacc[(item * QH + row) * C];
            float tile_max = -std::numeric_limits<float>::infinity();
            for (std::size_t t = 0; t < ni; ++t) {
              const float d = dot_f32(qh, &rows[t * D], D);
              sc[t] = d * scale;
              tile_max = std::max(tile_max, sc[t]);
            }
            const float m_new = std::max(m, tile_max);
            if (m != m_new) {
              const float alpha = m == -std::numeric_limits<float>::infinity() ? 0.0f : exp_pinned(m - m_new);
              l = l * alpha;
              for (std::size_t c = 0; c < C; ++c) ah[c] = ah[c] * alpha;
            }
            for (std::size_t t = 0; t < ni; ++t) {
              const float p = exp_pinned(sc[t] - m_new);
              l = l + p;
              const float pv = round_to(s.decode_p, p);
              const float* v = &rows[t * D];
              for (std::size_t c = 0; c < C; ++c) {
                const float prod = pv * v[c];
                ah[c] = ah[c] + prod;
              }
            }
            m = m_new;
          }
        }
      }
    }
  });
  DecodeResult r;
  r.out.assign(B * QH * C, 0.0f);
  r.out_bf16.assign(B * QH * C, 0);
  r.lse.assign(B * QH, std::numeric_limits<float>::infinity());
  parallel_for(B * QH, 4, [&](std::size_t begin, std::size_t end) {
    std::vector<float> N(C);
    for (std::size_t idx = begin; idx < end; ++idx) {
      const std::size_t b = idx / QH, row = idx % QH, i = row / H, h = row % H;
      const std::size_t L = static_cast<std::size_t>(cache.seqlens[b]);
      const SplitPlan sp = plan(L, s);
      const std::size_t vis = visible_keys(L, Q, i, causal);
      if (vis == 0) continue;  // no key: out 0, lse +inf
      // Splits holding a key this query sees; later ones hold only masked keys (FlashMLA writes
      // lse_accum = -inf for them, i.e. weight 0 in the combine).
      const std::size_t split_tokens = sp.per_split * P;
      const std::size_t nj = std::min(sp.splits, (vis + split_tokens - 1) / split_tokens);
      float M = -std::numeric_limits<float>::infinity();
      for (std::size_t j = 0; j < nj; ++j) M = std::max(M, pm[(b * S + j) * QH + row]);
      float Lsum = 0;
      std::fill(N.begin(), N.end(), 0.0f);
      for (std::size_t j = 0; j < nj; ++j) {
        const std::size_t st = (b * S + j) * QH + row;
        const float w = exp_pinned(pm[st] - M);
        Lsum = Lsum + pl[st] * w;
        const float* a = &pacc[st * C];
        for (std::size_t c = 0; c < C; ++c) {
          const float x = a[c] * w;
          N[c] = N[c] + x;
        }
      }
      for (std::size_t c = 0; c < C; ++c) {
        const float o = round_to_bf16(N[c] / Lsum);
        r.out[idx * C + c] = o;
        r.out_bf16[idx * C + c] = bf16_bits_of(o);
      }
      r.lse[(b * H + h) * Q + i] = M + log_f32(Lsum);  // FlashMLA's lse layout [batch, heads, s_q]
    }
  });
  return r;
}

// Bound of |decode - exact| per element (Higham ch. 3 conventions; u = 2^-24). It is written for
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
// With s_q queries each (query, head) row is bounded alone over its own V visible keys (scores,
// R, A, the underflow term and tokens_in_split = min(V, per_split * page)), with per_split and S
// of the full-length plan: a row meets at most per_split blocks per split and at most S splits.
DecodeReference decode_reference(const float* q, std::size_t H, const PagedCache& cache, const MlaSpec& s,
                                 double scale, BoundScope scope) {
  return decode_reference(q, 1, H, cache, s, scale, false, scope);  // one query: no mask (see decode)
}

DecodeReference decode_reference(const float* q, std::size_t Q, std::size_t H, const PagedCache& cache,
                                 const MlaSpec& s, double scale, bool causal, BoundScope scope) {
  // AnyKernel: the constants of the comment above. ThisEmulator: this file's decode exactly as
  // written - round to nearest (u), numerics.hpp's lane depth, correctly rounded exp.
  const bool any = scope == BoundScope::AnyKernel;
  const double uS = any ? 2 * kU32 : kU32;
  const double uE = any ? 0x1p-21 : kUExp;
  auto gam = [&](double n) { return any ? gamma32(2 * n) : gamma32(n); };
  check_shape(cache, s, Q, H);
  const std::size_t B = cache.batch, C = s.kv_lora, D = s.cache_dim(), P = s.page, QH = Q * H;
  check_q(q, B * QH * D);
  const double uP = unit_roundoff(s.decode_p);
  DecodeReference ref;
  ref.out.assign(B * QH * C, 0.0);
  ref.out_bound.assign(B * QH * C, 0.0);
  ref.lse.assign(B * QH, std::numeric_limits<double>::infinity());
  ref.lse_bound.assign(B * QH, 0.0);
  parallel_for(B, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rows;
    std::vector<double> sc, delta, A(C), vmax_prefix;
    for (std::size_t b = begin; b < end; ++b) {
      const std::size_t L = cache.seqlens[b];
      if (L == 0) continue;
      const SplitPlan sp = plan(L, s);  // the kernel's splits come from the full length
      rows.resize(L * D);
      vmax_prefix.assign(L, 0.0);  // max |value| over the first t+1 rows
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t kb = t / P;
        const std::size_t phys = static_cast<std::size_t>(cache.block_table[b * cache.max_blocks_per_seq + kb]);
        read_row(&cache.bytes[(phys * P + t % P) * cache.row_bytes], s, &rows[t * D]);
        double vm = t > 0 ? vmax_prefix[t - 1] : 0.0;
        for (std::size_t c = 0; c < D; ++c) vm = std::max(vm, std::fabs(static_cast<double>(rows[t * D + c])));
        vmax_prefix[t] = vm;
      }
      sc.resize(L);
      delta.resize(L);
      for (std::size_t i = 0; i < Q; ++i) {
        const std::size_t V = visible_keys(L, Q, i, causal);  // this query's own length
        if (V == 0) continue;                                 // out 0, lse +inf, bound 0
        for (std::size_t h = 0; h < H; ++h) {
          const std::size_t row = i * H + h;
          const float* qh = q + (b * QH + row) * D;
          double mx = -INFINITY, mn = INFINITY, dmax = 0;
          for (std::size_t t = 0; t < V; ++t) {
            double d = 0, a = 0;
            for (std::size_t c = 0; c < D; ++c) {
              const double pr = static_cast<double>(qh[c]) * rows[t * D + c];  // exact in binary64
              d += pr;
              a += std::fabs(pr);
            }
            sc[t] = d * scale;
            const double e = std::fabs(scale) * (any ? gam(static_cast<double>(D)) : gamma32(dot_depth(D))) * a;
            delta[t] = (e + uS * std::fabs(sc[t])) / (1 - uS);
            mx = std::max(mx, sc[t]);
            mn = std::min(mn, sc[t]);
            dmax = std::max(dmax, delta[t]);
          }
          double Ls = 0;
          for (std::size_t t = 0; t < V; ++t) {
            sc[t] = exp_f64_pinned(sc[t] - mx);
            Ls += sc[t];
          }
          std::fill(A.begin(), A.end(), 0.0);
          const std::size_t oi = b * QH + row;          // out [batch, s_q, heads, kv_lora]
          const std::size_t li = (b * H + h) * Q + i;   // lse [batch, heads, s_q]
          double* o = &ref.out[oi * C];
          for (std::size_t t = 0; t < V; ++t) {
            const double p = sc[t] / Ls;
            for (std::size_t c = 0; c < C; ++c) {
              o[c] += p * rows[t * D + c];
              A[c] += p * std::fabs(static_cast<double>(rows[t * D + c]));
            }
          }
          ref.lse[li] = mx + std::log(Ls);
          const double R = (mx - mn) + 2 * dmax;
          const double Delta = dmax + 3 * uS * R;
          // A split holds at most per_split blocks of the full-length plan, of which this query
          // sees at most min(V, per_split * page) tokens.
          const double tokens_split = static_cast<double>(std::min(V, sp.per_split * P));
          const double K = tokens_split + 2.0 * sp.per_split + s.num_splits + 8;
          const double rho = std::exp(Delta) * std::pow(1 + uE, static_cast<double>(sp.per_split + 2)) * (1 + gam(K)) - 1;
          const double rhoN = (1 + rho) * (1 + uP) - 1;
          const double rel = (rhoN + rho) / (1 - rho);
          // Weights below FP32's normal range (exp of an argument under -87) lose the relative
          // accuracy above; each is off by at most 2^-126 absolute against L >= 1, hence the
          // absolute term (tokens * 2^-120 * max|v|) for out and (tokens * 2^-120) for lse.
          const double vmax = vmax_prefix[V - 1];
          const double underflow = static_cast<double>(V) * 0x1p-120;
          double* ob = &ref.out_bound[oi * C];
          for (std::size_t c = 0; c < C; ++c) {
            const double e1 = rel * A[c] + underflow * vmax;
            const double ydiv = (std::fabs(o[c]) + e1) * (1 + uS);
            ob[c] = (e1 + uS * ydiv + kUBf16 * ydiv * (1 + kUBf16)) * (1 + 0x1p-40) + 0x1p-1000;
          }
          const double lerr = rho / (1 - rho);
          const double logL = std::log(Ls) + lerr;
          ref.lse_bound[li] =
              (lerr + underflow + uS * std::fabs(logL) + uS * (std::fabs(ref.lse[li]) + lerr + 1e-30) * (1 + kU32) * 2) *
                  (1 + 0x1p-40) + 0x1p-1000;
        }
      }
    }
  });
  return ref;
}

namespace {

// got against the reference (its value is the exact one) and its certified bound; ULPs counted in
// a format of `mantissa_bits`.
Verdict against_reference(const std::vector<double>& got, const std::vector<double>& ref,
                          const std::vector<double>& bound, std::vector<std::size_t> shape, int mantissa_bits,
                          const char* what) {
  CompareInputs in;
  in.got = got.data();
  in.expected = ref.data();
  in.exact = ref.data();
  in.bound = bound.data();
  in.count = got.size();
  in.shape = std::move(shape);
  in.output_mantissa_bits = mantissa_bits;
  in.what = what;
  return compare(in);
}

DecodeVerdicts check_shaped(const DecodeResult& got, const DecodeReference& ref, std::vector<std::size_t> out_shape,
                            std::vector<std::size_t> lse_shape) {
  DecodeVerdicts v;
  std::size_t n_out = 1, n_lse = 1;
  for (std::size_t d : out_shape) n_out *= d;
  for (std::size_t d : lse_shape) n_lse *= d;
  if (got.out.size() != n_out || ref.out.size() != n_out || ref.out_bound.size() != n_out)
    throw std::invalid_argument("got.out: expected " + std::to_string(n_out) + " elements (and the reference as many), got " +
                                std::to_string(got.out.size()) + " (reference " + std::to_string(ref.out.size()) + ")");
  if (got.lse.size() != n_lse || ref.lse.size() != n_lse || ref.lse_bound.size() != n_lse)
    throw std::invalid_argument("got.lse: expected " + std::to_string(n_lse) + " elements (and the reference as many), got " +
                                std::to_string(got.lse.size()) + " (reference " + std::to_string(ref.lse.size()) + ")");
  const std::vector<double> g(got.out.begin(), got.out.end()), gl(got.lse.begin(), got.lse.end());
  v.out = against_reference(g, ref.out, ref.out_bound, std::move(out_shape), 7, "mla decode out vs exact");
  v.lse = against_reference(gl, ref.lse, ref.lse_bound, std::move(lse_shape), 23, "mla decode lse vs exact");
  for (std::size_t i = 0; i < g.size(); ++i)
    if (ref.out_bound[i] > 0) v.max_out_ratio = std::max(v.max_out_ratio, std::fabs(g[i] - ref.out[i]) / ref.out_bound[i]);
  for (std::size_t i = 0; i < gl.size(); ++i)
    if (ref.lse_bound[i] > 0 && std::isfinite(gl[i]))
      v.max_lse_ratio = std::max(v.max_lse_ratio, std::fabs(gl[i] - ref.lse[i]) / ref.lse_bound[i]);
  return v;
}

}  // namespace

DecodeVerdicts check_decode(const DecodeResult& got, const DecodeReference& ref, std::size_t B, std::size_t H,
                            const MlaSpec& s) {
  return check_shaped(got, ref, {B, H, static_cast<std::size_t>(s.kv_lora)}, {B, H});
}

DecodeVerdicts check_decode(const DecodeResult& got, const DecodeReference& ref, std::size_t B, std::size_t Q,
                            std::size_t H, const MlaSpec& s) {
  return check_shaped(got, ref, {B, Q, H, static_cast<std::size_t>(s.kv_lora)}, {B, H, Q});
}

}  // namespace fp8lab::mla

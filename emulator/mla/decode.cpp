#include "mla/decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"
#include "mla/attention_row.hpp"
#include "mla/attention_tile.hpp"
#include "mla/decode_rows.hpp"
#include "mla/numerics.hpp"

namespace fp8lab::mla {

namespace {

SplitPlan plan(std::size_t L, const MlaSpec& s) { return split_plan(L, static_cast<std::size_t>(s.page), s.num_splits); }

void check_q(const float* q, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(q[i])) throw std::invalid_argument("q: element " + std::to_string(i) + " is not finite");
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
    std::vector<float> rows(P * D), sc(absorb_tile_scratch(H, P));
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
          read_row(cache.data() + (phys * P + t) * cache.row_bytes, s, &rows[t * D]);
        for (std::size_t i = 0; i < Q; ++i) {
          const std::size_t vis = visible_keys(L, Q, i, causal);
          if (vis <= kb * P) continue;  // the whole tile is masked for this query: state unchanged
          const std::size_t ni = std::min(n, vis - kb * P);
          const std::size_t row = i * H;  // the query's H heads, side by side
          mla_absorb_tile_heads(q + (b * QH + row) * D, H, rows.data(), ni, D, C, scale, s.decode_p != MatmulFormat::Fp32,
                                &pm[item * QH + row], &pl[item * QH + row], &pacc[(item * QH + row) * C], sc.data());
        }
      }
    }
  });
  DecodeResult r = empty_decode_result(B * QH, C);
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
      const std::size_t st = b * S * QH + row;
      r.lse[(b * H + h) * Q + i] =  // FlashMLA's lse layout [batch, heads, s_q]
          combine_splits(&pm[st], &pl[st], &pacc[st * C], nj, QH, QH * C, C, -std::numeric_limits<float>::infinity(),
                         &r.out[idx * C], &r.out_bf16[idx * C], N.data());
    }
  });
  return r;
}

// The bound of each (query, head) row is row_reference's (attention_row.cpp states it): each row
// over its own V visible keys, with per_split and S of the full-length plan: a row meets at most
// per_split blocks per split and at most S splits.
DecodeReference decode_reference(const float* q, std::size_t H, const PagedCache& cache, const MlaSpec& s,
                                 double scale, BoundScope scope) {
  return decode_reference(q, 1, H, cache, s, scale, false, scope);  // one query: no mask (see decode)
}

DecodeReference decode_reference(const float* q, std::size_t Q, std::size_t H, const PagedCache& cache,
                                 const MlaSpec& s, double scale, bool causal, BoundScope scope) {
  check_shape(cache, s, Q, H);
  const std::size_t B = cache.batch, C = s.kv_lora, D = s.cache_dim(), P = s.page, QH = Q * H;
  check_q(q, B * QH * D);
  DecodeReference ref = empty_decode_reference(B * QH, C);
  parallel_for(B, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rows;
    for (std::size_t b = begin; b < end; ++b) {
      const std::size_t L = cache.seqlens[b];
      if (L == 0) continue;
      const SplitPlan sp = plan(L, s);  // the kernel's splits come from the full length
      rows.resize(L * D);
      for (std::size_t t = 0; t < L; ++t) {
        const std::size_t phys = static_cast<std::size_t>(cache.block_table[b * cache.max_blocks_per_seq + t / P]);
        read_row(cache.data() + (phys * P + t % P) * cache.row_bytes, s, &rows[t * D]);
      }
      for (std::size_t i = 0; i < Q; ++i) {
        const std::size_t V = visible_keys(L, Q, i, causal);  // this query's own length
        if (V == 0) continue;                                 // out 0, lse +inf, bound 0
        // A split holds at most per_split blocks of the full-length plan.
        const RowBoundPlan bp = row_bound_plan(sp, V, P, s.num_splits, s.decode_p, scope);
        for (std::size_t h = 0; h < H; ++h) {
          const std::size_t row = i * H + h;
          const RowReference rr = row_reference(q + (b * QH + row) * D, rows.data(), V, D, C, scale, bp);
          store_row(ref, rr, b * QH + row, (b * H + h) * Q + i, C);
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

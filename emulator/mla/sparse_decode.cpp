#include "mla/sparse_decode.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/parallel.hpp"
#include "mla/attention_row.hpp"
#include "mla/decode_rows.hpp"
#include "mla/attention_tile.hpp"
#include "mla/numerics.hpp"

namespace fp8lab::mla {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr std::size_t kHeadGroup = 8;  // heads per work item (one gather of the tile's rows each)

std::size_t counted(const SparseDecodeInputs& in, std::size_t b) {
  return in.topk_length ? static_cast<std::size_t>(in.topk_length[b]) : in.topk;
}

std::string at3(std::size_t a, std::size_t b, std::size_t c) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + "]";
}

// The dequantised rows of the valid indices among slots [k0, k1) of query (b, i), in slot order;
// returns how many. rows holds (k1 - k0) * d_qk floats.
std::size_t gather(const SparseDecodeInputs& in, const SparseDecodeSpec& s, std::size_t b, std::size_t i,
                   std::size_t k0, std::size_t k1, float* rows) {
  const SparseKvLayoutInfo& L = layout_info(s.layout);
  const std::int32_t* idx = in.indices + (b * in.s_q + i) * in.topk;
  std::size_t n = 0;
  for (std::size_t k = k0; k < k1; ++k) {
    if (idx[k] == -1) continue;  // invalid: never read
    const std::size_t t = static_cast<std::size_t>(idx[k]);
    dequantize_sparse_kv_token(in.kv, s.page, s.layout, t / s.page, t % s.page, s.dequant, rows + n * L.d_qk);
    ++n;
  }
  return n;
}

void check_counts(const SparseDecodeInputs& in, const SparseDecodeSpec& s) {
  const SparseKvLayoutInfo& L = layout_info(s.layout);
  if (in.batch == 0 || in.s_q == 0 || in.heads == 0)
    throw std::invalid_argument("q: expected shape [batch, s_q, heads, " + std::to_string(L.d_qk) +
                                "] with batch, s_q, heads >= 1, got batch " + std::to_string(in.batch) + ", s_q " +
                                std::to_string(in.s_q) + ", heads " + std::to_string(in.heads));
  if (s.page == 0) throw std::invalid_argument("page_block_size: must be at least 1, got 0");
  if (!(std::isfinite(s.softmax_scale) && s.softmax_scale > 0))
    throw std::invalid_argument("softmax_scale: expected a positive finite number, got " + std::to_string(s.softmax_scale));
  if (s.num_splits < 1) throw std::invalid_argument("num_splits: must be at least 1, got " + std::to_string(s.num_splits));
  if (s.decode_p != MatmulFormat::Fp32 && s.decode_p != MatmulFormat::Bf16)
    throw std::invalid_argument("decode_p: must be fp32 or bf16, got " + std::string(matmul_format_name(s.decode_p)));
  const std::size_t context = in.blocks * s.page;
  if (in.topk == 0) throw std::invalid_argument("indices: topk (the last dimension) must be at least 1, got 0");
  if (in.topk > context)
    throw std::invalid_argument("indices: topk = " + std::to_string(in.topk) + " selected tokens per query exceeds the cache's context of " +
                                std::to_string(context) + " tokens (" + std::to_string(in.blocks) + " blocks x " +
                                std::to_string(s.page) + ")");
}


// Bound with a sink. The kernel forms N^ / D^ with D^ = fl(L^ + E^), E = exp(sink - M): L^ and N^
// are off by rho and rho_N (attention_row.cpp); E^ by its argument's rounding (u |sink - M|, M
// within max delta of the exact max), the exp (uE) and, for kernels that fold the sink into a
// log2-domain lse as FlashMLA's combine does (log2f(1 + exp2f(sink*log2e - lse))), a few
// roundings of quantities of size |lse| and |sink| (2u each, taken twice). So D^ = (L + E)(1 + t)
// with |t| <= rho_D = (1 + max(rho, rho_E))(1 + u) - 1, and
// |N^/D^ - N/D| <= (rho_N + rho_D)/(1 - rho_D) * A f, A f = sum p |v| / (L + E) in L's scale,
// f = 1/(1 + exp(sink - lse)); then the divide, the scale multiply and the reciprocal (3 roundings)
// and BF16. Where exp(sink - M) can overflow FP32 (sink - M > 80), a kernel may return 0: the
// exact |out| <= A f is added.
void apply_sink(RowReference& rr, double sink, bool any_kernel) {
  const std::size_t C = rr.out.size();
  if (sink == -INFINITY) return;
  if (sink == INFINITY) {  // out exactly 0 in the kernel (N / inf) and in exact arithmetic
    std::fill(rr.out.begin(), rr.out.end(), 0.0);
    std::fill(rr.out_bound.begin(), rr.out_bound.end(), 0x1p-1000);
    return;
  }
  const double uS = any_kernel ? 2 * kU32 : kU32, uE = any_kernel ? 0x1p-21 : kUExp;
  const double f = 1.0 / (1.0 + std::exp(sink - rr.lse));
  const double eta = uS * (std::fabs(sink - rr.max_score) + rr.max_delta) + uE +
                     2 * uS * (std::fabs(rr.lse) + std::fabs(sink) + 1);
  const double rho_e = std::exp(eta) * (1 + uS) - 1;
  const double rho_d = (1 + std::max(rr.rho, rho_e)) * (1 + uS) - 1;
  const double rel = (rr.rho_n + rho_d) / (1 - rho_d);
  const bool may_overflow = sink - rr.max_score + rr.max_delta > 80;
  for (std::size_t c = 0; c < C; ++c) {
    const double o = rr.out[c] * f, A = rr.abs_weighted[c] * f;
    rr.out[c] = o;
    rr.out_bound[c] = out_element_bound(o, A, rel, rr.underflow * rr.vmax + (may_overflow ? A * 1.001 : 0), 3,
                                        any_kernel);
  }
}

}  // namespace

void validate_sparse_decode(const SparseDecodeInputs& in, const SparseDecodeSpec& s) {
  check_counts(in, s);
  const SparseKvLayoutInfo& L = layout_info(s.layout);
  const std::size_t rows = in.batch * in.s_q * in.heads, context = in.blocks * s.page;
  for (std::size_t e = 0; e < rows * L.d_qk; ++e)
    if (!std::isfinite(in.q[e]))
      throw std::invalid_argument("q: element " + std::to_string(e) + " (flat) is " + std::to_string(in.q[e]) +
                                  "; expected finite values");
  if (in.attn_sink)
    for (std::size_t h = 0; h < in.heads; ++h)
      if (std::isnan(in.attn_sink[h])) throw std::invalid_argument("attn_sink: element " + std::to_string(h) + " is NaN");
  std::vector<float> row(L.d_qk);
  for (std::size_t b = 0; b < in.batch; ++b) {
    if (in.topk_length && (in.topk_length[b] < 0 || static_cast<std::size_t>(in.topk_length[b]) > in.topk))
      throw std::invalid_argument("topk_length: element " + std::to_string(b) + " = " + std::to_string(in.topk_length[b]) +
                                  " is outside [0, topk = " + std::to_string(in.topk) + "]");
    for (std::size_t i = 0; i < in.s_q; ++i)
      for (std::size_t k = 0; k < counted(in, b); ++k) {
        const std::int32_t v = in.indices[(b * in.s_q + i) * in.topk + k];
        if (v == -1) continue;
        if (v < 0 || static_cast<std::size_t>(v) >= context)
          throw std::invalid_argument("indices: element " + at3(b, i, k) + " = " + std::to_string(v) +
                                      " is neither -1 (invalid) nor a token index in [0, " + std::to_string(context) + ")");
        const std::size_t t = static_cast<std::size_t>(v);
        dequantize_sparse_kv_token(in.kv, s.page, s.layout, t / s.page, t % s.page, s.dequant, row.data());
        for (std::size_t c = 0; c < L.d_qk; ++c)
          if (!std::isfinite(row[c]))
            throw std::invalid_argument("kv_cache: token " + std::to_string(t) + " (selected by indices" + at3(b, i, k) +
                                        ") dequantises to " + std::to_string(row[c]) + " at channel " + std::to_string(c) +
                                        " (a NaN/Inf scale or element); a selected token must be finite");
      }
  }
}

DecodeResult sparse_decode(const SparseDecodeInputs& in, const SparseDecodeSpec& s) {
  validate_sparse_decode(in, s);
  const SparseKvLayoutInfo& L = layout_info(s.layout);
  const std::size_t B = in.batch, Q = in.s_q, H = in.heads, D = L.d_qk, C = L.d_v, T = kSparseTopkBlock;
  const std::size_t S = static_cast<std::size_t>(s.num_splits), QH = Q * H;
  const float scale = static_cast<float>(s.softmax_scale);
  // Partial states per (sequence, query, split, head). Work items are (sequence, query, split,
  // group of kHeadGroup heads): heads never interact, so the grouping changes no bit.
  const std::size_t G = (H + kHeadGroup - 1) / kHeadGroup;
  std::vector<float> pm(B * Q * S * H, kNegInf), pl(B * Q * S * H, 0.0f), pacc(B * Q * S * H * C, 0.0f);
  parallel_for(B * Q * S * G, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rows(T * D), sc(absorb_tile_scratch(kHeadGroup, T));
    for (std::size_t w = begin; w < end; ++w) {
      const std::size_t item = w / G, g = w % G;
      const std::size_t bi = item / S, j = item % S, b = bi / Q, i = bi % Q;
      const std::size_t n = counted(in, b);
      const SplitPlan sp = split_plan(n, T, s.num_splits);
      if (j >= sp.splits) continue;
      for (std::size_t kb = j * sp.per_split; kb < std::min(sp.blocks, (j + 1) * sp.per_split); ++kb) {
        const std::size_t nv = gather(in, s, b, i, kb * T, std::min(n, (kb + 1) * T), rows.data());
        const std::size_t h0 = g * kHeadGroup, st = item * H + h0;  // the group's heads, side by side
        mla_absorb_tile_heads(in.q + (bi * H + h0) * D, std::min(H, h0 + kHeadGroup) - h0, rows.data(), nv, D, C, scale,
                              s.decode_p != MatmulFormat::Fp32, &pm[st], &pl[st], &pacc[st * C], sc.data());
      }
    }
  });
  DecodeResult r = empty_decode_result(B * QH, C);
  parallel_for(B * QH, 4, [&](std::size_t begin, std::size_t end) {
    std::vector<float> N(C);
    for (std::size_t idx = begin; idx < end; ++idx) {
      const std::size_t bi = idx / H, h = idx % H, b = bi / Q, i = bi % Q;
      const std::size_t first = bi * S * H + h;  // split 0's state; split j at + j * H
      bool any = false;
      for (std::size_t j = 0; j < S; ++j) any = any || pl[first + j * H] > 0;
      if (!any) continue;  // nothing attended: out 0, lse +inf (with or without a sink)
      // Splits with no valid slot have m = -inf, l = 0: weight exp(-inf) = 0, adding nothing.
      const float sink = in.attn_sink ? in.attn_sink[h] : kNegInf;
      r.lse[(b * H + h) * Q + i] = combine_splits(&pm[first], &pl[first], &pacc[first * C], S, H, H * C, C, sink,
                                                  &r.out[idx * C], &r.out_bf16[idx * C], N.data());
    }
  });
  return r;
}

DecodeReference sparse_decode_reference(const SparseDecodeInputs& in, const SparseDecodeSpec& s, BoundScope scope) {
  validate_sparse_decode(in, s);
  const SparseKvLayoutInfo& L = layout_info(s.layout);
  const std::size_t B = in.batch, Q = in.s_q, H = in.heads, D = L.d_qk, C = L.d_v, QH = Q * H;
  const double scale = static_cast<float>(s.softmax_scale);  // the FP32 value the kernel multiplies by
  DecodeReference ref = empty_decode_reference(B * QH, C);
  const std::size_t G = (H + kHeadGroup - 1) / kHeadGroup;
  parallel_for(B * Q * G, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> rows(in.topk * D);
    for (std::size_t w = begin; w < end; ++w) {
      const std::size_t bi = w / G, g = w % G, b = bi / Q, i = bi % Q, n = counted(in, b);
      const std::size_t V = gather(in, s, b, i, 0, n, rows.data());
      if (V == 0) continue;  // out 0, lse +inf, bound 0
      const SplitPlan sp = split_plan(n, kSparseTopkBlock, s.num_splits);
      const RowBoundPlan bp = row_bound_plan(sp, V, kSparseTopkBlock, s.num_splits, s.decode_p, scope);
      for (std::size_t h = g * kHeadGroup; h < std::min(H, (g + 1) * kHeadGroup); ++h) {
        RowReference rr = row_reference(in.q + (bi * H + h) * D, rows.data(), V, D, C, scale, bp);
        if (in.attn_sink) apply_sink(rr, static_cast<double>(in.attn_sink[h]), bp.any_kernel);
        store_row(ref, rr, bi * H + h, (b * H + h) * Q + i, C);
      }
    }
  });
  return ref;
}

}  // namespace fp8lab::mla

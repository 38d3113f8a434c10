// Laws of the MLA emulator (issue #9): the two prefill forms agree within their certified bound,
// decode is a function of the logical cache only (block placement, garbage past the lengths,
// thread count), the split count moves results only within bound, a wrong softmax scale is caught,
// and the two RoPE layouts are the same computation on permuted data.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "common/parallel.hpp"
#include "mla/decode.hpp"
#include "mla/forward.hpp"
#include "mla/numerics.hpp"
#include "mla/paged_cache.hpp"
#include "mla/rope.hpp"
#include "mla/weights.hpp"

namespace fp8lab::mla {
namespace {

// Largest observed/bound ratios seen by the properties, reported by the last test.
double g_forms_ratio = 0, g_forms_ratio_bf16 = 0, g_decode_ratio = 0, g_split_ratio = 0;

rc::Gen<MlaSpec> genSmallSpec() {
  return rc::gen::apply(
      [](int heads, int q_lora, int nope, int rope_half, int v, int hidden, bool fp8, bool attn_bf16, bool wkvb_bf16,
         bool half_split, int page) {
        MlaSpec s;
        s.heads = heads;
        s.q_lora = q_lora;
        s.kv_lora = 128;
        s.nope = nope;
        s.rope = 2 * rope_half;
        s.v = v;
        s.hidden = hidden;
        s.cache = fp8 ? CacheFormat::Fp8E4m3 : CacheFormat::Bf16;
        s.attn = attn_bf16 ? MatmulFormat::Bf16 : MatmulFormat::Fp32;
        s.wkv_b = wkvb_bf16 ? MatmulFormat::Bf16 : MatmulFormat::Fp32;
        s.rope_layout = half_split ? RopeLayout::HalfSplit : RopeLayout::Interleaved;
        s.page = page;
        return s;
      },
      rc::gen::inRange(1, 5), rc::gen::element(0, 16, 32), rc::gen::inRange(4, 33), rc::gen::inRange(1, 17),
      rc::gen::inRange(4, 33), rc::gen::inRange(8, 65), rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>(),
      rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>(), rc::gen::element(16, 64));
}

// Sequence lengths, empty sequences included, up to a few pages.
rc::Gen<std::vector<std::int32_t>> genSeqlens() {
  return rc::gen::container<std::vector<std::int32_t>>(
      static_cast<std::size_t>(*rc::gen::inRange(1, 5)),
      rc::gen::oneOf(rc::gen::just<std::int32_t>(0), rc::gen::inRange<std::int32_t>(1, 300)));
}

std::vector<float> values(std::size_t n, std::uint64_t seed, std::uint64_t stream, double width) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = round_to_bf16(static_cast<float>(width * (2 * counter_uniform(seed, stream, i) - 1)));
  return v;
}

struct DecodeCase {
  MlaSpec spec;
  std::vector<std::int32_t> lens;
  std::vector<float> lat, kpe, q;
};

DecodeCase genDecodeCase(double q_width = 1.0) {
  DecodeCase c;
  c.spec = *genSmallSpec();
  c.lens = *genSeqlens();
  const auto seed = *rc::gen::arbitrary<std::uint32_t>();
  const std::size_t total = std::accumulate(c.lens.begin(), c.lens.end(), std::size_t{0});
  c.lat = values(total * c.spec.kv_lora, seed, 1, 2.0);
  c.kpe = values(total * c.spec.rope, seed, 2, 2.0);
  c.q = values(c.lens.size() * c.spec.heads * c.spec.cache_dim(), seed, 3, q_width);
  return c;
}

bool same_bits(const DecodeResult& a, const DecodeResult& b) {
  if (a.out_bf16 != b.out_bf16 || a.lse.size() != b.lse.size()) return false;
  for (std::size_t i = 0; i < a.lse.size(); ++i)
    if (std::memcmp(&a.lse[i], &b.lse[i], 4) != 0) return false;
  return true;
}

RC_GTEST_PROP(MlaForms, AbsorbedAndNaiveAgreeWithinCertifiedBound, ()) {
  const MlaSpec s = *genSmallSpec();
  const auto wseed = *rc::gen::arbitrary<std::uint32_t>();
  const std::size_t T = *rc::gen::inRange<std::size_t>(1, 11);
  const long start = *rc::gen::inRange(0L, 20000L);
  const MlaWeights w = init_weights(s, wseed);
  const auto x = random_input(s, T, wseed + 1);
  const Projected p = project(x.data(), T, w, s, start);
  const FormsComparison fc = compare_forms(p, w, s);
  RC_ASSERT(fc.verdict.ok());
  // Not vacuous: with FP32 einsums the summed bound stays a small fraction of the output's scale.
  // (With BF16 einsums the worst case of rounding q_abs and the scores to 8 bits can exceed the
  // output itself - sum |q_abs||c| >> |q_abs.c| - so there only the observed ratio is reported.)
  double maxexact = 0, maxbound = 0;
  for (std::size_t i = 0; i < fc.exact.size(); ++i) {
    maxexact = std::max(maxexact, std::fabs(fc.exact[i]));
    maxbound = std::max(maxbound, fc.bound_absorbed[i] + fc.bound_naive[i]);
  }
  if (s.attn == MatmulFormat::Fp32) {
    RC_ASSERT(maxbound <= 0.25 * maxexact + 1e-6);
    g_forms_ratio = std::max(g_forms_ratio, fc.max_observed_over_bound);
  } else {
    g_forms_ratio_bf16 = std::max(g_forms_ratio_bf16, fc.max_observed_over_bound);
  }
}

RC_GTEST_PROP(MlaDecode, ExactWithinCertifiedBound, ()) {
  DecodeCase c = genDecodeCase();
  c.spec.num_splits = *rc::gen::inRange(1, 6);
  c.spec.decode_p = *rc::gen::element(MatmulFormat::Fp32, MatmulFormat::Bf16);
  const PagedCache cache = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec);
  const DecodeResult r = decode(c.q.data(), c.spec.heads, cache, c.spec);
  const DecodeReference ref = decode_reference(c.q.data(), c.spec.heads, cache, c.spec, softmax_scale_value(c.spec),
                                               BoundScope::ThisEmulator);
  const DecodeVerdicts v = check_decode(r, ref, c.lens.size(), c.spec.heads, c.spec);
  RC_ASSERT(v.out.ok());
  RC_ASSERT(v.lse.ok());
  g_decode_ratio = std::max(g_decode_ratio, v.max_out_ratio);
}

RC_GTEST_PROP(MlaDecode, PermutedBlockTableIsBitIdentical, ()) {
  const DecodeCase c = genDecodeCase();
  const PagedCache plain = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec);
  std::vector<std::int32_t> order(plain.blocks);
  std::iota(order.begin(), order.end(), 0);
  const auto seed = *rc::gen::arbitrary<std::uint32_t>();
  for (std::size_t i = order.size(); i > 1; --i)  // Fisher-Yates with the counter RNG
    std::swap(order[i - 1], order[static_cast<std::size_t>(counter_uniform(seed, 4, i) * i)]);
  const PagedCache moved = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec, &order);
  RC_ASSERT(same_bits(decode(c.q.data(), c.spec.heads, plain, c.spec), decode(c.q.data(), c.spec.heads, moved, c.spec)));
}

RC_GTEST_PROP(MlaDecode, GarbagePastSeqlensNeverReachesOutput, ()) {
  const DecodeCase c = genDecodeCase();
  const PagedCache clean = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec);
  PagedCache dirty = clean;
  const std::uint8_t fill = *rc::gen::element<std::uint8_t>(0xFF, 0x7F, 0xA5);  // NaN patterns and garbage
  // Every slot at or past a sequence's length, and three extra unreferenced blocks.
  std::vector<bool> used(dirty.blocks > 0 && dirty.row_bytes > 0 ? dirty.blocks * c.spec.page : 0, false);
  for (std::size_t b = 0; b < dirty.batch; ++b)
    for (std::int32_t t = 0; t < dirty.seqlens[b]; ++t) {
      const auto phys = dirty.block_table[b * dirty.max_blocks_per_seq + t / c.spec.page];
      used[static_cast<std::size_t>(phys) * c.spec.page + t % c.spec.page] = true;
    }
  for (std::size_t slot = 0; slot < used.size(); ++slot)
    if (!used[slot]) std::fill_n(&dirty.bytes[slot * dirty.row_bytes], dirty.row_bytes, fill);
  dirty.blocks += 3;
  dirty.bytes.resize(dirty.blocks * c.spec.page * dirty.row_bytes, fill);
  RC_ASSERT(same_bits(decode(c.q.data(), c.spec.heads, clean, c.spec), decode(c.q.data(), c.spec.heads, dirty, c.spec)));
}

RC_GTEST_PROP(MlaDecode, SplitCountMovesOutputOnlyWithinBound, ()) {
  DecodeCase c = genDecodeCase();
  const int s1 = *rc::gen::inRange(1, 7), s2 = *rc::gen::inRange(1, 7);
  MlaSpec a = c.spec, b = c.spec;
  a.num_splits = s1;
  b.num_splits = s2;
  const PagedCache cache = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec);
  const DecodeResult ra = decode(c.q.data(), a.heads, cache, a);
  // A fixed split is bit-reproducible, whatever the thread count.
  set_num_threads(1);
  const DecodeResult ra1 = decode(c.q.data(), a.heads, cache, a);
  set_num_threads(0);
  RC_ASSERT(same_bits(ra, ra1));
  const DecodeResult rb = decode(c.q.data(), b.heads, cache, b);
  const double scale = softmax_scale_value(c.spec);
  const DecodeReference fa = decode_reference(c.q.data(), a.heads, cache, a, scale, BoundScope::ThisEmulator);
  const DecodeReference fb = decode_reference(c.q.data(), b.heads, cache, b, scale, BoundScope::ThisEmulator);
  for (std::size_t i = 0; i < ra.out.size(); ++i) {
    const double d = std::fabs(static_cast<double>(ra.out[i]) - rb.out[i]), bound = fa.out_bound[i] + fb.out_bound[i];
    RC_ASSERT(d <= bound);
    if (bound > 0) g_split_ratio = std::max(g_split_ratio, d / bound);
  }
  for (std::size_t i = 0; i < ra.lse.size(); ++i)
    if (std::isfinite(ra.lse[i])) RC_ASSERT(std::fabs(static_cast<double>(ra.lse[i]) - rb.lse[i]) <= fa.lse_bound[i] + fb.lse_bound[i]);
}

RC_GTEST_PROP(MlaDecode, FlashMlaDefaultScaleIsAViolation, ()) {
  // q of realistic magnitude (|q.k| of a few units) and at least one sequence with two keys.
  DecodeCase c = genDecodeCase(3.0);
  RC_PRE(std::any_of(c.lens.begin(), c.lens.end(), [](std::int32_t l) { return l >= 8; }));
  MlaSpec wrong = c.spec;
  wrong.softmax_scale = "flashmla";  // 576^-0.5 instead of 192^-0.5 * mscale^2
  const PagedCache cache = build_cache(c.lat.data(), c.kpe.data(), c.lens, c.spec);
  const DecodeResult r = decode(c.q.data(), c.spec.heads, cache, wrong);
  // Caught even by the loosest (kernel-agnostic) bound.
  const DecodeReference ref = decode_reference(c.q.data(), c.spec.heads, cache, c.spec, softmax_scale_value(c.spec),
                                               BoundScope::AnyKernel);
  const DecodeVerdicts v = check_decode(r, ref, c.lens.size(), c.spec.heads, c.spec);
  RC_ASSERT(!v.lse.ok());
  RC_ASSERT(!v.out.ok());
}

RC_GTEST_PROP(MlaRope, InterleavedAndPermutedLayoutsAgreeOnScores, ()) {
  MlaSpec si = *genSmallSpec();
  si.rope_layout = RopeLayout::Interleaved;
  MlaSpec sh = si;
  sh.rope_layout = RopeLayout::HalfSplit;
  const auto wseed = *rc::gen::arbitrary<std::uint32_t>();
  const std::size_t T = *rc::gen::inRange<std::size_t>(1, 6);
  const long start = *rc::gen::inRange(0L, 100000L);
  const MlaWeights wi = init_weights(si, wseed);
  // The HF layout: the rope rows of wq_b (per head) and wkv_a permuted to half-split order.
  MlaWeights wh = wi;
  const auto perm = interleaved_to_half_split(si.rope);
  const std::size_t qk = si.qk_head();
  std::vector<float>& wq = si.q_lora > 0 ? wh.wq_b : wh.wq;
  const std::vector<float>& wq_src = si.q_lora > 0 ? wi.wq_b : wi.wq;
  const std::size_t qin = si.q_lora > 0 ? si.q_lora : si.hidden;
  for (int h = 0; h < si.heads; ++h)
    for (int j = 0; j < si.rope; ++j)
      std::copy_n(&wq_src[(h * qk + si.nope + perm[j]) * qin], qin, &wq[(h * qk + si.nope + j) * qin]);
  for (int j = 0; j < si.rope; ++j)
    std::copy_n(&wi.wkv_a[(si.kv_lora + perm[j]) * static_cast<std::size_t>(si.hidden)], si.hidden,
                &wh.wkv_a[(si.kv_lora + j) * static_cast<std::size_t>(si.hidden)]);
  const auto x = random_input(si, T, wseed + 7);
  const Projected pi = project(x.data(), T, wi, si, start), ph = project(x.data(), T, wh, sh, start);
  RC_ASSERT(pi.latent == ph.latent);
  for (std::size_t t = 0; t < T; ++t)
    for (int j = 0; j < si.rope; ++j) RC_ASSERT(ph.k_pe[t * si.rope + j] == pi.k_pe[t * si.rope + perm[j]]);
  for (std::size_t i = 0; i < T * si.heads; ++i)
    for (int j = 0; j < si.rope; ++j) RC_ASSERT(ph.q_pe[i * si.rope + j] == pi.q_pe[i * si.rope + perm[j]]);
  // Hence equal exact scores, and the attention of both is the same exact function.
  const auto ei = exact_attention(pi, wi, si, softmax_scale_value(si));
  const auto eh = exact_attention(ph, wh, sh, softmax_scale_value(sh));
  for (std::size_t i = 0; i < ei.size(); ++i) RC_ASSERT(std::fabs(ei[i] - eh[i]) <= 1e-12 * (1 + std::fabs(ei[i])));
}

TEST(MlaReport, ObservedOverBound) {
  std::printf("[mla] max observed/bound: absorbed vs naive %.3f (FP32 einsums), %.3f (BF16 einsums), decode vs exact "
              "%.3f, split S1 vs S2 %.3f\n", g_forms_ratio, g_forms_ratio_bf16, g_decode_ratio, g_split_ratio);
  RecordProperty("forms_observed_over_bound", std::to_string(g_forms_ratio));
  RecordProperty("decode_observed_over_bound", std::to_string(g_decode_ratio));
}

}  // namespace
}  // namespace fp8lab::mla

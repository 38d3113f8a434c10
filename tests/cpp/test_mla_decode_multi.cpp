// Multi-token-query MLA decode (FlashMLA's s_q > 1, DeepSeek-V3 MTP speculative decoding) against
// second formulations: each causal query is the 1-query decode of the cache prefix it sees (built
// afresh with build_cache), a non-causal query is the 1-query decode of its q row, and every
// query is within the certified bound of the exact reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "mla/decode.hpp"
#include "mla/numerics.hpp"
#include "mla/paged_cache.hpp"
#include "mla/weights.hpp"
#include "test_mla_support.hpp"

using namespace fp8lab;
using namespace fp8lab::mla;

namespace {

using fp8lab::mla::testing::small_spec;
std::vector<float> uniform_values(std::size_t n, std::uint64_t seed, double width) {
  return fp8lab::mla::testing::uniform_values(n, seed, width, 21);
}

// Tokens of a batch stored sequence after sequence, as build_cache takes them.
struct Tokens {
  std::vector<std::int32_t> lens;
  std::vector<std::size_t> offset;  // first token of each sequence
  std::vector<float> lat, kpe;
};

Tokens make_tokens(const MlaSpec& s, std::vector<std::int32_t> lens, std::uint64_t seed) {
  Tokens t;
  t.lens = std::move(lens);
  std::size_t total = 0;
  for (auto L : t.lens) {
    t.offset.push_back(total);
    total += static_cast<std::size_t>(L);
  }
  t.lat = uniform_values(total * s.kv_lora, seed, 2.0);
  t.kpe = uniform_values(total * s.rope, seed + 1, 2.0);
  return t;
}

// Number of splits of the full-length plan (decode.hpp): blocks per split ceil(nb / S).
std::size_t blocks_per_split(std::size_t L, const MlaSpec& s) {
  const std::size_t nb = (L + s.page - 1) / s.page;
  return nb == 0 ? 0 : (nb + s.num_splits - 1) / s.num_splits;
}

// A split count S' under which a 1-query decode of a V-token sequence has the same split
// boundaries, for its V tokens, as the L-token plan of `s` (0: none exists).
int matching_splits(std::size_t V, std::size_t L, const MlaSpec& s) {
  const std::size_t bps = blocks_per_split(L, s);
  const std::size_t nbV = (V + s.page - 1) / s.page;
  if (nbV <= bps) return 1;  // V inside the first split: one split either way
  for (std::size_t S2 = 1; S2 <= nbV; ++S2)
    if ((nbV + S2 - 1) / S2 == bps) return static_cast<int>(S2);
  return 0;
}

std::size_t visible(std::size_t L, std::size_t Q, std::size_t i) { return L + 1 + i > Q ? L + 1 + i - Q : 0; }

std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// The 1-query decode of sequence b's first V tokens with query row q1 ([heads, D]), from a cache
// built afresh (so neither the block table nor the mask of the s_q decode is involved).
DecodeResult one_query_prefix(const Tokens& tk, std::size_t b, std::size_t V, const float* q1, const MlaSpec& s) {
  const std::size_t o = tk.offset[b];
  PagedCache c = build_cache(tk.lat.data() + o * s.kv_lora, tk.kpe.data() + o * s.rope, {static_cast<std::int32_t>(V)}, s);
  return decode(q1, s.heads, c, s);
}

}  // namespace

// (a) Causal query i of sequence b is bit-identical to the 1-query decode of the first
// V = L - s_q + 1 + i tokens, whenever that decode's splits coincide with the full-length plan's
// (always for num_splits = 1). With several splits this also pins that the plan comes from the full
// length: a plan from V would cut the prefix elsewhere.
TEST(MlaDecodeMulti, CausalQueryIsOneQueryDecodeOfItsPrefix) {
  std::size_t compared = 0, compared_multi = 0, per_query_differs = 0;
  for (CacheFormat cf : {CacheFormat::Bf16, CacheFormat::Fp8E4m3})
    for (MatmulFormat pf : {MatmulFormat::Fp32, MatmulFormat::Bf16})
      for (int splits : {1, 2, 3})
        for (std::size_t Q : {2u, 3u, 5u}) {
          MlaSpec s = small_spec();
          s.cache = cf;
          s.decode_p = pf;
          s.num_splits = splits;
          s.page = 16;
          const Tokens tk = make_tokens(s, {0, 1, static_cast<std::int32_t>(Q), 17, 64, 97}, 100 + Q);
          const std::size_t B = tk.lens.size(), H = s.heads, D = s.cache_dim(), C = s.kv_lora;
          const auto q = uniform_values(B * Q * H * D, 7 + Q, 1.5);
          PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
          const DecodeResult r = decode(q.data(), Q, H, c, s, true);
          ASSERT_EQ(r.out.size(), B * Q * H * C);
          ASSERT_EQ(r.lse.size(), B * H * Q);
          for (std::size_t b = 0; b < B; ++b)
            for (std::size_t i = 0; i < Q; ++i) {
              const std::size_t L = static_cast<std::size_t>(tk.lens[b]), V = visible(L, Q, i);
              // Where V's own plan would cut the prefix elsewhere, a kernel planning splits per query
              // (from V) would give the 1-query decode of V with the same split count: not FlashMLA.
              const std::size_t nbV = (V + s.page - 1) / s.page;
              if (blocks_per_split(V, s) < blocks_per_split(L, s) && nbV > blocks_per_split(V, s)) {
                const DecodeResult per_query = one_query_prefix(tk, b, V, &q[(b * Q + i) * H * D], s);
                bool differs = false;
                for (std::size_t k = 0; k < H * C && !differs; ++k)
                  differs = per_query.out_bf16[k] != r.out_bf16[(b * Q + i) * H * C + k];
                for (std::size_t h = 0; h < H && !differs; ++h)
                  differs = bits(per_query.lse[h]) != bits(r.lse[(b * H + h) * Q + i]);
                per_query_differs += differs;
              }
              MlaSpec s1 = s;
              s1.num_splits = matching_splits(V, L, s);
              if (s1.num_splits == 0) continue;
              const DecodeResult one = one_query_prefix(tk, b, V, &q[(b * Q + i) * H * D], s1);
              for (std::size_t h = 0; h < H; ++h) {
                ASSERT_EQ(bits(r.lse[(b * H + h) * Q + i]), bits(one.lse[h]))
                    << "b " << b << " i " << i << " h " << h << " V " << V << " splits " << splits;
                for (std::size_t cc = 0; cc < C; ++cc)
                  ASSERT_EQ(r.out_bf16[((b * Q + i) * H + h) * C + cc], one.out_bf16[h * C + cc])
                      << "b " << b << " i " << i << " h " << h << " c " << cc;
              }
              ++compared;
              if (blocks_per_split(L, s) * s.page < V) ++compared_multi;  // two or more splits combined
            }
        }
  EXPECT_GT(compared_multi, 20u);
  EXPECT_GT(per_query_differs, 5u);
  std::printf("[mla] s_q decode: %zu causal queries bit-identical to the 1-query decode of their prefix "
              "(%zu of them combining several splits); %zu differ from a per-query split plan\n",
              compared, compared_multi, per_query_differs);
}

// A query that sees no key (L < s_q - i, or L = 0) gives out = 0 and lse = +inf, and the
// reference says the same (bound 0).
TEST(MlaDecodeMulti, QueryWithoutKeysGivesZeroAndInfinity) {
  MlaSpec s = small_spec();
  s.num_splits = 2;
  const std::size_t Q = 4, H = s.heads, D = s.cache_dim(), C = s.kv_lora;
  const Tokens tk = make_tokens(s, {2, 0}, 5);
  PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
  const auto q = uniform_values(2 * Q * H * D, 6, 1.0);
  const DecodeResult r = decode(q.data(), Q, H, c, s, true);
  const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true);
  const float inf = std::numeric_limits<float>::infinity();
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t i = 0; i < Q; ++i) {
      const bool empty = visible(tk.lens[b], Q, i) == 0;  // b 0: queries 0 and 1; b 1: all
      EXPECT_EQ(empty, b == 1 || i < 2);
      for (std::size_t h = 0; h < H; ++h) {
        const float lse = r.lse[(b * H + h) * Q + i];
        EXPECT_EQ(lse == inf, empty);
        EXPECT_EQ(ref.lse[(b * H + h) * Q + i] == static_cast<double>(inf), empty);
        if (empty) {
          for (std::size_t cc = 0; cc < C; ++cc) EXPECT_EQ(r.out_bf16[((b * Q + i) * H + h) * C + cc], 0u);
        }
      }
    }
  const DecodeVerdicts v = check_decode(r, ref, 2, Q, H, s);
  EXPECT_TRUE(v.out.ok()) << v.out.summary();
  EXPECT_TRUE(v.lse.ok()) << v.lse.summary();
}

// (b) Several splits: within the certified bound of the exact reference (both scopes), the bound
// is used (not vacuous), and the result is bit-reproducible across runs and thread counts.
TEST(MlaDecodeMulti, SeveralSplitsWithinBoundAndReproducible) {
  double worst_out = 0, worst_lse = 0;
  for (CacheFormat cf : {CacheFormat::Bf16, CacheFormat::Fp8E4m3})
    for (int splits : {2, 5})
      for (MatmulFormat pf : {MatmulFormat::Fp32, MatmulFormat::Bf16}) {
        MlaSpec s = small_spec();
        s.cache = cf;
        s.num_splits = splits;
        s.decode_p = pf;
        const std::size_t Q = 3, H = s.heads, D = s.cache_dim();
        const Tokens tk = make_tokens(s, {1, 3, 65, 300}, 31);
        const std::size_t B = tk.lens.size();
        const auto q = uniform_values(B * Q * H * D, 32, 1.5);
        PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
        const DecodeResult r = decode(q.data(), Q, H, c, s);
        const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true, BoundScope::ThisEmulator);
        const DecodeVerdicts v = check_decode(r, ref, B, Q, H, s);
        EXPECT_TRUE(v.out.ok()) << v.out.summary();
        EXPECT_TRUE(v.lse.ok()) << v.lse.summary();
        EXPECT_GT(v.max_out_ratio, 0.05);
        const DecodeReference any = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true, BoundScope::AnyKernel);
        EXPECT_TRUE(check_decode(r, any, B, Q, H, s).out.ok());
        worst_out = std::max(worst_out, v.max_out_ratio);
        worst_lse = std::max(worst_lse, v.max_lse_ratio);
        set_num_threads(1);
        const DecodeResult r1 = decode(q.data(), Q, H, c, s);
        set_num_threads(0);
        const DecodeResult r2 = decode(q.data(), Q, H, c, s);
        EXPECT_EQ(r1.out_bf16, r.out_bf16);
        EXPECT_EQ(r2.out_bf16, r.out_bf16);
        for (std::size_t k = 0; k < r.lse.size(); ++k) {
          ASSERT_EQ(bits(r1.lse[k]), bits(r.lse[k]));
          ASSERT_EQ(bits(r2.lse[k]), bits(r.lse[k]));
        }
      }
  std::printf("[mla] s_q=3 causal decode, 2 and 5 splits: out observed/bound %.3f, lse observed/bound %.3f\n",
              worst_out, worst_lse);
}

// The s_q reference of query i is the 1-query reference of its prefix (both float64, same order),
// so the per-query exact side is what the 1-query reference (tested against Boost in test_mla)
// computes for V tokens.
TEST(MlaDecodeMulti, ReferenceIsOneQueryReferenceOfThePrefix) {
  MlaSpec s = small_spec();
  s.num_splits = 3;
  const std::size_t Q = 3, H = s.heads, D = s.cache_dim(), C = s.kv_lora;
  const Tokens tk = make_tokens(s, {70, 2}, 41);
  PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
  const auto q = uniform_values(2 * Q * H * D, 42, 1.0);
  const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true);
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t i = 0; i < Q; ++i) {
      const std::size_t V = visible(tk.lens[b], Q, i);
      const std::size_t o = tk.offset[b];
      PagedCache c1 = build_cache(tk.lat.data() + o * C, tk.kpe.data() + o * s.rope, {static_cast<std::int32_t>(V)}, s);
      const DecodeReference r1 = decode_reference(&q[(b * Q + i) * H * D], H, c1, s, softmax_scale_value(s));
      for (std::size_t h = 0; h < H; ++h) {
        EXPECT_EQ(ref.lse[(b * H + h) * Q + i], r1.lse[h]);
        for (std::size_t cc = 0; cc < C; ++cc) ASSERT_EQ(ref.out[((b * Q + i) * H + h) * C + cc], r1.out[h * C + cc]);
      }
    }
}

// (c) Without causal every query sees all keys: query i is the 1-query decode of its q row over the
// same cache and splits, bit for bit; and with causal the results differ (the mask is real).
TEST(MlaDecodeMulti, NonCausalQueriesSeeAllKeys) {
  for (int splits : {1, 3}) {
    MlaSpec s = small_spec();
    s.num_splits = splits;
    const std::size_t Q = 3, H = s.heads, D = s.cache_dim(), C = s.kv_lora;
    const Tokens tk = make_tokens(s, {2, 130, 0}, 51);
    const std::size_t B = tk.lens.size();
    PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
    const auto q = uniform_values(B * Q * H * D, 52, 1.5);
    const DecodeResult r = decode(q.data(), Q, H, c, s, false);
    for (std::size_t i = 0; i < Q; ++i) {
      std::vector<float> qi(B * H * D);
      for (std::size_t b = 0; b < B; ++b)
        std::memcpy(&qi[b * H * D], &q[(b * Q + i) * H * D], H * D * sizeof(float));
      const DecodeResult one = decode(qi.data(), H, c, s);
      for (std::size_t b = 0; b < B; ++b)
        for (std::size_t h = 0; h < H; ++h) {
          ASSERT_EQ(bits(r.lse[(b * H + h) * Q + i]), bits(one.lse[b * H + h]));
          for (std::size_t cc = 0; cc < C; ++cc)
            ASSERT_EQ(r.out_bf16[((b * Q + i) * H + h) * C + cc], one.out_bf16[(b * H + h) * C + cc]);
        }
    }
    const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), false);
    const DecodeVerdicts v = check_decode(r, ref, B, Q, H, s);
    EXPECT_TRUE(v.out.ok() && v.lse.ok()) << v.out.summary() << v.lse.summary();
    const DecodeResult rc = decode(q.data(), Q, H, c, s, true);
    EXPECT_NE(rc.out_bf16, r.out_bf16);
    // The non-causal result judged by the causal reference is caught.
    const DecodeReference causal_ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true);
    EXPECT_FALSE(check_decode(r, causal_ref, B, Q, H, s).out.ok());
  }
}

// (e) FlashMLA's default scale 576^-0.5 (here (kv_lora + rope)^-0.5) instead of DeepSeek's is a
// violation for s_q > 1 too.
TEST(MlaDecodeMulti, WrongSoftmaxScaleIsCaught) {
  MlaSpec s = small_spec();
  s.num_splits = 2;
  const std::size_t Q = 2, H = s.heads, D = s.cache_dim();
  const Tokens tk = make_tokens(s, {90, 40}, 61);
  PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
  const auto q = uniform_values(2 * Q * H * D, 62, 1.0);
  MlaSpec wrong = s;
  wrong.softmax_scale = "flashmla";
  const DecodeResult r = decode(q.data(), Q, H, c, wrong);
  const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, softmax_scale_value(s), true);
  const DecodeVerdicts v = check_decode(r, ref, 2, Q, H, s);
  EXPECT_FALSE(v.lse.ok());
  EXPECT_FALSE(v.out.ok());
  const DecodeResult good = decode(q.data(), Q, H, c, s);
  EXPECT_TRUE(check_decode(good, ref, 2, Q, H, s).lse.ok());
}

TEST(MlaDecodeMulti, BadInputsNameTheArgument) {
  MlaSpec s = small_spec();
  const std::size_t Q = 2, H = s.heads, D = s.cache_dim();
  const Tokens tk = make_tokens(s, {10}, 71);
  PagedCache c = build_cache(tk.lat.data(), tk.kpe.data(), tk.lens, s);
  auto q = uniform_values(Q * H * D, 72, 1.0);
  auto expect_msg = [](auto&& f, const char* word) {
    try {
      f();
      ADD_FAILURE() << "no exception for " << word;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { decode(q.data(), 0, H, c, s); }, "s_q");
  expect_msg([&] { decode_reference(q.data(), 0, H, c, s, 0.1); }, "s_q");
  expect_msg([&] { decode(q.data(), Q, H + 1, c, s); }, "heads");
  auto qn = q;
  qn[H * D + 5] = std::numeric_limits<float>::infinity();  // in the second query's row
  expect_msg([&] { decode(qn.data(), Q, H, c, s); }, "q");
  expect_msg([&] { decode_reference(qn.data(), Q, H, c, s, 0.1); }, "q");
  const DecodeResult r = decode(q.data(), Q, H, c, s);
  const DecodeReference ref = decode_reference(q.data(), Q, H, c, s, 0.1);
  expect_msg([&] { check_decode(r, ref, 1, H, s); }, "got.out");  // 1-query shapes for an s_q result
}

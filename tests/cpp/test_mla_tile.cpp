// The dispatched decode tile (mla/attention_tile.hpp) against the scalar statement of decode.hpp
// ("Within a split"), written out here one head at a time with numerics.hpp's dot_f32 and the
// scalar exp_f32; and exp_f32_batch against exp_f32. Every instruction-set variant this CPU runs,
// bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/bf16.hpp"
#include "common/isa.hpp"
#include "common/pinned_math.hpp"
#include "mla/attention_tile.hpp"
#include "mla/numerics.hpp"
#include "mla/weights.hpp"

using namespace fp8lab;

namespace {

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// decode.hpp "Within a split" for one head, as stated: scores, max, rescale when m moves, then
// p = exp(s - m'), l += p and acc += P(p) v in row order.
void statement_tile(const float* q, const float* rows, std::size_t n, std::size_t D, std::size_t C, float scale,
                    bool p_bf16, float& m, float& l, float* acc) {
  if (n == 0) return;
  std::vector<float> s(n);
  float tile_max = -std::numeric_limits<float>::infinity();
  for (std::size_t t = 0; t < n; ++t) {
    s[t] = mla::dot_f32(q, rows + t * D, D) * scale;
    tile_max = std::max(tile_max, s[t]);
  }
  const float m_new = std::max(m, tile_max);
  if (m != m_new) {
    const float alpha = m == -std::numeric_limits<float>::infinity() ? 0.0f : exp_f32(m - m_new);
    l = l * alpha;
    for (std::size_t c = 0; c < C; ++c) acc[c] = acc[c] * alpha;
  }
  for (std::size_t t = 0; t < n; ++t) {
    const float p = exp_f32(s[t] - m_new);
    l = l + p;
    const float pv = p_bf16 ? round_to_bf16(p) : p;
    for (std::size_t c = 0; c < C; ++c) {
      const float prod = pv * rows[t * D + c];
      acc[c] = acc[c] + prod;
    }
  }
  m = m_new;
}

std::vector<float> values(std::size_t n, std::uint64_t seed, double width) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(width * (2 * mla::counter_uniform(seed, 31, i) - 1));
  return v;
}

struct Shape {
  std::size_t heads, D, C;
};

TEST(MlaTile, EveryVariantIsTheStatementHeadByHead) {
  // Head counts around the register blocks (2 and 4), widths with and without a tail past the 16
  // lanes, tiles of 0..64 rows; three tiles in a row so the state is fresh, rescaled and kept.
  const Shape shapes[] = {{1, 576, 512}, {4, 576, 512}, {9, 576, 512}, {3, 37, 21}, {5, 16, 16}, {2, 80, 64}, {16, 72, 70}};
  const std::size_t tiles[3][2] = {{64, 1}, {5, 0}, {17, 0}};  // rows per tile; 0: a 0-row tile skipped
  std::size_t checked = 0;
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    for (const Shape& sh : shapes)
      for (bool p_bf16 : {false, true})
        for (double qwidth : {0.05, 3.0}) {  // small scores (the max rarely moves) and large ones (it does)
          const std::size_t H = sh.heads, D = sh.D, C = sh.C;
          const std::uint64_t seed = H * 1000 + D + (p_bf16 ? 7 : 0) + static_cast<std::uint64_t>(qwidth * 10);
          const std::vector<float> q = values(H * D, seed, qwidth);
          std::vector<float> m(H, -std::numeric_limits<float>::infinity()), l(H, 0.0f), acc(H * C, 0.0f);
          std::vector<float> em = m, el = l, eacc = acc;
          const float scale = 0.0737f;
          for (int k = 0; k < 3; ++k) {
            for (std::size_t n : {tiles[k][0], tiles[k][1]}) {
              const std::vector<float> rows = values(n * D, seed + 100 + k * 10 + n, 1.0 + k);
              std::vector<float> scratch(absorb_tile_scratch(H, std::max<std::size_t>(n, 1)));
              mla_absorb_tile_heads(q.data(), H, rows.data(), n, D, C, scale, p_bf16, m.data(), l.data(), acc.data(),
                                    scratch.data());
              for (std::size_t h = 0; h < H; ++h)
                statement_tile(q.data() + h * D, rows.data(), n, D, C, scale, p_bf16, em[h], el[h], eacc.data() + h * C);
            }
            for (std::size_t h = 0; h < H; ++h) {
              ASSERT_EQ(bits(m[h]), bits(em[h])) << isa_name(isa) << " head " << h << " tile " << k;
              ASSERT_EQ(bits(l[h]), bits(el[h])) << isa_name(isa) << " head " << h << " tile " << k;
            }
            for (std::size_t i = 0; i < H * C; ++i)
              ASSERT_EQ(bits(acc[i]), bits(eacc[i])) << isa_name(isa) << " acc " << i << " tile " << k << " H " << H
                                                     << " D " << D << " C " << C;
            checked += H * C;
          }
        }
  }
  EXPECT_GT(checked, 100000u);
}

TEST(MlaTile, DotGemmIsDotF32PerElement) {
  // Row counts around the register blocks, K below one lane set, with a tail, and across several
  // chunks of kDotGemmChunk; B as is and rounded to BF16.
  const std::size_t dims[][3] = {{1, 1, 5}, {4, 4, 16}, {5, 7, 37}, {9, 33, 300}, {3, 2, 600}, {8, 32, 1536}};
  std::size_t checked = 0;
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    for (const auto& d : dims)
      for (bool b_bf16 : {false, true}) {
        const std::size_t M = d[0], N = d[1], K = d[2], ldo = N + 3, ldb = K + (K % 3);  // B rows strided when K % 3
        const std::vector<float> A = values(M * K, M * 7 + K, 2.0), B = values(N * ldb, N * 11 + K, 0.5);
        std::vector<float> out(M * ldo, -1.0f), scratch(dot_f32_gemm_scratch(M, N));
        mla_dot_f32_gemm(A.data(), M, B.data(), N, K, ldb, b_bf16, out.data(), ldo, scratch.data());
        std::vector<float> b(K);
        for (std::size_t i = 0; i < M; ++i)
          for (std::size_t j = 0; j < N; ++j) {
            for (std::size_t k = 0; k < K; ++k) b[k] = b_bf16 ? round_to_bf16(B[j * ldb + k]) : B[j * ldb + k];
            ASSERT_EQ(bits(out[i * ldo + j]), bits(mla::dot_f32(&A[i * K], b.data(), K)))
                << isa_name(isa) << " M " << M << " N " << N << " K " << K << " at " << i << ", " << j;
            ++checked;
          }
        for (std::size_t i = 0; i < M; ++i)  // the columns past N of each output row are untouched
          for (std::size_t j = N; j < ldo; ++j) ASSERT_EQ(out[i * ldo + j], -1.0f);
      }
  }
  EXPECT_GT(checked, 500u);
}

TEST(MlaTile, PvRowsIsTheScalarKeyOrderSum) {
  // mla_pv_rows against prefill's scalar P.V loop (acc = 0; acc += fl(p_t * v_t[c]) for t in
  // order), bit for bit on every variant: head counts around the register block (1, 3, 4, 5, 9),
  // widths with and without a 16-lane tail, 0..70 rows, strided rows, and hostile values (NaN,
  // +-Inf, +-0, subnormals, max-finite products that overflow, exact ties of +x and -x).
  const std::size_t shapes[][3] = {{1, 512, 0}, {4, 512, 70}, {5, 21, 17}, {3, 16, 1}, {9, 70, 33}, {1, 1, 7}, {4, 64, 0}};
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY, 0.0f, -0.0f,
                            0x1p-149f, -0x1p-130f, std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            1.0f, -1.0f};
  std::size_t checked = 0;
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    for (const auto& sh : shapes)
      for (bool hostile : {false, true}) {
        const std::size_t H = sh[0], C = sh[1], n = sh[2], ldr = C + 3;
        std::vector<float> p = values(H * n, H * 31 + C + n, 1.0), rows = values(n * ldr, C * 7 + n, 2.0);
        if (hostile) {
          for (std::size_t i = 0; i < p.size(); i += 5) p[i] = specials[(i / 5) % std::size(specials)];
          for (std::size_t i = 0; i < rows.size(); i += 3) rows[i] = specials[(i / 3 + 4) % std::size(specials)];
        }
        std::vector<float> acc(H * C, 123.0f);
        mla_pv_rows(p.data(), H, n, rows.data(), ldr, C, acc.data());
        for (std::size_t h = 0; h < H; ++h)
          for (std::size_t c = 0; c < C; ++c) {
            float want = 0.0f;
            for (std::size_t t = 0; t < n; ++t) {
              const float prod = p[h * n + t] * rows[t * ldr + c];
              want = want + prod;
            }
            const float got = acc[h * C + c];
            ASSERT_TRUE(bits(got) == bits(want) || (std::isnan(got) && std::isnan(want)))
                << isa_name(isa) << " H " << H << " C " << C << " n " << n << " at " << h << ", " << c << ": " << got
                << " vs " << want;
            ++checked;
          }
      }
  }
  EXPECT_GT(checked, 10000u);
}

TEST(MlaTile, ExpBatchIsExpF32OnEveryInput) {
  // A stride through all 2^32 patterns (every sign, binade, NaN and Inf), a dense run over the range
  // decode uses (s - m in [-110, 0]) and the edges of exp_f32's own rules; in place and not.
  std::vector<float> x;
  for (std::uint64_t b = 0; b < (1ull << 32); b += 4099) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(b)));
  for (std::uint32_t b = bits(-110.0f); b > bits(-0x1p-30f); b -= 997) x.push_back(std::bit_cast<float>(b));
  for (float e : {-104.0f, 89.0f, 88.72283f, -87.33654f, -103.97208f, 0.0f, -0.0f, 0x1p-149f})
    for (float f : {std::nextafter(e, -INFINITY), e, std::nextafter(e, INFINITY)}) x.push_back(f);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  std::vector<float> want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = exp_f32(x[i]);
  for (Isa isa : runnable_isas()) {
    ScopedIsa use(isa);
    std::vector<float> y(x.size()), inplace = x;
    exp_f32_batch(x.data(), y.data(), x.size());
    exp_f32_batch(inplace.data(), inplace.data(), inplace.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(bits(y[i]), bits(want[i])) << isa_name(isa) << " x = " << x[i];
      ASSERT_EQ(bits(inplace[i]), bits(want[i])) << isa_name(isa) << " in place, x = " << x[i];
    }
  }
}

}  // namespace

#include "mla/attention_tile.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/bf16.hpp"
#include "common/isa.hpp"
#include "common/pinned_exp.hpp"
#include "common/pinned_math.hpp"
#include "mla/numerics.hpp"

// The 64-byte vector types below are internal (anonymous namespace, inlined), so the compilers'
// note that passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp).
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using mla::dot_f32_finish;
using mla::dot_f32_tree;
using mla::kDotLanes;

// GCC/Clang vector extensions: element-wise IEEE operations, each rounded on its own (the build's
// -ffp-contract=off keeps a * b + c two roundings), lowered to whatever this variant's ISA has.
using F16 = float __attribute__((vector_size(64)));
using F8 = float __attribute__((vector_size(32)));
using D8 = double __attribute__((vector_size(64)));
using U8 = std::uint64_t __attribute__((vector_size(64)));
using I8 = std::int64_t __attribute__((vector_size(64)));
using I8x32 = std::int32_t __attribute__((vector_size(32)));
static_assert(kDotLanes == 16, "one F16 is one set of numerics.hpp's dot lanes");

inline F16 load16(const float* p) {
  F16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, const F16& v) { std::memcpy(p, &v, sizeof v); }

// Register blocks: (heads x rows) score accumulators and (heads x 16-column groups) P.V
// accumulators, sized so they stay in registers (32 zmm with AVX-512; 16 ymm otherwise).
#if defined(__AVX512F__)
constexpr int kScoreHeads = 4, kScoreRows = 4, kPvHeads = 4, kPvGroups = 4;
#else
constexpr int kScoreHeads = 2, kScoreRows = 2, kPvHeads = 2, kPvGroups = 2;
#endif

// c[i][j] += the products a_i[k] * b_j[k] for k in [0, k_end) (a multiple of 16), lane k mod 16:
// numerics.hpp's dot lanes of IB x JB dots at once (rows of a and b at strides lda, ldb).
template <int IB, int JB>
inline void dot_lanes(const float* a, std::size_t lda, const float* b, std::size_t ldb, std::size_t k_end,
                      F16 (&c)[IB][JB]) {
  for (std::size_t k = 0; k < k_end; k += kDotLanes) {
    F16 av[IB], bv[JB];
    for (int i = 0; i < IB; ++i) av[i] = load16(a + i * lda + k);
    for (int j = 0; j < JB; ++j) bv[j] = load16(b + j * ldb + k);
    for (int i = 0; i < IB; ++i)
      for (int j = 0; j < JB; ++j) c[i][j] = c[i][j] + av[i] * bv[j];
  }
}

// sc[h * n + t] = fl(dot_f32(q_h, row_t) * scale) for HB heads from q and TB rows from rows.
template <int HB, int TB>
void score_block(const float* q, const float* rows, std::size_t D, float scale, float* sc, std::size_t n) {
  F16 acc[HB][TB] = {};
  const std::size_t full = D / kDotLanes * kDotLanes;
  dot_lanes<HB, TB>(q, D, rows, D, full, acc);
  for (int h = 0; h < HB; ++h)
    for (int t = 0; t < TB; ++t) {
      float lane[kDotLanes];
      std::memcpy(lane, &acc[h][t], sizeof lane);
      sc[h * n + t] = dot_f32_finish(lane, q + h * D, rows + t * D, full, D) * scale;
    }
}

template <int HB>
void score_heads(const float* q, const float* rows, std::size_t n, std::size_t D, float scale, float* sc) {
  std::size_t t = 0;
  for (; t + kScoreRows <= n; t += kScoreRows) score_block<HB, kScoreRows>(q, rows + t * D, D, scale, sc + t, n);
  for (; t < n; ++t) score_block<HB, 1>(q, rows + t * D, D, scale, sc + t, n);
}

void scores(const float* q, std::size_t heads, const float* rows, std::size_t n, std::size_t D, float scale, float* sc) {
  std::size_t h = 0;
  for (; h + kScoreHeads <= heads; h += kScoreHeads) score_heads<kScoreHeads>(q + h * D, rows, n, D, scale, sc + h * n);
  for (; h < heads; ++h) score_heads<1>(q + h * D, rows, n, D, scale, sc + h * n);
}

// acc[h][c] for HB heads and columns [c0, c0 + 16 GB): first the rescale acc * alpha of the heads
// whose max moved, then acc + p[h][t] * v_t[c] for t in row order.
template <int HB, int GB>
void pv_block(const float* p, std::size_t n, const float* rows, std::size_t D, std::size_t C, std::size_t c0,
              const float* alpha, const float* rescale, float* acc) {
  F16 a[HB][GB];
  for (int h = 0; h < HB; ++h)
    for (int g = 0; g < GB; ++g) {
      a[h][g] = load16(acc + h * C + c0 + 16 * g);
      if (rescale[h] != 0) a[h][g] = a[h][g] * alpha[h];
    }
  for (std::size_t t = 0; t < n; ++t) {
    F16 v[GB];
    for (int g = 0; g < GB; ++g) v[g] = load16(rows + t * D + c0 + 16 * g);
    for (int h = 0; h < HB; ++h) {
      const float ph = p[h * n + t];
      for (int g = 0; g < GB; ++g) a[h][g] = a[h][g] + ph * v[g];
    }
  }
  for (int h = 0; h < HB; ++h)
    for (int g = 0; g < GB; ++g) store16(acc + h * C + c0 + 16 * g, a[h][g]);
}

// The same for one head and the columns [c0, C) left after the 16-column groups.
void pv_columns(const float* p, std::size_t n, const float* rows, std::size_t D, std::size_t C, std::size_t c0,
                float alpha, bool rescale, float* acc) {
  for (std::size_t c = c0; c < C; ++c) {
    float x = rescale ? acc[c] * alpha : acc[c];
    for (std::size_t t = 0; t < n; ++t) {
      const float prod = p[t] * rows[t * D + c];
      x = x + prod;
    }
    acc[c] = x;
  }
}

template <int HB>
void pv_heads(const float* p, std::size_t n, const float* rows, std::size_t D, std::size_t C, const float* alpha,
              const float* rescale, float* acc) {
  std::size_t c = 0;
  for (; c + 16 * kPvGroups <= C; c += 16 * kPvGroups) pv_block<HB, kPvGroups>(p, n, rows, D, C, c, alpha, rescale, acc);
  for (; c + 16 <= C; c += 16) pv_block<HB, 1>(p, n, rows, D, C, c, alpha, rescale, acc);
  for (int h = 0; h < HB; ++h) pv_columns(p + h * n, n, rows, D, C, c, alpha[h], rescale[h] != 0, acc + h * C);
}

void pv(const float* p, std::size_t heads, std::size_t n, const float* rows, std::size_t D, std::size_t C,
        const float* alpha, const float* rescale, float* acc) {
  std::size_t h = 0;
  for (; h + kPvHeads <= heads; h += kPvHeads)
    pv_heads<kPvHeads>(p + h * n, n, rows, D, C, alpha + h, rescale + h, acc + h * C);
  for (; h < heads; ++h) pv_heads<1>(p + h * n, n, rows, D, C, alpha + h, rescale + h, acc + h * C);
}

// exp in double for 8 floats, with a certified error (< 2^-46 relative, below):
//  x = k ln2 + r, k = nearest integer to x / ln2 (by the 1.5 * 2^52 addition, ROUND_MAGIC),
//  |r| <= ln2/2 + tiny; ln2 = LN2_HI + LN2_LO with LN2_HI of 32 significant bits, so k * LN2_HI is
//  exact (|k| <= 151) and x - k * LN2_HI is exact (Sterbenz); r then carries < 2^-53 |r| + 2^-80
//  of error. (The constants are common/pinned_exp.hpp's, the scalar pinned exp's.)
//  exp(r) by Horner on the Taylor polynomial of degree 12 (pinned_exp.hpp's coefficients C[0..12],
//  without fma): truncation |r|^13 / 13! < 2^-52, and 26 roundings of values below 2 (each
//  < 2^-53 relative) < 2^-47; 2^k is exact (k in [-151, 129]).
// So the true exp lies in [y (1 - 2^-46), y (1 + 2^-46)]; with the margin 2^-42 (16 times that),
// when both ends of [y (1 - 2^-42), y (1 + 2^-42)] round to the same float, that float is the
// correctly rounded exp(x), i.e. exp_f32(x). Otherwise (about one input in 2^17) and outside
// (-104, 89) (where exp_f32 returns 0, Inf or NaN by its own rules) exp_f32 itself decides.
constexpr double kMargin = 0x1p-42;
constexpr int kDegree = 12;
// C[n] is the double nearest 1/n! (1 / n! by one correctly rounded division: n! < 2^53 is exact).
constexpr bool taylor_coefficients_exact() {
  double f = 1;
  for (int n = 0; n <= kDegree; ++n) {
    if (n > 1) f *= n;
    if (C[n] != 1.0 / f) return false;
  }
  return true;
}
static_assert(kDegree < static_cast<int>(std::size(C)) && taylor_coefficients_exact(),
              "pinned_exp.hpp's C[0..kDegree] are the coefficients this polynomial was certified with");

void exp_block(const float* x, float* y) {
  F8 xf;
  std::memcpy(&xf, x, sizeof xf);
  D8 xd = __builtin_convertvector(xf, D8);
  const I8 inside = (xd > -104.0) & (xd < 89.0);  // false for NaN
  xd = inside ? xd : D8{};                         // other lanes: evaluated at 0, redone below
  const D8 t = xd * INV_LN2 + ROUND_MAGIC;         // 1.5 * 2^52 + k exactly
  const D8 kd = t - ROUND_MAGIC;
  const D8 r = (xd - kd * LN2_HI) - kd * LN2_LO;
  D8 p = D8{} + C[kDegree];
#pragma GCC unroll 12  // unrolled, the coefficients are immediate constants (as before they were shared)
  for (int i = kDegree - 1; i >= 0; --i) p = p * r + C[i];
  // t's low mantissa bits hold k (two's complement): 2^k's exponent field is (k + 1023) << 52.
  const U8 two_k = (((U8)t + 1023u) << 52);
  const D8 v = p * (D8)two_k;
  const F8 out = __builtin_convertvector(v, F8);
  const F8 lo = __builtin_convertvector(v - v * kMargin, F8), hi = __builtin_convertvector(v + v * kMargin, F8);
  const I8x32 ok = (lo == hi) & __builtin_convertvector(inside, I8x32);
  std::memcpy(y, &out, sizeof out);  // y may be x: the fallback reads the inputs from xf
  for (int j = 0; j < 8; ++j)
    if (!ok[j]) y[j] = ::fp8lab::exp_f32(xf[j]);
}

// The dot_f32 GEMM's blocks: IB rows of A by JB rows of the packed B chunk (kc columns), their
// lanes carried in acc between chunks.
template <int IB, int JB>
void gemm_block(const float* a, std::size_t K, const float* bp, std::size_t ldb, std::size_t kc, float* acc,
                std::size_t N, bool first) {
  F16 c[IB][JB];
  for (int i = 0; i < IB; ++i)
    for (int j = 0; j < JB; ++j) c[i][j] = first ? F16{} : load16(acc + (i * N + j) * kDotLanes);
  dot_lanes<IB, JB>(a, K, bp, ldb, kc, c);
  for (int i = 0; i < IB; ++i)
    for (int j = 0; j < JB; ++j) store16(acc + (i * N + j) * kDotLanes, c[i][j]);
}

template <int IB>
void gemm_rows(const float* a, std::size_t K, const float* bp, std::size_t ldb, std::size_t kc, std::size_t N,
               float* acc, bool first) {
  std::size_t j = 0;
  for (; j + kScoreRows <= N; j += kScoreRows)
    gemm_block<IB, kScoreRows>(a, K, bp + j * ldb, ldb, kc, acc + j * kDotLanes, N, first);
  for (; j < N; ++j) gemm_block<IB, 1>(a, K, bp + j * ldb, ldb, kc, acc + j * kDotLanes, N, first);
}

}  // namespace

void mla_dot_f32_gemm(const float* A, std::size_t M, const float* B, std::size_t N, std::size_t K, std::size_t ldb,
                      bool b_bf16, float* out, std::size_t ldo, float* scratch) {
  float* acc = scratch;                      // [M][N][16] lanes
  float* bp = scratch + M * N * kDotLanes;   // [N][kc] the chunk of B, rounded (b_bf16 only)
  const std::size_t full = K / kDotLanes * kDotLanes;
  for (std::size_t k0 = 0; k0 < full; k0 += kDotGemmChunk) {
    const std::size_t kc = std::min(kDotGemmChunk, full - k0);
    if (b_bf16)
      for (std::size_t j = 0; j < N; ++j)
        for (std::size_t k = 0; k < kc; ++k) bp[j * kc + k] = round_to_bf16(B[j * ldb + k0 + k]);
    const float* b = b_bf16 ? bp : B + k0;  // B as is: read in place
    const std::size_t lb = b_bf16 ? kc : ldb;
    std::size_t i = 0;
    for (; i + kScoreHeads <= M; i += kScoreHeads)
      gemm_rows<kScoreHeads>(A + i * K + k0, K, b, lb, kc, N, acc + i * N * kDotLanes, k0 == 0);
    for (; i < M; ++i) gemm_rows<1>(A + i * K + k0, K, b, lb, kc, N, acc + i * N * kDotLanes, k0 == 0);
  }
  if (full == 0) std::fill(acc, acc + M * N * kDotLanes, 0.0f);
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      float* lane = acc + (i * N + j) * kDotLanes;
      for (std::size_t k = full; k < K; ++k) {  // the last K mod 16 products (dot_f32_finish's)
        const float b = B[j * ldb + k];
        const float p = A[i * K + k] * (b_bf16 ? round_to_bf16(b) : b);
        lane[k - full] = lane[k - full] + p;
      }
      out[i * ldo + j] = dot_f32_tree(lane);
    }
}

void mla_pv_rows(const float* p, std::size_t heads, std::size_t n, const float* rows, std::size_t ldr, std::size_t C,
                 float* acc) {
  std::fill(acc, acc + heads * C, 0.0f);
  float ones[kPvHeads], zeros[kPvHeads];  // alpha 1, no rescale: a plain accumulation from 0
  std::fill(ones, ones + kPvHeads, 1.0f);
  std::fill(zeros, zeros + kPvHeads, 0.0f);
  for (std::size_t h = 0; h < heads; h += kPvHeads)  // pv reads alpha and rescale of its heads only
    pv(p + h * n, std::min<std::size_t>(kPvHeads, heads - h), n, rows, ldr, C, ones, zeros, acc + h * C);
}

void exp_f32_batch(const float* x, float* y, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) exp_block(x + i, y + i);
  for (; i < n; ++i) y[i] = ::fp8lab::exp_f32(x[i]);
}

// decode.hpp "Within a split", for each head: scores, m' = max(m, max_t s_t), the rescale by
// alpha = exp(m - m') when m moved (0 when m = -inf), then p_t = exp(s_t - m'), l += p_t in row
// order and acc += P(p_t) v_t in row order.
void mla_absorb_tile_heads(const float* q, std::size_t heads, const float* rows, std::size_t n, std::size_t D,
                           std::size_t C, float scale, bool p_bf16, float* m, float* l, float* acc, float* scratch) {
  if (n == 0) return;  // a tile with no visible row leaves the state untouched
  float* sc = scratch;                  // [heads][n]: scores, then p, then P(p)
  float* alpha = scratch + heads * n;   // [heads]
  float* rescale = alpha + heads;       // [heads]: 1 where m moved
  scores(q, heads, rows, n, D, scale, sc);
  for (std::size_t h = 0; h < heads; ++h) {
    float* s = sc + h * n;
    float tile_max = -std::numeric_limits<float>::infinity();
    for (std::size_t t = 0; t < n; ++t) tile_max = std::max(tile_max, s[t]);
    const float m_new = std::max(m[h], tile_max);
    rescale[h] = m[h] != m_new ? 1.0f : 0.0f;
    alpha[h] = 1.0f;
    if (m[h] != m_new) {
      alpha[h] = m[h] == -std::numeric_limits<float>::infinity() ? 0.0f : ::fp8lab::exp_f32(m[h] - m_new);
      l[h] = l[h] * alpha[h];
    }
    for (std::size_t t = 0; t < n; ++t) s[t] = s[t] - m_new;
    m[h] = m_new;
  }
  exp_f32_batch(sc, sc, heads * n);
  for (std::size_t h = 0; h < heads; ++h) {
    float* p = sc + h * n;
    for (std::size_t t = 0; t < n; ++t) {
      l[h] = l[h] + p[t];
      if (p_bf16) p[t] = round_to_bf16(p[t]);
    }
  }
  pv(sc, heads, n, rows, D, C, alpha, rescale, acc);
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, mla_dot_f32_gemm,
                      (const float* A, std::size_t M, const float* B, std::size_t N, std::size_t K, std::size_t ldb,
                       bool b_bf16, float* out, std::size_t ldo, float* scratch),
                      (A, M, B, N, K, ldb, b_bf16, out, ldo, scratch))
FP8LAB_DISPATCH_ENTRY(void, mla_pv_rows,
                      (const float* p, std::size_t heads, std::size_t n, const float* rows, std::size_t ldr,
                       std::size_t C, float* acc),
                      (p, heads, n, rows, ldr, C, acc))
FP8LAB_DISPATCH_ENTRY(void, exp_f32_batch, (const float* x, float* y, std::size_t n), (x, y, n))
FP8LAB_DISPATCH_ENTRY(void, mla_absorb_tile_heads,
                      (const float* q, std::size_t heads, const float* rows, std::size_t n, std::size_t D,
                       std::size_t C, float scale, bool p_bf16, float* m, float* l, float* acc, float* scratch),
                      (q, heads, rows, n, D, C, scale, p_bf16, m, l, acc, scratch))

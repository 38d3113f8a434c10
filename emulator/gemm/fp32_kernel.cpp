#include "gemm/fp32_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "gemm/kernel_tile.hpp"

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): each build in its
// own namespace; the entry point at the end chooses one at run time.
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using V = Lanes<float>::V;  // 16, 8 or 4 output columns (gemm/kernel_tile.hpp)
constexpr std::size_t kLanes = Lanes<float>::kCount;
using Packed = Panels<float>;

inline V load(const float* p) { return Lanes<float>::load(p); }
using UV = std::uint32_t __attribute__((vector_size(sizeof(V))));
// std::fabs lane-wise: the sign bit cleared.
inline V magnitude(V x) { return lanes_cast<V>(lanes_cast<UV>(x) & 0x7FFFFFFFu); }

// Writes fl(e * s) of row r of op to dst[k * stride] for every k: the scale read once per tile.
void dequantise_row(const GemmOperand& op, std::size_t r, float* dst, std::size_t stride) {
  const float* e = op.row(r);
  for (std::size_t k0 = 0; k0 < op.cols; k0 += op.tile_cols) {
    const float s = op.scale(r, k0);
    for (std::size_t k = k0; k < std::min(op.cols, k0 + op.tile_cols); ++k) dst[k * stride] = e[k] * s;
  }
}

Packed pack(const GemmOperand& a, const GemmOperand& b) {
  Packed p(a.rows, b.rows, a.cols);
  parallel_for(a.rows, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t i = r0; i < r1; ++i) dequantise_row(a, i, p.a_row(i), kRows);
  });
  parallel_for(b.rows, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t j = r0; j < r1; ++j) dequantise_row(b, j, p.b_row(j), kLanes);
  });
  return p;
}

using Block = V[kRows][kGroups];

// acc = fl(acc + fl(x * y)) for k in [0, K), in order, for every output of the tile.
void sequential(const float* xb, const float* const* yg, std::size_t K, Block& out) {
  V s[kRows][kGroups] = {};  // in registers: element-wise copies, no address taken
  for (std::size_t k = 0; k < K; ++k) {
    V y[kGroups];
    for (std::size_t g = 0; g < kGroups; ++g) y[g] = load(yg[g] + k * kLanes);
    for (std::size_t r = 0; r < kRows; ++r) {
      const V x = Lanes<float>::splat(xb[k * kRows + r]);
      for (std::size_t g = 0; g < kGroups; ++g) {
        const V prod = x * y[g];
        s[r][g] = s[r][g] + prod;
      }
    }
  }
  for (std::size_t r = 0; r < kRows; ++r)
    for (std::size_t g = 0; g < kGroups; ++g) out[r][g] = s[r][g];
}

inline void products(const float* xb, const float* const* yg, std::size_t k, Block& out) {
  for (std::size_t g = 0; g < kGroups; ++g) {
    const V y = load(yg[g] + k * kLanes);
    for (std::size_t r = 0; r < kRows; ++r) out[r][g] = xb[k * kRows + r] * y;
  }
}

// The pairwise tree of gemm's pairwise_sum over products k0 .. k0 + n - 1 (n >= 1): leaves are the
// products, each node fl(left + right) with left the first n/2 of its products.
void pairwise(const float* xb, const float* const* yg, std::size_t k0, std::size_t n, Block& out) {
  if (n == 1) return products(xb, yg, k0, out);
  if (n <= 4) {  // the small trees written out (p0+p1; p0+(p1+p2); (p0+p1)+(p2+p3)): fewer calls
    Block p0, p1, p2;
    products(xb, yg, k0, p0);
    products(xb, yg, k0 + 1, p1);
    if (n == 2) {
      for (std::size_t r = 0; r < kRows; ++r)
        for (std::size_t g = 0; g < kGroups; ++g) out[r][g] = p0[r][g] + p1[r][g];
      return;
    }
    products(xb, yg, k0 + 2, p2);
    if (n == 3) {
      for (std::size_t r = 0; r < kRows; ++r)
        for (std::size_t g = 0; g < kGroups; ++g) out[r][g] = p0[r][g] + (p1[r][g] + p2[r][g]);
      return;
    }
    products(xb, yg, k0 + 3, out);
    for (std::size_t r = 0; r < kRows; ++r)
      for (std::size_t g = 0; g < kGroups; ++g) out[r][g] = (p0[r][g] + p1[r][g]) + (p2[r][g] + out[r][g]);
    return;
  }
  const std::size_t h = n / 2;
  Block right;
  pairwise(xb, yg, k0, h, out);
  pairwise(xb, yg, k0 + h, n - h, right);
  for (std::size_t r = 0; r < kRows; ++r)
    for (std::size_t g = 0; g < kGroups; ++g) out[r][g] = out[r][g] + right[r][g];
}

// The bound's sums (gemm/bounds.hpp) alongside the values: the same products and additions, plus
// P += |p_k| in k order and S += |s| after every addition (sequential: every s_k; pairwise: every
// internal node, in the tree's post-order), binary32 additions of non-negative numbers.
struct BlockSums {
  Block v, p, n;
};

// `sequential` for rows [r0, r0 + R) of the tile with the two sums: R rows per pass so that the
// 3 x R x kGroups accumulators stay in registers.
template <std::size_t R>
void sequential_sums(const float* xb, const float* const* yg, std::size_t K, std::size_t r0, BlockSums& out) {
  V s[R][kGroups] = {}, ps[R][kGroups] = {}, ns[R][kGroups] = {};
  for (std::size_t k = 0; k < K; ++k) {
    V y[kGroups];
    for (std::size_t g = 0; g < kGroups; ++g) y[g] = load(yg[g] + k * kLanes);
    for (std::size_t r = 0; r < R; ++r) {
      const V x = Lanes<float>::splat(xb[k * kRows + r0 + r]);
      for (std::size_t g = 0; g < kGroups; ++g) {
        const V prod = x * y[g];
        s[r][g] = s[r][g] + prod;
        ps[r][g] = ps[r][g] + magnitude(prod);
        ns[r][g] = ns[r][g] + magnitude(s[r][g]);
      }
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < kGroups; ++g) {
      out.v[r0 + r][g] = s[r][g];
      out.p[r0 + r][g] = ps[r][g];
      out.n[r0 + r][g] = ns[r][g];
    }
}

#if defined(__AVX512F__)
// AVX-512: the sequential sums with one vector operation fewer per output and k. The product is
// taken of the magnitudes, m = fl(|x| * |y|) = |fl(x * y)| (round-to-nearest-even is symmetric; a
// NaN stays NaN), which P adds as it is; the signed product enters s by an FMA with sigma =
// sign(x) * sign(y) = +-1: fma(sigma, m, s) rounds sigma * m + s once and sigma * m = fl(x * y)
// exactly, zeros' signs included, so it is fl(s + fl(x * y)) to the bit (only a NaN's sign and
// payload may differ, and a NaN s gives an infinite bound either way). sigma comes from memory: per
// B column group and k the sign lanes of y as +-1.0 and their negation, the one chosen by x's sign
// (an offset packed beside |x|). Per output and k: a multiply, an FMA, two adds and the AND for |s|
// (the generic loop: a multiply, three adds and two ANDs). The sign table is twice B's panel, so
// it is built per task for kSumsKBlock values of k at a time and the task's row blocks walk that
// block of k before the next (their sums kept in memory between blocks): at K = 2048 the whole
// table per column slice (768 KiB with |y|) did not stay in L2 and the kernel was no faster.
constexpr std::size_t kSumsKBlock = 256;
constexpr std::size_t kSumsChunk = 16;  // row blocks per task

struct AbsSignA {  // A's panel as |x| and, per element, 0 or kLanes: its sign's half of a sign pair
  std::vector<float> ax;
  std::vector<std::uint32_t> sel;
};

AbsSignA abs_sign_a(const Packed& p) {
  AbsSignA s;
  s.ax.resize(p.x.size());
  s.sel.resize(p.x.size());
  parallel_for(p.x.size(), 1 << 16, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      s.ax[i] = std::fabs(p.x[i]);
      s.sel[i] = std::signbit(p.x[i]) ? kLanes : 0;
    }
  });
  return s;
}

// Rows [r0, r0 + R) of a tile over k in [k0, k1), continuing the sums in `io`. ay: |y| per group
// as [k - k0][kLanes]; sy: the sign pairs per group as [k - k0][2][kLanes].
template <std::size_t R>
void sequential_sums_signed(const float* axb, const std::uint32_t* selb, const float* const* ay,
                            const float* const* sy, std::size_t k0, std::size_t k1, std::size_t r0, BlockSums& io) {
  V s[R][kGroups], ps[R][kGroups], ns[R][kGroups];
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < kGroups; ++g) {
      s[r][g] = io.v[r0 + r][g];
      ps[r][g] = io.p[r0 + r][g];
      ns[r][g] = io.n[r0 + r][g];
    }
  for (std::size_t k = k0; k < k1; ++k) {
    V y[kGroups];
    for (std::size_t g = 0; g < kGroups; ++g) {
      y[g] = load(ay[g] + (k - k0) * kLanes);
      asm("" : "+v"(y[g]));  // one load per group and k (GCC would fold it into every row's multiply)
    }
    for (std::size_t r = 0; r < R; ++r) {
      const V x = Lanes<float>::splat(axb[k * kRows + r0 + r]);
      const std::size_t o = (k - k0) * 2 * kLanes + selb[k * kRows + r0 + r];
      for (std::size_t g = 0; g < kGroups; ++g) {
        const V m = x * y[g];
        ps[r][g] = ps[r][g] + m;
        s[r][g] = _mm512_fmadd_ps(load(sy[g] + o), m, s[r][g]);
        ns[r][g] = ns[r][g] + magnitude(s[r][g]);
      }
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t g = 0; g < kGroups; ++g) {
      io.v[r0 + r][g] = s[r][g];
      io.p[r0 + r][g] = ps[r][g];
      io.n[r0 + r][g] = ns[r][g];
    }
}
#endif

#if defined(__AVX512F__)
constexpr std::size_t kSumRows = 3;  // 18 accumulators, 2 B vectors, a broadcast, a product, the mask: 23 of 32 zmm
#else
constexpr std::size_t kSumRows = 2;  // 12 accumulators + 2 B vectors + a broadcast + a product: 16 ymm / xmm
#endif
static_assert(kRows % kSumRows == 0);

// `pairwise` with the sums, for rows [r0, r0 + R) of the tile: the same tree, leaves in k order,
// internal nodes in post-order. The tree's post-order is walked as a schedule (pairwise_schedule)
// by one loop, not by recursion, so that the 2 x R x kGroups sums stay in registers across it:
// subtrees of at most 4 leaves are evaluated in registers (the small trees of `pairwise`), their
// values kept on a stack in memory, and every node above them adds the top two entries.
constexpr std::size_t kPairwiseBase = 4;
constexpr std::uint64_t kMerge = 0;  // a schedule entry: (k0 << 3) | n for a subtree, kMerge for a node above them

// The post-order of pairwise(0, K)'s recursion down to subtrees of at most kPairwiseBase leaves.
void pairwise_schedule(std::size_t k0, std::size_t n, std::vector<std::uint64_t>& out) {
  if (n <= kPairwiseBase) {
    out.push_back(static_cast<std::uint64_t>(k0) << 3 | n);
    return;
  }
  const std::size_t h = n / 2;
  pairwise_schedule(k0, h, out);
  pairwise_schedule(k0 + h, n - h, out);
  out.push_back(kMerge);
}

#if defined(__AVX512F__)
constexpr std::size_t kPairRows = 2;  // 8 sums + a 4-leaf subtree (up to 3 x 4 values) + 2 B vectors: about 24 of 32 zmm
#else
constexpr std::size_t kPairRows = 1;  // 4 sums + 3 x 2 values + 2 B vectors + a broadcast, the mask: 14 of 16 ymm / xmm
#endif
static_assert(kRows % kPairRows == 0);

template <std::size_t R>
struct PairwiseRows {
  using B = V[R][kGroups];
  const float* xb;
  const float* const* yg;
  std::size_t r0;
  B ps = {}, ns = {};

  // The products of element k (fl(x * y)) into p, |p| added to ps.
  void leaf(std::size_t k, B& p) {
    V y[kGroups];
    for (std::size_t g = 0; g < kGroups; ++g) y[g] = load(yg[g] + k * kLanes);
    for (std::size_t r = 0; r < R; ++r) {
      const V x = Lanes<float>::splat(xb[k * kRows + r0 + r]);
      for (std::size_t g = 0; g < kGroups; ++g) {
        p[r][g] = x * y[g];
        ps[r][g] = ps[r][g] + magnitude(p[r][g]);
      }
    }
  }
  // out = l + r, |out| added to ns.
  void node(B& out, const B& l, const B& r) {
    for (std::size_t i = 0; i < R; ++i)
      for (std::size_t g = 0; g < kGroups; ++g) {
        out[i][g] = l[i][g] + r[i][g];
        ns[i][g] = ns[i][g] + magnitude(out[i][g]);
      }
  }
  // The subtree of n <= kPairwiseBase leaves from k0, as `pairwise` writes it out.
  void subtree(std::size_t k0, std::size_t n, B& out) {
    B p0, p1, p2;
    if (n == 1) return leaf(k0, out);
    leaf(k0, p0);
    leaf(k0 + 1, p1);
    if (n == 2) return node(out, p0, p1);
    leaf(k0 + 2, p2);
    if (n == 3) {
      node(p1, p1, p2);
      return node(out, p0, p1);
    }
    leaf(k0 + 3, out);
    node(p0, p0, p1);
    node(p2, p2, out);
    node(out, p0, p2);
  }
  // The whole tree along the schedule; `stack` holds at least its depth of entries.
  void run(const std::uint64_t* sched, std::size_t count, B* stack, BlockSums& out) {
    std::size_t sp = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint64_t e = sched[i];
      if (e == kMerge) {
        --sp;
        node(stack[sp - 1], stack[sp - 1], stack[sp]);
      } else {
        subtree(static_cast<std::size_t>(e >> 3), static_cast<std::size_t>(e & 7), stack[sp++]);
      }
    }
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t g = 0; g < kGroups; ++g) {
        out.v[r0 + r][g] = stack[0][r][g];
        out.p[r0 + r][g] = ps[r][g];
        out.n[r0 + r][g] = ns[r][g];
      }
  }
};

}  // namespace

std::vector<float> fp32_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, bool pairwise_order) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  std::vector<float> out(M * N);
  if (M == 0 || N == 0) return out;
  const Packed p = pack(a, b);
  const std::size_t IB = p.row_blocks, GB = p.groups / kGroups;
  // Tasks walk the rows for one slice of B columns, so that slice stays in cache across them.
  parallel_for(IB * GB, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t ib = t % IB, g0 = (t / IB) * kGroups;
      const float* yg[kGroups];
      for (std::size_t g = 0; g < kGroups; ++g) yg[g] = p.group(g0 + g);
      alignas(64) Block acc = {};
      if (!pairwise_order) sequential(p.block(ib), yg, K, acc);
      else if (K > 0) pairwise(p.block(ib), yg, 0, K, acc);
      for (std::size_t r = 0; r < kRows && ib * kRows + r < M; ++r)
        for (std::size_t g = 0; g < kGroups; ++g)
          for (std::size_t l = 0; l < kLanes; ++l) {
            const std::size_t j = (g0 + g) * kLanes + l;
            if (j < N) out[(ib * kRows + r) * N + j] = acc[r][g][l];
          }
    }
  });
  return out;
}

void fp32_gemm_accumulate_sums(const GemmOperand& a, const GemmOperand& b, bool pairwise_order, float* acc,
                               float* psum, float* nsum) {
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  if (M == 0 || N == 0) return;
  const Packed p = pack(a, b);
  const std::size_t IB = p.row_blocks, GB = p.groups / kGroups;
  // Writes tile (ib, g0)'s outputs: per row, its kGroups vectors' lanes below N.
  auto write = [M, N, acc, psum, nsum](std::size_t ib, std::size_t g0, const BlockSums& bs) {
    const std::size_t j0 = g0 * kLanes, n = std::min(N, j0 + kGroups * kLanes) - j0;
    for (std::size_t r = 0; r < kRows && ib * kRows + r < M; ++r) {
      const std::size_t e = (ib * kRows + r) * N + j0;
      std::memcpy(acc + e, &bs.v[r][0], n * sizeof(float));
      std::memcpy(psum + e, &bs.p[r][0], n * sizeof(float));
      std::memcpy(nsum + e, &bs.n[r][0], n * sizeof(float));
    }
  };
#if defined(__AVX512F__)
  if (!pairwise_order) {
    const AbsSignA sa = abs_sign_a(p);
    const std::size_t CB = (IB + kSumsChunk - 1) / kSumsChunk;
    // Tasks: kSumsChunk row blocks of one slice of kGroups column groups.
    parallel_for(CB * GB, 1, [&](std::size_t t0, std::size_t t1) {
      std::vector<BlockSums> bs(kSumsChunk);
      std::vector<V> ayv(kGroups * kSumsKBlock), syv(kGroups * kSumsKBlock * 2);
      float* ay = reinterpret_cast<float*>(ayv.data());
      float* sy = reinterpret_cast<float*>(syv.data());
      const float* ayg[kGroups];
      const float* syg[kGroups];
      for (std::size_t g = 0; g < kGroups; ++g) {
        ayg[g] = ay + g * kSumsKBlock * kLanes;
        syg[g] = sy + g * kSumsKBlock * 2 * kLanes;
      }
      for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t c = t % CB, g0 = (t / CB) * kGroups;
        const std::size_t ib0 = c * kSumsChunk, ib1 = std::min(IB, ib0 + kSumsChunk);
        for (std::size_t ib = ib0; ib < ib1; ++ib) bs[ib - ib0] = {};
        for (std::size_t kb = 0; kb < K; kb += kSumsKBlock) {
          const std::size_t ke = std::min(K, kb + kSumsKBlock);
          for (std::size_t g = 0; g < kGroups; ++g) {  // |y| and the sign pairs of this block of k
            const float* y = p.group(g0 + g);
            for (std::size_t k = kb; k < ke; ++k) {
              const V yv = load(y + k * kLanes), m = magnitude(yv);
              const V one = lanes_cast<V>(lanes_cast<UV>(Lanes<float>::splat(1.0f)) |
                                             (lanes_cast<UV>(yv) & 0x80000000u));
              std::memcpy(ay + (g * kSumsKBlock + k - kb) * kLanes, &m, sizeof m);
              std::memcpy(sy + ((g * kSumsKBlock + k - kb) * 2) * kLanes, &one, sizeof one);
              const V neg = -one;
              std::memcpy(sy + ((g * kSumsKBlock + k - kb) * 2 + 1) * kLanes, &neg, sizeof neg);
            }
          }
          for (std::size_t ib = ib0; ib < ib1; ++ib) {
            const float* axb = sa.ax.data() + ib * K * kRows;
            const std::uint32_t* selb = sa.sel.data() + ib * K * kRows;
            for (std::size_t r0 = 0; r0 < kRows && ib * kRows + r0 < M; r0 += kSumRows)
              sequential_sums_signed<kSumRows>(axb, selb, ayg, syg, kb, ke, r0, bs[ib - ib0]);
          }
        }
        for (std::size_t ib = ib0; ib < ib1; ++ib) write(ib, g0, bs[ib - ib0]);
      }
    });
    return;
  }
#endif
  std::vector<std::uint64_t> sched;
  std::size_t depth = 0;
  if (pairwise_order && K > 0) {
    pairwise_schedule(0, K, sched);
    for (std::size_t i = 0, sp = 0; i < sched.size(); ++i) depth = std::max(depth, sched[i] == kMerge ? --sp : ++sp);
  }
  parallel_for(IB * GB, 1, [&](std::size_t t0, std::size_t t1) {
    std::vector<PairwiseRows<kPairRows>::B> stack(depth);
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t ib = t % IB, g0 = (t / IB) * kGroups;
      const float* yg[kGroups];
      for (std::size_t g = 0; g < kGroups; ++g) yg[g] = p.group(g0 + g);
      alignas(64) BlockSums bs = {};
      if (!pairwise_order) {
        for (std::size_t r0 = 0; r0 < kRows && ib * kRows + r0 < M; r0 += kSumRows)
          sequential_sums<kSumRows>(p.block(ib), yg, K, r0, bs);
      } else if (K > 0) {
        for (std::size_t r0 = 0; r0 < kRows && ib * kRows + r0 < M; r0 += kPairRows)
          PairwiseRows<kPairRows>{p.block(ib), yg, r0}.run(sched.data(), sched.size(), stack.data(), bs);
      }
      write(ib, g0, bs);
    }
  });
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, fp32_gemm_accumulate_sums,
                      (const GemmOperand& a, const GemmOperand& b, bool pairwise, float* acc, float* psum, float* nsum),
                      (a, b, pairwise, acc, psum, nsum))
FP8LAB_DISPATCH_ENTRY(std::vector<float>, fp32_gemm_accumulate,
                      (const GemmOperand& a, const GemmOperand& b, bool pairwise), (a, b, pairwise))

#include "gemm/exact_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/format.hpp"
#include "formats/row_constants.hpp"
#include "gemm/kernel_tile.hpp"
#include "gemm/kulisch.hpp"

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

// Compiled once per instruction set (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): each build in its
// own namespace; the entry point at the end chooses one at run time.
namespace fp8lab::FP8LAB_ISA_NS {
namespace {

using V = Lanes<double>::V;  // 8, 4 or 2 output columns (gemm/kernel_tile.hpp)
constexpr std::size_t kLanes = Lanes<double>::kCount;

inline V load(const double* p) { return Lanes<double>::load(p); }

// z + x * y. Every operand and result here is an integer below 2^53 (see exact_kernel.hpp), so the
// fused and unfused forms are both exact and equal; the FMA is only the faster instruction.
inline V mul_add(const V& x, const V& y, const V& z) {
#if defined(__AVX512F__)
  return reinterpret_cast<V>(_mm512_fmadd_pd(reinterpret_cast<__m512d>(x), reinterpret_cast<__m512d>(y),
                                             reinterpret_cast<__m512d>(z)));
#elif defined(__FMA__)  // V is one ymm (gemm/kernel_tile.hpp)
  return reinterpret_cast<V>(_mm256_fmadd_pd(reinterpret_cast<__m256d>(x), reinterpret_cast<__m256d>(y),
                                             reinterpret_cast<__m256d>(z)));
#else
  return z + x * y;
#endif
}

// A format's integer grid: every value is n * 2^lsb with |n| < 2^width. lsb is the weight of the
// last significand bit at the smallest normal exponent (the subnormal step), width the bits of
// max_finite / 2^lsb.
struct IntGrid {
  int lsb = 0, width = 0;
};

std::optional<IntGrid> int_grid(const GemmOperand& x) {
  const Format& f = format_by_name(x.fmt);
  IntGrid g;
  g.lsb = f.min_normal_exponent() - f.mantissa_bits;
  const double top = std::ldexp(f.max_finite(), -g.lsb);
  if (!(top < 0x1p53)) return std::nullopt;
  g.width = std::bit_width(static_cast<std::uint64_t>(top));
  return g;
}

// The register tile: kTileRows rows of A (one broadcast each) x kTileGroups vectors of B columns,
// kTileRows x kTileGroups sums in registers. With AVX-512, 6 x 4 (24 of 32 zmm, and 4 B loads + 6
// broadcasts per 24 FMAs): 1.25-1.3x the 6 x 2 tile of gemm/kernel_tile.hpp (12 sums, 8 loads
// per 12 FMAs) on the same k loop at 1024 x 2048 x 2048 on one core, about dgemm's rate there.
// AVX2 and SSE2 have 16 registers: kernel_tile.hpp's 6 x 2 (12 + 2 + 1).
#if defined(__AVX512F__)
constexpr std::size_t kTileRows = 6, kTileGroups = 4;
#else
constexpr std::size_t kTileRows = kRows, kTileGroups = kGroups;
#endif

// Operands as binary64 integers n, packed for the tile, zeros past the ends: A (M x K) per block
// of kTileRows rows as K x kTileRows, B (N x K) per group of kLanes rows as K x kLanes, the groups
// rounded up to whole tiles. `ok` is false when an element is not on the grid (not finite, not a
// multiple of 2^lsb, or too large).
struct Packed {
  std::size_t K = 0, row_blocks = 0, groups = 0;
  PooledVector<double> x, y;  // reused between calls (common/buffer_pool.hpp)
  bool ok = true;

  Packed(std::size_t M, std::size_t N, std::size_t k)
      : K(k),
        row_blocks((M + kTileRows - 1) / kTileRows),
        groups((N + kLanes * kTileGroups - 1) / (kLanes * kTileGroups) * kTileGroups),
        x(row_blocks * K * kTileRows),  // not zeroed: pack() writes every element
        y(groups * K * kLanes) {}
  const double* block(std::size_t ib) const { return x.data() + ib * K * kTileRows; }
  const double* group(std::size_t g) const { return y.data() + g * K * kLanes; }
  // Where element k = 0 of row i of A (of row j of B) goes; element k is k * kTileRows (k * kLanes)
  // further.
  double* a_row(std::size_t i) { return x.data() + (i / kTileRows) * K * kTileRows + i % kTileRows; }
  double* b_row(std::size_t j) { return y.data() + (j / kLanes) * K * kLanes + j % kLanes; }
};

// Writes row r of op as integers to at(r)[k * per].
template <class At>
bool pack_rows(const GemmOperand& op, IntGrid g, std::size_t per, At at) {
  const double to_int = std::ldexp(1.0, -g.lsb), limit = std::ldexp(1.0, g.width);
  const std::size_t K = op.cols;
  std::vector<char> bad((op.rows + 63) / 64, 0);
  parallel_for(op.rows, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      double* out = at(r);
      const float* e = op.row(r);
      bool fail = false;
      for (std::size_t k = 0; k < K; ++k) {
        const double n = static_cast<double>(e[k]) * to_int;  // exact: a power of two, in range
        fail |= !(std::fabs(n) < limit) || n != std::trunc(n);
        out[k * per] = n;
      }
      if (fail) bad[r0 / 64] = 1;
    }
  });
  return std::none_of(bad.begin(), bad.end(), [](char c) { return c != 0; });
}

Packed pack(const GemmOperand& a, const GemmOperand& b, IntGrid ga, IntGrid gb) {
  Packed p(a.rows, b.rows, a.cols);
  const std::size_t K = a.cols;
  for (std::size_t i = a.rows; i < p.row_blocks * kTileRows; ++i)  // the padding: zeros
    for (std::size_t k = 0; k < K; ++k) p.a_row(i)[k * kTileRows] = 0.0;
  for (std::size_t j = b.rows; j < p.groups * kLanes; ++j)
    for (std::size_t k = 0; k < K; ++k) p.b_row(j)[k * kLanes] = 0.0;
  p.ok = pack_rows(a, ga, kTileRows, [&](std::size_t i) { return p.a_row(i); }) &&
         pack_rows(b, gb, kLanes, [&](std::size_t j) { return p.b_row(j); });
  return p;
}

// Chunks of K: inside one interval of constant scales of both operands, at most max_len long.
struct Chunk {
  std::size_t k0, k1;
};
std::vector<Chunk> chunks_of(const GemmOperand& a, const GemmOperand& b, std::size_t max_len) {
  const std::size_t K = a.cols;
  const std::size_t len = std::max<std::size_t>(std::gcd(std::min(a.tile_cols, K), std::min(b.tile_cols, K)), 1);
  std::vector<Chunk> out;
  for (std::size_t q = 0; q < K; q += len)
    for (std::size_t c = q; c < std::min(K, q + len); c += max_len) out.push_back({c, std::min({K, q + len, c + max_len})});
  return out;
}

// A scale as m * 2^e with m its whole significand (24 bits when normal), not reduced to an odd m as
// float_parts does: scales in one binade share e, so a row's span below counts binades.
FloatParts scale_parts(float x) {
  const auto u = lanes_cast<std::uint32_t>(x);
  const auto mag = static_cast<std::int32_t>(binary32::significand_of_bits(u));
  if (mag == 0) return {0, 0};
  return {(u & binary32::kSignMask) ? -mag : mag, binary32::exponent_of_bits(u) - binary32::kMantissaBits};
}

// The scale of each row for each chunk as m * 2^(base + shift): shift >= 0 from the row's smallest
// scale exponent, span its largest shift (zero scales: m = 0, shift 0).
struct ChunkScales {
  std::size_t chunks = 0;
  std::vector<std::int64_t> m;
  std::vector<int> shift, base, span;
};
ChunkScales chunk_scales(const GemmOperand& x, const std::vector<Chunk>& chunks) {
  ChunkScales s;
  s.chunks = chunks.size();
  s.m.resize(x.rows * s.chunks);
  s.shift.resize(x.rows * s.chunks);
  s.base.assign(x.rows, 0);
  s.span.assign(x.rows, 0);
  std::vector<FloatParts> parts(s.chunks);
  for (std::size_t r = 0; r < x.rows; ++r) {
    int lo = 1 << 20, hi = -(1 << 20);
    for (std::size_t c = 0; c < s.chunks; ++c) {
      parts[c] = scale_parts(x.scale(r, chunks[c].k0));
      if (parts[c].m != 0) lo = std::min(lo, parts[c].e), hi = std::max(hi, parts[c].e);
    }
    if (hi < lo) lo = hi = 0;
    s.base[r] = lo;
    s.span[r] = hi - lo;
    for (std::size_t c = 0; c < s.chunks; ++c) {
      s.m[r * s.chunks + c] = parts[c].m;
      s.shift[r * s.chunks + c] = parts[c].m ? parts[c].e - lo : 0;
    }
  }
  return s;
}

int bits(unsigned __int128 m) {
  const auto hi = static_cast<std::uint64_t>(m >> 64), lo = static_cast<std::uint64_t>(m);
  return hi ? 128 - std::countl_zero(hi) : 64 - std::countl_zero(lo);
}
unsigned __int128 magnitude(__int128 v) { return v < 0 ? -static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v); }

// One output's exact sum: an __int128 v times 2^e while the terms' exponents are close enough
// that every shifted term and the running sum stay below 2^123 (no overflow in a sum of two);
// beyond that, the Kulisch accumulator.
struct ExactSum {
  __int128 v = 0;
  int e = 0;
  bool spilled = false;

  void add(__int128 t, int te, KulischAccumulator& k) {
    if (t == 0) return;
    if (spilled) return k.add(t, te);
    if (v == 0) {
      v = t;
      e = te;
      return;
    }
    const int lo = std::min(e, te), sv = e - lo, st = te - lo;
    if (bits(magnitude(v)) + sv <= 123 && bits(magnitude(t)) + st <= 123) {
      v = (v << sv) + (t << st);
      e = lo;
      return;
    }
    spilled = true;
    k.clear();
    k.add(v, e);
    k.add(t, te);
  }
  double round(const KulischAccumulator& k, int prec, int emin, int emax) const {
    if (spilled) return k.round(prec, emin, emax);
    return round_fast(v < 0, magnitude(v), e, prec, emin, emax);
  }
  // round_exact(negative, mag, lsb, false, ...) inlined, on 64 bits and without data-dependent
  // branches in the common case: a magnitude wider than 64 bits keeps its top 64 and ORs the rest
  // into the lowest bit (a sticky bit 11 or more places below the rounding position, since
  // precision <= 53: the same nearest-even decision); the quantum is round_to_grid's (precision
  // bits, no finer than 2^(emin - precision + 1)); the result is sig * 2^q built from the
  // exponent's bits when 2^q and the product are normal binary64 numbers (sig <= 2^53: exact),
  // else round_exact itself.
  static double round_fast(bool negative, unsigned __int128 mag, int lsb, int prec, int emin, int emax) {
    if (mag == 0) return 0.0;
    if (prec > 53) return round_exact(negative, mag, lsb, false, prec, emin, emax);
    const auto hi = static_cast<std::uint64_t>(mag >> 64), lo = static_cast<std::uint64_t>(mag);
    std::uint64_t m = lo;
    int e = lsb;
    if (hi != 0) {
      const int s = 64 - std::countl_zero(hi);  // bits of lo below the top 64: 1 .. 64
      m = s == 64 ? hi : (hi << (64 - s)) | (lo >> s);
      m |= (s == 64 ? lo : lo << (64 - s)) != 0 ? 1u : 0u;
      e += s;
    }
    const int top = e + 63 - std::countl_zero(m);  // exponent of the leading bit
    const int q = std::max(top - (prec - 1), emin - prec + 1);
    const int shift = q - e;
    if (shift <= 0 || shift >= 64 || q < -1022 || q > 1023 - 54 || emax < -1000)
      return round_exact(negative, mag, lsb, false, prec, emin, emax);
    const std::uint64_t kept = m >> shift, rem = m & ((std::uint64_t{1} << shift) - 1),
                        half = std::uint64_t{1} << (shift - 1);
    const std::uint64_t sig = kept + ((rem > half) | ((rem == half) & (kept & 1)));
    double result = static_cast<double>(sig) * lanes_cast<double>(static_cast<std::uint64_t>(q + 1023) << 52);
    // round_exact's overflow test, with 2^(emax + 1) exact.
    if (emax < 1023 && result >= lanes_cast<double>(static_cast<std::uint64_t>(emax + 1 + 1023) << 52))
      result = std::numeric_limits<double>::infinity();
    return negative ? -result : result;
  }
};

using Block = V[kTileRows][kTileGroups];
constexpr std::size_t kTileOut = kTileRows * kTileGroups * kLanes;  // outputs of one row block x column slice
// Row blocks that share one L1-resident slice of B: as many as keep their A panel (blocks x
// kTileRows x K doubles) within kPanelBytes of the 1 MiB L2 (AVX-512: 16 at K = 1024, 8 at 2048),
// at least kMinBlocks (B's traffic per FMA grows as they shrink), at most kMaxBlocks.
#if defined(__AVX512F__)
constexpr std::size_t kMaxBlocks = 16, kPanelBytes = 768 << 10;
constexpr std::size_t kKc = 64;  // k per pass: B's slice (4 x 8 x 64 doubles) is 16 KiB
#else
constexpr std::size_t kMaxBlocks = 8, kPanelBytes = 768 << 10;
constexpr std::size_t kKc = 128;  // k per pass: B's slice (2 x 8 x 128 doubles) is at most 16 KiB
#endif
constexpr std::size_t kMinBlocks = 4;
std::size_t blocks_per_task(std::size_t K) {
  return std::clamp<std::size_t>(kPanelBytes / (kTileRows * std::max<std::size_t>(K, 1) * sizeof(double)), kMinBlocks,
                                 kMaxBlocks);
}

// acc += the integer dot products over k in [k0, k1) for every output of the tile: exact (see
// exact_kernel.hpp).
// With `first`, from zero rather than acc. The loops over the tile are unrolled completely (GCC
// keeps 6 x 4 on the stack otherwise).
void chunk_sums(const double* xb, const double* const* yg, std::size_t k0, std::size_t k1, bool first, Block& acc) {
  V s[kTileRows][kTileGroups];  // in registers: element-wise copies, no address taken
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kTileRows; ++r)
#pragma GCC unroll 8
    for (std::size_t g = 0; g < kTileGroups; ++g) s[r][g] = first ? V{} : acc[r][g];
  for (std::size_t k = k0; k < k1; ++k) {
    V y[kTileGroups];
#pragma GCC unroll 8
    for (std::size_t g = 0; g < kTileGroups; ++g) y[g] = load(yg[g] + k * kLanes);
#pragma GCC unroll 8
    for (std::size_t r = 0; r < kTileRows; ++r) {
      const V x = Lanes<double>::splat(xb[k * kTileRows + r]);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < kTileGroups; ++g) s[r][g] = mul_add(x, y[g], s[r][g]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kTileRows; ++r)
#pragma GCC unroll 8
    for (std::size_t g = 0; g < kTileGroups; ++g) acc[r][g] = s[r][g];
}

// The exact sums of one row block x column slice across chunks. Per output: while the scale
// exponents of its row and column span few enough binades that every term S * ma * mb (< 2^101)
// shifted onto their smallest exponent, and the sum of all chunks' terms, stay below 2^126, one
// __int128 at that exponent (no checks per term); otherwise ExactSum's checked path.
//
// The vector fold: when the tile's scale exponents span at most 11 binades (span_a + span_b),
// each term goes in all lanes at once as four exact binary64 partial products, S = Sh 2^26 + Sl
// (|Sh| < 2^27, |Sl| < 2^26) and ma mb = mh 2^24 + ml (both < 2^24): Sl ml, Sl mh 2^24,
// Sh ml 2^26, Sh mh 2^50, each below 2^51, converted to int64, shifted by the term's exponent
// offset (< 2^(51 + span)) and summed per weight in int64: below 2^63 over 2^(12 - span) chunks,
// after which flush() joins the four sums into the output's __int128 and starts them again.
using VI = std::int64_t __attribute__((vector_size(sizeof(V))));
struct LaneScales {  // B's scales per (group of kLanes columns, chunk, lane): significand and shift
  std::vector<double> m;
  std::vector<std::int64_t> shift;
};
LaneScales lane_scales(const ChunkScales& sb, std::size_t groups, std::size_t N) {
  const std::size_t C = sb.chunks;
  LaneScales t{std::vector<double>(groups * C * kLanes, 0.0), std::vector<std::int64_t>(groups * C * kLanes, 0)};
  for (std::size_t j = 0; j < N; ++j)
    for (std::size_t q = 0; q < C; ++q) {
      const std::size_t at = ((j / kLanes) * C + q) * kLanes + j % kLanes;
      t.m[at] = static_cast<double>(sb.m[j * C + q]);
      t.shift[at] = sb.shift[j * C + q];
    }
  return t;
}
inline V split_high(const V& x, double down) {  // trunc(x * down) for |x * down| < 2^52: exact
  return __builtin_convertvector(__builtin_convertvector(x * down, VI), V);
}

struct TileSums {
  const ChunkScales *sa, *sb;
  const LaneScales* lanes;
  std::size_t i0, j0, rows, cols;  // the tile's first row and column, and how many are real
  int lsb;
  __int128 fast[kTileRows][kTileGroups * kLanes];
  ExactSum sums[kTileRows][kTileGroups * kLanes];
  bool is_fast[kTileRows][kTileGroups * kLanes];
  bool vec;
  std::size_t flush_every, since_flush;  // the vector fold's chunks between flushes
  bool flushed;                          // whether the vector fold has flushed into `fast`
  VI limbs[4][kTileRows][kTileGroups];

  void start(const ChunkScales* a_scales, const ChunkScales* b_scales, const LaneScales* b_lanes, std::size_t row0,
             std::size_t col0, std::size_t real_rows, std::size_t real_cols, int grid_lsb) {
    sa = a_scales;
    sb = b_scales;
    lanes = b_lanes;
    i0 = row0;
    j0 = col0;
    rows = real_rows;
    cols = real_cols;
    lsb = grid_lsb;
    const int chunk_bits = std::bit_width(sa->chunks);
    int span_a = 0, span_b = 0;
    for (std::size_t r = 0; r < rows; ++r) span_a = std::max(span_a, sa->span[i0 + r]);
    for (std::size_t l = 0; l < cols; ++l) span_b = std::max(span_b, sb->span[j0 + l]);
    vec = span_a + span_b <= 11 && span_a + span_b + 101 + chunk_bits <= 125;
    flush_every = std::size_t{1} << (12 - std::min(span_a + span_b, 11));
    since_flush = 0;
    flushed = false;
    std::memset(limbs, 0, sizeof limbs);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t l = 0; l < cols; ++l) {
        fast[r][l] = 0;
        if (!vec) sums[r][l] = ExactSum{};  // the vector fold does not use them (finish starts its own)
        is_fast[r][l] = vec || sa->span[i0 + r] + sb->span[j0 + l] + 101 + chunk_bits <= 125;
      }
  }
  int base(std::size_t r, std::size_t l) const { return lsb + sa->base[i0 + r] + sb->base[j0 + l]; }
  void fold_vector(std::size_t q, const Block& s) {
    const std::size_t C = sa->chunks;
    for (std::size_t r = 0; r < kTileRows; ++r) {
      const std::size_t ia = (std::min(i0 + r, i0 + rows - 1)) * C + q;  // rows past M: any real row's scale
      const double ma = static_cast<double>(sa->m[ia]);
      const std::int64_t sha = sa->shift[ia];
      for (std::size_t g = 0; g < kTileGroups; ++g) {
        const std::size_t at = ((j0 / kLanes + g) * C + q) * kLanes;
        V mb;
        VI shb;
        std::memcpy(&mb, lanes->m.data() + at, sizeof mb);
        std::memcpy(&shb, lanes->shift.data() + at, sizeof shb);
        const V S = s[r][g], Sh = split_high(S, 0x1p-26), Sl = S - Sh * 0x1p26;
        const V m = ma * mb, mh = split_high(m, 0x1p-24), ml = m - mh * 0x1p24;
        const VI sh = sha + shb;
        limbs[0][r][g] += __builtin_convertvector(Sl * ml, VI) << sh;
        limbs[1][r][g] += __builtin_convertvector(Sl * mh, VI) << sh;
        limbs[2][r][g] += __builtin_convertvector(Sh * ml, VI) << sh;
        limbs[3][r][g] += __builtin_convertvector(Sh * mh, VI) << sh;
      }
    }
    if (++since_flush == flush_every) {
      flush();
      flushed = true;
    }
  }
  void flush() {
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t l = 0; l < cols; ++l) {
        const std::size_t g = l / kLanes, u = l % kLanes;
        fast[r][l] += static_cast<__int128>(limbs[0][r][g][u]) + (static_cast<__int128>(limbs[1][r][g][u]) << 24) +
                      (static_cast<__int128>(limbs[2][r][g][u]) << 26) + (static_cast<__int128>(limbs[3][r][g][u]) << 50);
      }
    std::memset(limbs, 0, sizeof limbs);
    since_flush = 0;
  }
  // Adds chunk q's sums s.
  void fold(std::size_t q, const Block& s, KulischAccumulator* spill) {
    if (vec) return fold_vector(q, s);
    const std::size_t C = sa->chunks;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t ia = (i0 + r) * C + q;
      for (std::size_t l = 0; l < cols; ++l) {
        const std::size_t jb = (j0 + l) * C + q;
        // |S| < 2^53 and |ma * mb| < 2^48: the product is exact in 101 bits.
        const auto S = static_cast<std::int64_t>(s[r][l / kLanes][l % kLanes]);
        const __int128 term = static_cast<__int128>(S) * (sa->m[ia] * sb->m[jb]);
        const int shift = sa->shift[ia] + sb->shift[jb];
        if (is_fast[r][l]) fast[r][l] += term << shift;
        else sums[r][l].add(term, base(r, l) + shift, spill[r * kTileGroups * kLanes + l]);
      }
    }
  }
#if defined(__AVX512F__) && defined(__AVX512CD__)
// GCC 12's unmasked AVX-512 shift intrinsics pass _mm512_undefined_epi32() as the masked-off source,
// which -Wmaybe-uninitialized reports once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
  // finish() without C for a vector-folded tile that has not flushed, kLanes outputs at a time:
  // each output's X = L0 + L1 2^24 + L2 2^26 + L3 2^50 (its limbs) as a 128-bit two's complement
  // integer in int64 lanes, then ExactSum::round_fast step by step (the top 64 bits of |X| with a
  // sticky bit, the quantum, nearest even, the product by 2^q, the overflow test). False, with
  // nothing written, when a lane needs round_fast's fallback (round_exact); the scalar path then runs.
  bool finish_vector(std::size_t N, int prec, int emin, int emax, double* d) const {
    if (prec > 53 || emax < -1000) return false;
    using I = __m512i;
    const I zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1), c64 = _mm512_set1_epi64(64);
    __m512d out[kTileRows][kTileGroups];
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g * kLanes < cols; ++g) {
        std::int64_t eb[kLanes];
        for (std::size_t u = 0; u < kLanes; ++u) {
          const std::size_t l = std::min(g * kLanes + u, cols - 1);
          eb[u] = static_cast<std::int64_t>(lsb) + sa->base[i0 + r] + sb->base[j0 + l];
        }
        I e = _mm512_loadu_si512(eb);
        const auto limb = [&](int i) { return reinterpret_cast<const I&>(limbs[i][r][g]); };
        I lo = limb(0), hi = _mm512_srai_epi64(lo, 63);
        const auto add_shifted = [&](I v, unsigned s) {  // (hi, lo) += v * 2^s, 0 < s < 64
          const I vl = _mm512_slli_epi64(v, s), sum = _mm512_add_epi64(lo, vl);
          hi = _mm512_add_epi64(hi, _mm512_srai_epi64(v, 64 - s));
          hi = _mm512_mask_add_epi64(hi, _mm512_cmplt_epu64_mask(sum, vl), hi, one);
          lo = sum;
        };
        add_shifted(limb(1), 24);
        add_shifted(limb(2), 26);
        add_shifted(limb(3), 50);
        const __mmask8 neg = _mm512_cmplt_epi64_mask(hi, zero);  // |X| < 2^116: magnitude by negation
        const I nhi = _mm512_mask_add_epi64(_mm512_xor_si512(hi, _mm512_set1_epi64(-1)),
                                            _mm512_cmpeq_epi64_mask(lo, zero), _mm512_xor_si512(hi, _mm512_set1_epi64(-1)), one);
        lo = _mm512_mask_sub_epi64(lo, neg, zero, lo);
        hi = _mm512_mask_mov_epi64(hi, neg, nhi);
        // The top 64 bits m of the magnitude, s = its bits below them (0 .. 64; shifts by 64 give 0).
        const I s = _mm512_sub_epi64(c64, _mm512_lzcnt_epi64(hi));
        I m = _mm512_or_si512(_mm512_sllv_epi64(hi, _mm512_sub_epi64(c64, s)), _mm512_srlv_epi64(lo, s));
        const __mmask8 sticky = _mm512_test_epi64_mask(_mm512_sllv_epi64(lo, _mm512_sub_epi64(c64, s)),
                                                       _mm512_sllv_epi64(lo, _mm512_sub_epi64(c64, s)));
        m = _mm512_mask_or_epi64(m, sticky, m, one);
        e = _mm512_add_epi64(e, s);
        const __mmask8 nonzero = _mm512_test_epi64_mask(m, m);
        const I top = _mm512_sub_epi64(_mm512_add_epi64(e, _mm512_set1_epi64(63)), _mm512_lzcnt_epi64(m));
        const I q = _mm512_max_epi64(_mm512_sub_epi64(top, _mm512_set1_epi64(prec - 1)), _mm512_set1_epi64(emin - prec + 1));
        const I shift = _mm512_sub_epi64(q, e);
        const __mmask8 slow = _mm512_cmple_epi64_mask(shift, zero) | _mm512_cmpge_epi64_mask(shift, c64) |
                              _mm512_cmplt_epi64_mask(q, _mm512_set1_epi64(-1022)) |
                              _mm512_cmpgt_epi64_mask(q, _mm512_set1_epi64(1023 - 54));
        if ((slow & nonzero) != 0) return false;
        const I kept = _mm512_srlv_epi64(m, shift);
        const I rem = _mm512_and_si512(m, _mm512_sub_epi64(_mm512_sllv_epi64(one, shift), one));
        const I half = _mm512_sllv_epi64(one, _mm512_sub_epi64(shift, one));
        const __mmask8 up = _mm512_cmpgt_epu64_mask(rem, half) |
                            (_mm512_cmpeq_epi64_mask(rem, half) & _mm512_test_epi64_mask(kept, one));
        const I sig = _mm512_mask_add_epi64(kept, up, kept, one);  // <= 2^53: exact as a double
        const I pow2q = _mm512_slli_epi64(_mm512_add_epi64(q, _mm512_set1_epi64(1023)), 52);
        __m512d x = _mm512_mul_pd(_mm512_cvtepi64_pd(sig), _mm512_castsi512_pd(pow2q));
        if (emax < 1023) {
          const __m512d limit = _mm512_set1_pd(lanes_cast<double>(static_cast<std::uint64_t>(emax + 1 + 1023) << 52));
          x = _mm512_mask_mov_pd(x, _mm512_cmp_pd_mask(x, limit, _CMP_GE_OQ),
                                 _mm512_set1_pd(std::numeric_limits<double>::infinity()));
        }
        x = _mm512_maskz_mov_pd(nonzero, x);  // X = 0: +0
        // X < 0: the sign bit set (also on a result rounded to zero: -0, as round_fast gives)
        const I bits = _mm512_castpd_si512(x);
        out[r][g] = _mm512_castsi512_pd(_mm512_mask_xor_epi64(bits, neg, bits, _mm512_set1_epi64(INT64_MIN)));
      }
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t g = 0; g * kLanes < cols; ++g) {
        const std::size_t n = std::min(kLanes, cols - g * kLanes);
        _mm512_mask_storeu_pd(d + (i0 + r) * N + j0 + g * kLanes, static_cast<__mmask8>((1u << n) - 1), out[r][g]);
      }
    return true;
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
  // Adds C and writes the rounded outputs to d (row-major, N columns).
  void finish(const float* c, std::size_t N, int prec, int emin, int emax, KulischAccumulator* spill, double* d) {
#if defined(__AVX512F__) && defined(__AVX512CD__)
    if (vec && !flushed && !c && finish_vector(N, prec, emin, emax, d)) return;
#endif
    if (vec) flush();
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t l = 0; l < cols; ++l) {
        const std::size_t e = (i0 + r) * N + j0 + l;
        KulischAccumulator& k = spill[r * kTileGroups * kLanes + l];
        ExactSum fresh;
        ExactSum& sum = vec ? fresh : sums[r][l];
        if (is_fast[r][l]) sum.add(fast[r][l], base(r, l), k);
        if (c) {
          const FloatParts pc = float_parts(c[e]);
          sum.add(pc.m, pc.e, k);
        }
        d[e] = sum.round(k, prec, emin, emax);
      }
  }
};

}  // namespace

std::optional<std::vector<double>> exact_integer_gemm(const GemmOperand& a, const GemmOperand& b, const float* c,
                                                      OutputFormat out) {
  const std::optional<IntGrid> ga = int_grid(a), gb = int_grid(b);
  if (!ga || !gb || ga->width + gb->width > 53) return std::nullopt;
  for (std::size_t e = 0; c && e < a.rows * b.rows; ++e)
    if (!std::isfinite(c[e])) return std::nullopt;
  const Packed p = pack(a, b, *ga, *gb);
  if (!p.ok) return std::nullopt;
  const std::size_t M = a.rows, N = b.rows;
  const std::vector<Chunk> chunks = chunks_of(a, b, std::size_t{1} << (53 - ga->width - gb->width));
  const ChunkScales sa = chunk_scales(a, chunks), sb = chunk_scales(b, chunks);
  const LaneScales lanes = lane_scales(sb, p.groups, N);
  const std::size_t blocks_max = blocks_per_task(a.cols);
  const std::size_t IT = (p.row_blocks + blocks_max - 1) / blocks_max, GB = p.groups / kTileGroups;
  const int prec = output_precision(out), emin = output_min_exponent(out), emax = output_max_exponent(out);
  std::vector<double> d(M * N);
  // A task: up to blocks_max row blocks against one column slice, k in passes of kKc so that
  // the slice of B stays in L1 while every row block uses it. Consecutive tasks take the slices of
  // one group of row blocks, which stays in L2 while B streams; they run in runs of up to 1/64 of
  // all, so that the buffers below (spill: up to 3072 accumulators with AVX-512) are set up once per run.
  parallel_for(IT * GB, std::max<std::size_t>(1, IT * GB / 64), [&](std::size_t t0, std::size_t t1) {
    std::vector<KulischAccumulator> spill(blocks_max * kTileOut);
    std::vector<TileSums> tiles(blocks_max);
    std::vector<Block> acc(blocks_max);
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t ib0 = (t / GB) * blocks_max, g0 = (t % GB) * kTileGroups;
      const std::size_t blocks = std::min(blocks_max, p.row_blocks - ib0);
      const double* yg[kTileGroups];
      for (std::size_t g = 0; g < kTileGroups; ++g) yg[g] = p.group(g0 + g);
      for (std::size_t u = 0; u < blocks; ++u) {
        const std::size_t i0 = (ib0 + u) * kTileRows, j0 = g0 * kLanes;
        tiles[u].start(&sa, &sb, &lanes, i0, j0, std::min(kTileRows, M - i0), std::min(kTileGroups * kLanes, N - j0),
                       ga->lsb + gb->lsb);
      }
      for (std::size_t q = 0; q < chunks.size(); ++q) {
        for (std::size_t kc = chunks[q].k0; kc < chunks[q].k1; kc += kKc)
          for (std::size_t u = 0; u < blocks; ++u)
            chunk_sums(p.block(ib0 + u), yg, kc, std::min(chunks[q].k1, kc + kKc), kc == chunks[q].k0, acc[u]);
        for (std::size_t u = 0; u < blocks; ++u) tiles[u].fold(q, acc[u], spill.data() + u * kTileOut);
      }
      for (std::size_t u = 0; u < blocks; ++u) tiles[u].finish(c, N, prec, emin, emax, spill.data() + u * kTileOut, d.data());
    }
  });
  return d;
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(std::optional<std::vector<double>>, exact_integer_gemm,
                      (const GemmOperand& a, const GemmOperand& b, const float* c, OutputFormat out), (a, b, c, out))

#include "gemm/exact.hpp"

#include <algorithm>
#include <bit>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "gemm/block_scaled.hpp"
#include "gemm/exact_kernel.hpp"
#include "gemm/kulisch.hpp"

namespace fp8lab {
namespace {

// One operand's rows as integers, interval by interval: element (r, k) = ints[r*K + k] * 2^lo[r, q]
// where q = k / len. width[r, q] bounds the magnitudes: |ints| < 2^width; kWide marks an interval
// whose exponent span does not fit 62 bits (its products go to the accumulator one by one).
struct IntRows {
  static constexpr int kWide = 1000;
  std::size_t intervals = 0;
  std::vector<std::int64_t> ints;
  std::vector<int> lo, width;
};

IntRows to_int_rows(const GemmOperand& x, std::size_t len) {
  IntRows t;
  const std::size_t K = x.cols;
  t.intervals = K == 0 ? 0 : (K + len - 1) / len;
  t.ints.assign(x.rows * K, 0);
  t.lo.assign(x.rows * t.intervals, 0);
  t.width.assign(x.rows * t.intervals, 0);
  parallel_for(x.rows, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t q = 0; q < t.intervals; ++q) {
        const std::size_t k0 = q * len, k1 = std::min(K, k0 + len);
        int lo = 1 << 20, hi = -(1 << 20);
        for (std::size_t k = k0; k < k1; ++k) {
          const FloatParts p = float_parts(x.row(r)[k]);
          if (p.m == 0) continue;
          lo = std::min(lo, p.e);
          hi = std::max(hi, p.e + 32 - std::countl_zero(static_cast<std::uint32_t>(p.m < 0 ? -p.m : p.m)));
        }
        const std::size_t slot = r * t.intervals + q;
        if (hi < lo) continue;  // all zero: width 0
        if (hi - lo > 62) {
          t.width[slot] = IntRows::kWide;
          continue;
        }
        t.lo[slot] = lo;
        t.width[slot] = hi - lo;
        for (std::size_t k = k0; k < k1; ++k) {
          const FloatParts p = float_parts(x.row(r)[k]);
          if (p.m != 0) t.ints[r * K + k] = static_cast<std::int64_t>(p.m) << (p.e - lo);
        }
      }
  });
  return t;
}

int ceil_log2(std::size_t n) { return n <= 1 ? 0 : 64 - std::countl_zero(static_cast<std::uint64_t>(n - 1)); }

// Adds value * (ma * 2^ea) * (mb * 2^eb) * 2^e exactly, value up to 127 bits.
void add_scaled(KulischAccumulator& acc, __int128 value, int e, FloatParts sa, FloatParts sb) {
  if (value == 0 || sa.m == 0 || sb.m == 0) return;
  bool neg = value < 0;
  unsigned __int128 mag = neg ? -static_cast<unsigned __int128>(value) : static_cast<unsigned __int128>(value);
  const std::int64_t sm = static_cast<std::int64_t>(sa.m) * sb.m;  // <= 48 bits
  if (sm < 0) neg = !neg;
  const auto s = static_cast<unsigned __int128>(sm < 0 ? -sm : sm);
  const int exp = e + sa.e + sb.e;
  acc.add((mag & 0xFFFFFFFFFFFFFFFFull) * s, neg, exp);
  acc.add((mag >> 64) * s, neg, exp + 64);
}

}  // namespace

std::vector<double> gemm_exact(const GemmOperand& a, const GemmOperand& b, const float* c, OutputFormat out,
                               bool allow_fast_kernel) {
  if (a.cols != b.cols)
    throw std::invalid_argument("b: has K = " + std::to_string(b.cols) + " columns but a has K = " +
                                std::to_string(a.cols) + " (b is given N x K)");
  refuse_two_level(a, b, "the exact reference (its sum takes one scale per operand element)");
  if (allow_fast_kernel)
    if (std::optional<std::vector<double>> d = exact_integer_gemm(a, b, c, out)) return std::move(*d);
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  // Intervals of K over which both operands' scales are constant: the gcd of the tile widths
  // (capped so that int64 sums keep their headroom).
  std::size_t len = std::gcd(std::min(a.tile_cols, K ? K : 1), std::min(b.tile_cols, K ? K : 1));
  if (len > (1u << 16)) len = std::gcd(len, std::size_t{1} << 16);  // keeps intervals inside tiles
  len = std::max<std::size_t>(len, 1);
  const IntRows ia = to_int_rows(a, len), ib = to_int_rows(b, len);
  const std::size_t Q = ia.intervals;
  const int lg = ceil_log2(len);
  std::vector<double> d(M * N);
  const int prec = output_precision(out), emin = output_min_exponent(out), emax = output_max_exponent(out);
  constexpr std::size_t TM = 8, TN = 8;
  const std::size_t tiles_n = (N + TN - 1) / TN, tiles = ((M + TM - 1) / TM) * tiles_n;
  parallel_for(tiles, 1, [&](std::size_t t0, std::size_t t1) {
    KulischAccumulator acc;
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t i0 = (t / tiles_n) * TM, j0 = (t % tiles_n) * TN;
      for (std::size_t i = i0; i < std::min(M, i0 + TM); ++i)
        for (std::size_t j = j0; j < std::min(N, j0 + TN); ++j) {
          acc.clear();
          for (std::size_t q = 0; q < Q; ++q) {
            const std::size_t k0 = q * len, k1 = std::min(K, k0 + len);
            const std::size_t sa_slot = i * Q + q, sb_slot = j * Q + q;
            const int wa = ia.width[sa_slot], wb = ib.width[sb_slot];
            if (wa == 0 || wb == 0) continue;  // an all-zero interval
            const FloatParts sa = float_parts(a.scale(i, k0)), sb = float_parts(b.scale(j, k0));
            const std::int64_t* x = ia.ints.data() + i * K;
            const std::int64_t* y = ib.ints.data() + j * K;
            if (wa + wb + lg <= 62) {
              std::int64_t s = 0;
              for (std::size_t k = k0; k < k1; ++k) s += x[k] * y[k];  // exact: no overflow by the widths
              add_scaled(acc, s, ia.lo[sa_slot] + ib.lo[sb_slot], sa, sb);
            } else if (wa + wb + lg <= 125) {
              __int128 s = 0;
              for (std::size_t k = k0; k < k1; ++k) s += static_cast<__int128>(x[k]) * y[k];
              add_scaled(acc, s, ia.lo[sa_slot] + ib.lo[sb_slot], sa, sb);
            } else {
              for (std::size_t k = k0; k < k1; ++k) {
                const FloatParts pa = float_parts(a.row(i)[k]), pb = float_parts(b.row(j)[k]);
                add_scaled(acc, static_cast<__int128>(pa.m) * pb.m, pa.e + pb.e, sa, sb);
              }
            }
          }
          if (c) acc.add(c[i * N + j]);
          d[i * N + j] = acc.round(prec, emin, emax);
        }
    }
  });
  return d;
}

}  // namespace fp8lab

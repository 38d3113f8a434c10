#include "gemm/hopper_fp8_kernel.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/parallel.hpp"
#include "gemm/combine.hpp"

#if defined(__AVX512BW__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own avx512fintrin.h (_mm512_undefined_epi32 in the shift intrinsics).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
// With AVX-512BW the two per-k loops run on pairs of k in 16-bit lanes (see PairedB below):
// exponents, |products| and shifts all fit in int16, and vpmaddwd applies both signs and adds a
// pair into the int32 sum in one instruction. Same integers, same sums: the bits cannot change
// (test_gemm checks this kernel against fused_dot_add in either build).
#define FP8LAB_PAIRED_K 1
#endif

// The 64-byte vector helpers below are internal (anonymous namespace, inlined), so the compilers'
// note that passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fp8lab {
namespace {

// Model parameters (REFERENCE.md "Tensor cores", Hopper FP8 wgmma):
constexpr int kInstructionK = 32;   // products per wgmma
constexpr int kFracBits = 13;       // aligned terms keep 13 fractional bits below the largest exponent
constexpr int kOutBits = 14;        // the sum is truncated to 14 significant bits
constexpr int kE4m3MinExp = -6;     // operand exponents clamp here (E4M3 subnormals)
constexpr int kMantShift = 3;       // E4M3 significand = 1.mmm: value = m * 2^(e - 3), |m| <= 15
// Exponent given to zero operands / a zero accumulator: low enough never to be the largest
// (the smallest non-zero product exponent is 2 * -6 = -12; an FP32 C is >= -126).
constexpr int kZeroExp = -200;
constexpr int kZeroC = -400;

struct E4m3Parts {
  int e;  // exponent, clamped at -6; kZeroExp for zero
  int m;  // signed significand, value = m * 2^(e - 3)
};

E4m3Parts e4m3_parts(float v) {
  if (v == 0) return {kZeroExp, 0};
  int x;
  std::frexp(v, &x);  // |v| = f * 2^x, f in [0.5, 1)
  const int e = std::max(x - 1, kE4m3MinExp);
  return {e, static_cast<int>(std::ldexp(v, kMantShift - e))};
}

struct Fp32Parts {
  int e;         // exponent, clamped at -126; kZeroC for zero
  std::int32_t m;  // 24-bit significand magnitude: |c| = m * 2^(e - 23)
  bool negative;
};

inline Fp32Parts fp32_parts(float c) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(c);
  const int field = static_cast<int>((bits >> 23) & 0xFF);
  const auto m = static_cast<std::int32_t>((bits & 0x7FFFFF) | (field ? 0x800000u : 0u));
  return {m == 0 ? kZeroC : (field ? field - 127 : -126), m, (bits >> 31) != 0};
}

// |S| * 2^(emax - 13) truncated to 14 significant bits, with S's sign.
inline float normalise(std::int32_t s, int emax) {
  if (s == 0) return 0.0f;
  std::uint32_t as = static_cast<std::uint32_t>(s < 0 ? -s : s);
  const int nb = 32 - std::countl_zero(as);
  if (nb > kOutBits) as = (as >> (nb - kOutBits)) << (nb - kOutBits);
  const float v = static_cast<float>(std::ldexp(static_cast<double>(as), emax - kFracBits));
  return s < 0 ? -v : v;
}

// 16 int32 lanes as a GCC/Clang vector extension: element-wise operators, kept in registers
// (a zmm with AVX-512, two ymm with AVX2, scalar code elsewhere). Same arithmetic as the scalar
// loops; only the register allocation differs.
using Lanes = std::int32_t __attribute__((vector_size(64)));
using ULanes = std::uint32_t __attribute__((vector_size(64)));
inline Lanes load(const std::int32_t* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(std::int32_t* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }
// Lane-wise max and min written as vector conditionals, which GCC and Clang lower to vpmaxsd /
// vpminsd: a bitwise blend here made the per-k max a 4-instruction loop-carried chain.
inline Lanes lanes_max(const Lanes& x, const Lanes& y) { return x > y ? x : y; }
inline Lanes lanes_min(const Lanes& x, const Lanes& y) { return x < y ? x : y; }

}  // namespace

float hopper_e4m3_dot_add(const float* a, const float* b, std::size_t n, float c) {
  int pe[kInstructionK], pm[kInstructionK];
  const Fp32Parts cp = fp32_parts(c);
  int emax = cp.e;
  for (std::size_t k = 0; k < n; ++k) {
    const E4m3Parts x = e4m3_parts(a[k]), y = e4m3_parts(b[k]);
    pe[k] = x.e + y.e;  // product exponent: not renormalised, significand product in (0, 4)
    pm[k] = x.m * y.m;  // value = pm * 2^(pe - 6)
    if (pm[k] != 0) emax = std::max(emax, pe[k]);
  }
  // Every term aligned to 2^(emax - 13), truncating its magnitude (not a sign-filling shift).
  std::int64_t sum = 0;
  if (cp.m) {
    const int sh = emax - cp.e + (23 - kFracBits);  // C's lowest bit is 2^(e - 23)
    const std::int64_t t = sh >= 32 ? 0 : (cp.m >> sh);
    sum += cp.negative ? -t : t;
  }
  for (std::size_t k = 0; k < n; ++k) {
    if (pm[k] == 0) continue;
    const int d = emax - pe[k];  // product's lowest bit is 2^(pe - 6) = 2^(emax - 13) * 2^(7 - d)
    const std::int64_t apm = std::abs(pm[k]);
    const std::int64_t t = d >= 40 ? 0 : ((apm << 7) >> d);
    sum += pm[k] < 0 ? -t : t;
  }
  return normalise(static_cast<std::int32_t>(sum), emax);
}

std::vector<float> hopper_e4m3_gemm_accumulate(const GemmOperand& a, const GemmOperand& b, std::size_t promote_every,
                                               Combine combine) {
  constexpr std::size_t L = 16;  // output columns per vector group
  const std::size_t M = a.rows, N = b.rows, K = a.cols;
  const std::size_t NC = promote_every == 0 ? std::max<std::size_t>(K, 1) : promote_every;
  const std::size_t JT = (N + L - 1) / L;
  // A as (exponent, |significand|, sign mask) per element; B the same, transposed per group of 16
  // rows so that the 16 lanes of one k are contiguous, with |significand| pre-shifted by 7 (the
  // alignment's headroom, see hopper_e4m3_dot_add). Padding rows of B are zero (never stored).
  std::vector<std::int32_t> ea(M * K), ma(M * K), sa_mask(M * K);
  std::vector<std::int32_t> eb(JT * K * L, kZeroExp), mb(JT * K * L, 0), sb_mask(JT * K * L, 0);
  parallel_for(M, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t i = r0; i < r1; ++i)
      for (std::size_t k = 0; k < K; ++k) {
        const E4m3Parts p = e4m3_parts(a.row(i)[k]);
        ea[i * K + k] = p.e;
        ma[i * K + k] = std::abs(p.m);
        sa_mask[i * K + k] = p.m < 0 ? -1 : 0;
      }
  });
  parallel_for(N, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t j = r0; j < r1; ++j)
      for (std::size_t k = 0; k < K; ++k) {
        const E4m3Parts p = e4m3_parts(b.row(j)[k]);
        const std::size_t at = ((j / L) * K + k) * L + j % L;
        eb[at] = p.e;
        mb[at] = std::abs(p.m) << 7;
        sb_mask[at] = p.m < 0 ? -1 : 0;
      }
  });
#ifdef FP8LAB_PAIRED_K
  // k pairs (k even in the low half of an int32, k odd in the high half); a missing k (odd K)
  // is a zero product. A: one int32 word per (row, pair), broadcast to all lanes. B: per column
  // group, per pair, 16 lanes x 2 int16. Signs as +-1 so that vpmaddwd multiplies them in.
  const std::size_t K2 = (K + 1) / 2;
  auto pack = [](std::int32_t lo, std::int32_t hi) {
    return static_cast<std::int32_t>((static_cast<std::uint32_t>(lo) & 0xFFFFu) | (static_cast<std::uint32_t>(hi) << 16));
  };
  std::vector<std::int32_t> ea2(M * K2), ma2(M * K2), sa2(M * K2);
  parallel_for(M, 64, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t i = r0; i < r1; ++i)
      for (std::size_t q = 0; q < K2; ++q) {
        const std::size_t k0 = i * K + 2 * q, has1 = 2 * q + 1 < K;
        ea2[i * K2 + q] = pack(ea[k0], has1 ? ea[k0 + 1] : kZeroExp);
        ma2[i * K2 + q] = pack(ma[k0], has1 ? ma[k0 + 1] : 0);
        sa2[i * K2 + q] = pack(sa_mask[k0] ? -1 : 1, has1 && sa_mask[k0 + 1] ? -1 : 1);
      }
  });
  std::vector<std::int16_t> eb2(JT * K2 * 2 * L, static_cast<std::int16_t>(kZeroExp)), mb2(JT * K2 * 2 * L, 0),
      sb2(JT * K2 * 2 * L, 1);
  parallel_for(JT, 1, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t jt = j0; jt < j1; ++jt)
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t l = 0; l < L; ++l) {
          const std::size_t from = (jt * K + k) * L + l, to = ((jt * K2 + k / 2) * L + l) * 2 + (k & 1);
          eb2[to] = static_cast<std::int16_t>(eb[from]);
          mb2[to] = static_cast<std::int16_t>(mb[from]);
          sb2[to] = static_cast<std::int16_t>(sb_mask[from] ? -1 : 1);
        }
  });
#endif
  std::vector<float> out(M * N);
  constexpr std::size_t TM = 8;  // rows of A per task (B's group stays in cache across them)
  const std::size_t IT = (M + TM - 1) / TM;
  parallel_for(IT * JT, 1, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const std::size_t jt = t % JT, i0 = (t / JT) * TM;
#ifdef FP8LAB_PAIRED_K
      // Plain local pointers: read through the lambda's captures, they were reloaded every k.
      const std::int16_t* const eb2t = eb2.data() + jt * K2 * 2 * L;
      const std::int16_t* const mb2t = mb2.data() + jt * K2 * 2 * L;
      const std::int16_t* const sb2t = sb2.data() + jt * K2 * 2 * L;
#endif
      [[maybe_unused]] const std::int32_t* ebt = eb.data() + jt * K * L;  // the int32 path's B
      [[maybe_unused]] const std::int32_t* mbt = mb.data() + jt * K * L;
      [[maybe_unused]] const std::int32_t* sbt = sb_mask.data() + jt * K * L;
      // B's scales of this column group, per promotion block: looked up once per task, not once
      // per row (the lookup divides by the tile size).
      const std::size_t KB = (K + NC - 1) / NC;
      std::vector<float> sb_blocks(KB * L);
      for (std::size_t kb = 0; kb < KB; ++kb)
        for (std::size_t l = 0; l < L; ++l) {
          const std::size_t j = jt * L + l;
          sb_blocks[kb * L + l] = j < N ? b.scale(j, kb * NC) : 0.0f;
        }
      for (std::size_t i = i0; i < std::min(M, i0 + TM); ++i) {
#ifdef FP8LAB_PAIRED_K
        const std::int32_t* const ea2i = ea2.data() + i * K2;
        const std::int32_t* const ma2i = ma2.data() + i * K2;
        const std::int32_t* const sa2i = sa2.data() + i * K2;
#endif
        [[maybe_unused]] const std::int32_t* eai = ea.data() + i * K;
        [[maybe_unused]] const std::int32_t* mai = ma.data() + i * K;
        [[maybe_unused]] const std::int32_t* sai = sa_mask.data() + i * K;
        float acc[L] = {};
        for (std::size_t kb = 0; kb < K; kb += NC) {
          const std::size_t ke = std::min(K, kb + NC);
          float p[L] = {};
          for (std::size_t kc = kb; kc < ke; kc += kInstructionK) {
            const std::size_t kn = std::min<std::size_t>(kInstructionK, ke - kc);
            alignas(64) std::int32_t emax[L], s[L], ce[L], cm[L], cneg[L];
            for (std::size_t l = 0; l < L; ++l) {  // the previous D enters as C
              const std::uint32_t bits = std::bit_cast<std::uint32_t>(p[l]);
              const std::int32_t field = static_cast<std::int32_t>((bits >> 23) & 0xFF);
              cm[l] = static_cast<std::int32_t>((bits & 0x7FFFFF) | (field ? 0x800000u : 0u));
              ce[l] = cm[l] == 0 ? kZeroC : (field ? field - 127 : -126);
              cneg[l] = static_cast<std::int32_t>(bits >> 31);
              emax[l] = ce[l];
            }
#ifdef FP8LAB_PAIRED_K
            {
              const std::size_t q0 = kc / 2, q1 = (kc + kn + 1) / 2;
              __m512i vmax = _mm512_set1_epi16(-32768);
              for (std::size_t q = q0; q < q1; ++q) {
                const __m512i pe = _mm512_add_epi16(_mm512_set1_epi32(ea2i[q]), _mm512_loadu_si512(eb2t + q * 2 * L));
                vmax = _mm512_max_epi16(vmax, pe);
              }
              // The larger of each int32 lane's two halves, sign-extended; then C's exponent.
              const __m512i hi = _mm512_srai_epi32(vmax, 16), lo = _mm512_srai_epi32(_mm512_slli_epi32(vmax, 16), 16);
              const __m512i e = _mm512_max_epi32(_mm512_max_epi32(hi, lo), _mm512_loadu_si512(emax));
              _mm512_storeu_si512(emax, e);
            }
            for (std::size_t l = 0; l < L; ++l) {
              const std::int32_t sh = std::min(emax[l] - ce[l] + (23 - kFracBits), 31);
              const std::int32_t tc = cm[l] >> sh;
              const std::int32_t mask = -cneg[l];
              s[l] = (tc ^ mask) - mask;
            }
            {
              const std::size_t q0 = kc / 2, q1 = (kc + kn + 1) / 2;
              const __m512i e = _mm512_loadu_si512(emax);
              const __m512i e2 = _mm512_or_si512(_mm512_and_si512(e, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(e, 16));
              const __m512i fifteen = _mm512_set1_epi16(15);
              __m512i acc_s = _mm512_loadu_si512(s);
              for (std::size_t q = q0; q < q1; ++q) {
                const std::size_t at = q * 2 * L;
                const __m512i pe = _mm512_add_epi16(_mm512_set1_epi32(ea2i[q]), _mm512_loadu_si512(eb2t + at));
                // |products| < 2^15, so a shift of 15 or more gives 0, as the int32 path's 31 does.
                const __m512i d = _mm512_min_epi16(_mm512_sub_epi16(e2, pe), fifteen);
                const __m512i mag = _mm512_mullo_epi16(_mm512_set1_epi32(ma2i[q]), _mm512_loadu_si512(mb2t + at));
                const __m512i t = _mm512_srlv_epi16(mag, d);
                const __m512i sg = _mm512_mullo_epi16(_mm512_set1_epi32(sa2i[q]), _mm512_loadu_si512(sb2t + at));
                acc_s = _mm512_add_epi32(acc_s, _mm512_madd_epi16(t, sg));
              }
              _mm512_storeu_si512(s, acc_s);
            }
#else
            {
              // The largest exponent per lane, in a register (an array here would carry the loop
              // dependency through memory).
              Lanes vmax = load(emax);
              for (std::size_t k = kc; k < kc + kn; ++k) {
                const Lanes pe = eai[k] + load(ebt + k * L);
                vmax = lanes_max(pe, vmax);
              }
              store(emax, vmax);
            }
            for (std::size_t l = 0; l < L; ++l) {
              const std::int32_t sh = std::min(emax[l] - ce[l] + (23 - kFracBits), 31);
              const std::int32_t tc = cm[l] >> sh;
              const std::int32_t mask = -cneg[l];  // branch-free sign, so that the loop vectorises
              s[l] = (tc ^ mask) - mask;
            }
            {
              const Lanes vmax = load(emax);
              Lanes acc_s = load(s);
              for (std::size_t k = kc; k < kc + kn; ++k) {
                // |product| << 7, shifted right by the distance to the largest exponent: the
                // magnitude truncated onto 2^(emax - 13) (hopper_e4m3_dot_add's formula); then
                // the product's sign (mask 0 or -1) applied as (t ^ m) - m.
                const Lanes d = vmax - (eai[k] + load(ebt + k * L));
                const Lanes dc = lanes_min(d, Lanes{} + 31);
                const ULanes mag = std::bit_cast<ULanes>(mai[k] * load(mbt + k * L));
                const Lanes t = std::bit_cast<Lanes>(mag >> std::bit_cast<ULanes>(dc));
                const Lanes sg = sai[k] ^ load(sbt + k * L);
                acc_s += (t ^ sg) - sg;
              }
              store(s, acc_s);
            }
#endif
            for (std::size_t l = 0; l < L; ++l) {
              const std::int32_t sv = s[l];
              std::uint32_t as = static_cast<std::uint32_t>(sv < 0 ? -sv : sv);
              const std::int32_t nb = 32 - __builtin_clz(as | 1u);  // branch-free; as = 0 gives 1
              const std::int32_t cut = std::max(nb - kOutBits, 0);
              as = (as >> cut) << cut;
              // S != 0 implies emax >= -25 (every non-zero p is a multiple of 2^-25 and every
              // non-zero product has exponent >= -12), so 2^(emax-13) is a normal float; the
              // clamp only affects S == 0.
              const std::int32_t e2 = std::max(emax[l] - kFracBits, -126);
              const float pow2 = std::bit_cast<float>(static_cast<std::uint32_t>(e2 + 127) << 23);
              const float v = static_cast<float>(static_cast<std::int32_t>(as)) * pow2;
              p[l] = sv < 0 ? -v : v;
            }
          }
          const float* sb = sb_blocks.data() + (kb / NC) * L;
          const float sa = a.scale(i, kb);
          // One loop per order so that each vectorises (combine_partial's switch would not).
          switch (combine) {
            case Combine::DeepGemm:
              for (std::size_t l = 0; l < L; ++l) acc[l] = combine_partial(Combine::DeepGemm, p[l], sa, sb[l], acc[l]);
              break;
            case Combine::Triton:
              for (std::size_t l = 0; l < L; ++l) acc[l] = combine_partial(Combine::Triton, p[l], sa, sb[l], acc[l]);
              break;
            case Combine::Cublas:
              for (std::size_t l = 0; l < L; ++l) acc[l] = combine_partial(Combine::Cublas, p[l], sa, sb[l], acc[l]);
              break;
          }
        }
        for (std::size_t l = 0; l < L && jt * L + l < N; ++l) out[i * N + jt * L + l] = acc[l];
      }
    }
  });
  return out;
}

}  // namespace fp8lab

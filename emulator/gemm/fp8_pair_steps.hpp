// Steps of the Hopper FP8 instruction model on AVX-512 lanes that a kernel built on pairs of k in
// 16-bit lanes takes (REFERENCE.md "Tensor cores": aligned terms summed exactly, the sum truncated
// to P significant bits). Included only by dispatched sources (common/isa.hpp) compiled with
// AVX-512 BW/CD: everything here is internal to the including variant. gemm/bound_kernel.cpp
// uses it; gemm/hopper_fp8_kernel.cpp spells the same steps out inline.
#pragma once

#include <immintrin.h>

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// s + t_lo * sign_lo + t_hi * sign_hi per int32 lane, the signs +-1 from the operands' sign masks
// (0 or -1) as (sa ^ sb) | 1 (one vpternlog); `one` holds 1 in every int16.
inline __m512i add_signed_pairs(__m512i s, __m512i t, __m512i sa, __m512i sb, __m512i one) {
  const __m512i sign = _mm512_ternarylogic_epi32(sa, sb, one, 0xBE);
#ifdef __AVX512VNNI__
  return _mm512_dpwssd_epi32(s, t, sign);  // vpmaddwd and the add in one (not saturating)
#else
  return _mm512_add_epi32(s, _mm512_madd_epi16(t, sign));
#endif
}

// |s| truncated to `bits` significant bits: kept = |s| >> cut (sign applied), the exponent grows
// by cut; lz = lzcnt(|s| | 1), so that floor(log2 |s|) = 31 - lz for s != 0.
struct Truncated {
  __m512i kept, cut, lz;
};
inline Truncated truncate_to_bits(__m512i s, int bits) {
  const __m512i as = _mm512_abs_epi32(s);
  const __m512i lz = _mm512_lzcnt_epi32(_mm512_or_si512(as, _mm512_set1_epi32(1)));
  const __m512i cut = _mm512_max_epi32(_mm512_sub_epi32(_mm512_set1_epi32(32 - bits), lz), _mm512_setzero_si512());
  const __m512i kept = _mm512_srlv_epi32(as, cut);
  const __mmask16 neg = _mm512_cmplt_epi32_mask(s, _mm512_setzero_si512());
  return {_mm512_mask_sub_epi32(kept, neg, _mm512_setzero_si512(), kept), cut, lz};
}

}  // namespace
}  // namespace fp8lab::FP8LAB_ISA_NS

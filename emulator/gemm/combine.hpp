// The promotion step: a tensor-core partial sum p leaves the tensor core and meets the two
// dequantisation scales and the FP32 accumulator in a named order (gemm_spec.hpp, Combine).
// std::fma is explicit; the build uses -ffp-contract=off so no other operation is fused.
// static: each object has its own copy, so that an unoptimised build, where the call is not inlined,
// cannot link a dispatched AVX-512 object's copy (common/isa.hpp) into baseline code.
#pragma once

#include <cmath>

#include "gemm/gemm_spec.hpp"

namespace fp8lab {

static inline float combine_partial(Combine order, float p, float sa, float sb, float acc) {
  switch (order) {
    case Combine::DeepGemm: {
      const float s = sa * sb;  // rounded first (DeepGEMM scale_a * scale_b, then FFMA)
      return std::fma(s, p, acc);
    }
    case Combine::Triton: {
      const float ps = p * sa;  // `acc += dot * sa * sb`: Python evaluates left to right
      const float pss = ps * sb;
      return pss + acc;
    }
    case Combine::Cublas:
    default: {
      const float ps = p * sa;
      return std::fma(ps, sb, acc);
    }
  }
}

}  // namespace fp8lab

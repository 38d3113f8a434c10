// The lane twin of sigmoid_f32 (common/pinned_math.hpp), built once per instruction set: the same
// double evaluation (common/pinned_exp.hpp's sigmoid_double: the same operations in the same
// order, std::fma an exact fused multiply-add in every build) and the same Ziv test, without
// branches, so that the loop vectorises. A lane it cannot settle is flagged for the scalar
// function: the special inputs (NaN, 0, outside [-104, 40]) and the uncertain roundings.
// tests/cpp/test_common_pinned_math_lanes.cpp checks every variant against sigmoid_f32 bit for bit.
#include <bit>

#include "common/isa.hpp"
#include "common/pinned_exp.hpp"
#include "common/pinned_math.hpp"

namespace fp8lab::FP8LAB_ISA_NS {

void sigmoid_f32_lanes(const float* __restrict x, std::size_t n, float* __restrict out, std::uint8_t* __restrict unsure) {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    // & rather than &&, and a select by masks: no control flow in the loop (GCC turns a ?: with a
    // constant arm into a branch that skips the range reduction)
    const bool inside = (v >= -104.0f) & (v <= 40.0f) & (v != 0.0f);  // false for NaN
    const std::uint32_t keep = 0u - static_cast<std::uint32_t>(inside);
    const float w = lanes_cast<float>((lanes_cast<std::uint32_t>(v) & keep) | (0x3F800000u & ~keep));  // else 1
    const double y = sigmoid_double(w);
    const float lo = static_cast<float>(y - y * MARGIN);
    const float hi = static_cast<float>(y + y * MARGIN);
    out[i] = static_cast<float>(y);
    unsure[i] = static_cast<std::uint8_t>(!inside | (lo != hi));
  }
}

}  // namespace fp8lab::FP8LAB_ISA_NS

FP8LAB_DISPATCH_ENTRY(void, sigmoid_f32_lanes, (const float* x, std::size_t n, float* out, std::uint8_t* unsure),
                      (x, n, out, unsure))

// Rotary position embedding with YaRN, as DeepSeek-V3 inference/model.py precompute_freqs_cis and
// apply_rotary_emb compute it, in either pair layout.
#pragma once

#include <cstddef>
#include <vector>

#include "mla/mla_spec.hpp"

namespace fp8lab::mla {

// The rope/2 inverse frequencies in FP32 after YaRN's ramp (reference: float32 torch arithmetic;
// here each step is done in double and rounded to FP32 where the reference holds an FP32 tensor).
// These tables use libm pow/log/cos/sin: RoPE is not a bit-pinned path (the forward is checked
// against certified bounds from its rounded inputs, not bit for bit).
std::vector<float> rope_inverse_frequencies(const MlaSpec& spec);

// cos and sin of position * freq_i for one position (FP32 angle = fl(pos * freq_i) as torch.outer).
void rope_cos_sin(const MlaSpec& spec, const std::vector<float>& freqs, long position, float* cos_out, float* sin_out);

// Rotates one rope-wide vector in place. Interleaved: (x[2i], x[2i+1]) is the complex number
// rotated by angle i; HalfSplit: (x[i], x[i + rope/2]). Each output is
//   re = fl(fl(a*c) - fl(b*s)), im = fl(fl(a*s) + fl(b*c))
// (torch complex multiply, no FMA), so the two layouts give the same bits on permuted data.
void apply_rope(const MlaSpec& spec, const float* cos_v, const float* sin_v, float* x);

// The permutation taking an interleaved rope vector to the half-split layout: half[j] = inter[perm[j]].
std::vector<int> interleaved_to_half_split(int rope);

}  // namespace fp8lab::mla

#include "mla/rope.hpp"

#include <algorithm>
#include <cmath>

namespace fp8lab::mla {

namespace {

// inference/model.py find_correction_dim: the dimension whose wavelength makes num_rotations
// turns over the original context.
double correction_dim(double num_rotations, int dim, double base, int max_seq_len) {
  return dim * std::log(max_seq_len / (num_rotations * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

std::vector<float> rope_inverse_frequencies(const MlaSpec& spec) {
  const int dim = spec.rope;
  const Yarn& y = spec.yarn;
  std::vector<float> freqs(static_cast<std::size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    // 1 / base ** (arange(0, dim, 2, float32) / dim): exponent and power each an FP32 tensor.
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float p = static_cast<float>(std::pow(y.rope_theta, static_cast<double>(e)));
    freqs[i] = 1.0f / p;
  }
  if (!y.active()) return freqs;
  // find_correction_range: floor/ceil of the correction dims, clamped to [0, dim - 1].
  double low = std::floor(correction_dim(y.beta_fast, dim, y.rope_theta, y.original_seq_len));
  double high = std::ceil(correction_dim(y.beta_slow, dim, y.rope_theta, y.original_seq_len));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // linear_ramp_factor's guard
  const float flow = static_cast<float>(low), fspan = static_cast<float>(high - low);
  const float factor = static_cast<float>(y.factor);
  for (int i = 0; i < dim / 2; ++i) {
    float ramp = (static_cast<float>(i) - flow) / fspan;
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    const float smooth = 1.0f - ramp;
    // freqs / factor * (1 - smooth) + freqs * smooth, left to right in FP32.
    const float a = freqs[i] / factor * (1.0f - smooth);
    const float b = freqs[i] * smooth;
    freqs[i] = a + b;
  }
  return freqs;
}

void rope_cos_sin(const MlaSpec& spec, const std::vector<float>& freqs, long position, float* c, float* s) {
  (void)spec;
  for (std::size_t i = 0; i < freqs.size(); ++i) {
    const float angle = static_cast<float>(position) * freqs[i];
    c[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    s[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

void apply_rope(const MlaSpec& spec, const float* c, const float* s, float* x) {
  const int half = spec.rope / 2;
  for (int i = 0; i < half; ++i) {
    const int ia = spec.rope_layout == RopeLayout::Interleaved ? 2 * i : i;
    const int ib = spec.rope_layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
    const float a = x[ia], b = x[ib];
    const float ac = a * c[i], bs = b * s[i], as = a * s[i], bc = b * c[i];
    x[ia] = ac - bs;
    x[ib] = as + bc;
  }
}

std::vector<int> interleaved_to_half_split(int rope) {
  std::vector<int> perm(static_cast<std::size_t>(rope));
  for (int i = 0; i < rope / 2; ++i) {
    perm[i] = 2 * i;
    perm[i + rope / 2] = 2 * i + 1;
  }
  return perm;
}

}  // namespace fp8lab::mla

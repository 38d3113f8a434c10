#include "mla/weights.hpp"

#include <cmath>
#include <stdexcept>

#include "common/pinned_math.hpp"
#include "gemm/recipe.hpp"
#include "mla/numerics.hpp"

namespace fp8lab::mla {

namespace {

std::uint64_t splitmix64(std::uint64_t z) {
  // SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014).
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::vector<float> uniform_bf16(std::size_t n, double half_width, std::uint64_t seed, std::uint64_t stream,
                                double centre = 0.0) {
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double u = counter_uniform(seed, stream, i);
    out[i] = round_to_bf16(static_cast<float>(centre + half_width * (2.0 * u - 1.0)));
  }
  return out;
}

void check_size(const std::vector<float>& t, std::size_t expected, const char* name) {
  if (t.size() != expected)
    throw std::invalid_argument(std::string("weights.") + name + ": expected " + std::to_string(expected) +
                                " elements for this spec, got " + std::to_string(t.size()));
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t[i]))
      throw std::invalid_argument(std::string("weights.") + name + ": element " + std::to_string(i) + " is not finite");
}

}  // namespace

double counter_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  const std::uint64_t r = splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ index);
  return static_cast<double>(r >> 11) * 0x1p-53;
}

void validate_weights(const MlaWeights& w, const MlaSpec& s) {
  s.validate();
  const std::size_t H = s.heads, hid = s.hidden, qk = s.qk_head();
  if (s.q_lora > 0) {
    check_size(w.wq_a, static_cast<std::size_t>(s.q_lora) * hid, "wq_a");
    check_size(w.q_norm, s.q_lora, "q_norm");
    check_size(w.wq_b, H * qk * s.q_lora, "wq_b");
  } else {
    check_size(w.wq, H * qk * hid, "wq");
  }
  check_size(w.wkv_a, static_cast<std::size_t>(s.cache_dim()) * hid, "wkv_a");
  check_size(w.kv_norm, s.kv_lora, "kv_norm");
  check_size(w.wkv_b, H * (s.nope + s.v) * s.kv_lora, "wkv_b");
  check_size(w.wo, hid * H * s.v, "wo");
  const QTensor& q = w.wkv_b_fp8;
  if (q.rows != 0 || !q.bits.empty() || !q.scales.empty()) {
    const std::size_t rows = H * (s.nope + s.v), cols = s.kv_lora;
    if (q.rows != rows || q.cols != cols)
      throw std::invalid_argument("weights.wkv_b_fp8: expected shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                  "] for this spec, got [" + std::to_string(q.rows) + ", " + std::to_string(q.cols) + "]");
    const OperandRecipe& want = gemm_recipe(kFp8LinearRecipe).b;  // DeepSeek-V3's FP8 checkpoint layout
    if (q.fmt != want.format || !(q.tile == want.tile))
      throw std::invalid_argument("weights.wkv_b_fp8: expected " + want.format + " elements with " +
                                  std::to_string(want.tile.rows) + "x" + std::to_string(want.tile.cols) +
                                  " block scales (recipe " + std::string(kFp8LinearRecipe) + "), got format '" + q.fmt +
                                  "' tile " + std::to_string(q.tile.rows) + "x" + std::to_string(q.tile.cols));
    const std::size_t grid = q.tile_grid_rows() * q.tile_grid_cols();
    if (q.bits.size() != rows * cols || q.scales.size() != grid)
      throw std::invalid_argument("weights.wkv_b_fp8: expected " + std::to_string(rows * cols) + " element bits and " +
                                  std::to_string(grid) + " block scales, got " + std::to_string(q.bits.size()) + " and " +
                                  std::to_string(q.scales.size()));
    for (std::size_t i = 0; i < q.scales.size(); ++i)
      if (!std::isfinite(q.scales[i]) || !(q.scales[i] > 0))
        throw std::invalid_argument("weights.wkv_b_fp8: block scale " + std::to_string(i) + " must be finite and positive, got " +
                                    std::to_string(q.scales[i]));
  }
}

MlaWeights init_weights(const MlaSpec& s, std::uint64_t seed) {
  s.validate();
  auto a = [](int fan_in) { return std::sqrt(3.0 / fan_in); };
  const std::size_t H = s.heads, hid = s.hidden, qk = s.qk_head();
  MlaWeights w;
  if (s.q_lora > 0) {
    w.wq_a = uniform_bf16(static_cast<std::size_t>(s.q_lora) * hid, a(s.hidden), seed, 1);
    w.q_norm = uniform_bf16(s.q_lora, 0.25, seed, 2, 1.0);
    w.wq_b = uniform_bf16(H * qk * s.q_lora, a(s.q_lora), seed, 3);
  } else {
    w.wq = uniform_bf16(H * qk * hid, a(s.hidden), seed, 4);
  }
  w.wkv_a = uniform_bf16(static_cast<std::size_t>(s.cache_dim()) * hid, a(s.hidden), seed, 5);
  w.kv_norm = uniform_bf16(s.kv_lora, 0.25, seed, 6, 1.0);
  w.wkv_b = uniform_bf16(H * (s.nope + s.v) * s.kv_lora, a(s.kv_lora), seed, 7);
  w.wo = uniform_bf16(hid * H * s.v, a(s.heads * s.v), seed, 8);
  return w;
}

std::vector<float> random_input(const MlaSpec& s, std::size_t tokens, std::uint64_t seed) {
  return uniform_bf16(tokens * s.hidden, std::sqrt(3.0), seed, 100);
}

}  // namespace fp8lab::mla

#include "mla/weights.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

#include "common/parallel.hpp"
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

// counter_uniform = keyed_uniform(stream_key(seed, stream), index).
std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) { return splitmix64(splitmix64(seed) ^ stream); }
double keyed_uniform(std::uint64_t key, std::uint64_t index) {
  return static_cast<double>(splitmix64(key ^ index) >> 11) * 0x1p-53;
}

// out[i] = bf16(centre + half_width * (2 u_i - 1)) for i < n, u_i = counter_uniform(seed, stream, i).
void uniform_bf16(float* out, std::size_t n, double half_width, std::uint64_t seed, std::uint64_t stream,
                  double centre = 0.0) {
  const std::uint64_t key = stream_key(seed, stream);  // counter_uniform's first two rounds, once
  parallel_for(n, std::size_t{1} << 16, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) {
      const double u = keyed_uniform(key, i);
      out[i] = round_to_bf16(static_cast<float>(centre + half_width * (2.0 * u - 1.0)));
    }
  });
}

// Whether v[b, e) holds a NaN or Inf: all exponent bits set, tested without a branch per element
// (so the scan vectorises; DeepSeek-V3's weights are 187 M floats, checked by every entry point).
bool any_non_finite(const float* v, std::size_t b, std::size_t e) {
  std::uint32_t bad = 0;
  for (std::size_t i = b; i < e; ++i) bad |= static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(v[i]) & 0x7F800000u) == 0x7F800000u);
  return bad != 0;
}

void check_size(std::span<const float> t, std::size_t expected, const char* name) {
  if (t.size() != expected)
    throw std::invalid_argument(std::string("weights.") + name + ": expected " + std::to_string(expected) +
                                " elements for this spec, got " + std::to_string(t.size()));
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  const std::size_t chunks = (t.size() + kChunk - 1) / kChunk;
  std::vector<unsigned char> bad(chunks, 0);
  parallel_for(chunks, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t c = b; c < e; ++c) bad[c] = any_non_finite(t.data(), c * kChunk, std::min(t.size(), (c + 1) * kChunk));
  });
  for (std::size_t c = 0; c < chunks; ++c)
    if (bad[c])
      for (std::size_t i = c * kChunk; i < t.size(); ++i)  // the first one, named
        if (!std::isfinite(t[i]))
          throw std::invalid_argument(std::string("weights.") + name + ": element " + std::to_string(i) + " is not finite");
}

}  // namespace

double counter_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return keyed_uniform(stream_key(seed, stream), index);
}

void validate_weights(const MlaWeightsView& w, const MlaSpec& s) {
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
  if (w.wkv_b_fp8 == nullptr) return;
  const QTensor& q = *w.wkv_b_fp8;
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

std::vector<WeightInit> weight_init_plan(const MlaSpec& s) {
  s.validate();
  auto a = [](int fan_in) { return std::sqrt(3.0 / fan_in); };
  const std::size_t H = s.heads, hid = s.hidden, qk = s.qk_head(), ql = static_cast<std::size_t>(s.q_lora);
  std::vector<WeightInit> plan;
  if (s.q_lora > 0) {
    plan.push_back({&MlaWeights::wq_a, "wq_a", ql, hid, a(s.hidden), 0.0, 1});
    plan.push_back({&MlaWeights::q_norm, "q_norm", ql, 0, 0.25, 1.0, 2});
    plan.push_back({&MlaWeights::wq_b, "wq_b", H * qk, ql, a(s.q_lora), 0.0, 3});
  } else {
    plan.push_back({&MlaWeights::wq, "wq", H * qk, hid, a(s.hidden), 0.0, 4});
  }
  plan.push_back({&MlaWeights::wkv_a, "wkv_a", static_cast<std::size_t>(s.cache_dim()), hid, a(s.hidden), 0.0, 5});
  plan.push_back({&MlaWeights::kv_norm, "kv_norm", static_cast<std::size_t>(s.kv_lora), 0, 0.25, 1.0, 6});
  plan.push_back({&MlaWeights::wkv_b, "wkv_b", H * (s.nope + s.v), static_cast<std::size_t>(s.kv_lora), a(s.kv_lora), 0.0, 7});
  plan.push_back({&MlaWeights::wo, "wo", hid, H * s.v, a(s.heads * s.v), 0.0, 8});
  return plan;
}

void fill_weight(const WeightInit& row, std::uint64_t seed, float* out) {
  uniform_bf16(out, row.size(), row.half_width, seed, row.stream, row.centre);
}

MlaWeights init_weights(const MlaSpec& s, std::uint64_t seed) {
  MlaWeights w;
  for (const WeightInit& row : weight_init_plan(s)) {
    std::vector<float>& t = w.*row.tensor;
    t.resize(row.size());
    fill_weight(row, seed, t.data());
  }
  return w;
}

std::vector<float> random_input(const MlaSpec& s, std::size_t tokens, std::uint64_t seed) {
  std::vector<float> x(tokens * s.hidden);
  uniform_bf16(x.data(), x.size(), std::sqrt(3.0), seed, 100);
  return x;
}

}  // namespace fp8lab::mla

// The weights of one MLA layer (row-major, torch Linear's [out, in] layout) and their
// deterministic generation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mla/mla_spec.hpp"
#include "quant/qtensor.hpp"

namespace fp8lab::mla {

struct MlaWeights {
  std::vector<float> wq_a;     // [q_lora, hidden]            (q_lora > 0)
  std::vector<float> q_norm;   // [q_lora]                    (q_lora > 0)
  std::vector<float> wq_b;     // [heads*(nope+rope), q_lora] (q_lora > 0)
  std::vector<float> wq;       // [heads*(nope+rope), hidden] (q_lora == 0)
  std::vector<float> wkv_a;    // [kv_lora+rope, hidden]
  std::vector<float> kv_norm;  // [kv_lora]
  std::vector<float> wkv_b;    // [heads*(nope+v), kv_lora]: per head, nope rows of W_UK then v rows of W_UV
  std::vector<float> wo;       // [hidden, heads*v]
  // Optional: wkv_b as an FP8 checkpoint stores it (E4M3 elements, one FP32 multiplier per 128x128
  // block: HF `kv_b_proj.weight_scale_inv`, inference/convert.py's `scale`). Used only when
  // spec.wkv_b is Fp8; empty (rows == 0) means "quantise wkv_b above with the deepseek rule"
  // (forward.hpp wkv_b_fp8). When given, validate_weights checks its shape, format and tiling.
  QTensor wkv_b_fp8;
};

// What the MLA functions read: the same tensors as spans over memory someone else owns (an
// MlaWeights, or the caller's numpy arrays in the Python binding, which views them for the call
// instead of copying DeepSeek-V3's ~750 MB per call). The memory must stay alive and unchanged
// while a call runs. A write between calls is seen by the next: the only thing kept between calls,
// the FP8 projections' quantised weights (weight_cache.hpp), is keyed by the values themselves.
struct MlaWeightsView {
  std::span<const float> wq_a, q_norm, wq_b, wq, wkv_a, kv_norm, wkv_b, wo;
  const QTensor* wkv_b_fp8 = nullptr;  // null or empty (rows == 0): as MlaWeights::wkv_b_fp8 empty
  MlaWeightsView() = default;
  MlaWeightsView(const MlaWeights& w)  // NOLINT(google-explicit-constructor): every MlaWeights is one
      : wq_a(w.wq_a), q_norm(w.q_norm), wq_b(w.wq_b), wq(w.wq), wkv_a(w.wkv_a), kv_norm(w.kv_norm), wkv_b(w.wkv_b),
        wo(w.wo), wkv_b_fp8(&w.wkv_b_fp8) {}
  bool has_wkv_b_fp8() const { return wkv_b_fp8 != nullptr && wkv_b_fp8->rows != 0; }
};

// Checks every tensor's size against the spec (std::invalid_argument naming the tensor, its size
// and the expected size) and that every value is finite.
void validate_weights(const MlaWeightsView& w, const MlaSpec& spec);

// Counter-based uniform in [0, 1): SplitMix64 finaliser over (seed, stream, index), top 53 bits.
// Depends only on its arguments, so any element can be generated alone, in any order.
double counter_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index);

// Deterministic weights with realistic scales: every projection uniform on [-a, a] with
// a = sqrt(3 / fan_in) (standard deviation fan_in^-1/2, the scale of trained DeepSeek-V3
// projections to within a small factor), RMSNorm gains 1 + U(-1/4, 1/4); all rounded to BF16 (the
// checkpoint's dtype), so the BF16 projections see exactly these values.
MlaWeights init_weights(const MlaSpec& spec, std::uint64_t seed);

// init_weights' tensors one by one, so a caller can fill memory it owns (the Python binding fills
// its numpy arrays in place: no zero-filled vector, no copy). Each row: the tensor, its shape
// (cols == 0: a vector of `rows`), and the uniform it draws (centre +- half_width, stream).
struct WeightInit {
  std::vector<float> MlaWeights::*tensor;
  const char* name;
  std::size_t rows, cols;
  double half_width, centre;
  std::uint64_t stream;
  std::size_t size() const { return cols == 0 ? rows : rows * cols; }
};
std::vector<WeightInit> weight_init_plan(const MlaSpec& spec);
// Writes row's size() values for `seed` to out (in parallel; the values depend on the index only).
void fill_weight(const WeightInit& row, std::uint64_t seed, float* out);

// Activations for tests and benchmarks: [tokens, hidden] uniform on [-sqrt(3), sqrt(3)] (unit RMS,
// as the RMSNorm'd input of the attention block), rounded to BF16.
std::vector<float> random_input(const MlaSpec& spec, std::size_t tokens, std::uint64_t seed);

}  // namespace fp8lab::mla

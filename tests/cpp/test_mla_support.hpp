// Shared by the MLA tests: a small spec (DeepSeek-V3's structure, dims cut down so exact
// references stay cheap) and BF16-valued uniform inputs from the weights' counter generator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/bf16.hpp"
#include "mla/mla_spec.hpp"
#include "mla/weights.hpp"

namespace fp8lab::mla::testing {

inline MlaSpec small_spec() {
  MlaSpec s;
  s.hidden = 64;
  s.heads = 4;
  s.q_lora = 32;
  s.kv_lora = 128;
  s.nope = 16;
  s.rope = 8;
  s.v = 16;
  return s;
}

// n values uniform in [-width, width], rounded to BF16 (the cache dtype); `stream` separates the
// test files' draws from the same seed.
inline std::vector<float> uniform_values(std::size_t n, std::uint64_t seed, double width, std::uint64_t stream) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = round_to_bf16(static_cast<float>(width * (2 * counter_uniform(seed, stream, i) - 1)));
  return v;
}

}  // namespace fp8lab::mla::testing

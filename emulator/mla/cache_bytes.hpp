// Byte-level helpers of the KV-cache layouts (paged_cache.cpp, sparse_kv_layout.cpp): little-endian
// loads and stores (FlashMLA's caches are little-endian torch tensors viewed as bytes), BF16 bit
// patterns, and the values of the 256 E4M3 bytes.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

#include "common/bf16.hpp"
#include "formats/encode.hpp"

namespace fp8lab::mla {

inline std::uint16_t load_u16le(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
inline void store_u16le(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xFF);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
inline float load_f32le(const std::uint8_t* p) {
  std::uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  return std::bit_cast<float>(u);
}
inline void store_f32le(std::uint8_t* p, float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(u >> (8 * i));
}
inline float from_bf16_bits(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }
// x rounded to BF16 (nearest even), as its bit pattern.
inline std::uint16_t bf16_bits(float x) {
  return static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(round_to_bf16(x)) >> 16);
}

// decode() of every E4M3 byte, as floats (exact).
inline const std::array<float, 256>& e4m3_values() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> v{};
    const Format& f = format_by_name("e4m3");
    for (std::uint32_t b = 0; b < 256; ++b) v[b] = static_cast<float>(decode(b, f));
    return v;
  }();
  return t;
}

}  // namespace fp8lab::mla

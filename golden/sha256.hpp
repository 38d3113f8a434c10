// SHA-256 (FIPS 180-4, §6.2), written here so traces can be digested without a crypto library.
// Every tensor in a golden trace carries its SHA-256 in __metadata__; a hand edit of the bytes
// that forgets to update the digest is caught when the trace is read.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fp8lab::golden {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  std::array<std::uint8_t, 32> finish();  // the object must not be updated afterwards

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes hashed so far
};

std::array<std::uint8_t, 32> sha256(const void* data, std::size_t size);
// Lower-case hex of the digest (64 characters), the form stored in trace metadata.
std::string sha256_hex(const void* data, std::size_t size);
inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

}  // namespace fp8lab::golden

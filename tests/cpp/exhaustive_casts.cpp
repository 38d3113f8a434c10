// Every float32 bit pattern through every CUDA host conversion in cuda_oracle.hpp, compared with
// fp8lab's bulk encode. Prints one line per conversion and exits non-zero on any mismatch.
// Usage: exhaustive_casts [stride]   (stride > 1 samples every stride-th pattern)
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "common/parallel.hpp"
#include "cuda_oracle.hpp"

using namespace fp8lab;

int main(int argc, char** argv) {
  const std::uint64_t stride = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  if (stride == 0) {
    std::fprintf(stderr, "exhaustive_casts: stride must be >= 1\n");
    return 2;
  }
  const std::uint64_t total = (1ull << 32) / stride;
  std::size_t failed_casts = 0;
  for (const auto& c : testing::cuda_casts()) {
    const Format& fmt = format_by_name(c.fmt);
    const EncodeOptions opt = testing::options_of(c);
    std::atomic<std::uint64_t> mismatches{0};
    std::atomic<std::uint64_t> first_bad{~0ull};
    const auto t0 = std::chrono::steady_clock::now();
    constexpr std::size_t kBlock = 1 << 20;
    parallel_for(total, kBlock, [&](std::size_t begin, std::size_t end) {
      std::vector<float> x(end - begin);
      std::vector<std::uint16_t> got(end - begin);
      for (std::size_t i = begin; i < end; ++i) x[i - begin] = std::bit_cast<float>(static_cast<std::uint32_t>(i * stride));
      if (fmt.storage_bits() == 8) {
        std::vector<std::uint8_t> g8(x.size());
        encode_array(x.data(), x.size(), fmt, opt, g8.data());
        for (std::size_t i = 0; i < x.size(); ++i) got[i] = g8[i];
      } else {
        encode_array(x.data(), x.size(), fmt, opt, got.data());
      }
      std::uint64_t bad = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (got[i] != c.from_float(x[i])) {
          ++bad;
          std::uint64_t pattern = (begin + i) * stride, cur = first_bad.load();
          while (pattern < cur && !first_bad.compare_exchange_weak(cur, pattern)) {
          }
        }
      }
      mismatches += bad;
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-42s %-6s %12llu inputs  %llu mismatches  (%.0f s)", c.name, c.fmt,
                static_cast<unsigned long long>(total), static_cast<unsigned long long>(mismatches.load()), secs);
    if (mismatches) {
      const auto p = static_cast<std::uint32_t>(first_bad.load());
      std::printf("  first at 0x%08x", p);
      ++failed_casts;
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf("%zu passed, %zu failed\n", testing::cuda_casts().size() - failed_casts, failed_casts);
  return failed_casts ? 1 : 0;
}

// Every float32 input: sigmoid_f32_array under every instruction-set variant this CPU runs gives
// sigmoid_f32's bits (`build/default/tests/cpp/exhaustive_sigmoid`; not part of CTest: minutes).
// Prints the count of mismatches per variant and the first one; exit status 1 if any.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "common/pinned_math.hpp"

int main() {
  using namespace fp8lab;
  constexpr std::uint64_t kAll = std::uint64_t{1} << 32, kBlock = std::uint64_t{1} << 20;
  int bad_variants = 0;
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    std::vector<std::uint64_t> mismatches(kAll / kBlock, 0), first(kAll / kBlock, kAll);
    parallel_for(kAll / kBlock, 1, [&](std::size_t b0, std::size_t b1) {
      std::vector<float> x(kBlock), y(kBlock);
      for (std::size_t b = b0; b < b1; ++b) {
        for (std::uint64_t i = 0; i < kBlock; ++i) x[i] = std::bit_cast<float>(static_cast<std::uint32_t>(b * kBlock + i));
        sigmoid_f32_array(x.data(), kBlock, y.data());
        for (std::uint64_t i = 0; i < kBlock; ++i)
          if (std::bit_cast<std::uint32_t>(y[i]) != std::bit_cast<std::uint32_t>(sigmoid_f32(x[i]))) {
            if (mismatches[b]++ == 0) first[b] = b * kBlock + i;
          }
      }
    });
    std::uint64_t total = 0, at = kAll;
    for (std::size_t b = 0; b < mismatches.size(); ++b) {
      total += mismatches[b];
      if (first[b] < at) at = first[b];
    }
    std::printf("%s: %llu mismatches of 2^32", std::string(isa_name(isa)).c_str(), static_cast<unsigned long long>(total));
    if (total) std::printf(", first at input bits 0x%08llx", static_cast<unsigned long long>(at));
    std::printf("\n");
    bad_variants += total != 0;
  }
  return bad_variants == 0 ? 0 : 1;
}

// Prints a digest of GEMM emulation results (every accumulator, combine order and output format,
// the exact reference and the certified bounds) on fixed pseudo-random inputs (random E4M3 bytes,
// and the same with every exponent crowded at the top), with 1 and 3
// threads. tools/determinism.sh builds this program with GCC -O3, GCC -O0 and Clang and requires
// identical output: the emulator's results are a pure function of (inputs, spec).
// The inputs come from a fixed 64-bit LCG (std:: distributions differ between standard libraries).
// Usage: bench_gemm_digest [--every-isa [--expect HEX]]
//   --every-isa: the digest once per kernel variant this CPU runs (common/isa.hpp), one line each;
//   exits 1 unless they agree (and equal HEX when given). The gemm_digest_every_isa test runs it.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "gemm/bounds.hpp"
#include "gemm/exact.hpp"
#include "gemm/gemm.hpp"

namespace {

struct Lcg {  // Knuth's MMIX constants
  std::uint64_t s;
  std::uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(s >> 32);
  }
};

// crowded: every element's exponent is the format's second largest (values 128..240 in magnitude),
// so that a tensor-core instruction's aligned sum and the D it carries into the next use all their
// bits (the vector kernel's widest integers).
fp8lab::GemmOperand operand(std::size_t rows, std::size_t cols, std::size_t tr, std::size_t tc, std::uint64_t seed,
                            bool crowded = false) {
  Lcg g{seed};
  const fp8lab::Format& f = fp8lab::format_by_name("e4m3");
  fp8lab::GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = "e4m3";
  x.quantised = true;
  x.tile_rows = tr;
  x.tile_cols = tc;
  x.elements.resize(rows * cols);
  for (auto& v : x.elements) {
    std::uint32_t b = g.next() & 0xFF;
    if ((b & 0x7F) == 0x7F) b ^= 1;  // not NaN
    if (crowded) b = (b & 0x87) | 0x70;
    v = static_cast<float>(fp8lab::decode(b, f));
  }
  x.scales.resize(((rows + tr - 1) / tr) * x.grid_cols());
  for (auto& s : x.scales) s = std::bit_cast<float>((g.next() & 0x007FFFFFu) | 0x3B800000u);  // [2^-8, 2^-7)
  return x;
}

std::uint64_t fnv1a(const std::vector<double>& v) {
  std::uint64_t h = 1469598103934665603ull;
  for (double d : v) {
    const auto b = std::bit_cast<std::uint64_t>(d);
    for (int i = 0; i < 8; ++i) h = (h ^ ((b >> (8 * i)) & 0xFF)) * 1099511628211ull;
  }
  return h;
}

}  // namespace

// Every accumulator, combine order, output format and operand set, with 1 and 3 threads; `verbose`
// prints a line per case.
std::uint64_t digest(bool verbose) {
  using namespace fp8lab;
  const std::size_t M = 37, N = 45, K = 700;
  const GemmOperand a = operand(M, K, 1, 128, 1), b = operand(N, K, 128, 128, 2);
  const GemmOperand ar = operand(M, K, 1, K, 3), br = operand(N, K, N, K, 4);  // per-row / per-tensor
  const GemmOperand ac = operand(M, K, 1, 128, 6, true), bc = operand(N, K, 128, 128, 7, true);
  const GemmOperand arc = operand(M, K, 1, K, 8, true), brc = operand(N, K, N, K, 9, true);
  std::vector<float> c(M * N);
  Lcg g{5};
  for (auto& v : c) v = static_cast<float>(static_cast<std::int32_t>(g.next())) * 0x1p-24f;
  std::uint64_t total = 0;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    for (bool crowded : {false, true})
    for (Accumulate acc : {Accumulate::Exact, Accumulate::Fp32Sequential, Accumulate::Fp32Pairwise,
                           Accumulate::TensorCore, Accumulate::Promoted})
      for (Combine comb : {Combine::DeepGemm, Combine::Triton, Combine::Cublas})
        for (OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32}) {
          GemmSpec s;
          s.accumulate = acc;
          s.combine = comb;
          s.out = out;
          const bool rowwise = acc == Accumulate::TensorCore;
          const GemmOperand& x = crowded ? (rowwise ? arc : ac) : (rowwise ? ar : a);
          const GemmOperand& y = crowded ? (rowwise ? brc : bc) : (rowwise ? br : b);
          const std::uint64_t hd = fnv1a(gemm(x, y, s, c.data()));
          const std::uint64_t hb = fnv1a(gemm_error_bound(x, y, s, c.data()));
          if (verbose) std::printf("threads=%d %s%s: result %016llx bound %016llx\n", threads, crowded ? "crowded " : "", to_json(s).c_str(),
                      static_cast<unsigned long long>(hd), static_cast<unsigned long long>(hb));
          total = total * 31 + hd * 7 + hb;
        }
  }
  return total;
}

int main(int argc, char** argv) {
  using namespace fp8lab;
  if (argc > 1 && std::strcmp(argv[1], "--every-isa") == 0) {
    const char* expect = argc > 3 && std::strcmp(argv[2], "--expect") == 0 ? argv[3] : nullptr;
    char first[17] = "";
    int bad = 0;
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(digest(false)));
      std::printf("isa=%s digest %s\n", std::string(isa_name(isa)).c_str(), hex);
      if (!*first) std::memcpy(first, hex, sizeof hex);
      bad |= std::strcmp(hex, first) != 0 || (expect && std::strcmp(hex, expect) != 0);
    }
    std::printf("%s\n", bad ? "MISMATCH" : "every variant agrees");
    return bad;
  }
  std::printf("digest %016llx\n", static_cast<unsigned long long>(digest(true)));
  return 0;
}

// Prints a digest of GEMM emulation results (every accumulator, combine order and output format,
// the exact reference and the certified bounds) on fixed pseudo-random inputs (random E4M3 bytes,
// and the same with every exponent crowded at the top), with 1 and 3
// threads; and a second one over every tensor-core preset row (the fused BF16/FP16/TF32/FP8 rows'
// kernel, the block-scaled MXFP8/NVFP4 kernel and the instruction chains, which the first one's
// default hopper_fp8 preset does not reach). tools/determinism.sh builds this program with GCC -O3, GCC -O0 and Clang and requires
// identical output: the emulator's results are a pure function of (inputs, spec).
// The inputs come from a fixed 64-bit LCG (std:: distributions differ between standard libraries).
// Usage: bench_gemm_digest [--every-isa [--presets] [--expect HEX]]
//   --every-isa: the digest once per kernel variant this CPU runs (common/isa.hpp), one line each;
//   exits 1 unless they agree (and equal HEX when given); --presets: the presets' digest instead.
//   The gemm_digest_every_isa and gemm_presets_digest_every_isa tests run it.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/isa.hpp"
#include "common/parallel.hpp"
#include "accum/tensor_core.hpp"
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

// An operand of `fmt` for the presets' digest: magnitudes from min(max_finite, cap) down up to 8
// binades (cap 2^14: products stay finite and normal in FP32 for every format; 4 where the
// accumulator is FP16, whose sums would overflow otherwise), one element in 16 zero, one
// a few least subnormal steps and, in formats with FP32's exponent range (BF16, TF32), one 2^+-40
// (the products the fused kernel takes in binary64); `block` > 0: scales of `scale_fmt` per 1 x
// block tile, 2^-4 .. 2^4; else A's scales per row (B: one per tensor), as the first digest's
// tensor-core cases.
fp8lab::GemmOperand preset_operand(const char* fmt, const char* scale_fmt, std::size_t rows, std::size_t cols,
                                   std::size_t block, bool is_b, double cap, std::uint64_t seed) {
  Lcg g{seed};
  const fp8lab::Format& f = fp8lab::format_by_name(fmt);
  const double top = std::min(f.max_finite(), cap) / 2;
  const bool wide = f.max_finite() > 0x1p60;
  const int binades = std::min(8, std::max(1, static_cast<int>(std::log2(top / f.min_positive())) / 2));
  fp8lab::GemmOperand x;
  x.rows = rows;
  x.cols = cols;
  x.fmt = fmt;
  x.quantised = true;
  x.tile_rows = block ? 1 : is_b ? rows : 1;
  x.tile_cols = block ? block : cols;
  x.elements.resize(rows * cols);
  for (auto& v : x.elements) {
    const std::uint32_t r = g.next();
    const double sign = (r & 1) ? -1.0 : 1.0, frac = 1.0 + static_cast<double>((r >> 8) % 1024) / 1024.0;
    double m;
    if ((r >> 1) % 16 == 0) m = 0.0;
    else if ((r >> 1) % 16 == 1) m = f.min_positive() * static_cast<double>(1 + (r >> 5) % 7);
    else if ((r >> 1) % 16 == 2 && wide) m = std::ldexp(frac, (r >> 5) % 2 ? 40 : -40);
    else m = std::ldexp(top * frac, -static_cast<int>((r >> 5) % static_cast<std::uint32_t>(binades)));
    v = static_cast<float>(fp8lab::round_to_format(sign * m, f));
  }
  x.scales.resize(((rows + x.tile_rows - 1) / x.tile_rows) * x.grid_cols());
  if (block) {
    const fp8lab::Format& sf = fp8lab::format_by_name(scale_fmt);
    for (auto& s : x.scales) {
      // Two draws in two statements: as the arguments of one call their order is unspecified (Clang
      // took them left to right, GCC right to left, and the digests differed).
      const int e = static_cast<int>(g.next() % 9) - 4;
      const double m = 1.0 + static_cast<double>(g.next() % 64) / 64.0;
      s = static_cast<float>(fp8lab::round_to_format(std::ldexp(m, e), sf));
    }
  } else {
    for (auto& s : x.scales) s = std::bit_cast<float>((g.next() & 0x007FFFFFu) | 0x3B800000u);  // [2^-8, 2^-7)
  }
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

std::uint64_t fnv1a_text(const char* text) {
  std::uint64_t h = 1469598103934665603ull;
  for (; *text; ++text) h = (h ^ static_cast<unsigned char>(*text)) * 1099511628211ull;
  return h;
}

// The hash of what `run` returns, or of the message it throws (a refusal, so that a change of what is
// accepted shows in the digest too).
template <class Run>
std::uint64_t hash_or_message(Run run) {
  try {
    return fnv1a(run());
  } catch (const std::exception& e) {
    return fnv1a_text(e.what());
  }
}

// `x` as a two-level (NVFP4) tensor whose elements came from a tensor of amax `amax`: S_dec = 1 /
// fl(448 * 6 / amax), as quant/scale_rule.cpp's nvfp4_global_encode gives it and operand_from_qtensor
// requires.
fp8lab::GemmOperand two_level(const fp8lab::GemmOperand& x, float amax) {
  fp8lab::GemmOperand y = x;
  y.global_numerator = 448.0f * 6.0f;
  y.global_amax = amax;
  y.global_scale = 1.0f / (y.global_numerator / amax);
  return y;
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

// Every tensor-core preset row: TensorCore (the whole K chained) and, for unscaled rows, Promoted
// every 4 instructions, BF16 and FP32 out, values and bounds, with 1 and 3 threads. M and N leave
// partial lane groups (16 + 3, 16 + 5); K = 288 is a multiple of every scale block but not of
// every k. A spec a preset refuses hashes its message, so a change of what is accepted shows too.
// The NVFP4 row also runs with two-level operands (TensorCore, and the Promoted and Exact refusals).
std::uint64_t presets_digest(bool verbose) {
  using namespace fp8lab;
  const std::size_t M = 19, N = 21, K = 288;
  std::vector<float> c(M * N);
  Lcg g{11};
  for (auto& v : c) v = static_cast<float>(static_cast<std::int32_t>(g.next())) * 0x1p-24f;
  std::uint64_t total = 0;
  std::uint64_t seed = 100;
  for (const TensorCoreModel& m : tensor_core_presets()) {
    const std::size_t block = static_cast<std::size_t>(std::max(m.scale_block, 0));
    const double cap = m.accumulator == AccumulatorFormat::Fp16 ? 4.0 : 0x1p14;
    const GemmOperand a = preset_operand(m.input_format, m.scale_format, M, K, block, false, cap, ++seed);
    const GemmOperand b = preset_operand(b_input_format(m), m.scale_format, N, K, block, true, cap, ++seed);
    // NVFP4 rows (E2M1 with UE4M3 block scales) again as two-level tensors: the epilogue's alpha from
    // both tensor amaxes (gemm/block_scaled.hpp), and every other accumulate mode refusing them. The
    // amaxes are ones whose alpha depends on the order of its three products (so the digest pins it).
    const bool nvfp4 = std::strcmp(m.scale_format, "ue4m3") == 0 && std::strcmp(m.input_format, "e2m1") == 0;
    const GemmOperand a2 = nvfp4 ? two_level(a, 0x1.9d5cdcp+5f) : GemmOperand{}, b2 = nvfp4 ? two_level(b, 0x1.ecfa62p+0f) : GemmOperand{};
    for (int threads : {1, 3}) {
      set_num_threads(threads);
      if (nvfp4)
        for (Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted, Accumulate::Exact})
          for (OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32}) {
            GemmSpec s;
            s.accumulate = acc;
            s.instruction = m.name;
            s.out = out;
            const std::uint64_t hd = hash_or_message([&] { return gemm(a2, b2, s, c.data()); });
            const std::uint64_t hb = hash_or_message([&] { return gemm_error_bound(a2, b2, s, c.data()); });
            if (verbose) std::printf("threads=%d preset %s two-level %s: result %016llx bound %016llx\n", threads, m.name,
                                     to_json(s).c_str(), static_cast<unsigned long long>(hd), static_cast<unsigned long long>(hb));
            total = total * 31 + hd * 7 + hb;
          }
      for (Accumulate acc : {Accumulate::TensorCore, Accumulate::Promoted})
        for (OutputFormat out : {OutputFormat::Bf16, OutputFormat::Fp32}) {
          if (acc == Accumulate::Promoted && block) continue;
          GemmSpec s;
          s.accumulate = acc;
          s.instruction = m.name;
          s.promote_every = 4 * m.k;
          s.out = out;
          const std::uint64_t hd = hash_or_message([&] { return gemm(a, b, s, c.data()); });
          const std::uint64_t hb = hash_or_message([&] { return gemm_error_bound(a, b, s, c.data()); });
          if (verbose) std::printf("threads=%d preset %s %s: result %016llx bound %016llx\n", threads, m.name, to_json(s).c_str(),
                                   static_cast<unsigned long long>(hd), static_cast<unsigned long long>(hb));
          total = total * 31 + hd * 7 + hb;
        }
    }
  }
  return total;
}

int main(int argc, char** argv) {
  using namespace fp8lab;
  if (argc > 1 && std::strcmp(argv[1], "--every-isa") == 0) {
    int arg = 2;
    const bool presets = argc > arg && std::strcmp(argv[arg], "--presets") == 0;
    if (presets) ++arg;
    const char* expect = argc > arg + 1 && std::strcmp(argv[arg], "--expect") == 0 ? argv[arg + 1] : nullptr;
    char first[17] = "";
    int bad = 0;
    for (const Isa isa : runnable_isas()) {
      const ScopedIsa use(isa);
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(presets ? presets_digest(false) : digest(false)));
      std::printf("isa=%s digest %s\n", std::string(isa_name(isa)).c_str(), hex);
      if (!*first) std::memcpy(first, hex, sizeof hex);
      bad |= std::strcmp(hex, first) != 0 || (expect && std::strcmp(hex, expect) != 0);
    }
    std::printf("%s\n", bad ? "MISMATCH" : "every variant agrees");
    return bad;
  }
  const std::uint64_t presets = presets_digest(true), total = digest(true);
  std::printf("digest %016llx presets %016llx\n", static_cast<unsigned long long>(total), static_cast<unsigned long long>(presets));
  return 0;
}

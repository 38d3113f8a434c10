// Speed of one tensor-core instruction (fused_dot_add) per preset, single thread, against a plain
// FP32 dot product of the same k values (sequential float multiply-adds, no fused rounding
// model) measured in the same run. Process CPU time, so a loaded machine does not distort the
// ratio much. Usage: bench_accum [instructions, default 2^21]
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace {

double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// Random finite values of the format (bit patterns), like quantised data.
std::vector<float> random_values(const fp8lab::Format& f, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) {
    for (;;) {
      const auto p = static_cast<std::uint32_t>(rng() & ((1u << f.total_bits()) - 1));
      if (fp8lab::is_nan_bits(p, f) || fp8lab::is_inf_bits(p, f)) continue;
      x = static_cast<float>(fp8lab::decode(p, f));
      if (f.exponent_bits > 5) x = std::ldexp(1.0f + (p & 127) / 128.0f, static_cast<int>(p % 17) - 8);
      break;
    }
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t instructions = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (std::size_t{1} << 21);
  std::printf("%-36s %10s %10s %12s %8s\n", "preset", "ns/instr", "ns/MAC", "fp32 ns/MAC", "ratio");
  for (const char* name : {"hopper_fp8", "hopper_fp8_e5m2", "ada_fp8", "hopper_bf16", "ampere_bf16", "blackwell_fp8",
                           "blackwell_mma_fp8"}) {
    const fp8lab::TensorCoreModel& m = fp8lab::tensor_core_by_name(name);
    const auto k = static_cast<std::size_t>(fp8lab::tensor_core_k(m));
    const fp8lab::Format& f = fp8lab::format_by_name(m.input_format);
    // 1 MiB-ish working set reused, so both loops run from cache.
    const std::size_t pool = 4096;
    const std::vector<float> a = random_values(f, pool * k, 1), b = random_values(f, pool * k, 2);

    float acc = 0.0f;
    double t0 = cpu_seconds();
    for (std::size_t i = 0; i < instructions; ++i) {
      const std::size_t j = (i % pool) * k;
      acc = fp8lab::fused_dot_add(&a[j], &b[j], acc * 0.5f, m);
    }
    const double model_s = cpu_seconds() - t0;

    float base = 0.0f;
    t0 = cpu_seconds();
    for (std::size_t i = 0; i < instructions; ++i) {
      const std::size_t j = (i % pool) * k;
      float d = base * 0.5f;
      for (std::size_t t = 0; t < k; ++t) d += a[j + t] * b[j + t];
      base = d;
    }
    const double fp32_s = cpu_seconds() - t0;
    const double macs = static_cast<double>(instructions) * static_cast<double>(k);
    std::printf("%-36s %10.1f %10.2f %12.2f %8.1f   (checksums %g %g)\n", name, 1e9 * model_s / instructions,
                1e9 * model_s / macs, 1e9 * fp32_s / macs, model_s / fp32_s, acc, base);
  }
  return 0;
}

#include "gemm/dot_batch.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/parallel.hpp"
#include "formats/representable.hpp"
#include "gemm/hopper_fp8_kernel.hpp"

namespace fp8lab {

namespace {

// Instructions per chunk: a parallel task, and the slice whose operands (256 KiB for hopper_fp8)
// the check and the kernel share while they are in cache.
constexpr std::size_t kChunk = 1024;

// The batch over chunks; with the tests (a's and b's format), each chunk's operands are checked and the first offender
// of a and of b noted per chunk (the smallest over chunks is the answer: thread count free).
DotBatchCheck run(const float* a, const float* b, const float* c, std::size_t batch, const TensorCoreModel& model,
                  float* out, bool allow_fast_kernel, const RepresentableTest* test_a, const RepresentableTest* test_b) {
  const auto k = static_cast<std::size_t>(model.k);
  const std::size_t none = batch * k;
  const std::optional<Fp8Operands> fast = allow_fast_kernel ? hopper_fp8_operands(model) : std::nullopt;
  std::vector<DotBatchCheck> bad((batch + kChunk - 1) / kChunk, DotBatchCheck{none, none});
  parallel_for(batch, kChunk, [&](std::size_t begin, std::size_t end) {
    DotBatchCheck& first = bad[begin / kChunk];
    // The offset of x's first offender in instruction i, or k.
    auto bad_in = [&](const float* x, const RepresentableTest& test, std::size_t i) {
      std::size_t j = 0;
      while (j < k && test(x[i * k + j])) ++j;
      return j;
    };
    auto reference = [&](std::size_t i) {
      if (test_a) {
        const std::size_t ja = bad_in(a, *test_a, i), jb = bad_in(b, *test_b, i);
        if (ja < k) first.a = std::min(first.a, i * k + ja);
        if (jb < k) first.b = std::min(first.b, i * k + jb);
        if (ja < k || jb < k) return;
      }
      out[i] = fused_dot_add(a + i * k, b + i * k, c[i], model);
    };
    if (fast) {
      // The kernel's own check vouches for every instruction it computes; what it leaves (NaN,
      // Inf, possible non-values) the general test and fused_dot_add settle.
      std::uint32_t left[kChunk];
      const std::size_t n = hopper_fp8_dot_batch(a + begin * k, b + begin * k, c + begin, end - begin, *fast, out + begin, left);
      for (std::size_t j = 0; j < n; ++j) reference(begin + left[j]);
      return;
    }
    if (test_a) {
      const std::size_t ja = test_a->first_bad(a + begin * k, (end - begin) * k);
      const std::size_t jb = test_b->first_bad(b + begin * k, (end - begin) * k);
      if (ja != (end - begin) * k) first.a = begin * k + ja;
      if (jb != (end - begin) * k) first.b = begin * k + jb;
      if (first.a != none || first.b != none) return;  // an error follows: nothing to compute
    }
    for (std::size_t i = begin; i < end; ++i) out[i] = fused_dot_add(a + i * k, b + i * k, c[i], model);
  });
  DotBatchCheck answer{none, none};
  for (const DotBatchCheck& f : bad) answer = {std::min(answer.a, f.a), std::min(answer.b, f.b)};
  return answer;
}

}  // namespace

void fused_dot_add_batch(const float* a, const float* b, const float* c, std::size_t batch, const TensorCoreModel& model,
                         float* out, bool allow_fast_kernel) {
  run(a, b, c, batch, model, out, allow_fast_kernel, nullptr, nullptr);
}

DotBatchCheck fused_dot_add_batch_checked(const float* a, const float* b, const float* c, std::size_t batch,
                                          const TensorCoreModel& model, float* out) {
  const RepresentableTest test_a(format_by_name(model.input_format)), test_b(format_by_name(b_input_format(model)));
  return run(a, b, c, batch, model, out, true, &test_a, &test_b);
}

}  // namespace fp8lab

#include "gemm/dot_batch.hpp"

#include <optional>

#include "common/parallel.hpp"
#include "gemm/hopper_fp8_kernel.hpp"

namespace fp8lab {

void fused_dot_add_batch(const float* a, const float* b, const float* c, std::size_t batch, const TensorCoreModel& model,
                         float* out, bool allow_fast_kernel) {
  const auto k = static_cast<std::size_t>(model.k);
  const std::optional<Fp8Operands> fast = allow_fast_kernel ? hopper_fp8_operands(model) : std::nullopt;
  parallel_for(batch, 4096, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      if (!fast || !hopper_fp8_dot(a + i * k, b + i * k, c[i], *fast, out[i]))
        out[i] = fused_dot_add(a + i * k, b + i * k, c[i], model);
  });
}

}  // namespace fp8lab

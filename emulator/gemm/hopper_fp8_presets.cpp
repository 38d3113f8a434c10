// Which accum presets the Hopper FP8 vector kernel covers (compiled once: not instruction-set
// specific, so not among the dispatched sources).
#include "gemm/hopper_fp8_kernel.hpp"

namespace fp8lab {

std::optional<Fp8Operands> hopper_fp8_operands(const TensorCoreModel& model) {
  if (&model == &tensor_core_by_name("hopper_fp8")) return Fp8Operands::E4m3;
  if (&model == &tensor_core_by_name("hopper_fp8_e5m2")) return Fp8Operands::E5m2;
  return std::nullopt;
}

}  // namespace fp8lab

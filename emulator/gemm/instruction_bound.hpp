// The per-instruction error terms of the tensor-core certificate (gemm/bounds.hpp steps 2 and 4) for
// the instruction forms beyond the unscaled fused one (accum/tensor_core.hpp DotForm): each returns
// a bound on |d - (exact sum of the scaled products + c)| for one instruction (or one block) that
// computed d from c, sized by the values at hand. Written from the arithmetic in
// accum/dot_forms.cpp and accum/fused_dot_add.cpp, step by step in the .cpp.
#pragma once

#include "accum/tensor_core.hpp"

namespace fp8lab {

// A block-scaled instruction (model.scale_block > 0): DotForm::Fused with UE8M0 scales (ST-FDPA) or
// DotForm::ScaledGroups (GST-FDPA, kind::mxf4nvf4). sa, sb: k / scale_block scale values each.
// Finite operands only (the caller's bound is infinite otherwise).
double scaled_instruction_error(const float* a, const float* b, const float* sa, const float* sb, float c, float d,
                                const TensorCoreModel& model);

// One block of n products of DotForm::PairedTwoLevel (AMD CDNA3 MFMA, GTR-FDPA), finite operands.
double paired_block_error(const float* a, const float* b, int n, float c, float d, const TensorCoreModel& model);

}  // namespace fp8lab

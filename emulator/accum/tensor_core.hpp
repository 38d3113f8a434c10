// The tensor-core instruction model: a parameterised fused dot-add d = sum_i a_i*b_i + c computed
// the way one MMA instruction computes it (exact products, alignment to the largest exponent
// with truncation to a fixed number of fractional bits, exact integer sum, normalisation of the
// result), its parameters, and the presets, each named after the instruction it models and citing
// its source (accum/tensor_core_presets.cpp).
//
// The parameters are plain ints and enums: fused_dot_add reads them on every call, so there is
// nothing to look up, allocate or dispatch through.
//
// The model (REFERENCE.md "Tensor cores"; MMA-Sim, arXiv 2511.10909; Khattak & Mikaitis,
// arXiv 2512.07004 and github.com/north-numerical-computing/MATLAB-tensor-core):
//   1. every product a_i*b_i is exact; its alignment exponent is ea + eb, each operand's exponent
//      clamped below at the input format's minimum normal exponent, and its significand product
//      (in (0, 4)) is not renormalised; zero products take no part, or align at
//      `zero_term_exponent` where the model has one (a zero C too);
//   2. C takes part with its own exponent (-126 for FP32 subnormals, -14 for FP16 ones);
//   3. every non-zero term is aligned to the largest of these exponents, E, keeping
//      `alignment_frac_bits` fractional bits below 2^E: the magnitude is truncated (toward zero),
//      then the sign is applied;
//   4. the integer sum is exact;
//   5. the sum is normalised and rounded to `output_precision` significant bits
//      (`output_rounding`), then onto the accumulator format's grid: FP32 (subnormal results
//      truncated onto 2^-149 multiples, results of 2^128 and above infinite, as in the MATLAB
//      models' GEMM.m) or FP16 (one nearest-even rounding); every zero result is +0, a negative
//      sum truncated to zero included (MMA-Sim's convention; open on hardware);
//   6. an instruction of k products with block < k is k/block such fused blocks in sequence,
//      each consuming the previous block's result as C (Ada FP8 mma.sync: two halves of 16).
// `exact_sum` replaces steps 3-5 by the exact sum rounded once (`output_rounding`) to FP32;
// `c_after_products` keeps C out of the fused block: the products' sum is formed and rounded
// first, and C is added to it by one IEEE FP32 addition (nearest even). Together they are the
// only description found that reproduces the B200 FP8 mma.sync measurements (see the preset).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"
#include "formats/encode.hpp"

namespace fp8lab {

// Step 5's rounding, from the formats' one Rounding vocabulary: TowardZero (truncation of the
// normalised sum: every fused FP32-accumulator preset) or NearestEven (the FP16-accumulator ones).
using OutputRounding = Rounding;

// The accumulator format (C and D). FP16 results are returned as the float of the same value.
enum class AccumulatorFormat : std::uint8_t {
  Fp32,
  Fp16,  // IEEE binary16: C must be an FP16 value (its alignment exponent is read as for FP32:
         // no measurement covers an FP16-subnormal C); D is rounded once onto FP16's grid
         // (11 significant bits, 2^-24 quantum, infinite from 2^16 after rounding)
};

// How an instruction's products and C meet (MMA-Sim's arithmetic forms, mmasim arithmetic/fdpa.py).
enum class DotForm : std::uint8_t {
  Fused,  // steps 1-6 above (MMA-Sim T-FDPA; block-scaled ST-FDPA: each product carries its scales)
  // tcgen05 kind::mxf4nvf4 / kind::mxf4 (MMA-Sim GST-FDPA): the products of each group of
  // `scale_group` are summed exactly; the group sum times its scales' significands is one term,
  // aligned at the scales' exponent sum; then steps 3-5 (accum/dot_forms.cpp).
  ScaledGroups,
  // AMD CDNA3 FP8 MFMA (MMA-Sim GTR-FDPA): per block, the even and the odd products are two
  // fused sums (F bits, truncated), joined rounding down, then C joins with F2 + 1 bits, rounded
  // down to F2 fraction bits, then to the nearest FP32 (accum/dot_forms.cpp).
  PairedTwoLevel,
};

// zero_term_exponent of the presets where zero products and a zero C take no part.
inline constexpr int kNoZeroTerm = -(1 << 20);

// How well a preset is backed by the hardware measurements in shared/tc-measurements.
enum class Evidence : std::uint8_t {
  Replayed,    // reproduces every published sample of its (architecture, format) bit for bit
  Unmeasured,  // no measurement exists here; the parameters are the published models' claim
};

struct TensorCoreModel {
  const char* name;          // canonical preset name, after the instruction it models
  const char* alias;         // short name ("hopper_fp8"), or "" when none
  const char* input_format;  // row of the formats table: "e4m3", "e5m2", "bf16", "fp16", "e8m10" (tf32)
  int k;                     // products per instruction
  int block;                 // products per fused block (k when the instruction is one block)
  int input_min_exponent;    // operand exponents are clamped below at this (step 1)
  int input_mantissa_bits;   // explicit fraction bits of the input format (for argument checks)
  int alignment_frac_bits;   // F of step 3
  int output_precision;      // significant bits kept in step 5 (14 for Hopper FP8, 24 = FP32)
  OutputRounding output_rounding;
  bool exact_sum;            // exact sum rounded once instead of steps 3-5
  bool c_after_products;     // C added after the products' rounded sum, by an FP32 RNE addition
  int scale_block;           // block-scaled (MX) variants: products per UE8M0 scale, else 0
  Evidence evidence;
  const char* source;        // where the parameters come from, and what the data says
  AccumulatorFormat accumulator = AccumulatorFormat::Fp32;
  DotForm form = DotForm::Fused;
  // Block-scaled presets: the scale factors' format row ("ue8m0", "ue4m3"), "" when unscaled.
  const char* scale_format = "";
  int scale_group = 0;  // ScaledGroups: products summed exactly per group before scaling
  // The alignment exponent of a zero product and of a zero C (MMA-Sim's e_zero: -133 for the
  // tcgen05 FP32 forms, -139 for kind::mxf4nvf4): with block scales every other term can lie
  // below it, and then it sets the truncation point. kNoZeroTerm: zeros take no part.
  int zero_term_exponent = kNoZeroTerm;
  int second_frac_bits = 0;  // PairedTwoLevel: F2
  // Mixed operand kinds (tcgen05 kind::mxf8f6f4 takes A and B in different formats, PTX ISA
  // "tcgen05.mma" .atype/.btype): B's format row and minimum exponent; "" when B has A's format.
  const char* b_input_format = "";
  int b_input_min_exponent = 0;
};

// B's input format and its minimum exponent (A's unless the preset mixes kinds).
inline const char* b_input_format(const TensorCoreModel& m) {
  return m.b_input_format[0] != '\0' ? m.b_input_format : m.input_format;
}
inline int b_input_min_exponent(const TensorCoreModel& m) {
  return m.b_input_format[0] != '\0' ? m.b_input_min_exponent : m.input_min_exponent;
}

// Block-scaled instruction (Blackwell tcgen05 kind::mxf8f6f4 / mxf4nvf4, OCP MX, NVFP4): the scales
// of a's and b's blocks of `model.scale_block` elements enter inside the instruction, before
// alignment (REFERENCE.md "Tensor cores"; DotForm). scale_a / scale_b hold k/scale_block values of
// the model's scale format each (UE8M0: powers of two; UE4M3: E4M3 values >= 0); a NaN scale
// (UE8M0 0xFF, UE4M3 0x7F) makes the result NaN, as every product it scales is NaN. Throws
// std::invalid_argument for a model without scale_block.
float fused_dot_add_scaled(const float* a, const float* b, const float* scale_a, const float* scale_b, float c,
                           const TensorCoreModel& model);
// The same with UE8M0 scales given as unbiased exponents (UE8M0 byte minus 127, in [-127, 127]).
float fused_dot_add_block_scaled(const float* a, const float* b, const int* scale_a_exp, const int* scale_b_exp,
                                 float c, const TensorCoreModel& model);

// A preset by name, e.g. "hopper_wgmma_m64nNk32_f32_e4m3"; short aliases "hopper_fp8" (E4M3),
// "hopper_fp8_e5m2", "hopper_bf16", "hopper_fp16", "ada_fp8", "ampere_bf16", "ampere_fp16",
// "blackwell_fp8". Unknown names throw std::invalid_argument listing the valid ones.
const TensorCoreModel& tensor_core_by_name(std::string_view name);
std::vector<std::string> tensor_core_names();
// Every preset row, in table order (accum/tensor_core_presets.cpp).
std::span<const TensorCoreModel> tensor_core_presets();
// The declared fields of a preset row (common/schema.hpp): its canonical JSON and the listing
// `fp8lab.tensor_cores()` returns, sources included. Presets are rows of the table, written out
// only: reading one from JSON is an error naming the field.
const schema::Schema<TensorCoreModel>& tensor_core_schema();
std::string to_json(const TensorCoreModel& model);
// Products per instruction (32 for Hopper FP8 wgmma, 16 for Hopper BF16, ...).
inline int tensor_core_k(const TensorCoreModel& model) { return model.k; }

// One instruction: d = a[0..k) . b[0..k) + c, where k = tensor_core_k(model), a and b hold values
// exactly representable in the model's input format (as float), c and the result are FP32.
float fused_dot_add(const float* a, const float* b, float c, const TensorCoreModel& model);

}  // namespace fp8lab

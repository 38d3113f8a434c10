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
//      (in (0, 4)) is not renormalised;
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

// How well a preset is backed by the hardware measurements in shared/tc-measurements.
enum class Evidence : std::uint8_t {
  Replayed,    // reproduces every published sample of its (architecture, format) bit for bit
  Unmeasured,  // no measurement exists here; the parameters are the published models' claim
};
const char* evidence_name(Evidence e);  // "replayed", "unmeasured"

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
};

// Block-scaled instruction (Blackwell tcgen05 kind::mxf8f6f4, OCP MX): the UE8M0 scale exponents
// of a's and b's blocks of `model.scale_block` elements are added to the product exponents inside
// the instruction, before alignment (REFERENCE.md "Tensor cores"). scale_a_exp/scale_b_exp hold
// k/scale_block unbiased exponents each (UE8M0 byte minus 127). Throws std::invalid_argument for a
// model without scale_block.
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

// What a GEMM emulation computes, as data: how products are accumulated, how often a tensor-core
// partial sum is promoted to FP32, in which order the scales meet it, which instruction model the
// tensor core follows, and the output format. Every bit-changing choice is a named field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"

namespace fp8lab {

enum class Accumulate : std::uint8_t {
  Exact,           // the exact sum of the (dequantised) products, rounded once to the output format
  Fp32Sequential,  // acc = fl32(acc + fl32(x*y)) for k = 0, 1, ... (x, y dequantised to FP32)
  Fp32Pairwise,    // the same products summed by a balanced binary tree in FP32
  TensorCore,      // the whole K chained through the tensor-core model (C = previous D), no promotion
  Promoted,        // every promote_every elements the tensor-core partial sum (started from zero) is
                   // scaled and added into an FP32 accumulator on "CUDA cores" (DeepSeek-V3 §3.3.2)
};

// The order in which the two dequantisation scales sa (row of A) and sb (row of B) meet a
// promoted partial sum p and the FP32 accumulator acc. Each is written with explicit std::fma;
// the build uses -ffp-contract=off so nothing else is fused.
enum class Combine : std::uint8_t {
  DeepGemm,  // acc = fma(fl(sa*sb), p, acc): DeepGEMM sm90 fp8 GEMM (REFERENCE.md "Promotion")
  Triton,    // acc = fl(fl(fl(p*sa)*sb) + acc): DeepSeek-V3 inference/kernel.py fp8_gemm as written
             // (left to right), which is what Triton compiles with its FP fusion off (the default
             // from Triton 3.10).
  Cublas,    // acc = fma(fl(p*sa), sb, acc): TransformerEngine's cuBLAS-style reference; also what
             // that same kernel.py line compiles to with Triton's FP fusion on (the default through
             // 3.9, and in the triton==3.0.0 DeepSeek-V3 pins): mul.f32 then fma.rn.f32 in the PTX
             // (tests/python/test_triton_promotion.py compiles it for sm_90 and checks).
};

enum class OutputFormat : std::uint8_t {
  Bf16,  // round to nearest even from FP32 (CUDA __float2bfloat16_rn: overflow gives Inf)
  Fp32,  // the FP32 accumulator as is
  Fp64,  // no output rounding beyond the accumulator's (the exact reference rounds to binary64)
};

struct GemmSpec {
  Accumulate accumulate = Accumulate::Promoted;
  int promote_every = 128;                  // N_C, in elements of K; a multiple of the instruction K
  Combine combine = Combine::DeepGemm;
  std::string instruction = "hopper_fp8";  // accum/ tensor-core preset (TensorCore and Promoted)
  OutputFormat out = OutputFormat::Bf16;
};

Accumulate accumulate_by_name(std::string_view name);  // exact fp32 fp32_pairwise tensorcore promoted
Combine combine_by_name(std::string_view name);        // deepgemm triton cublas
OutputFormat output_format_by_name(std::string_view name);  // bf16 fp32 fp64
std::string_view accumulate_name(Accumulate a);
std::string_view combine_name(Combine c);
std::string_view output_format_name(OutputFormat o);
std::vector<std::string> accumulate_names();
std::vector<std::string> combine_names();

// Significand bits (including the implicit one) and minimum normal exponent of an output format,
// for rounding and ULP counting: bf16 (8, -126), fp32 (24, -126), fp64 (53, -1022).
int output_precision(OutputFormat o);
int output_min_exponent(OutputFormat o);
int output_max_exponent(OutputFormat o);

// The declared fields of GemmSpec (common/schema.hpp): canonical JSON (keys sorted), the strict
// reader (missing keys keep the defaults above) and the Python binding's field list.
const schema::Schema<GemmSpec>& gemm_spec_schema();
std::string to_json(const GemmSpec& spec);
GemmSpec gemm_spec_from_json(std::string_view json);

}  // namespace fp8lab

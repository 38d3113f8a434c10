// Constants that inner loops keep as literals are the values of their table rows: FP32/BF16's
// (formats/row_constants.hpp) against the formats table, the Hopper vector kernel's against the
// tensor-core presets, MLA's unit roundoffs and the GEMM output formats' facts against the
// formats table (binary64 against the compiler's double).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "accum/tensor_core.hpp"
#include "formats/format.hpp"
#include "formats/row_constants.hpp"
#include "gemm/gemm_spec.hpp"
#include "gemm/hopper_fp8_kernel.hpp"
#include "mla/numerics.hpp"

using namespace fp8lab;

TEST(RowConstants, Binary32IsTheFp32Row) {
  const Format& f = format_by_name("fp32");
  EXPECT_EQ(binary32::kMantissaBits, f.mantissa_bits);
  EXPECT_EQ(binary32::kPrecision, f.mantissa_bits + 1);
  EXPECT_EQ(binary32::kBias, f.bias);
  EXPECT_EQ(binary32::kMinExponent, f.min_normal_exponent());
  EXPECT_EQ(binary32::kMaxExponent, f.max_exponent());
  EXPECT_EQ(binary32::kMinQuantum, f.min_normal_exponent() - f.mantissa_bits);
  EXPECT_EQ(binary32::kFieldMax, f.exponent_field_max());
  EXPECT_EQ(binary32::kSignMask, f.sign_mask());
  EXPECT_EQ(binary32::kExponentMask, f.inf_bits(false));
  EXPECT_EQ(binary32::kMagnitudeMask, f.canonical_nan());
  EXPECT_EQ(binary32::kLeastSubnormal, f.min_positive());
  EXPECT_EQ(binary32::kMinNormal, f.min_normal());
  EXPECT_EQ(binary32::kUnitRoundoff, unit_roundoff(f));
}

TEST(RowConstants, Binary32FieldsDecodeLikeTheRow) {
  const Format& f = format_by_name("fp32");
  // Every exponent field (with a few fractions) of finite values: sig * 2^(exp - 23) is decode().
  for (std::uint32_t field = 0; field < binary32::kFieldMax; ++field)
    for (std::uint32_t frac : {0u, 1u, 0x400000u, 0x7FFFFFu})
      for (std::uint32_t sign : {0u, binary32::kSignMask}) {
        const std::uint32_t u = sign | (field << 23) | frac;
        const double v = std::ldexp(static_cast<double>(binary32::significand_of_bits(u)),
                                    binary32::exponent_of_bits(u) - binary32::kMantissaBits);
        ASSERT_EQ(sign ? -v : v, decode(u, f)) << std::hex << u;
      }
}

TEST(RowConstants, Bfloat16IsTheBf16Row) {
  const Format& f = format_by_name("bf16");
  EXPECT_EQ(bfloat16::kMantissaBits, f.mantissa_bits);
  EXPECT_EQ(bfloat16::kPrecision, f.mantissa_bits + 1);
  EXPECT_EQ(bfloat16::kUnitRoundoff, unit_roundoff(f));
  EXPECT_EQ(f.min_normal_exponent(), binary32::kMinExponent);  // the exponent range FP32's
}

TEST(RowConstants, MlaUnitRoundoffsAreTheRows) {
  EXPECT_EQ(mla::kU32, unit_roundoff(format_by_name("fp32")));
  EXPECT_EQ(mla::kUBf16, unit_roundoff(format_by_name("bf16")));
  EXPECT_EQ(mla::unit_roundoff(mla::MatmulFormat::Bf16), unit_roundoff(format_by_name("bf16")));
}

TEST(RowConstants, GemmOutputFormatsAreTheRows) {
  for (const auto& [out, name] : {std::pair{OutputFormat::Bf16, "bf16"}, std::pair{OutputFormat::Fp32, "fp32"}}) {
    const Format& f = format_by_name(name);
    EXPECT_EQ(output_precision(out), f.mantissa_bits + 1) << name;
    EXPECT_EQ(output_min_exponent(out), f.min_normal_exponent()) << name;
    EXPECT_EQ(output_max_exponent(out), f.max_exponent()) << name;
  }
  // IEEE 754 binary64: 53 significant bits, normal exponents -1022..1023.
  EXPECT_EQ(output_precision(OutputFormat::Fp64), 53);
  EXPECT_EQ(output_min_exponent(OutputFormat::Fp64), -1022);
  EXPECT_EQ(output_max_exponent(OutputFormat::Fp64), 1023);
}

// The vector kernel's constants (k, F, output bits, operand layouts) describe exactly the two
// Hopper FP8 presets, so gemm keeps using it for them, and no other preset.
TEST(RowConstants, HopperKernelConstantsAreTheHopperFp8Rows) {
  EXPECT_TRUE(hopper_fp8_kernel_models(tensor_core_by_name("hopper_fp8"), Fp8Operands::E4m3));
  EXPECT_TRUE(hopper_fp8_kernel_models(tensor_core_by_name("hopper_fp8_e5m2"), Fp8Operands::E5m2));
  EXPECT_FALSE(hopper_fp8_kernel_models(tensor_core_by_name("hopper_fp8"), Fp8Operands::E5m2));
  EXPECT_FALSE(hopper_fp8_kernel_models(tensor_core_by_name("hopper_fp8_e5m2"), Fp8Operands::E4m3));
  int accepted = 0;
  for (const auto& name : tensor_core_names())
    for (const Fp8Operands ops : {Fp8Operands::E4m3, Fp8Operands::E5m2})
      accepted += hopper_fp8_kernel_models(tensor_core_by_name(name), ops) ? 1 : 0;
  EXPECT_EQ(accepted, 4);  // the two presets, each listed under its name and its alias
  // A row that differs in one parameter is not the kernel's.
  TensorCoreModel m = tensor_core_by_name("hopper_fp8");
  m.alignment_frac_bits += 1;
  EXPECT_FALSE(hopper_fp8_kernel_models(m, Fp8Operands::E4m3));
  m = tensor_core_by_name("hopper_fp8");
  m.output_precision = 24;
  EXPECT_FALSE(hopper_fp8_kernel_models(m, Fp8Operands::E4m3));
}

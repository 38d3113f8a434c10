// The tensor-core presets: one row per instruction, each with its source and the evidence that
// backs it. Sources:
//   [MMA-Sim] Microsoft, "MMA-Sim", arXiv 2511.10909 (PyPI `mmasim`).
//   [KM]      F. A. Khattak, M. Mikaitis, "Accurate models of NVIDIA tensor cores", arXiv 2512.07004;
//             github.com/north-numerical-computing/MATLAB-tensor-core (models/*TC.m give `fma`
//             = block, `neab` = alignment_frac_bits - 23, `frmode`; GEMM.m keeps 23 + neab output
//             fraction bits when neab < 0).
//   [data]    shared/tc-measurements (KM's model_validation, commit b12b5a70), replayed by
//             tests/cpp/test_accum_replay.cpp. H100 FP8 was measured with wgmma (its README), Ada
//             and B200 FP8 with mma.sync.m16n8k32, 16-bit/tf32 inputs with wmma
//             (model_validation/CUDA/*.cu).
//   MMA-Sim's own table (src/mmasim/mmasim/nv_ptx/sim.py) agrees with every replayed preset:
//   F = 13 with a 14-bit output for Hopper wgmma FP8 and Ada mma.sync FP8 (blocks of 16),
//   F = 24 for Ampere/Ada 16-bit (blocks of 8), F = 25 for Hopper/Blackwell (blocks of 32 bytes).
//   (mmasim 2.1.1 does not offer mma.sync FP8 on Hopper; Hopper FP8 means wgmma here.)
// Replay counts quoted below are over the 5000 samples of each file; a 16-bit or tf32 data set
// with fewer products per sample than the instruction's k is replayed zero-padded (zero products
// take no part in the model, so padding changes nothing).
#include <array>
#include <functional>
#include <stdexcept>
#include <string>

#include "accum/tensor_core.hpp"

namespace fp8lab {
namespace {

constexpr int kE4m3Emin = -6;    // OCP OFP8 v1.0: E4M3 bias 7, min normal 2^-6
constexpr int kE5m2Emin = -14;   // OCP OFP8 v1.0: E5M2 bias 15, min normal 2^-14
constexpr int kFp16Emin = -14;   // IEEE 754 binary16
constexpr int kFp32Emin = -126;  // bf16 and tf32 share FP32's exponent range
constexpr int kE3m2Emin = -2;    // OCP MX v1.0: FP6 E3M2 bias 3
constexpr int kE2m3Emin = 0;     // OCP MX v1.0: FP6 E2M3 bias 1
constexpr int kE2m1Emin = 0;     // OCP MX v1.0: FP4 E2M1 bias 1
constexpr int kE4m3FnuzEmin = -7;   // AMD FNUZ: bias 8
constexpr int kE5m2FnuzEmin = -15;  // AMD FNUZ: bias 16
// MMA-Sim's e_zero (nv_ptx/sim.py): the exponent a zero product or a zero C aligns at.
constexpr int kTcgen05ZeroExp = -133;  // ST-FDPA, kind::mxf8f6f4 (F = 25)
constexpr int kMxf4ZeroExp = -139;     // GST-FDPA, kind::mxf4nvf4 / mxf4 (F = 35)

constexpr TensorCoreModel row(const char* name, const char* alias, const char* fmt, int k, int block, int emin,
                              int mant, int frac, int precision, Evidence evidence, const char* source,
                              OutputRounding rounding = OutputRounding::TowardZero, bool exact = false,
                              bool c_after = false, int scale_block = 0,
                              AccumulatorFormat accumulator = AccumulatorFormat::Fp32) {
  return TensorCoreModel{name,     alias, fmt,     k,           block,    emin,   mant,       frac, precision,
                         rounding, exact, c_after, scale_block, evidence, source, accumulator};
}

// A row with block scales of `scale_format` entering inside the instruction.
constexpr TensorCoreModel scaled(TensorCoreModel m, const char* scale_format, int scale_block, int zero_term) {
  m.scale_format = scale_format;
  m.scale_block = scale_block;
  m.zero_term_exponent = zero_term;
  return m;
}
// kind::mxf4nvf4 / mxf4: products summed exactly in groups of `group`, each group sum scaled.
constexpr TensorCoreModel scaled_groups(TensorCoreModel m, const char* scale_format, int scale_block, int group) {
  m = scaled(m, scale_format, scale_block, kMxf4ZeroExp);
  m.form = DotForm::ScaledGroups;
  m.scale_group = group;
  return m;
}
// kind::mxf8f6f4 with B in another format (PTX .btype): each operand clamps at its own format's
// minimum exponent (MMA-Sim st_fdpa e_subnormal_a / e_subnormal_b).
constexpr TensorCoreModel mixed(TensorCoreModel m, const char* b_format, int b_min_exponent) {
  m.b_input_format = b_format;
  m.b_input_min_exponent = b_min_exponent;
  return m;
}
// AMD CDNA3 FP8: two interleaved fused halves per block, then C with F2 fraction bits.
constexpr TensorCoreModel paired_two_level(TensorCoreModel m, int second_frac_bits) {
  m.form = DotForm::PairedTwoLevel;
  m.second_frac_bits = second_frac_bits;
  return m;
}

// The rows of one instruction kind, which share everything but the operand (or scale) format:
// tcgen05 kind::mxf8f6f4 (k = 32, ST-FDPA F = 25, UE8M0 per 32), kind::mxf4nvf4 (k = 64, E2M1,
// GST-FDPA F = 35 in groups of 16) and CDNA3 16x16x32 MFMA (GTR-FDPA F = 24, F2 = 31, RNE).
constexpr TensorCoreModel mxf8f6f4(const char* name, const char* alias, const char* fmt, int emin, int mant,
                                   const char* source = "PTX ISA tcgen05.mma kind::mxf8f6f4; MMA-Sim arXiv "
                                                        "2511.10909 (st_fdpa); unmeasured") {
  return scaled(row(name, alias, fmt, 32, 32, emin, mant, 25, 24, Evidence::Unmeasured, source), "ue8m0", 32,
                kTcgen05ZeroExp);
}
constexpr TensorCoreModel mxf4nvf4(const char* name, const char* alias, const char* scale_format, int scale_block,
                                   const char* source) {
  return scaled_groups(row(name, alias, "e2m1", 64, 64, kE2m1Emin, 1, 35, 24, Evidence::Unmeasured, source),
                       scale_format, scale_block, 16);
}
constexpr TensorCoreModel cdna3_mfma(const char* name, const char* alias, const char* fmt, int emin, int mant,
                                     const char* source) {
  return paired_two_level(
      row(name, alias, fmt, 32, 16, emin, mant, 24, 24, Evidence::Unmeasured, source, OutputRounding::NearestEven), 31);
}

const std::array kPresets = {
    // Hopper FP8: 13 fractional alignment bits, output truncated to 14 significant bits (low 10
    // FP32 mantissa bits zero). [MMA-Sim] [KM H100TC.m: fma 32, neab -10, rz]; REFERENCE.md.
    // [data] H100/E4M3 and H100/E5M2: 5000/5000 each with C = 0 (the README: the c_*.txt files were
    // not fed to the FP8 runs). The C != 0 path is the published models' claim. The FP16-output
    // files (d_H100_fp16.txt) are not modelled: neither published model reproduces them; MMA-Sim's
    // (same alignment, C and D in FP16, nearest-even) matches 3113/5000 E4M3 and 3340/5000 E5M2
    // (test_accum_replay.cpp, TcReplayFp16Output).
    row("hopper_wgmma_m64nNk32_f32_e4m3", "hopper_fp8", "e4m3", 32, 32, kE4m3Emin, 3, 13, 14, Evidence::Replayed,
        "MMA-Sim arXiv 2511.10909; Khattak & Mikaitis arXiv 2512.07004 (H100TC.m); H100/E4M3 5000/5000 (C = 0)"),
    row("hopper_wgmma_m64nNk32_f32_e5m2", "hopper_fp8_e5m2", "e5m2", 32, 32, kE5m2Emin, 2, 13, 14, Evidence::Replayed,
        "MMA-Sim arXiv 2511.10909; Khattak & Mikaitis arXiv 2512.07004 (H100TC.m); H100/E5M2 5000/5000 (C = 0)"),
    // Hopper 16-bit inputs: 25 fractional bits (neab 2), truncated FP32 output. [KM H100TC.m: fma
    // 16, neab 2, rz] [data] H100/bf16, H100/fp16 5000/5000 with non-zero C.
    row("hopper_wgmma_m64nNk16_f32_bf16", "hopper_bf16", "bf16", 16, 16, kFp32Emin, 7, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (H100TC.m: fma 16, neab 2); H100/bf16 5000/5000"),
    row("hopper_wgmma_m64nNk16_f32_f16", "hopper_fp16", "fp16", 16, 16, kFp16Emin, 10, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (H100TC.m: fma 16, neab 2); H100/fp16 5000/5000"),
    // [KM H100TC.m: tf32 fma 8]; the data has 4 products per sample (replayed zero-padded).
    row("hopper_wgmma_m64nNk8_f32_tf32", "hopper_tf32", "e8m10", 8, 8, kFp32Emin, 10, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (H100TC.m: tf32 fma 8, neab 2); H100/tf32 5000/5000 (4 products per sample)"),

    // Ada FP8 mma.sync: two fused halves of 16 products, 13 fractional bits, 14-bit output; the
    // second half takes the first half's (truncated) result as C. [KM AdaTC.m: fma 16, neab -10]
    // REFERENCE.md. [data] Ada/E4M3, Ada/E5M2 5000/5000 with non-zero C.
    row("ada_mma_m16n8k32_f32_e4m3", "ada_fp8", "e4m3", 32, 16, kE4m3Emin, 3, 13, 14, Evidence::Replayed,
        "Khattak & Mikaitis (AdaTC.m: fma 16, neab -10); Ada/E4M3 5000/5000"),
    row("ada_mma_m16n8k32_f32_e5m2", "ada_fp8_e5m2", "e5m2", 32, 16, kE5m2Emin, 2, 13, 14, Evidence::Replayed,
        "Khattak & Mikaitis (AdaTC.m: fma 16, neab -10); Ada/E5M2 5000/5000"),
    // Ada FP8 mma.sync with an FP16 accumulator (C and D FP16, .f16 variant): the same two halves
    // and 13 alignment bits, each half's result rounded to nearest even in FP16 (MMA-Sim
    // nv_ptx/sim.py: rho "RNE-FP16", blocks of 16). [data] Ada/E4M3, Ada/E5M2 d_Ada_fp16.txt:
    // 5000/5000 each with C = the c file rounded to FP16.
    row("ada_mma_m16n8k32_f16_e4m3", "ada_fp8_f16", "e4m3", 32, 16, kE4m3Emin, 3, 13, 11, Evidence::Replayed,
        "MMA-Sim arXiv 2511.10909 (Ada FP8, RNE-FP16); Ada/E4M3 d_Ada_fp16 5000/5000",
        OutputRounding::NearestEven, false, false, 0, AccumulatorFormat::Fp16),
    row("ada_mma_m16n8k32_f16_e5m2", "ada_fp8_e5m2_f16", "e5m2", 32, 16, kE5m2Emin, 2, 13, 11, Evidence::Replayed,
        "MMA-Sim arXiv 2511.10909 (Ada FP8, RNE-FP16); Ada/E5M2 d_Ada_fp16 5000/5000",
        OutputRounding::NearestEven, false, false, 0, AccumulatorFormat::Fp16),
    // Ada and Ampere 16-bit / tf32 inputs: blocks of 8 (tf32: 4) products, 24 fractional bits
    // (neab 1), truncated FP32 output. [KM AdaTC.m, A100TC.m] The data has one block per sample.
    row("ada_mma_m16n8k16_f32_bf16", "ada_bf16", "bf16", 16, 8, kFp32Emin, 7, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (AdaTC.m: fma 8, neab 1); Ada/bf16 5000/5000 (8 products per sample)"),
    row("ada_mma_m16n8k16_f32_f16", "ada_fp16", "fp16", 16, 8, kFp16Emin, 10, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (AdaTC.m: fma 8, neab 1); Ada/fp16 5000/5000 (8 products per sample)"),
    row("ada_mma_m16n8k8_f32_tf32", "ada_tf32", "e8m10", 8, 4, kFp32Emin, 10, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (AdaTC.m: tf32 fma 4, neab 1); Ada/tf32 5000/5000 (4 products per sample)"),
    row("ampere_mma_m16n8k16_f32_bf16", "ampere_bf16", "bf16", 16, 8, kFp32Emin, 7, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (A100TC.m: fma 8, neab 1); A100/bf16 5000/5000 (8 products per sample)"),
    row("ampere_mma_m16n8k16_f32_f16", "ampere_fp16", "fp16", 16, 8, kFp16Emin, 10, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (A100TC.m: fma 8, neab 1); A100/fp16 5000/5000 (8 products per sample)"),
    row("ampere_mma_m16n8k8_f32_tf32", "ampere_tf32", "e8m10", 8, 4, kFp32Emin, 10, 24, 24, Evidence::Replayed,
        "Khattak & Mikaitis (A100TC.m: tf32 fma 4, neab 1); A100/tf32 5000/5000 (4 products per sample)"),

    // Blackwell tcgen05 FP8: one fused block of 32, 25 fractional bits, truncated FP32 output
    // (REFERENCE.md after MMA-Sim; KM B200TC.m: fma 32, neab 2). No tcgen05 measurement exists
    // here (it agrees bit for bit with mmasim's TCGen05MMA, tests/python/test_accum.py). KM's B200
    // FP8 data were measured with mma.sync, which mmasim 2.1.1 does not model on Blackwell; KM's
    // B200TC.m applies these parameters to it, and they do NOT reproduce the data:
    // test_accum_replay.cpp pins the count (3207/5000 E4M3, 3236/5000 E5M2): see blackwell_mma_*.
    row("blackwell_tcgen05_f32_e4m3", "blackwell_fp8", "e4m3", 32, 32, kE4m3Emin, 3, 25, 24, Evidence::Unmeasured,
        "MMA-Sim arXiv 2511.10909; Khattak & Mikaitis (B200TC.m: fma 32, neab 2); unmeasured for tcgen05, "
        "contradicted by the B200 mma.sync data"),
    row("blackwell_tcgen05_f32_e5m2", "blackwell_fp8_e5m2", "e5m2", 32, 32, kE5m2Emin, 2, 25, 24,
        Evidence::Unmeasured,
        "MMA-Sim arXiv 2511.10909; Khattak & Mikaitis (B200TC.m: fma 32, neab 2); unmeasured for tcgen05, "
        "contradicted by the B200 mma.sync data"),
    // Blackwell mma.sync FP8 as measured. REFERENCE.md says the B200 samples "match a correctly
    // rounded sum"; 9999 of 10000 do, but B200/E5M2 sample 3935 does not (exact a.b + c is
    // -8.8670624, 13/16 of an ulp below the hardware's 0xC10DDF7C, which nearest rounding cannot
    // give). What reproduces all 5000 + 5000: the 32 products summed exactly and truncated to
    // FP32, then C added by an FP32 nearest-even addition (KM's `late_partial_sum` idea, with an
    // exact product sum). Established here from the data; 5000 random samples cannot tell an
    // exact product sum from a wide enough one, and no published model describes this unit, so
    // it stays a description of the data, not a claim about the circuit (REFERENCE.md:
    // unresolved).
    row("blackwell_mma_m16n8k32_f32_e4m3", "blackwell_mma_fp8", "e4m3", 32, 32, kE4m3Emin, 3, 0, 24,
        Evidence::Replayed,
        "B200/E4M3 data 5000/5000: exact product sum truncated to FP32, then + C rounded to nearest "
        "(established from the data; unresolved in REFERENCE.md)",
        OutputRounding::TowardZero, true, true),
    row("blackwell_mma_m16n8k32_f32_e5m2", "blackwell_mma_fp8_e5m2", "e5m2", 32, 32, kE5m2Emin, 2, 0, 24,
        Evidence::Replayed,
        "B200/E5M2 data 5000/5000: exact product sum truncated to FP32, then + C rounded to nearest "
        "(established from the data; unresolved in REFERENCE.md)",
        OutputRounding::TowardZero, true, true),
    // Blackwell 16-bit / tf32 inputs: as Hopper (25 fractional bits, blocks of 16 / 8).
    // [KM B200TC.m] [data] B200/bf16, B200/fp16 5000/5000; B200/tf32 5000/5000 (4 per sample).
    row("blackwell_tcgen05_f32_bf16", "blackwell_bf16", "bf16", 16, 16, kFp32Emin, 7, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (B200TC.m: fma 16, neab 2); B200/bf16 5000/5000 (measured with wmma)"),
    row("blackwell_tcgen05_f32_f16", "blackwell_fp16", "fp16", 16, 16, kFp16Emin, 10, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (B200TC.m: fma 16, neab 2); B200/fp16 5000/5000 (measured with wmma)"),
    row("blackwell_tcgen05_f32_tf32", "blackwell_tf32", "e8m10", 8, 8, kFp32Emin, 10, 25, 24, Evidence::Replayed,
        "Khattak & Mikaitis (B200TC.m: tf32 fma 8, neab 2); B200/tf32 5000/5000 (4 products per sample)"),
    // Blackwell tcgen05.mma.kind::mxf8f6f4.block_scale (PTX ISA "tcgen05.mma": one UE8M0 scale
    // per 32 elements along K for A and for B, scale_vec::1X): each product's exponent takes its
    // two scale exponents inside the instruction (REFERENCE.md "Tensor cores"), then the tcgen05
    // FP8 arithmetic above (F = 25, RZ-FP32), a zero product or zero C aligning at 2^-133
    // (MMA-Sim `st_fdpa`, e_zero). FP6 and FP4 operands take the same path with their own minimum
    // exponents (MMA-Sim fp6_fp4_subnormal_exponent). A and B of one format (PTX allows mixed
    // kinds; not modelled). Unmeasured; bit-identical to MMA-Sim's TCGen05MMABlockScale on 10^5
    // random and special cases each (tests/python/test_accum_block_scaled.py).
    mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e4m3", "blackwell_mxfp8", "e4m3", kE4m3Emin, 3),
    mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e5m2", "blackwell_mxfp8_e5m2", "e5m2", kE5m2Emin, 2),
    mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e3m2", "blackwell_mxfp6_e3m2", "e3m2fn", kE3m2Emin, 2),
    mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e2m3", "blackwell_mxfp6_e2m3", "e2m3fn", kE2m3Emin, 3),
    mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e2m1", "blackwell_mxfp4_f8f6f4", "e2m1", kE2m1Emin, 1),
    // The same instruction with A and B of different kinds (PTX allows any .atype x .btype of
    // kind::mxf8f6f4): FP8 E4M3 x E5M2 both ways (the FP8 training hybrid) and E4M3 x FP4 E2M1 both
    // ways. Unmeasured; bit-identical to MMA-Sim's TCGen05MMABlockScale (.atype.btype) on 10^5 random
    // and special cases each (test_accum_block_scaled.py).
    mixed(mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e4m3_e5m2", "", "e4m3", kE4m3Emin, 3,
                   "PTX ISA tcgen05.mma kind::mxf8f6f4 .e4m3.e5m2; MMA-Sim st_fdpa; unmeasured"),
          "e5m2", kE5m2Emin),
    mixed(mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e5m2_e4m3", "", "e5m2", kE5m2Emin, 2,
                   "PTX ISA tcgen05.mma kind::mxf8f6f4 .e5m2.e4m3; MMA-Sim st_fdpa; unmeasured"),
          "e4m3", kE4m3Emin),
    mixed(mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e4m3_e2m1", "", "e4m3", kE4m3Emin, 3,
                   "PTX ISA tcgen05.mma kind::mxf8f6f4 .e4m3.e2m1; MMA-Sim st_fdpa; unmeasured"),
          "e2m1", kE2m1Emin),
    mixed(mxf8f6f4("blackwell_tcgen05_mxf8f6f4_f32_e2m1_e4m3", "", "e2m1", kE2m1Emin, 1,
                   "PTX ISA tcgen05.mma kind::mxf8f6f4 .e2m1.e4m3; MMA-Sim st_fdpa; unmeasured"),
          "e4m3", kE4m3Emin),
    // Blackwell tcgen05.mma.kind::mxf4nvf4.block_scale (PTX ISA: E2M1 operands, k = 64; UE8M0
    // scales per 32 (scale_vec::2X) or 16 (scale_vec::4X) elements, or UE4M3 scales per 16, NVFP4):
    // MMA-Sim `gst_fdpa` (G = 16, F = 35, RZ-FP32, e_zero -139): each group of 16 products is
    // summed exactly, scaled, and aligned at its scales' exponent sum. kind::mxf4 (UE8M0 per 32)
    // has the same arithmetic in MMA-Sim. Unmeasured; bit-identical to MMA-Sim's
    // TCGen05MMABlockScale on 10^5 random and special cases each (test_accum_block_scaled.py).
    mxf4nvf4("blackwell_tcgen05_mxf4nvf4_block32_f32_e2m1_ue8m0", "blackwell_mxfp4", "ue8m0", 32,
             "PTX ISA tcgen05.mma kind::mxf4nvf4 scale_vec::2X; MMA-Sim arXiv 2511.10909 (gst_fdpa); unmeasured"),
    mxf4nvf4("blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue8m0", "blackwell_mxfp4_16", "ue8m0", 16,
             "PTX ISA tcgen05.mma kind::mxf4nvf4 scale_vec::4X; MMA-Sim arXiv 2511.10909 (gst_fdpa); unmeasured"),
    mxf4nvf4("blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue4m3", "blackwell_nvfp4", "ue4m3", 16,
             "PTX ISA tcgen05.mma kind::mxf4nvf4 scale_vec::4X, UE4M3 scales (NVFP4); MMA-Sim arXiv "
             "2511.10909 (gst_fdpa); unmeasured"),

    // AMD CDNA3 (MI300) V_MFMA_F32_16X16X32_FP8_FP8 / _BF8_BF8 (FNUZ operands, FP32 C/D): MMA-Sim
    // amd/sim.py MFMA: GTR-FDPA with F = 24, F2 = 31, RNE-FP32, blocks of 16 products (k = 32: two
    // blocks in sequence). Unmeasured here; bit-identical to MMA-Sim's MFMA('CDNA3', ...) on 10^5
    // random and special cases each (test_accum_block_scaled.py).
    cdna3_mfma("cdna3_mfma_f32_16x16x32_fp8", "mi300_fp8", "e4m3fnuz", kE4m3FnuzEmin, 3,
               "AMD CDNA3 ISA v_mfma_f32_16x16x32_fp8_fp8; MMA-Sim arXiv 2511.10909 (gtr_fdpa); unmeasured"),
    cdna3_mfma("cdna3_mfma_f32_16x16x32_bf8", "mi300_bf8", "e5m2fnuz", kE5m2FnuzEmin, 2,
               "AMD CDNA3 ISA v_mfma_f32_16x16x32_bf8_bf8; MMA-Sim arXiv 2511.10909 (gtr_fdpa); unmeasured"),
};

using S = TensorCoreModel;
constexpr std::array<schema::EnumRow<Evidence>, 2> kEvidence{
    {{"replayed", Evidence::Replayed}, {"unmeasured", Evidence::Unmeasured}}};
constexpr std::array<schema::EnumRow<DotForm>, 3> kForm{{{"fused", DotForm::Fused},
                                                         {"scaled_groups", DotForm::ScaledGroups},
                                                         {"paired_two_level", DotForm::PairedTwoLevel}}};
constexpr std::array<schema::EnumRow<AccumulatorFormat>, 2> kAccumulator{
    {{"fp32", AccumulatorFormat::Fp32}, {"fp16", AccumulatorFormat::Fp16}}};

// A field the listing writes and nothing reads (a preset is a row of kPresets, not a JSON object).
schema::Field<S> written(std::string key, std::string kind, std::string expected, std::function<Json(const S&)> write) {
  return {key, std::move(kind), {}, std::move(expected), std::move(write),
          [key](S&, const Json&, const Json&, const std::string& where) {
            throw std::invalid_argument(where + ": tensor-core presets are rows of accum/tensor_core_presets.cpp, "
                                        "not read from JSON");
          }};
}
schema::Field<S> name_field(std::string key, const char* S::*m) {
  return written(std::move(key), "string", "a string", [m](const S& p) { return schema::string_json(p.*m); });
}

std::string valid_names() {
  std::string out;
  for (const auto& p : kPresets) {
    out += out.empty() ? "" : ", ";
    out += p.name;
    if (p.alias[0] != '\0') out += std::string(" (") + p.alias + ")";
  }
  return out;
}

}  // namespace

const TensorCoreModel& tensor_core_by_name(std::string_view name) {
  for (const auto& p : kPresets)
    if (name == p.name || (p.alias[0] != '\0' && name == p.alias)) return p;
  throw std::invalid_argument("instruction: unknown tensor-core preset '" + std::string(name) +
                              "'; valid: " + valid_names());
}

std::vector<std::string> tensor_core_names() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) {
    names.emplace_back(p.name);
    if (p.alias[0] != '\0') names.emplace_back(p.alias);
  }
  return names;
}


std::span<const TensorCoreModel> tensor_core_presets() { return kPresets; }

// One line per member of TensorCoreModel (keys sorted): a new member is one more line here.
const schema::Schema<TensorCoreModel>& tensor_core_schema() {
  static const schema::Schema<S> sc{
      "TensorCoreModel",
      {
          schema::enumeration<S, AccumulatorFormat>("accumulator", &S::accumulator, kAccumulator),
          name_field("alias", &S::alias),
          // F of step 3; null when the sum is exact (steps 3-5 replaced).
          written("alignment_frac_bits", "int", "an integer, or null with exact_sum",
                  [](const S& p) {
                    return p.exact_sum ? Json{} : schema::number_json(std::to_string(p.alignment_frac_bits));
                  }),
          // B's input format and minimum exponent, written for every preset (A's unless mixed).
          written("b_input_format", "string", "a string",
                  [](const S& p) { return schema::string_json(b_input_format(p)); }),
          written("b_input_min_exponent", "int", "an integer",
                  [](const S& p) { return schema::number_json(std::to_string(b_input_min_exponent(p))); }),
          schema::integer<S, int>("block", &S::block, 1, 1 << 16),
          schema::boolean<S>("c_after_products", &S::c_after_products),
          schema::enumeration<S, Evidence>("evidence", &S::evidence, kEvidence),
          schema::boolean<S>("exact_sum", &S::exact_sum),
          schema::enumeration<S, DotForm>("form", &S::form, kForm),
          name_field("input_format", &S::input_format),
          schema::integer<S, int>("input_mantissa_bits", &S::input_mantissa_bits, 0, 52),
          schema::integer<S, int>("input_min_exponent", &S::input_min_exponent, -1022, 0),
          schema::integer<S, int>("k", &S::k, 1, 1 << 16),
          name_field("name", &S::name),
          schema::integer<S, int>("output_precision", &S::output_precision, 1, 53),
          written("output_rounding", "enum", "a rounding name",
                  [](const S& p) { return schema::string_json(std::string(rounding_name(p.output_rounding))); }),
          schema::integer<S, int>("scale_block", &S::scale_block, 0, 1 << 16),
          name_field("scale_format", &S::scale_format),
          schema::integer<S, int>("scale_group", &S::scale_group, 0, 1 << 16),
          schema::integer<S, int>("second_frac_bits", &S::second_frac_bits, 0, 62),
          name_field("source", &S::source),
          // MMA-Sim's e_zero; null where zero products and a zero C take no part.
          written("zero_term_exponent", "int", "an integer, or null",
                  [](const S& p) {
                    return p.zero_term_exponent == kNoZeroTerm ? Json{}
                                                               : schema::number_json(std::to_string(p.zero_term_exponent));
                  }),
      },
      {}};
  return sc;
}

std::string to_json(const TensorCoreModel& model) { return schema::to_json(model, tensor_core_schema()); }

}  // namespace fp8lab

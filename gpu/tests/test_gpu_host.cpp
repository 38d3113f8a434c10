// Host-side tests of gpu/: everything that runs without a device. Layouts and descriptors are
// checked against the definitions of the PTX ISA (core matrices, LBO/SBO, fragment tables), the
// probe's design against REFERENCE.md's published values and hand-worked predictions, the
// launchers' argument checks, and the hardware-trace round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm/combine.hpp"
#include "gemm/gemm.hpp"
#include "gemm/hopper_fp8_kernel.hpp"
#include "golden/safetensors.hpp"
#include "gpu/cublaslt_fp8.hpp"
#include "gpu/device.hpp"
#include "gpu/hardware_trace.hpp"
#include "gpu/layout.hpp"
#include "gpu/router_sigmoid_groups.hpp"
#include "gpu/sm90_fp8_gemm_promoted.hpp"
#include "gpu/sm90_fp8_quant.hpp"
#include "gpu/tc_probe.hpp"
#include "moe/route.hpp"
#include "moe/router_spec.hpp"
#include "quant/quantize.hpp"

namespace {

using namespace fp8lab;
using namespace fp8lab::gpu;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

// ---- wgmma shared-memory layout and descriptor -------------------------------------------------

TEST(WgmmaLayout, ChunkIsABijectionOntoItsBytes) {
  for (std::uint32_t rows : {8u, 64u, 128u}) {
    std::set<std::uint32_t> seen;
    for (std::uint32_t r = 0; r < rows; ++r)
      for (std::uint32_t k = 0; k < 128; ++k) seen.insert(wgmma_kmajor_offset(r, k, rows));
    ASSERT_EQ(seen.size(), rows * 128u);
    EXPECT_EQ(*seen.rbegin(), rows * 128u - 1);
  }
}

TEST(WgmmaLayout, CoreMatricesAreContiguousAndStridesMatchTheDescriptor) {
  // PTX ISA: a core matrix is 8 rows of 16 bytes stored contiguously (row i at 16 * i); LBO is the
  // byte step between core matrices along K, SBO along M/N. Checked from the offsets themselves.
  const std::uint32_t rows = 64;
  for (std::uint32_t r = 0; r < rows; r += 8) {
    for (std::uint32_t k = 0; k < 128; k += 16) {
      const std::uint32_t base = wgmma_kmajor_offset(r, k, rows);
      EXPECT_EQ(base % 128, 0u);
      for (std::uint32_t i = 0; i < 8; ++i)
        for (std::uint32_t j = 0; j < 16; ++j) EXPECT_EQ(wgmma_kmajor_offset(r + i, k + j, rows), base + 16 * i + j);
      if (k % 32 == 0) {
        EXPECT_EQ(wgmma_kmajor_offset(r, k + 16, rows) - base, kWgmmaLbo);
      }
      if (r + 8 < rows) {
        EXPECT_EQ(wgmma_kmajor_offset(r + 8, k, rows) - base, kWgmmaSbo);
      }
    }
  }
  // Slice s (one k32 instruction) starts at s * rows * 32, the address the kernels put in the descriptor.
  EXPECT_EQ(wgmma_kmajor_offset(0, 64, rows), 2u * rows * 32);
}

TEST(WgmmaLayout, DescriptorFieldsHandWorked) {
  // address 0x400 >> 4 = 0x40 (bits 0-13), LBO 128 >> 4 = 8 (bits 16-29), SBO 256 >> 4 = 16
  // (bits 32-45), base offset 0, swizzle 0 (bits 62-63).
  EXPECT_EQ(wgmma_descriptor(0x400), 0x0000001000080040ull);
  // Only 18 address bits take part (the shared window is 256 KiB).
  EXPECT_EQ(wgmma_descriptor(0x40000 + 0x10) & 0x3FFF, 0x1ull);
}

TEST(WgmmaFragment, AccumulatorPositionsCoverTheTileOnce) {
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  for (std::uint32_t t = 0; t < 128; ++t)
    for (std::uint32_t i = 0; i < 64; ++i) {
      const RowCol p = wgmma_d_position(t, i);
      ASSERT_LT(p.row, 64u);
      ASSERT_LT(p.col, 128u);
      seen.insert({p.row, p.col});
    }
  EXPECT_EQ(seen.size(), 64u * 128u);
  // Thread 33 = warp 1, lane 1 (g = 0, t = 1); register 6 = (j = 1, i = 2): row 16 + 0 + 8, col 8 + 2.
  EXPECT_EQ(wgmma_d_position(33, 6).row, 24u);
  EXPECT_EQ(wgmma_d_position(33, 6).col, 10u);
}

TEST(MmaSyncFragment, TablesOfTheM16n8k32E4m3Fragments) {
  std::set<std::pair<std::uint32_t, std::uint32_t>> a, b, c;
  for (std::uint32_t lane = 0; lane < 32; ++lane) {
    for (std::uint32_t i = 0; i < 16; ++i) a.insert({mma_m16n8k32_a_position(lane, i).row, mma_m16n8k32_a_position(lane, i).col});
    for (std::uint32_t i = 0; i < 8; ++i) b.insert({mma_m16n8k32_b_position(lane, i).row, mma_m16n8k32_b_position(lane, i).col});
    for (std::uint32_t i = 0; i < 4; ++i) c.insert({mma_m16n8k32_c_position(lane, i).row, mma_m16n8k32_c_position(lane, i).col});
  }
  EXPECT_EQ(a.size(), 16u * 32u);
  EXPECT_EQ(b.size(), 8u * 32u);
  EXPECT_EQ(c.size(), 16u * 8u);
  // Lane 5: groupID 1, threadID_in_group 1 (PTX ISA figure "MMA .m16n8k32 fragment layout").
  EXPECT_EQ(mma_m16n8k32_a_position(5, 4).row, 9u);
  EXPECT_EQ(mma_m16n8k32_a_position(5, 4).col, 4u);
  EXPECT_EQ(mma_m16n8k32_a_position(5, 8).row, 1u);
  EXPECT_EQ(mma_m16n8k32_a_position(5, 8).col, 20u);
  EXPECT_EQ(mma_m16n8k32_a_position(5, 15).row, 9u);
  EXPECT_EQ(mma_m16n8k32_a_position(5, 15).col, 23u);
  EXPECT_EQ(mma_m16n8k32_b_position(5, 4).row, 1u);   // n
  EXPECT_EQ(mma_m16n8k32_b_position(5, 4).col, 20u);  // k
  EXPECT_EQ(mma_m16n8k32_c_position(5, 3).row, 9u);
  EXPECT_EQ(mma_m16n8k32_c_position(5, 3).col, 3u);
}

// ---- the device door ---------------------------------------------------------------------------

TEST(Device, StatusSaysWhatItIsOrWhyNot) {
  const DeviceStatus& s = device_status();
  if (s.available) {
    EXPECT_FALSE(s.name.empty());
    EXPECT_EQ(s.cc_major, 9);
    EXPECT_TRUE(s.reason.empty());
    EXPECT_EQ(s.describe().find("no device"), std::string::npos);
  } else {
    EXPECT_FALSE(s.reason.empty());
    EXPECT_FALSE(s.describe().empty());
    EXPECT_THROW(require_device("test"), NoDevice);
    const std::string e = error_of([] { require_device("the_launcher"); });
    EXPECT_NE(e.find("the_launcher: no device: "), std::string::npos) << e;
  }
}

TEST(Device, CudaErrorsNameTheCall) {
  EXPECT_NO_THROW(check_cuda(0, "ok"));
  const std::string e = error_of([] { check_cuda(2, "cudaMalloc"); });  // cudaErrorMemoryAllocation
  EXPECT_EQ(e.rfind("cudaMalloc: cudaErrorMemoryAllocation", 0), 0u) << e;
}

// ---- the promoted GEMM's host side ------------------------------------------------------------

GemmOperand e4m3_operand(std::size_t rows, std::size_t cols, Tile tile, std::uint64_t seed) {
  std::vector<float> x(rows * cols);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::ldexp(float((i * 2654435761u + seed) % 97) - 48.0f, -3);
  return operand_from_qtensor(quantize(x.data(), rows, cols, tile, "e4m3", scale_rule_by_name("deepseek")), "x");
}

TEST(PromotedGemmHost, PaddingEncodesE4m3AndZeroFills) {
  const float v[6] = {1.0f, -448.0f, 0.5f, 0.0f, -0.0f, 2.0f};
  const GemmOperand x = [&] {
    GemmOperand o = operand_from_floats(v, 2, 3, "x");
    o.fmt = "e4m3";  // the values are E4M3 values
    return o;
  }();
  const PaddedOperand p = pad_operand_e4m3(x, kGemmBlockM, "x");
  EXPECT_EQ(p.rows_pad, 64u);
  EXPECT_EQ(p.cols_pad, 128u);
  // OCP E4M3: 1.0 = 0 0111 000 = 0x38; -448 = 1 1111 110 = 0xFE; 0.5 = 0x30; -0 = 0x80; 2 = 0x40.
  EXPECT_EQ(p.bits[0], 0x38);
  EXPECT_EQ(p.bits[1], 0xFE);
  EXPECT_EQ(p.bits[2], 0x30);
  EXPECT_EQ(p.bits[3], 0x00);
  EXPECT_EQ(p.bits[128 + 0], 0x00);
  EXPECT_EQ(p.bits[128 + 1], 0x80);
  EXPECT_EQ(p.bits[128 + 2], 0x40);
  std::size_t nonzero = 0;
  for (std::uint8_t b : p.bits) nonzero += b != 0;
  EXPECT_EQ(nonzero, 5u);
  EXPECT_NE(error_of([&] { pad_operand_e4m3(operand_from_floats(v, 2, 3, "x"), 64, "a"); }).find("a: element format"),
            std::string::npos);
}

TEST(PromotedGemmHost, RefusesWhatTheKernelDoesNotDo) {
  const GemmOperand a = e4m3_operand(8, 256, Tile{1, 128}, 1), b = e4m3_operand(16, 256, Tile{128, 128}, 2);
  GemmSpec s;
  EXPECT_EQ(validate_promoted_gemm(a, b, s), 128);
  s.promote_every = 64;
  EXPECT_EQ(validate_promoted_gemm(a, b, s), 64);
  s.promote_every = 48;
  EXPECT_NE(error_of([&] { validate_promoted_gemm(a, b, s); }).find("promote_every"), std::string::npos);
  s = GemmSpec{};
  s.out = OutputFormat::Fp64;
  EXPECT_NE(error_of([&] { validate_promoted_gemm(a, b, s); }).find("spec.out"), std::string::npos);
  s = GemmSpec{};
  s.instruction = "ada_fp8";
  EXPECT_NE(error_of([&] { validate_promoted_gemm(a, b, s); }).find("spec.instruction"), std::string::npos);
  s = GemmSpec{};
  s.accumulate = Accumulate::Fp32Sequential;
  EXPECT_NE(error_of([&] { validate_promoted_gemm(a, b, s); }).find("spec.accumulate"), std::string::npos);
  const GemmOperand b2 = e4m3_operand(16, 128, Tile{128, 128}, 2);
  EXPECT_THROW(validate_promoted_gemm(a, b2, GemmSpec{}), std::invalid_argument);
  if (!device_status().available) {
    EXPECT_THROW(sm90_fp8_gemm_promoted(a, b, GemmSpec{}), NoDevice);
  }
}

// The kernel's control flow (promotion_step, scale_index: the functions the kernel itself calls)
// replayed on the host with the emulator's Hopper instruction in place of wgmma must give gemm()'s
// bits — ragged K (partial last instruction), N_C = 32 / 64 / 128 / none, every combine order,
// both outputs, with and without C. What this cannot check is the hardware; the device property
// test does that.
TEST(PromotedGemmHost, KernelScheduleWithTheEmulatorInstructionEqualsGemm) {
  int configs = 0;
  for (std::size_t k : {1u, 31u, 33u, 127u, 128u, 129u, 300u}) {
    for (int ps : {0, 32, 64, 128}) {
      for (int combine = 0; combine < 3; ++combine) {
        const bool per_tensor = ps == 0 || (k + combine) % 2 == 0;
        const std::size_t m = 5, n = 9;
        const Tile ta = per_tensor ? Tile{0, 0} : Tile{1, 128}, tb = per_tensor ? Tile{0, 0} : Tile{128, 128};
        const GemmOperand a = e4m3_operand(m, k, ta, 17 + k), b = e4m3_operand(n, k, tb, 5 + ps);
        GemmSpec spec;
        spec.combine = static_cast<Combine>(combine);
        spec.out = (k + ps) % 3 ? OutputFormat::Bf16 : OutputFormat::Fp32;
        if (ps == 0) {
          spec.accumulate = Accumulate::TensorCore;
        } else {
          spec.promote_every = ps;
        }
        std::vector<float> c(m * n);
        for (std::size_t i = 0; i < c.size(); ++i) c[i] = std::ldexp(float(i % 11) - 5.0f, -2);
        const bool with_c = combine == 1;
        ASSERT_EQ(validate_promoted_gemm(a, b, spec), ps);
        const std::vector<double> want = gemm(a, b, spec, with_c ? c.data() : nullptr);
        const std::uint32_t k_steps = std::uint32_t((k + 31) / 32);
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t j = 0; j < n; ++j) {
            float part = 0.0f, acc = 0.0f;
            for (std::uint32_t step = 0; step < k_steps; ++step) {
              const StepPlan plan = promotion_step(step, k_steps, std::uint32_t(ps / 32));
              const std::size_t k0 = std::size_t(step) * 32;
              part = hopper_e4m3_dot_add(a.row(i) + k0, b.row(j) + k0, std::min<std::size_t>(32, k - k0),
                                         plan.first ? 0.0f : part);
              if (plan.promote) {
                const float sa = a.scales[scale_index(std::uint32_t(i), plan.interval_start, std::uint32_t(m),
                                                      std::uint32_t(a.tile_rows), std::uint32_t(a.tile_cols),
                                                      std::uint32_t(a.grid_cols()))];
                const float sb = b.scales[scale_index(std::uint32_t(j), plan.interval_start, std::uint32_t(n),
                                                      std::uint32_t(b.tile_rows), std::uint32_t(b.tile_cols),
                                                      std::uint32_t(b.grid_cols()))];
                acc = combine_partial(spec.combine, part, sa, sb, acc);
              }
            }
            float v = with_c ? acc + c[i * n + j] : acc;
            if (spec.out == OutputFormat::Bf16) v = round_to_bf16(v);
            const float w = static_cast<float>(want[i * n + j]);
            ASSERT_EQ(std::memcmp(&v, &w, 4), 0) << "K=" << k << " N_C=" << ps << " combine=" << combine << " at ["
                                                 << i << ", " << j << "]: schedule " << v << ", gemm " << w;
          }
        }
        ++configs;
      }
    }
  }
  EXPECT_EQ(configs, 7 * 4 * 3);
}

TEST(PromotedGemmHost, PromotionScheduleHandWorked) {
  // K = 300 -> 10 instructions; N_C = 128 -> 4 per interval: promote after 3, 7 and 9 (ragged end).
  std::vector<std::uint32_t> promote_after, first_at;
  for (std::uint32_t s = 0; s < 10; ++s) {
    const StepPlan p = promotion_step(s, 10, 4);
    if (p.promote) promote_after.push_back(s);
    if (p.first) first_at.push_back(s);
  }
  EXPECT_EQ(promote_after, (std::vector<std::uint32_t>{3, 7, 9}));
  EXPECT_EQ(first_at, (std::vector<std::uint32_t>{0, 4, 8}));
  EXPECT_EQ(promotion_step(9, 10, 4).interval_start, 256u);
  // No promotion: one sum from step 0, combined once after the last.
  EXPECT_TRUE(promotion_step(0, 10, 0).first);
  EXPECT_FALSE(promotion_step(5, 10, 0).first || promotion_step(5, 10, 0).promote);
  EXPECT_TRUE(promotion_step(9, 10, 0).promote);
  // Scale of row 130 (clamped from a padding row 200 of a 131-row operand) for K interval 256,
  // 128x128 tiles over K = 300 (3 tile columns): tile (1, 2) -> 1 * 3 + 2.
  EXPECT_EQ(scale_index(200, 256, 131, 128, 128, 3), 5u);
}

// ---- other launchers' argument checks ---------------------------------------------------------

TEST(CublasLtHost, ModesAndArgumentChecks) {
  EXPECT_EQ(cublaslt_mode_by_name("per_tensor_fast_accum"), CublasLtMode::PerTensorFastAccum);
  EXPECT_NE(error_of([] { cublaslt_mode_by_name("fast"); }).find("mode: unknown"), std::string::npos);
  // CUDA 13's cublasLt.h declares the DeepSeek block scales (REFERENCE.md).
  EXPECT_EQ(cublaslt_modes().size(), 3u);
  const GemmOperand a = e4m3_operand(32, 256, Tile{1, 128}, 1), b = e4m3_operand(16, 256, Tile{128, 128}, 2);
  EXPECT_NO_THROW(validate_cublaslt_fp8_gemm(a, b, CublasLtMode::Block1x128x128, OutputFormat::Bf16));
  EXPECT_NE(error_of([&] { validate_cublaslt_fp8_gemm(a, b, CublasLtMode::PerTensor, OutputFormat::Bf16); })
                .find("a: per-tensor"),
            std::string::npos);
  const GemmOperand odd = e4m3_operand(20, 256, Tile{1, 128}, 3);
  EXPECT_NE(error_of([&] { validate_cublaslt_fp8_gemm(odd, b, CublasLtMode::Block1x128x128, OutputFormat::Bf16); })
                .find("multiples of 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { validate_cublaslt_fp8_gemm(b, a, CublasLtMode::Block1x128x128, OutputFormat::Bf16); })
                .find("a: block mode needs 1x128"),
            std::string::npos);
}

TEST(QuantHost, ArgumentChecks) {
  EXPECT_NE(error_of([] { validate_sm90_fp8_quantize(nullptr, 2, 3, Tile{1, 128}, scale_rule_by_name("deepseek")); })
                .find("x: null"),
            std::string::npos);
  const float x[4] = {1, 2, 3, 4};
  EXPECT_NE(error_of([&] { validate_sm90_fp8_quantize(x, 1, 4, Tile{1, 32}, scale_rule_by_name("mx")); }).find("rule:"),
            std::string::npos);
  for (const char* r : {"deepseek", "deepgemm", "deepseek_ue8m0", "deepgemm_ue8m0"})
    EXPECT_NO_THROW(validate_sm90_fp8_quantize(x, 1, 4, Tile{1, 128}, scale_rule_by_name(r))) << r;
  if (!device_status().available) {
    EXPECT_THROW(sm90_fp8_quantize(x, 1, 4, Tile{1, 128}, scale_rule_by_name("deepseek")), NoDevice);
  }
}

// The kernel's per-tile code (gpu/quant_scale.hpp, the functions the kernel calls) run on the host
// with cuda_fp8.h's host conversion must equal quantize() bit for bit: elements, scales, UE8M0
// bytes, for every rule the kernel takes, on zero / extreme / NaN / ragged tiles.
TEST(QuantHost, KernelTileCodeOnTheHostEqualsQuantize) {
  int checked = 0;
  for (const char* name : {"deepseek", "deepgemm", "deepseek_ue8m0", "deepgemm_ue8m0", "te", "te_fp32", "vllm",
                           "flashmla_cache"}) {
    const ScaleRule& rule = scale_rule_by_name(name);
    const QuantRule qr = quant_rule_of(rule);
    for (Tile tile : {Tile{1, 128}, Tile{128, 128}}) {
      const std::size_t rows = 130, cols = 300;
      std::vector<float> x(rows * cols);
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::size_t r = i / cols, c = i % cols;
        float v = std::sin(0.61f * float(i)) * std::ldexp(1.0f, int(r % 40) - 20);
        if (c < 128 && r % 7 == 0) v = 0.0f;                       // all-zero 1x128 blocks
        if (r % 11 == 1) v *= 1e30f;                               // extreme rows (amax -> inf/overflow)
        if (r % 13 == 2) v = std::ldexp(v, -120);                  // subnormal-range rows
        if (r == 5 && c == 200) v = std::numeric_limits<float>::quiet_NaN();
        x[i] = v;
      }
      const QTensor want = quantize(x.data(), rows, cols, tile, "e4m3", rule);
      const std::size_t tr = want.tile_rows_eff(), tc = want.tile_cols_eff(), gc = want.tile_grid_cols();
      for (std::size_t t = 0; t < want.scales.size(); ++t) {
        const std::size_t r0 = (t / gc) * tr, c0 = (t % gc) * tc;
        float amax = 0.0f;
        for (std::size_t r = r0; r < std::min(rows, r0 + tr); ++r)
          for (std::size_t c = c0; c < std::min(cols, c0 + tc); ++c) amax = quant_amax_step(amax, x[r * cols + c], qr.amax_nan);
        const QuantScale s = quant_tile_scale(amax, qr);
        std::uint32_t got_s, want_s;
        std::memcpy(&got_s, &s.dequant, 4);
        std::memcpy(&want_s, &want.scales[t], 4);
        ASSERT_EQ(got_s, want_s) << name << " tile " << t << " amax " << amax;
        if (!want.scale_bits_ue8m0.empty()) {
          ASSERT_EQ(s.ue8m0, want.scale_bits_ue8m0[t]) << name << " tile " << t;
        }
        for (std::size_t r = r0; r < std::min(rows, r0 + tr); ++r)
          for (std::size_t c = c0; c < std::min(cols, c0 + tc); ++c)
            ASSERT_EQ(quant_element(x[r * cols + c], s, qr), want.bits[r * cols + c])
                << name << " [" << r << ", " << c << "] x = " << x[r * cols + c];
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);
}

// The kernel's selection code (gpu/router_select.hpp) run on the host must give
// moe::route_from_scores()'s ids (in order) and weight bits: exact ties, -0/+0, NaN scores,
// negative biases, groups where every biased score is negative.
TEST(RouterHost, KernelSelectionOnTheHostEqualsRouteFromScores) {
  for (const char* recipe : {"deepseek_v3_hf", "sglang_output_scale"}) {
    moe::RouterSpec spec = moe::router_recipe(recipe);
    for (int variant = 0; variant < 3; ++variant) {
      if (variant == 2) spec.group_score = moe::GroupScore::Max;
      const std::size_t tokens = 40, E = std::size_t(spec.experts);
      std::vector<float> scores(tokens * E), bias(E);
      for (std::size_t e = 0; e < E; ++e) bias[e] = variant == 1 ? -2.0f : float(int(e % 9) - 6) / 8.0f;
      for (std::size_t i = 0; i < scores.size(); ++i) {
        const std::size_t t = i / E;
        float v = float((i * 2654435761u) % 1000) / 1000.0f;
        if (t % 4 == 1) v = float((i % E) % 5) / 4.0f;  // many exact ties
        if (t % 4 == 2 && i % 17 == 0) v = std::numeric_limits<float>::quiet_NaN();
        if (t % 4 == 3 && i % 3 == 0) v = -0.0f;
        scores[i] = v;
      }
      const moe::RouteResult want = moe::route_from_scores(scores.data(), tokens, bias.data(), spec);
      const RouterParams p = router_params_of(spec);
      std::vector<float> sel(E);
      std::vector<unsigned long long> gkey(std::size_t(spec.groups));
      std::unique_ptr<bool[]> group_ok(new bool[std::size_t(spec.groups)]);
      std::vector<int> chosen(std::size_t(spec.topk)), ids(std::size_t(spec.topk));
      std::vector<float> w(std::size_t(spec.topk));
      for (std::size_t t = 0; t < tokens; ++t) {
        const float* s = &scores[t * E];
        for (std::size_t e = 0; e < E; ++e) sel[e] = s[e] + bias[e];
        router_select_token(s, sel.data(), p, gkey.data(), group_ok.get(), chosen.data(), ids.data(), w.data());
        for (int j = 0; j < spec.topk; ++j) {
          const std::size_t at = t * std::size_t(spec.topk) + std::size_t(j);
          ASSERT_EQ(ids[std::size_t(j)], want.ids[at]) << recipe << " variant " << variant << " token " << t << " rank " << j;
          std::uint32_t a, b;
          std::memcpy(&a, &w[std::size_t(j)], 4);
          std::memcpy(&b, &want.weights[at], 4);
          ASSERT_EQ(a, b) << recipe << " variant " << variant << " token " << t << " weight " << j;
        }
      }
    }
  }
}

TEST(RouterHost, ArgumentChecks) {
  const moe::RouterSpec hf = moe::router_recipe("deepseek_v3_hf");
  const std::vector<float> logits(256, 0.0f);
  EXPECT_NO_THROW(validate_gpu_router(logits.data(), 1, hf));
  EXPECT_NE(error_of([&] { validate_gpu_router(logits.data(), 1, moe::router_recipe("deepseek_v3")); })
                .find("spec.gate_format"),
            std::string::npos);
  EXPECT_NE(error_of([&] { validate_gpu_router(logits.data(), 1, moe::router_recipe("deepseek_v2")); }).find("spec.score"),
            std::string::npos);
  EXPECT_NE(error_of([&] { validate_gpu_router(nullptr, 3, hf); }).find("logits: null"), std::string::npos);
}

// ---- the probe's design -----------------------------------------------------------------------

TEST(ProbeDesign, EmulatorReproducesEveryPublishedProbe) {
  int published = 0;
  for (const ProbeCase& p : probe_cases()) {
    ASSERT_EQ(p.a.size(), std::size_t(32 * p.steps)) << p.name;
    ASSERT_EQ(p.b.size(), p.a.size()) << p.name;
    if (!p.published) continue;
    ++published;
    std::string err;
    const auto got = emulate_probe(p, "hopper_fp8", &err);
    ASSERT_TRUE(got.has_value()) << p.name << ": " << err;
    EXPECT_EQ(*got, *p.published) << p.name;
  }
  EXPECT_EQ(published, 7);  // REFERENCE.md lists seven
}

TEST(ProbeDesign, BlockSizeCaseSeparatesHopperFromAda) {
  // Hand-worked: two products of 2^-14 and one of 1. One fused block of 32 (Hopper wgmma) aligns
  // all to 2^0 keeping 13 fractional bits: the 2^-14s vanish -> 1.0 = 0x3F800000. Two blocks of 16
  // (Ada mma.sync) sum the first half exactly (2^-13), which survives next to 1 -> 0x3F800400.
  for (const ProbeCase& p : probe_cases()) {
    if (p.name != "block_size_32_or_16") continue;
    EXPECT_EQ(emulate_probe(p, "hopper_fp8").value(), 0x3F800000u);
    EXPECT_EQ(emulate_probe(p, "ada_fp8").value(), 0x3F800400u);
    return;
  }
  FAIL() << "block_size_32_or_16 missing";
}

TEST(ProbeDesign, ChainCaseReTruncatesTheRunningSum) {
  // Step 1: 1 + 2^-13 (exact, 14 bits). Step 2: + 1 -> 2 + 2^-13 aligned to 2^1 keeps 2^-12 steps:
  // truncated to 2.0 = 0x40000000 (an FP32 chain would give 0x40000200).
  for (const ProbeCase& p : probe_cases()) {
    if (p.name != "chain_nonzero_c") continue;
    EXPECT_EQ(emulate_probe(p, "hopper_fp8").value(), 0x40000000u);
    return;
  }
  FAIL() << "chain_nonzero_c missing";
}

TEST(ProbeDesign, TableWithoutDeviceListsNoHardwareFindings) {
  if (device_status().available) GTEST_SKIP() << "a device is present: the table is checked by gpu/check.sh";
  int findings = -1;
  const std::string table = format_probe_table(run_probe_table(), &findings);
  EXPECT_EQ(findings, 0);
  EXPECT_NE(table.find("no device"), std::string::npos);
  EXPECT_NE(table.find("ref1_drop_below_13_bits"), std::string::npos);
}

// ---- hardware traces --------------------------------------------------------------------------

TEST(HardwareTrace, GemmTraceRoundTripsAndReplayNamesTheDifference) {
  const std::vector<float> xa = [] {
    std::vector<float> v(64 * 256);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37f * float(i)) * (i % 7 == 0 ? 40.0f : 1.0f);
    return v;
  }();
  const QTensor qa = quantize(xa.data(), 64, 256, Tile{1, 128}, "e4m3", scale_rule_by_name("deepseek"));
  const QTensor qb = quantize(xa.data(), 32, 256, Tile{128, 128}, "e4m3", scale_rule_by_name("deepseek"));
  GemmSpec spec;
  spec.out = OutputFormat::Fp32;
  std::vector<double> d = gemm(operand_from_qtensor(qa, "a"), operand_from_qtensor(qb, "b"), spec);
  const auto bytes = golden::serialize_safetensors(
      golden::trace_to_safetensors(make_gemm_trace(qa, qb, spec, d, "test", "emulator", 7, true)));
  const golden::Trace back = golden::parse_trace(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(back.op, "gemm");
  EXPECT_EQ(back.extra.at("a.tile"), "1x128");
  EXPECT_EQ(back.extra.at("b.tile"), "128x128");
  EXPECT_EQ(replay_gemm_trace(back), "");
  // One output one ulp off: the replay names it.
  float f = static_cast<float>(d[5 * 32 + 3]);
  f = std::nextafter(f, INFINITY);
  d[5 * 32 + 3] = f;
  const golden::Trace off = make_gemm_trace(qa, qb, spec, d, "test", "emulator", 7, true);
  const std::string msg = replay_gemm_trace(off);
  EXPECT_NE(msg.find("1 of 2048 outputs differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5, 3]"), std::string::npos) << msg;
  // The spec round-trips through its JSON.
  GemmSpec t;
  t.accumulate = Accumulate::TensorCore;
  t.combine = Combine::Triton;
  t.promote_every = 64;
  t.out = OutputFormat::Bf16;
  EXPECT_EQ(to_json(gemm_spec_from_json(to_json(t))), to_json(t));
  // A trace's spec is read by GemmSpec's schema: a wrong kind or an unknown key is an error naming it.
  golden::Trace bad = off;
  bad.spec = R"({"accumulate":"promoted","promote_every":"128"})";
  try {
    (void)replay_gemm_trace(bad);
    ADD_FAILURE() << "a string promote_every was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("GemmSpec.promote_every = \"128\": expected an integer"), std::string::npos)
        << e.what();
  }
  bad.spec = R"({"accumulate":"promoted","colour":1})";
  EXPECT_THROW((void)replay_gemm_trace(bad), std::invalid_argument);
}

}  // namespace

// Kernel vs emulator properties (RapidCheck): random shapes including ragged ones, adversarial
// values (zero and extreme blocks, ties, negative biases), each kernel against the emulator's
// function of the same spec -> verdict. Without a device every test is SKIPPED with the reason
// printed — never passed silently.
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gemm/gemm.hpp"
#include "gpu/cublaslt_fp8.hpp"
#include "gpu/device.hpp"
#include "gpu/router_sigmoid_groups.hpp"
#include "gpu/sm90_fp8_gemm_promoted.hpp"
#include "gpu/sm90_fp8_quant.hpp"
#include "gpu/tc_probe.hpp"
#include "moe/route.hpp"
#include "moe/routing_verdict.hpp"
#include "quant/quantize.hpp"

namespace {

using namespace fp8lab;
using namespace fp8lab::gpu;

#define SKIP_WITHOUT_DEVICE()                                                                             \
  do {                                                                                                    \
    if (!device_status().available) GTEST_SKIP() << "no device: " << device_status().reason;              \
  } while (0)

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A matrix of one of the failure-mode kinds: normal values, a zero block, an extreme block
// (1e4 and 1e-6 magnitudes), exact ties (all equal), mixed.
enum class Kind { Normal, ZeroBlock, Extreme, Ties, Mixed };
std::vector<float> gen_matrix(std::size_t rows, std::size_t cols, Kind kind) {
  std::vector<float> x = *rc::gen::container<std::vector<float>>(
      rows * cols, rc::gen::map(rc::gen::inRange(-20000, 20001), [](int v) { return float(v) / 1000.0f; }));
  switch (kind) {
    case Kind::Normal: break;
    case Kind::ZeroBlock:
      for (std::size_t c = 0; c < std::min<std::size_t>(cols, 128); ++c)
        for (std::size_t r = 0; r < rows; ++r) x[r * cols + c] = 0.0f;
      break;
    case Kind::Extreme:
      for (std::size_t i = 0; i < x.size(); ++i) x[i] *= (i / 128) % 2 ? 1e4f : 1e-6f;
      break;
    case Kind::Ties:
      for (float& v : x) v = v < 0 ? -3.0f : 3.0f;
      break;
    case Kind::Mixed:
      for (std::size_t i = 0; i < x.size(); i += 37) x[i] = 0.0f;
      break;
  }
  return x;
}

// Enums are drawn as ints (RapidCheck prints a shrunk counterexample's ints).
Kind gen_kind() { return static_cast<Kind>(*rc::gen::inRange(0, 5)); }

TEST(GpuKernels, PromotedGemmIsBitIdenticalToTheEmulator) {
  SKIP_WITHOUT_DEVICE();
  const bool ok = rc::check("sm90_fp8_gemm_promoted == gemm(spec)", [] {
    const std::size_t m = *rc::gen::inRange<std::size_t>(1, 150);
    const std::size_t n = *rc::gen::inRange<std::size_t>(1, 300);
    const std::size_t k = *rc::gen::inRange<std::size_t>(1, 700);
    const char* rule = *rc::gen::element("deepseek", "deepgemm", "deepseek_ue8m0", "deepgemm_ue8m0");
    GemmSpec spec;
    spec.combine = static_cast<Combine>(*rc::gen::inRange(0, 3));
    spec.out = *rc::gen::arbitrary<bool>() ? OutputFormat::Bf16 : OutputFormat::Fp32;
    const bool per_tensor = *rc::gen::arbitrary<bool>();
    if (per_tensor && *rc::gen::arbitrary<bool>()) {
      spec.accumulate = Accumulate::TensorCore;
    } else {
      spec.promote_every = *rc::gen::element(32, 64, 128);
    }
    const Tile ta = per_tensor ? Tile{0, 0} : Tile{1, 128}, tb = per_tensor ? Tile{0, 0} : Tile{128, 128};
    const auto xa = gen_matrix(m, k, gen_kind()), xb = gen_matrix(n, k, gen_kind());
    const GemmOperand a = operand_from_qtensor(quantize(xa.data(), m, k, ta, "e4m3", scale_rule_by_name(rule)), "a");
    const GemmOperand b = operand_from_qtensor(quantize(xb.data(), n, k, tb, "e4m3", scale_rule_by_name(rule)), "b");
    std::vector<float> c;
    const bool with_c = *rc::gen::arbitrary<bool>();
    if (with_c) c = gen_matrix(m, n, Kind::Normal);
    const auto want = gemm(a, b, spec, with_c ? c.data() : nullptr);
    const auto got = sm90_fp8_gemm_promoted(a, b, spec, with_c ? c.data() : nullptr);
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (bits_of(float(got[i])) != bits_of(float(want[i]))) {
        std::ostringstream o;
        o.precision(9);
        o << "first difference at [" << i / n << ", " << i % n << "]: kernel " << got[i] << ", emulator " << want[i]
          << ", spec " << to_json(spec);
        RC_FAIL(o.str());
      }
    }
  });
  EXPECT_TRUE(ok);
}

TEST(GpuKernels, QuantiserIsBitIdenticalToTheEmulator) {
  SKIP_WITHOUT_DEVICE();
  const bool ok = rc::check("sm90_fp8_quantize == quantize", [] {
    const std::size_t rows = *rc::gen::inRange<std::size_t>(1, 300);
    const std::size_t cols = *rc::gen::inRange<std::size_t>(1, 400);
    const Tile tile = *rc::gen::arbitrary<bool>() ? Tile{1, 128} : Tile{128, 128};
    const ScaleRule& rule =
        scale_rule_by_name(*rc::gen::element("deepseek", "deepgemm", "deepseek_ue8m0", "deepgemm_ue8m0"));
    std::vector<float> x = gen_matrix(rows, cols, gen_kind());
    if (*rc::gen::inRange(0, 8) == 0) x[*rc::gen::inRange<std::size_t>(0, x.size())] = NAN;
    const QTensor want = quantize(x.data(), rows, cols, tile, "e4m3", rule);
    const QTensor got = sm90_fp8_quantize(x.data(), rows, cols, tile, rule);
    for (std::size_t i = 0; i < want.bits.size(); ++i)
      if (got.bits[i] != want.bits[i])
        RC_FAIL("element [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "] of rule " + rule.name +
                ": kernel " + std::to_string(got.bits[i]) + ", emulator " + std::to_string(want.bits[i]));
    for (std::size_t i = 0; i < want.scales.size(); ++i)
      if (bits_of(got.scales[i]) != bits_of(want.scales[i])) RC_FAIL("scale of tile " + std::to_string(i));
    RC_ASSERT(got.scale_bits_ue8m0 == want.scale_bits_ue8m0);
  });
  EXPECT_TRUE(ok);
}

TEST(GpuKernels, RouterPassesTheTieAwareVerdictAndSelectsExactlyFromItsScores) {
  SKIP_WITHOUT_DEVICE();
  const bool ok = rc::check("router_sigmoid_groups vs moe::route", [] {
    const moe::RouterSpec spec = moe::router_recipe(*rc::gen::element("deepseek_v3_hf", "sglang_output_scale"));
    const std::size_t tokens = *rc::gen::inRange<std::size_t>(1, 64);
    const std::size_t E = std::size_t(spec.experts);
    std::vector<float> logits = gen_matrix(tokens, E, *rc::gen::arbitrary<bool>() ? Kind::Ties : Kind::Mixed);
    std::vector<float> bias(E);
    for (float& b : bias) b = float(*rc::gen::inRange(-3000, 1000)) / 1000.0f;  // mostly negative biases
    const GpuRouting got = router_sigmoid_groups(logits.data(), tokens, bias.data(), spec);
    // Selection and weights, given the kernel's own scores: pinned, bit for bit.
    const moe::RouteResult exact = moe::route_from_scores(got.scores.data(), tokens, bias.data(), spec);
    RC_ASSERT(exact.ids == got.ids);
    for (std::size_t i = 0; i < exact.weights.size(); ++i) RC_ASSERT(bits_of(exact.weights[i]) == bits_of(got.weights[i]));
    // The whole gate against the emulator's correctly rounded sigmoid: the tie-aware verdict.
    const moe::RoutingVerdict v =
        moe::compare_routing(got.ids.data(), got.weights.data(), nullptr, nullptr, logits.data(), tokens, bias.data(), spec);
    if (!v.ok()) RC_FAIL(v.summary());
  });
  EXPECT_TRUE(ok);
}

TEST(GpuKernels, OneWgmmaMatchesTheHopperModelOnRandomInputs) {
  SKIP_WITHOUT_DEVICE();
  const bool ok = rc::check("wgmma m64n8k32 == fused_dot_add(hopper_fp8)", [] {
    ProbeCase p;
    p.name = "random";
    p.steps = *rc::gen::inRange(1, 4);
    // E4M3 values over the whole range, zeros and subnormals included (NaN excluded: its payload
    // is the probe's own finding).
    const auto value = rc::gen::map(rc::gen::inRange(0, 256), [](int byte) {
      if ((byte & 0x7F) == 0x7F) byte ^= 1;
      return float(decode(std::uint32_t(byte), format_by_name("e4m3")));
    });
    p.a = *rc::gen::container<std::vector<float>>(32 * p.steps, value);
    p.b = *rc::gen::container<std::vector<float>>(32 * p.steps, value);
    p.c_bits = bits_of(float(*rc::gen::inRange(-100000, 100000)) / 64.0f);
    const std::uint32_t want = emulate_probe(p, "hopper_fp8").value();
    const std::uint32_t got = run_probe_wgmma(p);
    if (got != want) RC_FAIL("wgmma " + std::to_string(got) + " vs model " + std::to_string(want));
  });
  EXPECT_TRUE(ok);
}

// cuBLASLt's FP8 arithmetic is undocumented; the property is that it stays inside the emulator's
// family of specs: for every random input some GemmSpec (no promotion, or promotion every
// 32..K elements, any combine order) reproduces every output bit. Power-of-two per-tensor scales,
// so that where the library applies them cannot matter. A counterexample is a finding: the
// library does something the emulator cannot yet express.
TEST(GpuKernels, CublasLtPerTensorIsReproducedBySomeEmulatorSpec) {
  SKIP_WITHOUT_DEVICE();
  const bool ok = rc::check("cublaslt per-tensor in the emulator's spec family", [] {
    const std::size_t m = 16 * *rc::gen::inRange<std::size_t>(1, 8);
    const std::size_t n = 16 * *rc::gen::inRange<std::size_t>(1, 8);
    const std::size_t k = 16 * *rc::gen::inRange<std::size_t>(1, 64);
    const CublasLtMode mode = *rc::gen::arbitrary<bool>() ? CublasLtMode::PerTensor : CublasLtMode::PerTensorFastAccum;
    const auto xa = gen_matrix(m, k, gen_kind()), xb = gen_matrix(n, k, gen_kind());
    const ScaleRule& rule = scale_rule_by_name("deepseek_ue8m0");
    const GemmOperand a = operand_from_qtensor(quantize(xa.data(), m, k, Tile{0, 0}, "e4m3", rule), "a");
    const GemmOperand b = operand_from_qtensor(quantize(xb.data(), n, k, Tile{0, 0}, "e4m3", rule), "b");
    const std::vector<double> got = cublaslt_fp8_gemm(a, b, mode, OutputFormat::Fp32);
    std::string tried;
    for (int c = 0; c < 3; ++c) {
      GemmSpec s;
      s.out = OutputFormat::Fp32;
      s.combine = static_cast<Combine>(c);
      for (std::size_t nc = 0; nc <= k; nc = nc ? nc * 2 : 32) {
        s.accumulate = nc ? Accumulate::Promoted : Accumulate::TensorCore;
        s.promote_every = nc ? int(nc) : 128;
        const std::vector<double> want = gemm(a, b, s);
        bool same = true;
        for (std::size_t i = 0; i < want.size() && same; ++i) same = bits_of(float(got[i])) == bits_of(float(want[i]));
        if (same) {
          RC_TAG(std::string(cublaslt_mode_name(mode)) + " ~ " + to_json(s));
          return;
        }
        tried += ' ';
        tried += to_json(s);
      }
    }
    RC_FAIL(std::string(cublaslt_mode_name(mode)) + " M=" + std::to_string(m) + " N=" + std::to_string(n) +
            " K=" + std::to_string(k) + ": no spec reproduces it; tried" + tried);
  });
  EXPECT_TRUE(ok);
}

}  // namespace

// Host side of the tensor-core probe: the cases, the emulator's predictions, the table.
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "accum/tensor_core.hpp"
#include "gpu/device.hpp"
#include "gpu/tc_probe.hpp"

namespace fp8lab::gpu {

namespace {

float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// A single-instruction case with the given leading elements (the rest zero).
ProbeCase one(std::string name, std::string feature, std::vector<float> a, std::vector<float> b, float c,
              std::optional<std::uint32_t> published) {
  ProbeCase p;
  p.name = std::move(name);
  p.feature = std::move(feature);
  a.resize(32, 0.0f);
  b.resize(32, 0.0f);
  p.a = std::move(a);
  p.b = std::move(b);
  p.c_bits = float_bits(c);
  p.published = published;
  return p;
}

std::string hex(std::optional<std::uint32_t> v) {
  if (!v) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", *v);
  return buf;
}

}  // namespace

std::vector<ProbeCase> probe_cases() {
  const float q = std::ldexp(1.0f, -7), h = std::ldexp(1.0f, -6), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<ProbeCase> v;
  // REFERENCE.md "Tensor cores", the seven single-instruction probes (E4M3, FP32 D).
  v.push_back(one("ref1_drop_below_13_bits", "a product 2^-14 below the 13 fractional alignment bits is dropped",
                  {1, q}, {1, q}, 0.0f, 0x3F800000u));
  v.push_back(one("ref2_keep_13th_bit", "a product 2^-13 (the 13th fractional bit) survives", {1, h}, {1, q}, 0.0f,
                  0x3F800400u));
  v.push_back(one("ref3_truncate_magnitude", "a negative 2^-14 is truncated toward zero, not floored (sign-magnitude)",
                  {1, -q}, {1, q}, 0.0f, 0x3F800000u));
  v.push_back(one("ref4_carry_normalised", "a sum of 2 + 2^-13 renormalises and truncates to 14 bits", {1, 1, h},
                  {1, 1, q}, 0.0f, 0x40000000u));
  {
    ProbeCase p = one("ref5_c_joins_truncation", "C alone is truncated to the 14-bit result grid", {}, {}, 0.0f,
                      0x3F800000u);
    p.c_bits = 0x3F800008u;
    v.push_back(p);
  }
  v.push_back(one("ref6_c_dominates", "a large C aligns away a product of 1", {1}, {1}, 16384.0f, float_bits(16384.0f)));
  v.push_back(one("ref7_cancellation_exact", "cancellation keeps 2^-13 exactly (normalisation after an exact sum)",
                  {1, -1, h}, {1, 1, q}, 0.0f, float_bits(std::ldexp(1.0f, -13))));
  // Open questions (REFERENCE.md "Open on hardware"): no published value.
  {
    // Fused block size: two products of 2^-14 in lanes 0-1 and 1 * 1 in lane 16. One block of 32
    // drops both (-> 1.0); two blocks of 16 (Ada) sum them exactly first (-> 1 + 2^-13).
    std::vector<float> a(32, 0.0f), b(32, 0.0f);
    a[0] = a[1] = b[0] = b[1] = q;
    a[16] = b[16] = 1.0f;
    v.push_back(one("block_size_32_or_16", "products 0-15 and 16-31 in one fused block (32) or two (16)", a, b, 0.0f,
                    std::nullopt));
  }
  {
    ProbeCase p = one("chain_nonzero_c", "a chain re-truncates the running sum: (1 + 2^-13) then + 1 -> 2", {}, {},
                      0.0f, std::nullopt);
    p.steps = 2;
    p.a.assign(64, 0.0f);
    p.b.assign(64, 0.0f);
    p.a[0] = 1; p.b[0] = 1; p.a[1] = h; p.b[1] = q;  // step 0: 1 + 2^-13
    p.a[32] = 1; p.b[32] = 1;                       // step 1: + 1
    v.push_back(p);
  }
  {
    ProbeCase p = one("chain_c_1p5_four_steps", "C = 1.5 chained through four instructions of small products", {}, {},
                      1.5f, std::nullopt);
    p.steps = 4;
    p.a.assign(128, 0.0f);
    p.b.assign(128, 0.0f);
    for (int s = 0; s < 4; ++s) {
      p.a[32 * s] = h;
      p.b[32 * s] = h;  // 2^-12 per step
      p.a[32 * s + 1] = q;
      p.b[32 * s + 1] = -h;  // -2^-13 per step
    }
    v.push_back(p);
  }
  v.push_back(one("nan_operand_positive", "NaN sign and payload of D from an E4M3 NaN (0x7F) operand", {nan}, {1}, 0.0f,
                  std::nullopt));
  v.push_back(one("nan_operand_negative", "NaN sign and payload of D from an E4M3 NaN (0xFF) operand", {-nan}, {1}, 0.0f,
                  std::nullopt));
  {
    ProbeCase p = one("nan_c_payload", "a C NaN with a payload (0x7FA00001): propagated, or canonicalised", {1}, {1},
                      0.0f, std::nullopt);
    p.c_bits = 0x7FA00001u;
    v.push_back(p);
  }
  {
    ProbeCase p = one("signed_zero_all_negative", "(-0) * 1 + (-0): IEEE gives -0", {-0.0f}, {1}, 0.0f, std::nullopt);
    p.c_bits = 0x80000000u;
    v.push_back(p);
  }
  v.push_back(one("signed_zero_cancellation", "1 - 1 with C = -0: the sign of an exact zero", {1, 1}, {1, -1}, -0.0f,
                  std::nullopt));
  {
    ProbeCase p = one("subnormal_c_passthrough", "an FP32 subnormal C (2^-130) with zero products", {}, {}, 0.0f,
                      std::nullopt);
    p.c_bits = 0x00080000u;
    v.push_back(p);
  }
  {
    ProbeCase p = one("subnormal_c_plus_product", "an FP32 subnormal C next to a tiny product (2^-18)",
                      {std::ldexp(1.0f, -9)}, {std::ldexp(1.0f, -9)}, 0.0f, std::nullopt);
    p.c_bits = 0x00000001u;
    v.push_back(p);
  }
  v.push_back(one("e4m3_subnormal_operands", "E4M3 subnormal operands (2^-9 * 2^-9, exponent clamp at -6)",
                  {std::ldexp(1.0f, -9), std::ldexp(1.0f, -9)}, {std::ldexp(1.0f, -9), std::ldexp(1.0f, -7)}, 0.0f,
                  std::nullopt));
  {
    std::vector<float> a(32, 448.0f), b(32, 448.0f);
    ProbeCase p = one("overflow_near_flt_max", "C = FLT_MAX plus 32 * 448^2: saturate, or infinity", a, b, 0.0f,
                      std::nullopt);
    p.c_bits = 0x7F7FFFFFu;
    v.push_back(p);
  }
  return v;
}

std::optional<std::uint32_t> emulate_probe(const ProbeCase& p, const std::string& preset, std::string* error) {
  try {
    const TensorCoreModel& model = tensor_core_by_name(preset);
    const int k = tensor_core_k(model);
    if (k != 32 && k != 16) throw std::invalid_argument("preset " + preset + " is not a k = 32 or k = 16 instruction");
    // A k = 16 preset models the k32 instruction as two chained k16 ones (what ptxas makes of FP8
    // mma.sync on sm_90a: F2FP.F16.E4M3 conversions, exact, then two HMMA.16816.F32).
    float d = bits_to_float(p.c_bits);
    for (int s = 0; s < 32 * p.steps; s += k) d = fused_dot_add(&p.a[s], &p.b[s], d, model);
    return float_bits(d);
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    return std::nullopt;
  }
}

std::vector<ProbeRow> run_probe_table() {
  std::vector<ProbeRow> rows;
  const bool device = device_status().available;
  for (const ProbeCase& p : probe_cases()) {
    ProbeRow r;
    r.probe = p;
    r.emu_hopper = emulate_probe(p, "hopper_fp8");
    r.emu_ada = emulate_probe(p, "ada_fp8");
    r.emu_fp16x2 = emulate_probe(p, "hopper_fp16");
    if (device) {
      r.hw_wgmma = run_probe_wgmma(p);
      r.hw_mma_sync = run_probe_mma_sync(p);
    }
    rows.push_back(r);
  }
  return rows;
}

std::string format_probe_table(const std::vector<ProbeRow>& rows, int* findings) {
  std::ostringstream o, f;
  int count = 0;
  char line[256];
  std::snprintf(line, sizeof line, "%-26s %-10s %-10s %-10s %-10s %-10s %-10s\n", "probe", "published", "emu:hopper",
                "emu:ada", "emu:f16x2", "hw:wgmma", "hw:mma");
  o << line;
  for (const ProbeRow& r : rows) {
    std::snprintf(line, sizeof line, "%-26s %-10s %-10s %-10s %-10s %-10s %-10s\n", r.probe.name.c_str(),
                  hex(r.probe.published).c_str(), hex(r.emu_hopper).c_str(), hex(r.emu_ada).c_str(),
                  hex(r.emu_fp16x2).c_str(), hex(r.hw_wgmma).c_str(), hex(r.hw_mma_sync).c_str());
    o << line;
    auto finding = [&](const char* who, std::optional<std::uint32_t> got, std::optional<std::uint32_t> want,
                       const char* against) {
      if (got && want && *got != *want) {
        ++count;
        f << "FINDING: " << r.probe.name << ": " << who << " = " << hex(got) << ", " << against << " = " << hex(want)
          << " (" << r.probe.feature << ")\n";
      }
    };
    finding("emulator hopper_fp8", r.emu_hopper, r.probe.published, "published");
    finding("wgmma", r.hw_wgmma, r.emu_hopper, "emulator hopper_fp8");
    finding("mma.sync", r.hw_mma_sync, r.emu_fp16x2, "emulator hopper_fp16 x2 (the SASS: F2FP + 2 HMMA.16816)");
  }
  if (rows.empty() || !rows.front().hw_wgmma) o << "(no device: hardware columns not measured)\n";
  o << "emu:hopper = hopper_fp8 (wgmma k32), emu:ada = ada_fp8 (two fused halves of 16), emu:f16x2 = two chained\n"
       "hopper_fp16 k16 instructions: ptxas lowers FP8 mma.sync on sm_90a to F2FP.F16.E4M3 + HMMA.16816.F32\n"
       "(gpu/tests/check_sass.sh), so mma.sync is compared with that model, wgmma with hopper_fp8.\n";
  o << f.str();
  if (findings) *findings = count;
  return o.str();
}

}  // namespace fp8lab::gpu

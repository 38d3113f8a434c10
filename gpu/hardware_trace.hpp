// Hardware traces: what a GPU computed, kept as golden traces (golden/trace.hpp) so that CI, which
// has no GPU, replays the emulator against hardware bits forever. Header-only on purpose: the
// replay test (tests/cpp/test_gpu_replay.cpp) needs only the emulator and golden/, not CUDA.
//
// Two kinds, told apart by the trace's `op`:
//   "gemm"      inputs  a.bits U8 [M,K], a.scales F32 [grid], b.bits U8 [N,K], b.scales F32 [grid]
//               (E4M3 elements; tile shapes in metadata "a.tile" / "b.tile" as "RxC")
//               output  d F32 or BF16 [M,N]; spec = the emulator GemmSpec that is claimed to
//               reproduce it (to_json, read back by GemmSpec's schema: gemm_spec_from_json);
//               metadata "kernel", "gpu", "driver", "matched" ("true" when check.sh found the
//               spec bit-identical, "false" when `spec` is only the closest).
//   "tc_probe"  per case <name>.a / <name>.b F32 [32*steps] and <name>.c U32 [1] inputs,
//               <name>.d_wgmma U32 [1] output (replayed against the spec's "instruction" preset
//               through accum's fused_dot_add, chained), <name>.d_mma_sync U32 [1] intermediate
//               (recorded; Hopper's mma.sync model is itself a finding of the probe).
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "gemm/gemm.hpp"
#include "gemm/operand.hpp"
#include "common/json.hpp"
#include "golden/trace.hpp"
#include "quant/qtensor.hpp"

namespace fp8lab::gpu {

inline golden::Tensor trace_tensor(std::string dtype, std::vector<std::uint64_t> shape, const void* data,
                                   std::size_t bytes) {
  golden::Tensor t;
  t.dtype = std::move(dtype);
  t.shape = std::move(shape);
  t.data.resize(bytes);
  if (bytes) std::memcpy(t.data.data(), data, bytes);  // x86-64 and the safetensors format: little-endian
  return t;
}

inline std::string tile_text(const QTensor& q) {
  return std::to_string(q.tile_rows_eff()) + "x" + std::to_string(q.tile_cols_eff());
}

inline golden::Trace make_gemm_trace(const QTensor& a, const QTensor& b, const GemmSpec& spec,
                                     const std::vector<double>& d, const std::string& producer,
                                     const std::string& kernel, std::uint64_t seed, bool matched) {
  golden::Trace t;
  t.op = "gemm";
  t.spec = to_json(spec);
  t.producer = producer;
  t.seed = seed;
  auto add = [&](const std::string& name, const char* role, golden::Tensor tensor) {
    t.tensors[name] = golden::TraceTensor{role, std::move(tensor)};
  };
  for (const auto* q : {&a, &b}) {
    const std::string p = q == &a ? "a" : "b";
    std::vector<std::uint8_t> bits(q->bits.begin(), q->bits.end());
    add(p + ".bits", "input", trace_tensor("U8", {q->rows, q->cols}, bits.data(), bits.size()));
    add(p + ".scales", "input",
        trace_tensor("F32", {q->tile_grid_rows(), q->tile_grid_cols()}, q->scales.data(), q->scales.size() * 4));
    t.extra[p + ".tile"] = tile_text(*q);
  }
  const std::size_t m = a.rows, n = b.rows;
  if (spec.out == OutputFormat::Bf16) {
    std::vector<std::uint16_t> h(m * n);
    for (std::size_t i = 0; i < h.size(); ++i) {
      const float f = static_cast<float>(d[i]);
      std::uint32_t u;
      std::memcpy(&u, &f, 4);
      h[i] = static_cast<std::uint16_t>(u >> 16);  // d holds bf16 values: the low half is zero
    }
    add("d", "output", trace_tensor("BF16", {m, n}, h.data(), h.size() * 2));
  } else {
    std::vector<float> f(d.begin(), d.end());
    add("d", "output", trace_tensor("F32", {m, n}, f.data(), f.size() * 4));
  }
  t.extra["kernel"] = kernel;
  t.extra["matched"] = matched ? "true" : "false";
  return t;
}

// The operand a trace holds under prefix "a" or "b".
inline QTensor trace_operand(const golden::Trace& t, const std::string& p) {
  const auto& bits = t.tensors.at(p + ".bits").tensor;
  const auto& scales = t.tensors.at(p + ".scales").tensor;
  const std::string tile = t.extra.at(p + ".tile");
  const auto x = tile.find('x');
  if (bits.dtype != "U8" || bits.shape.size() != 2 || scales.dtype != "F32" || x == std::string::npos) {
    throw std::invalid_argument("trace: operand '" + p + "' is not U8 bits [rows, cols] + F32 scales + RxC tile");
  }
  QTensor q;
  q.rows = bits.shape[0];
  q.cols = bits.shape[1];
  q.fmt = "e4m3";
  q.tile = Tile{std::stoul(tile.substr(0, x)), std::stoul(tile.substr(x + 1))};
  q.rule = "hardware_trace";
  q.bits = ElementBits::from_values(bits.data.begin(), bits.data.end(), 8);  // U8 E4M3 patterns
  q.scales.resize(scales.data.size() / 4);
  std::memcpy(q.scales.data(), scales.data.data(), scales.data.size());
  return q;
}

// Replays a "gemm" trace: "" when the emulator reproduces d bit for bit, else what differs.
inline std::string replay_gemm_trace(const golden::Trace& t) {
  const GemmSpec spec = gemm_spec_from_json(t.spec);  // the schema reader: strict, errors name the field
  const QTensor qa = trace_operand(t, "a"), qb = trace_operand(t, "b");
  const std::vector<double> emu = gemm(operand_from_qtensor(qa, "a"), operand_from_qtensor(qb, "b"), spec);
  const auto& d = t.tensors.at("d").tensor;
  std::size_t differing = 0, first = 0;
  double got0 = 0, want0 = 0;
  for (std::size_t i = 0; i < emu.size(); ++i) {
    float hw;
    if (d.dtype == "BF16") {
      std::uint32_t u = 0;
      std::memcpy(reinterpret_cast<char*>(&u) + 2, &d.data[2 * i], 2);
      std::memcpy(&hw, &u, 4);
    } else {
      std::memcpy(&hw, &d.data[4 * i], 4);
    }
    const float e = static_cast<float>(emu[i]);
    if (std::memcmp(&hw, &e, 4) != 0) {
      if (differing++ == 0) first = i, got0 = hw, want0 = e;
    }
  }
  if (!differing) return {};
  std::ostringstream o;
  o.precision(9);
  o << differing << " of " << emu.size() << " outputs differ from the emulator's spec " << t.spec << "; first at ["
    << first / qb.rows << ", " << first % qb.rows << "]: hardware " << got0 << ", emulator " << want0
    << " (kernel " << (t.extra.count("kernel") ? t.extra.at("kernel") : "?") << ")";
  return o.str();
}

// Replays a "tc_probe" trace: every <name>.d_wgmma against the spec's instruction preset.
inline std::string replay_probe_trace(const golden::Trace& t) {
  const Json j = parse_json(t.spec);
  const Json* ins = j.find("instruction");
  if (!ins || !ins->is_string()) return "spec: no \"instruction\" preset";
  const TensorCoreModel& model = tensor_core_by_name(ins->text);
  std::ostringstream o;
  for (const auto& [name, tt] : t.tensors) {
    const std::string suffix = ".d_wgmma";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string base = name.substr(0, name.size() - suffix.size());
    const auto& a = t.tensors.at(base + ".a").tensor.data;
    const auto& b = t.tensors.at(base + ".b").tensor.data;
    std::vector<float> av(a.size() / 4), bv(b.size() / 4);
    std::memcpy(av.data(), a.data(), a.size());
    std::memcpy(bv.data(), b.data(), b.size());
    float d;
    std::memcpy(&d, t.tensors.at(base + ".c").tensor.data.data(), 4);
    for (std::size_t s = 0; s + 32 <= av.size(); s += 32) d = fused_dot_add(&av[s], &bv[s], d, model);
    std::uint32_t want, got;
    std::memcpy(&want, &d, 4);
    std::memcpy(&got, tt.tensor.data.data(), 4);
    if (want != got) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: hardware 0x%08X, emulator %s 0x%08X\n", base.c_str(), got,
                    ins->text.c_str(), want);
      o << buf;
    }
  }
  return o.str();
}

}  // namespace fp8lab::gpu

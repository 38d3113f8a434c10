// The tensor-core probe: tiny FP8 E4M3 mma.sync (m16n8k32) and wgmma (m64n8k32) runs on crafted
// inputs, each chosen so that its FP32 output bits tell one accumulation feature apart (how many
// bits survive alignment, truncation vs rounding, whether C joins the alignment, the fused block
// size, normalisation, chains with non-zero C, NaN sign/payload, signed zeros, subnormal
// outputs), in the manner of the feature-targeted tests of Khattak & Mikaitis (arXiv 2512.07004)
// and MMA-Sim (arXiv 2511.10909). Each case carries the emulator's prediction (accum's presets)
// and, where REFERENCE.md "Tensor cores" publishes one, the published value; every measured value
// that differs from the emulator's Hopper model is a finding.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fp8lab::gpu {

struct ProbeCase {
  std::string name;     // short id, e.g. "ref1_small_product_dropped"
  std::string feature;  // what the case separates, in words
  // `steps` instructions of k = 32 chained through C (step s uses a[32s..32s+31], b[...]); lane 0
  // of row 0 / column 0 only, every other A row / B column is zero. Values are E4M3 values (NaN
  // allowed: it is encoded as E4M3's NaN 0x7F, or 0xFF when negative).
  int steps = 1;
  std::vector<float> a, b;  // 32 * steps each
  std::uint32_t c_bits = 0; // FP32 C (bits, so that -0 and NaN payloads are exact)
  std::optional<std::uint32_t> published;  // REFERENCE.md's value, when it lists one
};

// The seven single-instruction probes of REFERENCE.md plus the open questions it lists.
std::vector<ProbeCase> probe_cases();

// The emulator's prediction: d = c, then for each step d = fused_dot_add(a_s, b_s, d, preset); a
// k = 16 preset takes each step as two chained k16 instructions.
// Returns nullopt (and sets `error`) when the model refuses the input.
std::optional<std::uint32_t> emulate_probe(const ProbeCase& p, const std::string& preset, std::string* error = nullptr);

// The same on the device: one warp issuing mma.sync.m16n8k32 (C = previous D between steps), or
// one warpgroup issuing wgmma m64n8k32 with scale-d = 1 (the accumulator registers chained).
// Throws NoDevice without a device. Returns D[0][0]'s bits.
std::uint32_t run_probe_mma_sync(const ProbeCase& p);
std::uint32_t run_probe_wgmma(const ProbeCase& p);

struct ProbeRow {
  ProbeCase probe;
  std::optional<std::uint32_t> emu_hopper, emu_ada;  // hopper_fp8 and ada_fp8 presets
  std::optional<std::uint32_t> emu_fp16x2;           // two chained hopper_fp16 (k16) instructions
  std::optional<std::uint32_t> hw_wgmma, hw_mma_sync;
};
// Runs every case (device columns empty without a device). Never throws for a missing device.
std::vector<ProbeRow> run_probe_table();
// A fixed-width table of the rows and, below it, one "FINDING:" line per measured value that
// differs from the emulator's Hopper model (and one per published value the emulator misses).
std::string format_probe_table(const std::vector<ProbeRow>& rows, int* findings = nullptr);

}  // namespace fp8lab::gpu

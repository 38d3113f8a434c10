// A golden trace: a safetensors file whose __metadata__ pins what produced it. Keys (all values
// are strings, as safetensors requires):
//   format       "fp8lab-trace/1"
//   op           the operation ("cast", "quantize", "gemm", "moe_route", ...)
//   spec         the operation's spec as canonical JSON (keys sorted, no whitespace)
//   spec_sha256  SHA-256 of `spec`'s UTF-8 bytes, lower-case hex
//   producer     "fp8lab <version> emulator", or GPU name + driver + kernel name
//   seed         the generator seed of the inputs, decimal
//   roles        canonical JSON {tensor name: "input" | "output" | "intermediate"}
//   sha256       canonical JSON {tensor name: SHA-256 of its data bytes}
// Reading a trace validates all of it; any inconsistency is a TraceError naming file and problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "golden/safetensors.hpp"

namespace fp8lab::golden {

inline constexpr std::string_view kTraceFormat = "fp8lab-trace/1";

struct TraceTensor {
  std::string role;  // "input", "output" or "intermediate"
  Tensor tensor;
};

struct Trace {
  std::string op, spec, producer;
  std::uint64_t seed = 0;
  std::map<std::string, TraceTensor> tensors;
  // Metadata keys beyond the required ones (kept as they are; e.g. "note", "gpu").
  std::map<std::string, std::string> extra;
  // Only filled when read with check_digests = false: one message per tensor whose bytes do not
  // hash to their recorded digest (lets `verify` name the edited element instead of just failing).
  std::vector<std::string> digest_mismatches;
};

// Checks a parsed file against the rules above and returns the trace. `source` names the file.
// With check_digests = false a digest mismatch is recorded in Trace::digest_mismatches instead of
// thrown (every other check still throws).
Trace trace_from_safetensors(const Safetensors& file, std::string_view source, bool check_digests = true);
// The file for a trace: computes spec_sha256 and the per-tensor digests. Throws
// std::invalid_argument naming the field when the trace itself is malformed (spec not canonical
// JSON, unknown role, ...).
Safetensors trace_to_safetensors(const Trace& trace);

Trace parse_trace(const std::uint8_t* bytes, std::size_t size, std::string_view source, bool check_digests = true);
Trace read_trace(const std::string& path, bool check_digests = true);
void write_trace(const std::string& path, const Trace& trace, bool overwrite);

// The canonical form of a JSON text (throws std::invalid_argument if it is not valid JSON).
std::string canonical_json(std::string_view text);

}  // namespace fp8lab::golden

// libFuzzer target for the trace parser: any byte string must either parse or raise TraceError —
// never crash, hang, read out of bounds (ASan) or hit undefined behaviour (UBSan). A parsed trace
// must also survive a write/read round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "golden/safetensors.hpp"
#include "golden/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fp8lab::golden;
  Safetensors file;
  try {
    file = parse_safetensors(data, size, "fuzz");
  } catch (const TraceError&) {
    return 0;
  }
  // Whatever parsed re-serialises and parses to the same content.
  const auto bytes = serialize_safetensors(file);
  const auto again = parse_safetensors(bytes.data(), bytes.size(), "fuzz-again");
  if (again.metadata != file.metadata || again.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& [name, t] : file.tensors) {
    const auto& u = again.tensors.at(name);
    if (u.dtype != t.dtype || u.shape != t.shape || u.data != t.data) std::abort();
  }
  try {
    (void)trace_from_safetensors(file, "fuzz");
  } catch (const TraceError&) {
  }
  return 0;
}

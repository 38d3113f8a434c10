// Properties of the trace container: what is written is read back unchanged; any truncation or
// any flipped data byte is rejected (never accepted silently, never a crash); random header edits
// either parse or raise TraceError.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

#include "common/json.hpp"
#include "golden/safetensors.hpp"
#include "golden/trace.hpp"

namespace g = fp8lab::golden;

namespace {

// A random but valid trace: 1-4 tensors of random dtypes, ranks 0-3 and small dimensions
// (zero included), each with random bytes; inputs and outputs both present.
rc::Gen<g::Trace> genTrace() {
  return rc::gen::exec([] {
    g::Trace t;
    t.op = *rc::gen::element<std::string>("cast", "quantize", "gemm");
    t.producer = *rc::gen::element<std::string>("fp8lab test", "H100 driver 550 kernel x");
    t.seed = *rc::gen::arbitrary<std::uint64_t>();
    t.spec = "{\"k\":" + std::to_string(*rc::gen::inRange(0, 1000)) + ",\"s\":\"" +
             *rc::gen::element<std::string>("a", "\xc3\xa9", "\\n") + "\"}";
    const auto dtypes = g::dtype_names();
    const int n = *rc::gen::inRange(1, 5);
    for (int i = 0; i < n; ++i) {
      g::Tensor x;
      x.dtype = *rc::gen::elementOf(dtypes);
      const int rank = *rc::gen::inRange(0, 4);
      for (int d = 0; d < rank; ++d) x.shape.push_back(*rc::gen::inRange<std::uint64_t>(0, 5));
      x.data = *rc::gen::container<std::vector<std::uint8_t>>(x.elements() * g::dtype_size(x.dtype),
                                                              rc::gen::arbitrary<std::uint8_t>());
      std::string name = "t";
      name += std::to_string(i);
      t.tensors[name] = {i == 0 ? "input" : (i == 1 ? "output" : "intermediate"), x};
    }
    return t;
  });
}

std::vector<std::uint8_t> bytes_of(const g::Trace& t) { return g::serialize_safetensors(g::trace_to_safetensors(t)); }

}  // namespace

RC_GTEST_PROP(GoldenTrace, WriteThenReadIsIdentity, ()) {
  const g::Trace t = *genTrace();
  const auto b = bytes_of(t);
  const g::Trace u = g::parse_trace(b.data(), b.size(), "p");
  RC_ASSERT(u.op == t.op);
  RC_ASSERT(u.seed == t.seed);
  RC_ASSERT(u.producer == t.producer);
  RC_ASSERT(u.spec == g::canonical_json(t.spec));
  RC_ASSERT(u.tensors.size() == t.tensors.size());
  for (const auto& [name, x] : t.tensors) {
    const auto& y = u.tensors.at(name);
    RC_ASSERT(y.role == x.role);
    RC_ASSERT(y.tensor.dtype == x.tensor.dtype);
    RC_ASSERT(y.tensor.shape == x.tensor.shape);
    RC_ASSERT(y.tensor.data == x.tensor.data);
  }
  // Serialising the parsed trace gives the same bytes: the writer is canonical.
  RC_ASSERT(bytes_of(u) == b);
}

RC_GTEST_PROP(GoldenTrace, EveryTruncationIsRejected, ()) {
  const auto b = bytes_of(*genTrace());
  const auto cut = *rc::gen::inRange<std::size_t>(0, b.size());
  RC_ASSERT_THROWS_AS(g::parse_trace(b.data(), cut, "p"), g::TraceError);
}

RC_GTEST_PROP(GoldenTrace, AnyFlippedDataBitIsCaughtByItsDigest, ()) {
  const auto t = *genTrace();
  auto b = bytes_of(t);
  std::uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header << 8 | b[i];
  const std::size_t data_begin = 8 + header;
  RC_PRE(b.size() > data_begin);
  const auto at = *rc::gen::inRange<std::size_t>(data_begin, b.size());
  b[at] ^= std::uint8_t(1u << *rc::gen::inRange(0, 8));
  try {
    g::parse_trace(b.data(), b.size(), "p");
    RC_FAIL("a flipped data bit was accepted");
  } catch (const g::TraceError& e) {
    RC_ASSERT(std::string(e.what()).find("digest mismatch") != std::string::npos);
  }
}

RC_GTEST_PROP(GoldenTrace, HeaderEditsParseOrRaiseTraceError, ()) {
  auto b = bytes_of(*genTrace());
  const int edits = *rc::gen::inRange(1, 4);
  for (int i = 0; i < edits; ++i) {
    const auto at = *rc::gen::inRange<std::size_t>(0, std::min<std::size_t>(b.size(), 400));
    b[at] = *rc::gen::arbitrary<std::uint8_t>();
  }
  try {
    g::parse_trace(b.data(), b.size(), "p");
  } catch (const g::TraceError&) {
  }
}

RC_GTEST_PROP(GoldenJson, CanonicalFormIsAFixedPoint, ()) {
  const auto keys = *rc::gen::container<std::vector<std::string>>(
      rc::gen::element<std::string>("b", "a", "\xc3\xa9", "z", "a\"q", "tab\t"));
  std::string text = "{";
  for (std::size_t i = 0; i < keys.size(); ++i)
    text += (i ? ", " : " ") + fp8lab::json_quote(keys[i] + std::to_string(i)) + " : [" + std::to_string(i) + ", null, true]";
  text += " }";
  const std::string c = g::canonical_json(text);
  RC_ASSERT(g::canonical_json(c) == c);
  RC_ASSERT(c.find(' ') == std::string::npos);  // no whitespace outside strings; no key has a space
}

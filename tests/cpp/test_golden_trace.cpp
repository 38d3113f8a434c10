// The safetensors reader and the trace layer: a good trace round-trips; every kind of corruption
// the issue lists is rejected with a TraceError that names the file and the problem.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>

#include "golden/fp8lab_kernel.h"
#include "common/json.hpp"
#include "golden/safetensors.hpp"
#include "golden/sha256.hpp"
#include "golden/trace.hpp"

namespace g = fp8lab::golden;

namespace {

g::Trace sample_trace() {
  g::Trace t;
  t.op = "cast";
  t.spec = R"({"to":"e4m3","rounding":"nearest_even","overflow":"saturate"})";
  t.producer = "fp8lab test";
  t.seed = 7;
  g::Tensor x{"F32", {2}, {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}};  // 1.0f, -2.0f little-endian
  g::Tensor y{"F8_E4M3", {2}, {0x38, 0xC0}};                    // OCP E4M3: 1.0 = 0x38, -2.0 = 0xC0
  t.tensors["x"] = {"input", x};
  t.tensors["y"] = {"output", y};
  return t;
}

std::vector<std::uint8_t> bytes_of(const g::Trace& t) { return g::serialize_safetensors(g::trace_to_safetensors(t)); }

// Runs the parser and returns the error message ("" when it accepted the bytes).
std::string error_of(const std::vector<std::uint8_t>& b) {
  try {
    g::parse_trace(b.data(), b.size(), "t.safetensors");
  } catch (const g::TraceError& e) {
    return e.what();
  }
  return "";
}

// A file with `header` as its JSON header and `buffer` bytes of data.
std::vector<std::uint8_t> raw_file(const std::string& header, std::size_t buffer) {
  std::vector<std::uint8_t> out(8 + header.size() + buffer, 0);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = std::uint8_t(n >> (8 * i));
  std::copy(header.begin(), header.end(), out.begin() + 8);
  return out;
}

std::string header_of(const std::vector<std::uint8_t>& b) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | b[i];
  return std::string(b.begin() + 8, b.begin() + 8 + n);
}

}  // namespace

TEST(Safetensors, LayoutIsTheDocumentedOne) {
  const auto b = bytes_of(sample_trace());
  // 8-byte little-endian header length, header padded to a multiple of 8, then x (8 B) and y (2 B)
  // in name order.
  const std::string h = header_of(b);
  EXPECT_EQ((8 + h.size()) % 8, 0u);
  EXPECT_EQ(h.front(), '{');
  EXPECT_NE(h.find(R"("x":{"data_offsets":[0,8],"dtype":"F32","shape":[2]})"), std::string::npos) << h;
  EXPECT_NE(h.find(R"("y":{"data_offsets":[8,10],"dtype":"F8_E4M3","shape":[2]})"), std::string::npos) << h;
  EXPECT_EQ(b.size(), 8 + h.size() + 10);
  EXPECT_EQ(b[b.size() - 2], 0x38);
}

TEST(Trace, RoundTripsAndComputesDigests) {
  const auto b = bytes_of(sample_trace());
  const g::Trace t = g::parse_trace(b.data(), b.size(), "t");
  EXPECT_EQ(t.op, "cast");
  // Canonical spec: keys sorted, no whitespace.
  EXPECT_EQ(t.spec, R"({"overflow":"saturate","rounding":"nearest_even","to":"e4m3"})");
  EXPECT_EQ(t.seed, 7u);
  EXPECT_EQ(t.tensors.at("y").role, "output");
  EXPECT_EQ(t.tensors.at("y").tensor.dtype, "F8_E4M3");
  const auto sf = g::parse_safetensors(b.data(), b.size(), "t");
  // Independent check of one digest: SHA-256 of the two bytes 0x38 0xC0 computed by Python's
  // hashlib: hashlib.sha256(bytes([0x38, 0xc0])).hexdigest().
  EXPECT_NE(sf.metadata.at("sha256").find(g::sha256_hex("\x38\xC0")), std::string::npos);
  EXPECT_EQ(sf.metadata.at("spec_sha256"), g::sha256_hex(t.spec));
}

TEST(TraceErrors, TruncatedFile) {
  auto b = bytes_of(sample_trace());
  EXPECT_NE(error_of({b.begin(), b.begin() + 5}).find("truncated file"), std::string::npos);
  b.pop_back();
  const std::string e = error_of(b);
  EXPECT_NE(e.find("t.safetensors: "), std::string::npos) << e;
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;
}

TEST(TraceErrors, BadHeaderLength) {
  auto b = bytes_of(sample_trace());
  b[0] = 0xFF;
  b[1] = 0xFF;
  EXPECT_NE(error_of(b).find("bad header length"), std::string::npos) << error_of(b);
  b[7] = 0x7F;  // ~9e18: over any limit, and must not overflow size arithmetic
  EXPECT_NE(error_of(b).find("bad header length"), std::string::npos);
}

TEST(TraceErrors, BadJson) {
  EXPECT_NE(error_of(raw_file("{\"a\":", 0)).find("bad JSON header"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{\"a\":1,\"a\":2}", 0)).find("duplicate key"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{} x", 0)).find("unexpected text"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{\"\xff\":1}", 0)).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of(raw_file(std::string(100, '[') , 0)).find("does not start with '{'"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{\"a\":" + std::string(100, '['), 0)).find("nesting"), std::string::npos);
}

TEST(TraceErrors, OffsetsOutOfRangeOverlappingOrWithHoles) {
  const std::string t1 = R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  EXPECT_EQ(error_of(raw_file("{" + t1 + "}", 4)).find("offsets"), std::string::npos);  // parses (then: not a trace)
  EXPECT_NE(error_of(raw_file("{" + t1 + "}", 3)).find("out of range"), std::string::npos);
  const std::string t2 = R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]})";
  EXPECT_NE(error_of(raw_file("{" + t1 + "," + t2 + "}", 6)).find("overlaps"), std::string::npos);
  const std::string t3 = R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]})";
  EXPECT_NE(error_of(raw_file("{" + t1 + "," + t3 + "}", 10)).find("hole"), std::string::npos);
  EXPECT_NE(error_of(raw_file("{" + t1 + "}", 5)).find("belong to no tensor"), std::string::npos);
  const std::string bad_size = R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,4]})";
  EXPECT_NE(error_of(raw_file("{" + bad_size + "}", 4)).find("need 16"), std::string::npos);
  const std::string reversed = R"("a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]})";
  EXPECT_NE(error_of(raw_file("{" + reversed + "}", 4)).find("end before they begin"), std::string::npos);
  const std::string huge = R"("a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]})";
  EXPECT_NE(error_of(raw_file("{" + huge + "}", 0)).find("overflows"), std::string::npos);
  const std::string negative = R"("a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]})";
  EXPECT_NE(error_of(raw_file("{" + negative + "}", 0)).find("non-negative"), std::string::npos);
}

TEST(TraceErrors, UnknownDtype) {
  const std::string t = R"("a":{"dtype":"F8_E3M4","shape":[1],"data_offsets":[0,1]})";
  const std::string e = error_of(raw_file("{" + t + "}", 1));
  EXPECT_NE(e.find("t.safetensors: tensor 'a': unknown dtype \"F8_E3M4\""), std::string::npos) << e;
}

TEST(TraceErrors, DigestMismatchNamesTheTensor) {
  auto b = bytes_of(sample_trace());
  b.back() ^= 0x01;  // flip one bit of y's second element
  const std::string e = error_of(b);
  EXPECT_NE(e.find("digest mismatch for tensor 'y'"), std::string::npos) << e;
}

TEST(TraceErrors, HandEditedMetadata) {
  auto sf = g::trace_to_safetensors(sample_trace());
  auto edited = sf;
  edited.metadata["spec"] = R"({"overflow":"saturate","rounding":"toward_zero","to":"e4m3"})";
  auto b = g::serialize_safetensors(edited);
  EXPECT_NE(error_of(b).find("spec digest mismatch"), std::string::npos) << error_of(b);
  edited = sf;
  edited.metadata.erase("roles");
  b = g::serialize_safetensors(edited);
  EXPECT_NE(error_of(b).find("has no \"roles\""), std::string::npos);
  edited = sf;
  edited.metadata["seed"] = "-3";
  b = g::serialize_safetensors(edited);
  EXPECT_NE(error_of(b).find("seed"), std::string::npos);
  edited = sf;
  edited.metadata["format"] = "fp8lab-trace/99";
  b = g::serialize_safetensors(edited);
  EXPECT_NE(error_of(b).find("unsupported trace format"), std::string::npos);
}

TEST(TraceFiles, AtomicWriteRefusesOverwriteWithoutUpdate) {
  const auto dir = std::filesystem::temp_directory_path() / ("fp8lab_golden_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "t.safetensors").string();
  g::write_trace(path, sample_trace(), false);
  EXPECT_EQ(g::read_trace(path).op, "cast");
  try {
    g::write_trace(path, sample_trace(), false);
    ADD_FAILURE() << "overwrote without update";
  } catch (const g::TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  auto t = sample_trace();
  t.seed = 9;
  g::write_trace(path, t, true);
  EXPECT_EQ(g::read_trace(path).seed, 9u);
  // No temporary file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
  std::filesystem::remove_all(dir);
  try {
    g::read_trace((dir / "missing.safetensors").string());
    ADD_FAILURE();
  } catch (const g::TraceError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.safetensors: cannot open"), std::string::npos);
  }
}

TEST(Json, CanonicalFormAndStrictness) {
  EXPECT_EQ(g::canonical_json(" { \"b\" : [1, 2.5e-3], \"a\": \"\\u00e9\\n\" } "), "{\"a\":\"\xc3\xa9\\n\",\"b\":[1,2.5e-3]}");
  EXPECT_THROW(g::canonical_json("{\"a\":01}"), std::invalid_argument);
  EXPECT_THROW(g::canonical_json("{\"a\":\"\\ud800\"}"), std::invalid_argument);
  EXPECT_EQ(g::canonical_json("\"\\ud83d\\ude00\""), "\"\xf0\x9f\x98\x80\"");  // U+1F600 as UTF-8
}

// The C ABI header is valid C++ too (extern "C"), and its signatures are what verify.py calls.
static_assert(FP8LAB_KERNEL_ABI_VERSION == 1);
static_assert(std::is_same_v<fp8lab_cast_fn, int (*)(const float*, std::size_t, const char*, void*, char*, std::size_t)>);
static_assert(std::is_same_v<fp8lab_gemm_fn, int (*)(const void*, const float*, const void*, const float*, std::size_t,
                                                     std::size_t, std::size_t, const char*, float*, char*, std::size_t)>);

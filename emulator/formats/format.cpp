// The semantics table, its schema, and the facts derived from each row.
#include "formats/format.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>

namespace fp8lab {

namespace {

constexpr std::array<schema::EnumRow<NonFinite>, 3> kNonFinite{
    {{"ieee754", NonFinite::IEEE754}, {"nan_only", NonFinite::NanOnly}, {"finite_only", NonFinite::FiniteOnly}}};
constexpr std::array<schema::EnumRow<NanEncoding>, 3> kNanEncoding{{{"ieee", NanEncoding::IEEE},
                                                                    {"all_ones", NanEncoding::AllOnes},
                                                                    {"negative_zero", NanEncoding::NegativeZero}}};
constexpr std::array<schema::EnumRow<ZeroExponent>, 2> kZeroExponent{
    {{"subnormal", ZeroExponent::Subnormal}, {"normal", ZeroExponent::Normal}}};

// The formats, in the order a reader meets them (widest first). **How to add a format**: one
// row here, its fields by name, with the specification it is read from; format_schema()'s
// validate() checks it at start-up, and every derived fact, the encoder, the decoder,
// fp8lab.format_info() / formats() and the ml_dtypes interop follow from it.
const std::vector<Format>& table() {
  using enum NonFinite;
  using enum NanEncoding;
  static const std::vector<Format> rows = [] {
    std::vector<Format> t = {
        {.name = "fp32", .exponent_bits = 8, .mantissa_bits = 23, .bias = 127, .ml_dtypes = "float32",
         .source = "IEEE 754-2019 binary32"},
        {.name = "bf16", .exponent_bits = 8, .mantissa_bits = 7, .bias = 127, .ml_dtypes = "bfloat16",
         .source = "bfloat16: binary32's exponent, 7 fraction bits (CUDA cuda_bf16.h)"},
        {.name = "fp16", .exponent_bits = 5, .mantissa_bits = 10, .bias = 15, .ml_dtypes = "float16",
         .source = "IEEE 754-2019 binary16"},
        {.name = "e5m6", .exponent_bits = 5, .mantissa_bits = 6, .bias = 15,
         .source = "DeepSeek-V3 technical report §3.3 (custom E5M6; bias 15 as E5M2, taken IEEE-like)"},
        {.name = "e4m3", .exponent_bits = 4, .mantissa_bits = 3, .bias = 7, .non_finite = NanOnly,
         .nan_encoding = AllOnes, .ml_dtypes = "float8_e4m3fn",
         .source = "OCP 8-bit Floating Point Specification (OFP8) v1.0: E4M3 (NaN S.1111.111, no Inf, max 448)"},
        {.name = "e5m2", .exponent_bits = 5, .mantissa_bits = 2, .bias = 15, .ml_dtypes = "float8_e5m2",
         .source = "OCP OFP8 v1.0: E5M2 (IEEE 754 conventions, max 57344)"},
        {.name = "e4m3fnuz", .exponent_bits = 4, .mantissa_bits = 3, .bias = 8, .non_finite = NanOnly,
         .nan_encoding = NegativeZero, .ml_dtypes = "float8_e4m3fnuz",
         .source = "AMD CDNA3 (MI300) ISA FP8; LLVM APFloat Float8E4M3FNUZ (bias 8, NaN 0x80, no Inf, no -0, max 240)"},
        {.name = "e5m2fnuz", .exponent_bits = 5, .mantissa_bits = 2, .bias = 16, .non_finite = NanOnly,
         .nan_encoding = NegativeZero, .ml_dtypes = "float8_e5m2fnuz",
         .source = "AMD CDNA3 (MI300) ISA BF8; LLVM APFloat Float8E5M2FNUZ (bias 16, NaN 0x80, no Inf, no -0, max 57344)"},
        {.name = "e3m2fn", .exponent_bits = 3, .mantissa_bits = 2, .bias = 3, .non_finite = FiniteOnly,
         .ml_dtypes = "float6_e3m2fn", .source = "OCP Microscaling Formats (MX) v1.0: FP6 E3M2 (no Inf/NaN, max 28)"},
        {.name = "e2m3fn", .exponent_bits = 2, .mantissa_bits = 3, .bias = 1, .non_finite = FiniteOnly,
         .ml_dtypes = "float6_e2m3fn", .source = "OCP Microscaling Formats (MX) v1.0: FP6 E2M3 (no Inf/NaN, max 7.5)"},
        {.name = "e2m1", .exponent_bits = 2, .mantissa_bits = 1, .bias = 1, .non_finite = FiniteOnly,
         .ml_dtypes = "float4_e2m1fn", .source = "OCP Microscaling Formats (MX) v1.0: FP4 E2M1 (no Inf/NaN, max 6)"},
        {.name = "ue4m3", .exponent_bits = 4, .mantissa_bits = 3, .bias = 7, .is_signed = false,
         .non_finite = NanOnly, .nan_encoding = AllOnes,
         .source = "PTX ISA .ue4m3: E4M3 without its sign, the NVFP4 block-scale type (0x7F NaN, max 448)"},
        {.name = "ue8m0", .exponent_bits = 8, .mantissa_bits = 0, .bias = 127, .is_signed = false,
         .non_finite = NanOnly, .nan_encoding = AllOnes, .zero_exponent = ZeroExponent::Normal,
         .ml_dtypes = "float8_e8m0fnu", .source = "OCP MX v1.0: E8M0 scale (0xFF NaN, no zero, 2^-127..2^127)"},
    };
    for (const auto& f : t) format_schema().validate(f);
    return t;
  }();
  return rows;
}

std::string valid_names_text() {
  return schema::join_names(format_names()) +
         " (or a row's ml_dtypes name), or eXmY / eXmY_ieee (IEEE-like, 1<=X<=11, 0<=Y<=52, X+Y+1<=32)";
}

// Largest finite magnitude pattern (sign clear), from the non-finite convention alone.
std::uint32_t max_finite_pattern(const Format& f) {
  const std::uint32_t all_ones = (1u << (f.exponent_bits + f.mantissa_bits)) - 1u;
  switch (f.non_finite) {
    case NonFinite::IEEE754: return (f.exponent_field_max() << f.mantissa_bits) - 1u;
    case NonFinite::NanOnly: return f.nan_encoding == NanEncoding::AllOnes ? all_ones - 1u : all_ones;
    case NonFinite::FiniteOnly: return all_ones;
  }
  return 0;
}

// LLVM's fltSemantics pairs: IEEE754 with IEEE NaNs, NanOnly with AllOnes or NegativeZero,
// FiniteOnly with the (unused) IEEE value; a NegativeZero NaN needs a sign bit and a zero.
void validate_format(const Format& f) {
  auto bad = [&](const char* field, const std::string& value, const std::string& expected) {
    schema::fail("Format." + std::string(field), value, expected + " (format '" + f.name + "')");
  };
  if (f.exponent_bits < 1 || f.exponent_bits > 11) bad("exponent_bits", std::to_string(f.exponent_bits), "an integer in [1, 11]");
  if (f.mantissa_bits < 0 || f.mantissa_bits > 52) bad("mantissa_bits", std::to_string(f.mantissa_bits), "an integer in [0, 52]");
  if (f.total_bits() > 32 || f.total_bits() < 2)
    bad("mantissa_bits", std::to_string(f.mantissa_bits), "a layout of 2 to 32 bits with exponent_bits and the sign");
  const std::string nan = std::string(schema::enum_name(nan_encoding_table(), f.nan_encoding));
  const bool pair_ok = f.non_finite == NonFinite::NanOnly ? f.nan_encoding != NanEncoding::IEEE
                                                          : f.nan_encoding == NanEncoding::IEEE;
  if (!pair_ok) bad("nan_encoding", "\"" + nan + "\"", "ieee with non_finite ieee754 or finite_only, all_ones or negative_zero with nan_only");
  if (f.nan_encoding == NanEncoding::NegativeZero && (!f.is_signed || !f.has_zero()))
    bad("nan_encoding", "\"" + nan + "\"", "a signed format with a zero for negative_zero");
  if (!(f.max_finite() > 0) || !std::isfinite(f.max_finite()))
    bad("bias", std::to_string(f.bias), "a bias that leaves a finite non-zero largest value");
}

}  // namespace

std::span<const schema::EnumRow<NonFinite>> non_finite_table() { return kNonFinite; }
std::span<const schema::EnumRow<NanEncoding>> nan_encoding_table() { return kNanEncoding; }

const schema::Schema<Format>& format_schema() {
  static const schema::Schema<Format> s{
      "Format",
      {
          schema::integer("bias", &Format::bias, -1100, 1100),
          schema::integer("exponent_bits", &Format::exponent_bits, 1, 11),
          schema::boolean("is_signed", &Format::is_signed),
          schema::integer("mantissa_bits", &Format::mantissa_bits, 0, 52),
          schema::text("ml_dtypes", &Format::ml_dtypes),
          schema::text("name", &Format::name),
          schema::enumeration("nan_encoding", &Format::nan_encoding, nan_encoding_table()),
          schema::enumeration("non_finite", &Format::non_finite, non_finite_table()),
          schema::text("source", &Format::source),
          schema::enumeration("zero_exponent", &Format::zero_exponent,
                              std::span<const schema::EnumRow<ZeroExponent>>(kZeroExponent)),
      },
      validate_format};
  return s;
}

Format format_from_json(std::string_view text) { return schema::from_json(text, format_schema()); }

int Format::storage_bits() const {
  const int bits = total_bits();
  return bits <= 8 ? 8 : bits <= 16 ? 16 : 32;
}

int Format::max_exponent() const {
  const int field = static_cast<int>(max_finite_pattern(*this) >> mantissa_bits);
  return zero_exponent == ZeroExponent::Subnormal && field == 0 ? min_normal_exponent() : field - bias;
}

std::uint64_t Format::max_finite_significand() const {
  const std::uint32_t mantissa = max_finite_pattern(*this) & ((1u << mantissa_bits) - 1u);
  return (std::uint64_t{1} << mantissa_bits) | mantissa;
}

double Format::max_finite() const {
  return std::ldexp(static_cast<double>(max_finite_significand()), max_exponent() - mantissa_bits);
}

double Format::min_normal() const { return std::ldexp(1.0, min_normal_exponent()); }

double Format::min_positive() const {
  return has_subnormals() ? std::ldexp(1.0, min_normal_exponent() - mantissa_bits) : min_normal();
}

std::uint32_t Format::canonical_nan() const {
  if (!has_nan()) throw std::logic_error("format " + name + " has no NaN");
  if (nan_encoding == NanEncoding::NegativeZero) return sign_mask();
  return (1u << (exponent_bits + mantissa_bits)) - 1u;
}

std::uint32_t Format::inf_bits(bool negative) const {
  if (!has_inf()) throw std::logic_error("format " + name + " has no infinity");
  return (exponent_field_max() << mantissa_bits) | (negative ? sign_mask() : 0u);
}

bool Format::operator==(const Format& o) const {
  return exponent_bits == o.exponent_bits && mantissa_bits == o.mantissa_bits && bias == o.bias &&
         is_signed == o.is_signed && non_finite == o.non_finite && nan_encoding == o.nan_encoding &&
         zero_exponent == o.zero_exponent;
}

std::string Format::to_json() const { return schema::to_json(*this, format_schema()); }

Format make_ieee_like_format(int exponent_bits, int mantissa_bits, int bias) {
  if (exponent_bits < 1 || exponent_bits > 11)
    throw std::invalid_argument("exponent_bits: " + std::to_string(exponent_bits) + " is outside 1..11");
  if (mantissa_bits < 0 || mantissa_bits > 52)
    throw std::invalid_argument("mantissa_bits: " + std::to_string(mantissa_bits) + " is outside 0..52");
  if (exponent_bits + mantissa_bits + 1 > 32)
    throw std::invalid_argument("format: 1 + exponent_bits + mantissa_bits = " +
                                std::to_string(exponent_bits + mantissa_bits + 1) + " exceeds 32 bits");
  if (exponent_bits == 1 && mantissa_bits == 0)
    throw std::invalid_argument("format: e1m0 has no finite non-zero value in the IEEE layout");
  const int default_bias = (1 << (exponent_bits - 1)) - 1;
  Format f;
  f.name = "e";  // appended in order: "e" + to_string(...) trips GCC 12's false -Wrestrict
  f.name += std::to_string(exponent_bits);
  f.name += "m";
  f.name += std::to_string(mantissa_bits);
  f.exponent_bits = exponent_bits;
  f.mantissa_bits = mantissa_bits;
  f.bias = bias < 0 ? default_bias : bias;
  f.source = "IEEE 754-2019 conventions with the given field widths (fp8lab's generic eXmY)";
  return f;
}

const Format& format_by_name(std::string_view name) {
  for (const auto& f : table())
    if (name == f.name || (!f.ml_dtypes.empty() && name == f.ml_dtypes)) return f;
  // eXmY or eXmY_ieee: parsed once, then kept (the table of parsed names only grows; guarded).
  const std::string text(name);
  constexpr std::string_view kIeee = "_ieee";
  const bool explicit_ieee = text.size() > kIeee.size() && text.ends_with(kIeee);
  const std::string layout = explicit_ieee ? text.substr(0, text.size() - kIeee.size()) : text;
  int e = -1, m = -1;
  char tail = 0;
  if (layout.size() >= 4 && layout[0] == 'e' && std::sscanf(layout.c_str(), "e%dm%d%c", &e, &m, &tail) == 2 &&
      layout == "e" + std::to_string(e) + "m" + std::to_string(m)) {
    if (!explicit_ieee)
      for (const auto& f : table())
        if (f.name.starts_with(layout))
          throw std::invalid_argument("fmt: '" + text + "' is ambiguous: the " + f.name + " row is " + f.source +
                                      "; the IEEE-like layout (Inf and NaN, bias 2^(X-1)-1) is '" + layout +
                                      "_ieee'. Name one of them.");
    static std::mutex mutex;
    static std::map<std::string, Format, std::less<>> parsed;
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = parsed.find(name); it != parsed.end()) return it->second;
    Format f;
    try {
      f = make_ieee_like_format(e, m);
    } catch (const std::invalid_argument& err) {
      throw std::invalid_argument("fmt: '" + text + "': " + err.what());
    }
    f.name = text;
    return parsed.emplace(text, std::move(f)).first->second;
  }
  throw std::invalid_argument("fmt: unknown format '" + text + "'; valid formats: " + valid_names_text());
}

std::vector<std::string> format_names() { return schema::row_names<Format>(table()); }

std::span<const Format> format_rows() { return table(); }

}  // namespace fp8lab

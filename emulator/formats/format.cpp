// The semantics table and the facts derived from each row.
#include "formats/format.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace fp8lab {

namespace {

Format row(std::string name, int e, int m, int bias, bool is_signed, NonFinite nf, ZeroExponent ze) {
  Format f;
  f.name = std::move(name);
  f.exponent_bits = e;
  f.mantissa_bits = m;
  f.bias = bias;
  f.is_signed = is_signed;
  f.non_finite = nf;
  f.zero_exponent = ze;
  return f;
}

// Sources: IEEE 754-2019 (fp32, fp16); bfloat16 as in CUDA cuda_bf16.h; OCP 8-bit Floating Point
// Specification (OFP8) v1.0 (e4m3 = E4M3FN, e5m2); OCP Microscaling Formats (MX) v1.0 (ue8m0 =
// E8M0 scale, e2m1 = FP4); DeepSeek-V3 technical report §3.3 (e5m6, bias 15 like e5m2).
const std::map<std::string, Format, std::less<>>& table() {
  static const std::map<std::string, Format, std::less<>> formats = {
      {"fp32", row("fp32", 8, 23, 127, true, NonFinite::IEEE, ZeroExponent::Subnormal)},
      {"bf16", row("bf16", 8, 7, 127, true, NonFinite::IEEE, ZeroExponent::Subnormal)},
      {"fp16", row("fp16", 5, 10, 15, true, NonFinite::IEEE, ZeroExponent::Subnormal)},
      {"e4m3", row("e4m3", 4, 3, 7, true, NonFinite::NanOnlyAllOnes, ZeroExponent::Subnormal)},
      {"e5m2", row("e5m2", 5, 2, 15, true, NonFinite::IEEE, ZeroExponent::Subnormal)},
      {"e5m6", row("e5m6", 5, 6, 15, true, NonFinite::IEEE, ZeroExponent::Subnormal)},
      {"ue8m0", row("ue8m0", 8, 0, 127, false, NonFinite::NanOnlyAllOnes, ZeroExponent::Normal)},
      {"e2m1", row("e2m1", 2, 1, 1, true, NonFinite::FiniteOnly, ZeroExponent::Subnormal)},
  };
  return formats;
}

std::string valid_names_text() {
  std::string s;
  for (const auto& name : format_names()) s += (s.empty() ? "" : ", ") + name;
  return s + ", or eXmY (IEEE-like, 1<=X<=11, 0<=Y<=52, X+Y+1<=32)";
}

// Largest finite magnitude pattern (sign clear), from the non-finite convention alone.
std::uint32_t max_finite_pattern(const Format& f) {
  const std::uint32_t all_ones = (1u << (f.exponent_bits + f.mantissa_bits)) - 1u;
  switch (f.non_finite) {
    case NonFinite::IEEE: return (f.exponent_field_max() << f.mantissa_bits) - 1u;
    case NonFinite::NanOnlyAllOnes: return all_ones - 1u;
    case NonFinite::FiniteOnly: return all_ones;
  }
  return 0;
}

}  // namespace

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
  return (1u << (exponent_bits + mantissa_bits)) - 1u;
}

std::uint32_t Format::inf_bits(bool negative) const {
  if (!has_inf()) throw std::logic_error("format " + name + " has no infinity");
  return (exponent_field_max() << mantissa_bits) | (negative ? sign_mask() : 0u);
}

bool Format::operator==(const Format& o) const {
  return exponent_bits == o.exponent_bits && mantissa_bits == o.mantissa_bits && bias == o.bias &&
         is_signed == o.is_signed && non_finite == o.non_finite && zero_exponent == o.zero_exponent;
}

std::string Format::to_json() const {
  static const char* nf_names[] = {"ieee", "nan_only_all_ones", "finite_only"};
  static const char* ze_names[] = {"subnormal", "normal"};
  std::ostringstream out;
  out << "{\"bias\":" << bias << ",\"exponent_bits\":" << exponent_bits << ",\"is_signed\":"
      << (is_signed ? "true" : "false") << ",\"mantissa_bits\":" << mantissa_bits << ",\"name\":\"" << name
      << "\",\"non_finite\":\"" << nf_names[static_cast<int>(non_finite)] << "\",\"zero_exponent\":\""
      << ze_names[static_cast<int>(zero_exponent)] << "\"}";
  return out.str();
}

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
  return row("e" + std::to_string(exponent_bits) + "m" + std::to_string(mantissa_bits),
             exponent_bits, mantissa_bits, bias < 0 ? default_bias : bias, true, NonFinite::IEEE,
             ZeroExponent::Subnormal);
}

const Format& format_by_name(std::string_view name) {
  const auto& formats = table();
  if (auto it = formats.find(name); it != formats.end()) return it->second;
  // Any eXmY: parsed once, then kept (the table of parsed names only grows; guarded for threads).
  int e = -1, m = -1;
  char tail = 0;
  const std::string text(name);
  if (text.size() >= 4 && text[0] == 'e' && std::sscanf(text.c_str(), "e%dm%d%c", &e, &m, &tail) == 2 &&
      text == "e" + std::to_string(e) + "m" + std::to_string(m)) {
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
    return parsed.emplace(text, std::move(f)).first->second;
  }
  throw std::invalid_argument("fmt: unknown format '" + text + "'; valid formats: " + valid_names_text());
}

std::vector<std::string> format_names() {
  // Listed in the order a reader meets them, widest first.
  return {"fp32", "bf16", "fp16", "e5m6", "e4m3", "e5m2", "e2m1", "ue8m0"};
}

}  // namespace fp8lab

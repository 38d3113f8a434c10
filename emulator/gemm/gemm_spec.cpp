#include "gemm/gemm_spec.hpp"

#include <array>
#include <stdexcept>

namespace fp8lab {
namespace {

constexpr std::array<std::string_view, 5> kAccumulateNames = {"exact", "fp32", "fp32_pairwise", "tensorcore",
                                                              "promoted"};
constexpr std::array<std::string_view, 3> kCombineNames = {"deepgemm", "triton", "cublas"};
constexpr std::array<std::string_view, 3> kOutputNames = {"bf16", "fp32", "fp64"};

template <class E, std::size_t N>
E by_name(std::string_view name, const std::array<std::string_view, N>& names, const char* what) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == name) return static_cast<E>(i);
  std::string valid;
  for (auto n : names) valid += (valid.empty() ? "" : ", ") + std::string(n);
  throw std::invalid_argument(std::string(what) + ": unknown value '" + std::string(name) + "'; expected one of " +
                              valid);
}

template <std::size_t N>
std::vector<std::string> all(const std::array<std::string_view, N>& names) {
  return std::vector<std::string>(names.begin(), names.end());
}

}  // namespace

Accumulate accumulate_by_name(std::string_view name) {
  if (name == "fp32_sequential") return Accumulate::Fp32Sequential;
  return by_name<Accumulate>(name, kAccumulateNames, "accumulate");
}
Combine combine_by_name(std::string_view name) { return by_name<Combine>(name, kCombineNames, "combine"); }
OutputFormat output_format_by_name(std::string_view name) { return by_name<OutputFormat>(name, kOutputNames, "out"); }
std::string_view accumulate_name(Accumulate a) { return kAccumulateNames.at(static_cast<std::size_t>(a)); }
std::string_view combine_name(Combine c) { return kCombineNames.at(static_cast<std::size_t>(c)); }
std::string_view output_format_name(OutputFormat o) { return kOutputNames.at(static_cast<std::size_t>(o)); }
std::vector<std::string> accumulate_names() { return all(kAccumulateNames); }
std::vector<std::string> combine_names() { return all(kCombineNames); }
std::vector<std::string> output_format_names() { return all(kOutputNames); }

int output_precision(OutputFormat o) { return o == OutputFormat::Bf16 ? 8 : o == OutputFormat::Fp32 ? 24 : 53; }
int output_min_exponent(OutputFormat o) { return o == OutputFormat::Fp64 ? -1022 : -126; }
int output_max_exponent(OutputFormat o) { return o == OutputFormat::Fp64 ? 1023 : 127; }

std::string to_json(const GemmSpec& s) {
  return "{\"accumulate\":\"" + std::string(accumulate_name(s.accumulate)) + "\",\"combine\":\"" +
         std::string(combine_name(s.combine)) + "\",\"instruction\":\"" + s.instruction + "\",\"out\":\"" +
         std::string(output_format_name(s.out)) + "\",\"promote_every\":" + std::to_string(s.promote_every) + "}";
}

}  // namespace fp8lab

#include "gemm/gemm_spec.hpp"

#include <array>
#include <climits>
#include <limits>

#include "accum/tensor_core.hpp"
#include "formats/format.hpp"

namespace fp8lab {
namespace {

using schema::EnumRow;

constexpr std::array<EnumRow<Accumulate>, 5> kAccumulate{{{"exact", Accumulate::Exact},
                                                          {"fp32", Accumulate::Fp32Sequential},
                                                          {"fp32_pairwise", Accumulate::Fp32Pairwise},
                                                          {"tensorcore", Accumulate::TensorCore},
                                                          {"promoted", Accumulate::Promoted}}};
constexpr std::array<EnumRow<Combine>, 3> kCombine{
    {{"deepgemm", Combine::DeepGemm}, {"triton", Combine::Triton}, {"cublas", Combine::Cublas}}};
constexpr std::array<EnumRow<OutputFormat>, 3> kOutput{
    {{"bf16", OutputFormat::Bf16}, {"fp32", OutputFormat::Fp32}, {"fp64", OutputFormat::Fp64}}};

}  // namespace

Accumulate accumulate_by_name(std::string_view name) {
  if (name == "fp32_sequential") return Accumulate::Fp32Sequential;  // the long name of "fp32"
  return schema::enum_by_name<Accumulate>(kAccumulate, name, "accumulate");
}
Combine combine_by_name(std::string_view name) { return schema::enum_by_name<Combine>(kCombine, name, "combine"); }
OutputFormat output_format_by_name(std::string_view name) {
  return schema::enum_by_name<OutputFormat>(kOutput, name, "out");
}
std::string_view accumulate_name(Accumulate a) { return schema::enum_name<Accumulate>(kAccumulate, a); }
std::string_view combine_name(Combine c) { return schema::enum_name<Combine>(kCombine, c); }
std::string_view output_format_name(OutputFormat o) { return schema::enum_name<OutputFormat>(kOutput, o); }
std::vector<std::string> accumulate_names() { return schema::enum_names<Accumulate>(kAccumulate); }
std::vector<std::string> combine_names() { return schema::enum_names<Combine>(kCombine); }

namespace {
// An output format's facts, from its row of the formats table (the enum's names are row names),
// worked out once; binary64, which the table does not hold (its rows are at most 32 bits wide),
// from the compiler's double.
struct OutputRow {
  int precision, min_exponent, max_exponent;
};
const OutputRow& output_row(OutputFormat o) {
  static const std::array<OutputRow, kOutput.size()> rows = [] {
    std::array<OutputRow, kOutput.size()> r{};
    for (const auto& [name, value] : kOutput) {
      using D = std::numeric_limits<double>;
      const Format* f = value == OutputFormat::Fp64 ? nullptr : &format_by_name(name);
      r[static_cast<std::size_t>(value)] =
          f ? OutputRow{f->mantissa_bits + 1, f->min_normal_exponent(), f->max_exponent()}
            : OutputRow{D::digits, D::min_exponent - 1, D::max_exponent - 1};
    }
    return r;
  }();
  return rows[static_cast<std::size_t>(o)];
}
}  // namespace

int output_precision(OutputFormat o) { return output_row(o).precision; }
int output_min_exponent(OutputFormat o) { return output_row(o).min_exponent; }
int output_max_exponent(OutputFormat o) { return output_row(o).max_exponent; }

const schema::Schema<GemmSpec>& gemm_spec_schema() {
  using S = GemmSpec;
  static const schema::Schema<S> sc{
      "GemmSpec",
      {
          schema::enumeration<S, Accumulate>("accumulate", &S::accumulate, kAccumulate),
          schema::enumeration<S, Combine>("combine", &S::combine, kCombine),
          schema::text<S>("instruction", &S::instruction),
          schema::enumeration<S, OutputFormat>("out", &S::out, kOutput),
          schema::integer<S, int>("promote_every", &S::promote_every, 1, INT_MAX),
      },
      [](const S& s) { (void)tensor_core_by_name(s.instruction); }};
  return sc;
}

std::string to_json(const GemmSpec& s) { return schema::to_json(s, gemm_spec_schema()); }
GemmSpec gemm_spec_from_json(std::string_view json) { return schema::from_json(json, gemm_spec_schema()); }

}  // namespace fp8lab

// IndexerSpec's declared schema and its validation (the fields' meaning: mla/indexer_spec.hpp).
#include "mla/indexer_spec.hpp"

#include <array>
#include <climits>
#include <stdexcept>

#include "accum/tensor_core.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab::mla {
namespace {

using schema::EnumRow;
constexpr std::array<EnumRow<IndexReduction>, 3> kReduction{{{"v32_tilelang", IndexReduction::V32Tilelang},
                                                             {"deepgemm_sm90", IndexReduction::DeepgemmSm90},
                                                             {"per_head_scale", IndexReduction::PerHeadScale}}};

}  // namespace

void validate(const IndexerSpec& s) {
  const TensorCoreModel* found = nullptr;
  const ScaleRule* rule = nullptr;
  try {
    found = &tensor_core_by_name(s.instruction);
    rule = &scale_rule_by_name(s.scale_rule);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("IndexerSpec.") + (found ? "scale_rule" : "instruction") + ": " + e.what());
  }
  const TensorCoreModel& tc = *found;
  if (std::string_view(tc.input_format) != "e4m3" || kIndexHeadDim % tc.k != 0 || tc.scale_block != 0)
    schema::fail("IndexerSpec.instruction", "\"" + s.instruction + "\"",
                 "a tensor-core preset with E4M3 input, no block scales and k dividing 128 (e.g. hopper_fp8)");
  const ScaleRule& r = *rule;
  if (r.tile_elements != 0 && r.tile_elements != static_cast<std::size_t>(kIndexHeadDim))
    schema::fail("IndexerSpec.scale_rule", "\"" + s.scale_rule + "\"", "a rule that takes 1 x 128 tiles");
  if (s.reduction == IndexReduction::DeepgemmSm90 && s.heads % 8 != 0)
    schema::fail("IndexerSpec.heads", std::to_string(s.heads),
                 "a multiple of 8 under reduction deepgemm_sm90 (DeepGEMM: kNumHeads % 8 == 0)");
}

const schema::Schema<IndexerSpec>& indexer_spec_schema() {
  using S = IndexerSpec;
  static const schema::Schema<S> sc{
      "IndexerSpec",
      {
          schema::integer<S, int>("heads", &S::heads, 1, 1024),
          schema::text<S>("instruction", &S::instruction),
          schema::enumeration<S, IndexReduction>("reduction", &S::reduction, kReduction),
          schema::text<S>("scale_rule", &S::scale_rule),
          schema::integer<S, int>("topk", &S::topk, 1, INT_MAX),
      },
      [](const S& s) { validate(s); }};
  return sc;
}

std::string to_json(const IndexerSpec& s) { return schema::to_json(s, indexer_spec_schema()); }
IndexerSpec indexer_spec_from_json(std::string_view json) { return schema::from_json(json, indexer_spec_schema()); }

}  // namespace fp8lab::mla

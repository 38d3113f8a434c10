// GEMM recipes as data: a named bundle of everything that decides the bits of one block-scaled FP8
// GEMM — per operand the element format, the scale tile and the scale rule, plus the GemmSpec
// (accumulation, tensor-core instruction, promotion interval, combine order, output format).
// Each row cites the code it models; callers (MLA's FP8 projections, golden's default specs, the
// Python defaults, the report) name a row instead of restating E4M3 / 1x128 / 128x128 / "deepseek".
// How to add a row: emulator/README.md.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"
#include "gemm/gemm_spec.hpp"
#include "quant/qtensor.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab {

struct OperandRecipe {
  std::string format = "e4m3";  // element format (format_by_name)
  Tile tile;                     // scale tile (rows, cols); 0 = the whole dimension
  ScaleRule rule;                // the full rule (written by name when it is a named row)
};

struct GemmRecipe {
  std::string name;
  std::string source;  // the code or document the bundle reproduces
  OperandRecipe a;     // activations (M x K)
  OperandRecipe b;     // weights (N x K, DeepGEMM's NT layout)
  GemmSpec gemm;
  // Throws std::invalid_argument naming the field: unknown format, invalid rule, a tile the rule
  // cannot take, a promotion interval that crosses a scale tile, an unknown instruction.
  void validate() const;
};

// The named rows, in a fixed order; unknown names throw std::invalid_argument listing them.
const GemmRecipe& gemm_recipe(std::string_view name);
std::vector<std::string> gemm_recipe_names();
// The default of every FP8 GEMM call site that does not name one.
inline constexpr std::string_view kDefaultGemmRecipe = "deepseek_v3_fp8_linear";

const schema::Schema<OperandRecipe>& operand_recipe_schema();
const schema::Schema<GemmRecipe>& gemm_recipe_schema();
// Canonical JSON: {"a": {"format", "rule", "tile"}, "b": {...}, "gemm": to_json(GemmSpec),
// "name", "source"}; a rule that is a named row is written as its name, any other as its object.
std::string to_json(const GemmRecipe& r);
// The inverse, strict: either a complete row, or {"base": "<row name>", ...the fields it changes}
// (nested objects change only the keys they give). Validated.
GemmRecipe gemm_recipe_from_json(std::string_view json);

// x (rows x cols, row-major float32) quantised as the recipe's operand says (quant/quantize.hpp).
QTensor quantize_operand(const float* x, std::size_t rows, std::size_t cols, const OperandRecipe& op);

}  // namespace fp8lab

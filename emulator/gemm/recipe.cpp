#include "gemm/recipe.hpp"

#include <stdexcept>

#include "accum/tensor_core.hpp"
#include "formats/format.hpp"
#include "quant/quantize.hpp"

namespace fp8lab {

namespace {

OperandRecipe operand(std::string_view format, Tile tile, std::string_view rule) {
  return {std::string(format), tile, scale_rule_by_name(rule)};
}

// Adds a row whose operands are both E4M3 with one scale rule (all rows but NVFP4's): A (activations)
// in tiles `a`, B (weights) in tiles `b`.
void add_e4m3(std::vector<GemmRecipe>& t, std::string name, std::string source, Tile a, Tile b, std::string_view rule,
              GemmSpec gemm) {
  t.push_back(
      {std::move(name), std::move(source), operand("e4m3", a, rule), operand("e4m3", b, rule), std::move(gemm)});
}

// Hopper FP8 WGMMAs (K = 32) promoted to FP32 every 128 of K (DeepSeek-V3 §3.3.2: every 4 WGMMAs).
GemmSpec hopper_promoted(Combine combine, OutputFormat out = OutputFormat::Bf16) {
  GemmSpec s;
  s.accumulate = Accumulate::Promoted;
  s.promote_every = 128;
  s.combine = combine;
  s.instruction = "hopper_fp8";
  s.out = out;
  return s;
}

// The whole K in one chain of `instruction` on one tensor-core accumulator (on a block-scaled tcgen05
// instruction: tensor memory), BF16 out.
GemmSpec one_chain(std::string instruction) {
  GemmSpec s;
  s.accumulate = Accumulate::TensorCore;
  s.instruction = std::move(instruction);
  s.out = OutputFormat::Bf16;
  return s;
}

// Blackwell rows: the scales enter tcgen05.mma.kind::mxf8f6f4.block_scale as UE8M0 exponents and the
// FP32 accumulator never leaves tensor memory (gemm/block_scaled.hpp).
void add_blackwell_rows(std::vector<GemmRecipe>& t) {
  // DeepGEMM deep_gemm/include/deep_gemm/impls/sm100_fp8_fp4_gemm_1d1d.cuh with the FP8 recipe of
  // tests/generators.py (recipe_a = (1, 128), recipe_b = (128, 128), use_ue8m0 on SM100):
  // per_token_cast_to_fp8 / per_block_cast_to_fp8 with ceil_to_ue8m0; SM100_MMA_MXF8F6F4 issued
  // with accumulate = (kUMMAKIdx > 0 or k_block_idx > 0) into one float accumulator in tensor memory
  // over the whole K; with kGranK = 128 the same scale (sf_id = k_block_idx % 4 of a packed int32) serves
  // the 4 MMAs of K = 32 in each 128; BF16 out.
  add_e4m3(t, "deepgemm_sm100_fp8",
           "DeepGEMM sm100_fp8_fp4_gemm_1d1d.cuh (UE8M0 1x128 activations, 128x128 weights, tcgen05 "
           "kind::mxf8f6f4 block_scale, scale reused over 4 MMAs, tensor-memory accumulation over all K, BF16 out)",
           {1, 128}, {128, 128}, "deepgemm_ue8m0", one_chain("blackwell_tcgen05_mxf8f6f4_f32_e4m3"));
  // TransformerEngine MXFP8BlockScaling (E4M3 forward): activations and weights both in 1x32 blocks
  // along K (quantize_mxfp8.cuh rowwise scaling), scales by float_to_e8m0 (round up), the cuBLASLt
  // MXFP8 GEMM = one tcgen05 block-scaled chain per output (assumed: cuBLASLt's internal K order is
  // not documented), BF16 out.
  add_e4m3(t, "mxfp8_te",
           "TransformerEngine MXFP8BlockScaling (quantize_mxfp8.cuh, 1x32 E8M0 round-up) + a tcgen05 "
           "kind::mxf8f6f4 block-scaled chain (cuBLASLt's K order assumed), BF16 out",
           {1, 32}, {1, 32}, "te_mxfp8", one_chain("blackwell_tcgen05_mxf8f6f4_f32_e4m3"));
  // torchao MXLinear with ScaleCalculationMode.RCEIL (the cuBLAS recipe) on the same GEMM.
  add_e4m3(t, "mxfp8_torchao_rceil",
           "torchao mx_formats to_mx(scaling_mode=RCEIL), 1x32 E4M3 + a tcgen05 kind::mxf8f6f4 block-scaled "
           "chain (torch._scaled_mm / cuBLASLt, K order assumed), BF16 out",
           {1, 32}, {1, 32}, "mx_rceil", one_chain("blackwell_tcgen05_mxf8f6f4_f32_e4m3"));
  // TransformerEngine NVFP4BlockScaling (recipe/__init__.py: E2M1 data, E4M3 scales per 16, 1x16
  // activations and gradients, 16x16 weights; custom_recipes/reference_nvfp4.py): the per-16 E4M3
  // scales enter tcgen05.mma.kind::mxf4nvf4.block_scale.scale_vec::4X as UE4M3 (cuBLASLt
  // CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3), the per-tensor FP32 scales as the epilogue's
  // alpha = amax_A * amax_B / (448 * 6)^2 (common/gemm/cublaslt_gemm.cu, common/recipe/nvfp4.cu;
  // gemm/block_scaled.hpp), one tensor-memory chain over K (cuBLASLt's K order assumed), BF16 out.
  // Not modelled here: the random Hadamard transform on Wgrad inputs and stochastic rounding of
  // gradients (fp8lab.rht16 / fp8lab.stochastic_round are the pieces).
  t.push_back({"nvfp4_te",
               "TransformerEngine NVFP4BlockScaling (reference_nvfp4.py: 1x16 activations, 16x16 weights, E4M3 "
               "block scales, S_enc = 448*6/amax) + a tcgen05 kind::mxf4nvf4 UE4M3 block16 chain with alpha = "
               "amax_A*amax_B*fl(1/(448*6)^2) in the epilogue (cublaslt_gemm.cu, recipe/nvfp4.cu), BF16 out",
               operand("e2m1", {1, 16}, "nvfp4"), operand("e2m1", {16, 16}, "nvfp4"),
               one_chain("blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue4m3")});
}

std::vector<GemmRecipe> make_table() {
  std::vector<GemmRecipe> t;
  // DeepSeek-V3 inference/model.py `linear` with FP8 weights: act_quant (inference/kernel.py) makes
  // 1x128 E4M3 activations with float32 scales amax/448, the checkpoint holds 128x128 E4M3 weight
  // blocks with their float32 scales (weight_dequant). The product is modelled as DeepGEMM's SM90
  // kernel runs it, the one DeepSeek serves with (paper §3.3: promotion every 128 = 4 WGMMAs).
  // kernel.py's own Triton fp8_gemm differs: it promotes as fma(fl(p*sa), sb, acc) under Triton's
  // default FP fusion and its 16-row tiles use FP16 mma.sync (gpu/README.md, finding 3).
  add_e4m3(t, "deepseek_v3_fp8_linear",
           "DeepSeek-V3 inference/kernel.py act_quant (1x128) + FP8 checkpoint weights (128x128, "
           "weight_dequant), product as DeepGEMM sm90 (promotion every 128, fma(sa*sb, p, acc), BF16 out)",
           {1, 128}, {128, 128}, "deepseek", hopper_promoted(Combine::DeepGemm));
  // DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp8 (1x128) and per_block_cast_to_fp8
  // (128x128) feeding sm90_fp8_gemm_1d2d: WGMMA E4M3 K = 32, the accumulator reset every 128 of K,
  // final = fma(sa*sb, partial, final), output __float22bfloat162_rn (REFERENCE.md "FP8 GEMM").
  add_e4m3(t, "deepgemm_sm90",
           "DeepGEMM utils/math.py per_token_cast_to_fp8 / per_block_cast_to_fp8 + sm90_fp8_gemm_1d2d",
           {1, 128}, {128, 128}, "deepgemm", hopper_promoted(Combine::DeepGemm));
  // TransformerEngine Float8BlockScaling (power-of-two scales, the default): 1x128 activations,
  // 128x128 weights, multiplier 448/amax with its mantissa cleared (recipe_common.cuh); the GEMM is
  // cuBLASLt's VEC128 / BLK128x128 block-scaled FP8 matmul, whose promotion interval is not
  // documented (REFERENCE.md): 128 and TE's cuBLAS-style combine fma(p*sa, sb, acc) are assumed.
  add_e4m3(t, "te_blockwise",
           "TransformerEngine Float8BlockScaling (quantize_transpose_*_blockwise.cu) + cuBLASLt "
           "VEC128_32F / BLK128x128_32F; promotion interval assumed 128",
           {1, 128}, {128, 128}, "te", hopper_promoted(Combine::Cublas));
  // --- Training rows (fp8lab.torch's recipes name them per pass: Fprop, Dgrad, Wgrad). ---
  // DeepSeek-V3 §3.3, Figure 6: Wgrad multiplies the activation gradient by the cached activation,
  // both re-tiled to 128 tokens x 1 channel, i.e. 1x128 tiles along this GEMM's K (tokens) for
  // A = dy^T and B = x^T; the weight gradient is kept in FP32 ("master weights and gradients ...
  // retained in FP32"). Scales as deepseek_v3_fp8_linear; promotion every 128 as §3.3.2.
  add_e4m3(t, "deepseek_v3_fp8_wgrad",
           "DeepSeek-V3 technical report arXiv 2412.19437 §3.3 (Wgrad on 128x1-re-tiled activations and "
           "gradients, FP32 weight gradients) with deepseek_v3_fp8_linear's quantiser and product",
           {1, 128}, {1, 128}, "deepseek", hopper_promoted(Combine::DeepGemm, OutputFormat::Fp32));
  // DeepSeek-V3.1 trains with UE8M0 (power-of-two) scales on weights and activations (model card);
  // V3.2 inference act_quant scale_fmt="ue8m0": scale 2^ceil(log2(max(amax, 1e-4)/448)).
  add_e4m3(t, "deepseek_v31_fp8_ue8m0",
           "DeepSeek-V3.1 model card (UE8M0 scale format for weights and activations); V3.2 inference "
           "act_quant scale_fmt='ue8m0'; product as deepseek_v3_fp8_linear",
           {1, 128}, {128, 128}, "deepseek_ue8m0", hopper_promoted(Combine::DeepGemm));
  // TransformerEngine Float8CurrentScaling: one scale per tensor from its current amax, multiplier
  // 448/amax in FP32 (no power-of-two rounding by default); dgrad/wgrad with split accumulation,
  // cuBLAS-style combine fma(p*sa, sb, acc), interval assumed 128 (undocumented). Fprop uses fast
  // accumulation (no promotion): the same row with gemm.accumulate = tensorcore.
  add_e4m3(t, "te_tensorwise_fp8",
           "TransformerEngine Float8CurrentScaling (per-tensor current scaling, E4M3) + cuBLASLt FP8 "
           "matmul with split accumulation; promotion interval assumed 128",
           {0, 0}, {0, 0}, "te_fp32", hopper_promoted(Combine::Cublas));
  // Without promotion the whole K is one chain of Hopper FP8 WGMMAs (14-bit truncated running sum,
  // §3.3.2), which can apply one scale per row of each operand only, after the chain: per-row
  // (1 x K) scales with DeepSeek-V3's rule.
  add_e4m3(t, "deepseek_v3_fp8_no_promotion",
           "DeepSeek-V3 technical report arXiv 2412.19437 §3.3.2 (FP8 GEMM without promotion: the "
           "tensor core's ~14-bit accumulation over the whole K); per-row scales, the finest a single "
           "chain can apply",
           {1, 0}, {1, 0}, "deepseek", one_chain("hopper_fp8"));
  add_blackwell_rows(t);
  return t;
}

const std::vector<GemmRecipe>& table() {
  static const std::vector<GemmRecipe> t = schema::validated(make_table());
  return t;
}

long long read_tile_size(const Json& v, const std::string& where) { return schema::read_integer(v, where, 0, 1LL << 40); }

schema::Field<OperandRecipe> tile_field() {
  return {"tile", "tile", {}, "[rows, cols] of integers >= 0 (0 = the whole dimension)",
          [](const OperandRecipe& o) {
            Json a;
            a.kind = Json::Kind::Array;
            a.items = {schema::number_json(std::to_string(o.tile.rows)), schema::number_json(std::to_string(o.tile.cols))};
            return a;
          },
          [](OperandRecipe& o, const Json& v, const Json&, const std::string& w) {
            if (!v.is_array() || v.items.size() != 2)
              schema::fail(w, to_canonical_json(v), "[rows, cols] of integers >= 0 (0 = the whole dimension)");
            o.tile = Tile{static_cast<std::size_t>(read_tile_size(v.items[0], w + "[0]")),
                          static_cast<std::size_t>(read_tile_size(v.items[1], w + "[1]"))};
          }};
}

bool is_named_row(const ScaleRule& r) {
  for (const auto& n : scale_rule_names())
    if (n == r.name) return scale_rule_by_name(n) == r;
  return false;
}

schema::Field<OperandRecipe> rule_field() {
  return {"rule", "rule", scale_rule_names(), "a scale rule name or a ScaleRule object",
          [](const OperandRecipe& o) {
            return is_named_row(o.rule) ? schema::string_json(o.rule.name) : schema::to_json_value(o.rule, scale_rule_schema());
          },
          [](OperandRecipe& o, const Json& v, const Json&, const std::string& w) {
            if (v.is_string()) {
              o.rule = scale_rule_by_name(v.text);
            } else if (v.is_object()) {
              o.rule = scale_rule_from_json(to_canonical_json(v));
            } else {
              schema::fail(w, to_canonical_json(v), "a scale rule name or a ScaleRule object");
            }
          }};
}

template <class S>
void require_keys(const Json& obj, const schema::Schema<S>& sc, const std::string& where,
                  std::initializer_list<std::string_view> optional) {
  std::vector<std::string> missing;
  for (const auto& f : sc.fields) {
    bool opt = false;
    for (auto o : optional) opt = opt || o == f.key;
    if (!opt && !obj.find(f.key)) missing.push_back(f.key);
  }
  if (!missing.empty())
    throw std::invalid_argument(where + ": missing key(s) " + schema::join_names(missing) +
                                "; a recipe gives every field, or names the row it edits in \"base\" (one of " +
                                schema::join_names(gemm_recipe_names()) + ")");
}

}  // namespace

const schema::Schema<OperandRecipe>& operand_recipe_schema() {
  using S = OperandRecipe;
  static const schema::Schema<S> sc{"GemmRecipe operand",
                                    {schema::text<S>("format", &S::format), rule_field(), tile_field()},
                                    {}};
  return sc;
}

const schema::Schema<GemmRecipe>& gemm_recipe_schema() {
  using S = GemmRecipe;
  static const schema::Schema<S> sc{"GemmRecipe",
                                    {
                                        schema::object<S, OperandRecipe>("a", &S::a, operand_recipe_schema()),
                                        schema::object<S, OperandRecipe>("b", &S::b, operand_recipe_schema()),
                                        schema::object<S, GemmSpec>("gemm", &S::gemm, gemm_spec_schema()),
                                        schema::text<S>("name", &S::name),
                                        schema::text<S>("source", &S::source),
                                    },
                                    [](const S& r) { r.validate(); }};
  return sc;
}

void GemmRecipe::validate() const {
  for (const auto* op : {&a, &b}) {
    const std::string w = "GemmRecipe." + std::string(op == &a ? "a" : "b");
    try {
      (void)format_by_name(op->format);
    } catch (const std::invalid_argument& e) {
      schema::fail(w + ".format", "\"" + op->format + "\"", "a format name (" + schema::join_names(format_names()) + ")");
    }
    op->rule.validate();
    const std::size_t n = op->tile.rows * op->tile.cols;
    if (op->rule.tile_elements != 0 && n != op->rule.tile_elements)
      schema::fail(w + ".tile", "[" + std::to_string(op->tile.rows) + "," + std::to_string(op->tile.cols) + "]",
                   "a tile of " + std::to_string(op->rule.tile_elements) + " elements (rule '" + op->rule.name + "')");
    // A promoted partial sum is scaled once, so one promotion block must not span two scale tiles.
    if (gemm.accumulate == Accumulate::Promoted && op->tile.cols != 0 &&
        op->tile.cols % static_cast<std::size_t>(gemm.promote_every) != 0)
      schema::fail(w + ".tile", "[" + std::to_string(op->tile.rows) + "," + std::to_string(op->tile.cols) + "]",
                   "tile columns a multiple of gemm.promote_every (" + std::to_string(gemm.promote_every) +
                   ") or 0, so no promotion block crosses a scale tile");
  }
  (void)tensor_core_by_name(gemm.instruction);
}

const GemmRecipe& gemm_recipe(std::string_view name) {
  return schema::row_by_name<GemmRecipe>(table(), name, "recipe", "GEMM recipe", "known recipes: ");
}

std::vector<std::string> gemm_recipe_names() { return schema::row_names<GemmRecipe>(table()); }

QTensor quantize_operand(const float* x, std::size_t rows, std::size_t cols, const OperandRecipe& op) {
  return quantize(x, rows, cols, op.tile, op.format, op.rule);
}

std::string to_json(const GemmRecipe& r) { return schema::to_json(r, gemm_recipe_schema()); }

GemmRecipe gemm_recipe_from_json(std::string_view json) {
  const Json j = schema::parse_spec_text(json, "GemmRecipe");
  if (!j.is_object()) schema::not_an_object("GemmRecipe", j);
  GemmRecipe r;
  Json fields = j;
  if (const Json* base = j.find("base")) {
    r = gemm_recipe(schema::read_string(*base, "GemmRecipe.base"));
    std::erase_if(fields.members, [](const JsonMember& m) { return m.first == "base"; });
    if (!j.find("name")) r.name += "+custom";
  } else {
    require_keys(j, gemm_recipe_schema(), "GemmRecipe", {"name", "source"});
    for (const char* op : {"a", "b"})
      if (j.find(op)->is_object()) require_keys(*j.find(op), operand_recipe_schema(), std::string("GemmRecipe.") + op, {});
    if (j.find("gemm")->is_object()) require_keys(*j.find("gemm"), gemm_spec_schema(), "GemmRecipe.gemm", {});
    r.name = "custom";
  }
  schema::read_into(r, fields, gemm_recipe_schema());
  r.validate();
  // A copied row with a field changed is no longer that row: it must not pass for it by name.
  for (const auto& row : table())
    if (row.name == r.name && to_json(row) != to_json(r)) r.name += "+custom";
  return r;
}

}  // namespace fp8lab

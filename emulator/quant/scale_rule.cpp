// The scale-rule arithmetic and the table of named rules. Each row cites the code it reproduces;
// tests/python/test_quant_rules.py re-derives every row from those formulas in numpy.
#include "quant/scale_rule.hpp"

#include <array>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace fp8lab {

namespace {

// A row that is `base` but for its name, its source and what `edit` changes.
template <class Edit>
ScaleRule variant(const ScaleRule& base, std::string name, std::string source, Edit edit) {
  ScaleRule r = base;
  r.name = std::move(name);
  r.source = std::move(source);
  edit(r);
  return r;
}

// The power-of-two twins of a float32-scale row: 2^ceil(log2 s) kept as a float32 (DeepSeek's
// scale_fmt="ue8m0" / round_scale), or DeepGEMM's ceil_to_ue8m0 exponent bits stored as UE8M0 bytes.
void ceil_log2_scales(ScaleRule& r) { r.pow2 = Pow2::CeilLog2; }
void ue8m0_exponent_bits(ScaleRule& r) {
  r.pow2 = Pow2::ExponentBitsCeil;
  r.storage = ScaleStorage::Ue8m0;
}

// The MX rows beyond OCP's floor: the E8M0 scale-rounding modes torchao and TransformerEngine
// ship (32-element blocks, UE8M0 storage, elements divided by the power-of-two scale, which is
// the same single rounding as the sources' multiply by its exact reciprocal). torchao's FLOOR
// mode is the "mx" row itself: its exponent field of amax minus emax, clamped to [-127, 128],
// equals floor(log2 amax) - emax clamped at -127 for every finite amax, and it too gives NaN
// (0xFF) for a NaN or Inf amax (tests/python/test_quant_rules.py checks the two formulas agree).
void add_mx_rounding_rows(std::vector<ScaleRule>& t, const ScaleRule& mx) {
  // torchao mx_formats/mx_tensor.py to_mx(scaling_mode=RCEIL), _to_mx_rceil: max_abs = torch.amax
  // (NaN propagates); descale = max_abs * (1.0 / max_pos) (a float32 multiply by fl32(1/max_pos));
  // E8M0 = cvt.rp.ue8m0x2.f32(descale), or its eager twin _f32_to_e8m0_rceil (exponent field +
  // (mantissa != 0), subnormals up only above 2^-127, non-finite -> 0xFF); data * 2^-e. The
  // cuBLAS "Computing scaling and conversion factors for FP8 with UE8M0 scales" recipe.
  const ScaleRule rc{.name = "mx_rceil",
                     .source = "torchao mx_formats mx_tensor.py to_mx ScaleCalculationMode.RCEIL (_to_mx_rceil: "
                               "descale = amax * (1/max_pos), cvt.rp.ue8m0x2.f32)",
                     .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::None, .form = ScaleForm::AmaxTimesInvFmax,
                     .pow2 = Pow2::E8m0RoundUpNoSat, .apply = Apply::Divide, .cast_overflow = Overflow::Saturate,
                     .storage = ScaleStorage::Ue8m0, .tile_elements = 32};
  t.push_back(rc);
  // torchao to_mx(scaling_mode=CEIL): extracted_pow2 = ((bits >> 23) & 0xFF) - 127, += (bits &
  // 0x7FFFFF) > 0; scale = extracted_pow2 - target_max_pow2, clamped to [-127, 128]; a non-finite
  // max_abs gives 0xFF; data_lp = data_hp * 2^-scale, clamped to +-max_pos for e5m2, cast.
  t.push_back(variant(mx, "mx_ceil",
                      "torchao mx_formats mx_tensor.py to_mx ScaleCalculationMode.CEIL "
                      "(2^(ceil(log2 amax) - emax_elem))",
                      [](ScaleRule& r) { r.form = ScaleForm::MxSharedExponentCeil; }));
  // torchao to_mx(scaling_mode=EVEN): max_abs = (max_abs_bits + (1 << (23 - mbits - 1))) &
  // 0xFF800000 (NaN restored), then as FLOOR.
  t.push_back(variant(mx, "mx_even",
                      "torchao mx_formats mx_tensor.py to_mx ScaleCalculationMode.EVEN (amax rounded at the element's "
                      "mantissa width, then floor)",
                      [](ScaleRule& r) { r.form = ScaleForm::MxSharedExponentEven; }));
  // TransformerEngine MXFP8BlockScaling, common/cast/mxfp8/quantize_mxfp8.cuh: thread_amax =
  // fmaxf(thread_amax, fabsf(elt)) (NaN skipped); biased_exponent = ptx::float_to_e8m0(thread_amax *
  // Quantized_Limits<OType>::max_norm_rcp) with max_norm_rcp = (float)(1.0 / max_norm), i.e.
  // cvt.rp.satfinite.ue8m0x2.f32 (ptx_arch_spec.cuh; its pre-Blackwell twin: NaN -> 0xFF,
  // Inf -> 0xFE, 0 -> 0x00, else exponent + 1 when the mantissa is set, subnormals only above
  // 0x400000); out = static_cast<OType>(in * ptx::exp2f_rcp(biased_exponent)) (satfinite).
  t.push_back(variant(rc, "te_mxfp8",
                      "TransformerEngine MXFP8BlockScaling cast/mxfp8/quantize_mxfp8.cuh (fmaxf amax, "
                      "float_to_e8m0(amax * max_norm_rcp) = cvt.rp.satfinite.ue8m0x2.f32, x * exp2f_rcp)",
                      [](ScaleRule& r) {
                        r.amax_nan = AmaxNan::Ignore;
                        r.pow2 = Pow2::E8m0RoundUp;
                      }));
}

// NVFP4 (TransformerEngine NVFP4BlockScaling; custom_recipes/reference_nvfp4.py
// NVFP4QuantizerRef._quantize_blockwise_reference, which TE's tests hold its kernels to with zero
// tolerance): global_amax = torch.amax(|x|) (NaN propagates); S_enc = min((448 * 6) / global_amax,
// FLT_MAX), 1 where 0; S_dec = 1 / S_enc; decode_scale = vec_max * (S_enc * reciprocal(6)), min
// FLT_MAX, clamp +-448, .to(float8_e4m3fn); encode_scale = min(1 / (decode_scale * S_dec), FLT_MAX);
// q = cast_to_fp4x2(clamp(x * encode_scale, -6, 6)) (nearest-even: its table sends 0.25 -> 0,
// 0.75 -> 1, 2.5 -> 2, 5 -> 4). Tiles 1x16 (activations, gradients) or 16x16 (weights,
// nvfp4_ref_rht_2d_factory) come from the recipe.
void add_nvfp4_rows(std::vector<ScaleRule>& t) {
  const ScaleRule nv{.name = "nvfp4",
                     .source = "TransformerEngine NVFP4BlockScaling, custom_recipes/reference_nvfp4.py "
                               "_quantize_blockwise_reference (S_enc = 448*6/amax, E4M3 per-16 block scales)",
                     .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::None, .form = ScaleForm::Nvfp4TwoLevel,
                     .apply = Apply::Multiply, .clamp_before_cast = true, .cast_overflow = Overflow::Saturate,
                     .storage = ScaleStorage::E4m3, .global_scale_max = 448};
  t.push_back(nv);
  // NVFP4BlockScaling(nvfp4_4over6=...) with its default nvfp4_4over6_e4m3_use_256="all" (S_enc with
  // 256 in place of 448) and MAE error: _quantize_blockwise_4over6_reference (quant/nvfp4.cpp).
  t.push_back(variant(nv, "nvfp4_4over6",
                      "TransformerEngine NVFP4 4over6 (reference_nvfp4.py _quantize_blockwise_4over6_reference: "
                      "map-to-4 vs map-to-6 by summed |error|, S_enc = 256*6/amax)",
                      [](ScaleRule& r) {
                        r.four_over_six = true;
                        r.global_scale_max = 256;
                      }));
}

void add_deepgemm_fp4_rows(std::vector<ScaleRule>& t, const ScaleRule& dg) {
  // DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp4 (the FP4 reference quantiser):
  // x_amax = x.abs().float().amax(dim=2).clamp_min(1e-4) (NaN propagates); sf = x_amax / 6.0;
  // ceil_to_ue8m0(sf) when use_ue8m0; x_scaled = x * (1.0 / sf); _quantize_to_fp4_e2m1: code =
  // sum(|x| > b for b in 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0) (ties toward zero, anything above 5
  // -> 6, Inf included), sign = (x < 0) & (code != 0). Its element format is e2m1 (fmax 6); its
  // tiles 1 x gran_k (128, or 32 for FP4 weights) come from the caller.
  const ScaleRule fp4 = variant(dg, "deepgemm_fp4",
                                "DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp4 (sf = amax/6, x * (1/sf), "
                                "_quantize_to_fp4_e2m1: ties toward zero)",
                                [](ScaleRule& r) {
                                  r.cast_overflow = Overflow::Saturate;
                                  r.cast_rounding = CastRounding::NearestTiesToZero;
                                });
  t.push_back(fp4);
  t.push_back(variant(fp4, "deepgemm_fp4_ue8m0", "DeepGEMM per_token_cast_to_fp4(use_ue8m0=True): ceil_to_ue8m0 scales",
                      ue8m0_exponent_bits));
}

// The rows of DeepSeek's own code and of DeepGEMM (V3, V3.1's UE8M0, V3.2's TileLang, DeepGEMM's
// casts and its FP4 reference).
void add_deepseek_and_deepgemm_rows(std::vector<ScaleRule>& t) {
  // DeepSeek-V3 inference/kernel.py act_quant_kernel (Triton): amax = tl.max(tl.abs(x)) (max.f32
  // skips NaN), amax = tl.maximum(amax, 1e-4), s = amax / 448., optional
  // s = exp2(ceil(log2(s))) when scale_fmt == "ue8m0"; y = x / s; y.to(float8e4nv) is a
  // satfinite cvt. weight_dequant multiplies by the same stored float32 s.
  const ScaleRule ds{.name = "deepseek", .source = "DeepSeek-V3 inference/kernel.py act_quant / weight_dequant",
                     .amax_nan = AmaxNan::Ignore, .floor_at = FloorAt::Amax, .epsilon = 1e-4f,
                     .form = ScaleForm::AmaxOverFmax, .apply = Apply::Divide, .cast_overflow = Overflow::Saturate};
  t.push_back(ds);
  t.push_back(variant(ds, "deepseek_ue8m0",
                      "DeepSeek-V3 inference/kernel.py act_quant(scale_fmt='ue8m0'); scales stay float32 as in "
                      "the source",
                      ceil_log2_scales));
  // DeepSeek-V3.2-Exp / V4 inference/kernel.py act_quant_kernel (TileLang, fast math disabled):
  // fp8_max_inv = 1 / fp8_max, amax = max(amax, 1e-4), s = amax * fp8_max_inv — a multiply by the
  // rounded reciprocal, not a division — or, with round_scale, fast_round_scale: exponent field
  // + (mantissa != 0) read off the float32's bits (no clamp; exact for the normal s the floor
  // guarantees); y = clamp(x / s, -448, 448), then the cast.
  const ScaleRule v32{.name = "deepseek_v32",
                      .source = "DeepSeek-V3.2-Exp inference/kernel.py act_quant (TileLang): s = amax * (1/448)",
                      .amax_nan = AmaxNan::Ignore, .floor_at = FloorAt::Amax, .epsilon = 1e-4f,
                      .form = ScaleForm::AmaxTimesInvFmax, .apply = Apply::Divide, .clamp_before_cast = true,
                      .cast_overflow = Overflow::Saturate};
  t.push_back(v32);
  t.push_back(variant(v32, "deepseek_v32_ue8m0",
                      "DeepSeek-V3.2-Exp inference/kernel.py act_quant(round_scale=True): fast_round_scale, "
                      "float32 scales",
                      ceil_log2_scales));
  // DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp8 / per_block_cast_to_fp8:
  // x_amax = x.abs().float().amax(...).clamp(1e-4); sf = x_amax / 448.0;
  // (x * (1.0 / sf)).to(torch.float8_e4m3fn) — a reciprocal then a multiply, and PyTorch's
  // non-saturating cast.
  const ScaleRule dg{.name = "deepgemm",
                     .source = "DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp8 / per_block_cast_to_fp8",
                     .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::Amax, .epsilon = 1e-4f,
                     .form = ScaleForm::AmaxOverFmax, .apply = Apply::ReciprocalMultiply,
                     .cast_overflow = Overflow::InfOrNan};
  t.push_back(dg);
  t.push_back(variant(dg, "deepgemm_ue8m0",
                      "DeepGEMM per_token_cast_to_fp8(use_ue8m0=True) with ceil_to_ue8m0 (exponent bits, clamp "
                      "[1, 254]); packed to UE8M0 bytes as pack_ue8m0_to_int does",
                      ue8m0_exponent_bits));
  add_deepgemm_fp4_rows(t, dg);
}

std::vector<ScaleRule> make_table() {
  std::vector<ScaleRule> t;
  add_deepseek_and_deepgemm_rows(t);
  // TransformerEngine common/recipe/recipe_common.cuh compute_scale_from_amax, used by the
  // blockwise kernels (quantize_transpose_square_blockwise.cu / _vector_blockwise.cu): amax by
  // fmaxf; scale = __fdiv_rn(max_fp8, amax) with its special cases; pow2 by clearing the mantissa;
  // q = static_cast<fp8>(x * scale) (satfinite); stored scale_inv = 1.0f / scale.
  const ScaleRule te{.name = "te",
                     .source = "TransformerEngine Float8BlockScaling (power-of-two scales, the default), "
                               "recipe_common.cuh compute_scale_from_amax",
                     .amax_nan = AmaxNan::Ignore, .floor_at = FloorAt::Amax, .epsilon = 0.0f,
                     .form = ScaleForm::FmaxOverAmax, .pow2 = Pow2::MaskMantissa, .te_special_cases = true,
                     .apply = Apply::Multiply, .cast_overflow = Overflow::Saturate};
  t.push_back(te);
  t.push_back(variant(te, "te_fp32", "TransformerEngine Float8BlockScaling with force_pow_2_scales=False",
                      [](ScaleRule& r) { r.pow2 = Pow2::None; }));
  // FlashMLA tests/quant.py quantize_k_cache (V32_FP8Sparse): s = |x|.max(-1) / 448.0;
  // _cast_scale_inv_to_ue8m0: torch.pow(2, torch.clamp_min(s, 1e-4).log2().ceil());
  // (x.float() / s).to(torch.float8_e4m3fn).
  const ScaleRule fm{.name = "flashmla_cache", .source = "FlashMLA tests/quant.py quantize_k_cache (FP8 latent cache)",
                     .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::Scale, .epsilon = 1e-4f,
                     .form = ScaleForm::AmaxOverFmax, .pow2 = Pow2::CeilLog2, .apply = Apply::Divide,
                     .cast_overflow = Overflow::InfOrNan};
  t.push_back(fm);
  // FlashMLA tests/quant.py quantize_k_cache (MODEL1_FP8Sparse, the 584-byte sparse layout): the
  // same scale as above (_cast_scale_inv_to_ue8m0), stored as one torch.float8_e8m0fnu byte per
  // 64-element tile; the kernel reads it with __nv_cvt_e8m0x2_to_bf162raw
  // (csrc/sm90/decode/sparse_fp8/splitkv_mla.cuh).
  t.push_back(variant(fm, "flashmla_cache_ue8m0",
                      "FlashMLA tests/quant.py quantize_k_cache (MODEL1_FP8Sparse: UE8M0 scale bytes)",
                      [](ScaleRule& r) { r.storage = ScaleStorage::Ue8m0; }));
  // vLLM/SGLang test reference (native per-token-group quantisation): amax.clamp(min=1e-10);
  // x_s = amax / fp8_max; (x / x_s).clamp(min=fp8_min, max=fp8_max).to(fp8 dtype).
  t.push_back({.name = "vllm",
               .source = "vLLM tests per_token_group_quant_fp8 native reference (eps 1e-10, clamp +-fmax)",
               .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::Amax, .epsilon = 1e-10f,
               .form = ScaleForm::AmaxOverFmax, .apply = Apply::Divide, .clamp_before_cast = true,
               .cast_overflow = Overflow::InfOrNan});
  // OCP Microscaling Formats (MX) v1.0 §6.3: X = 2^(floor(log2 amax) - emax_elem), elements
  // v / X rounded to nearest-even and clamped to the element's max normal; an all-zero block gets
  // the smallest exponent, an exponent above 127 (amax Inf or NaN) makes X NaN (0xFF).
  const ScaleRule mx{.name = "mx",
                     .source = "OCP Microscaling Formats v1.0 §6.3 (shared E8M0 exponent, 32-element blocks); "
                               "= torchao to_mx ScaleCalculationMode.FLOOR",
                     .amax_nan = AmaxNan::Propagate, .floor_at = FloorAt::None, .form = ScaleForm::MxSharedExponent,
                     .apply = Apply::Divide, .cast_overflow = Overflow::Saturate, .storage = ScaleStorage::Ue8m0,
                     .tile_elements = 32};
  t.push_back(mx);
  add_mx_rounding_rows(t, mx);
  add_nvfp4_rows(t);
  return t;
}

const std::vector<ScaleRule>& table() {
  static const std::vector<ScaleRule> t = schema::validated(make_table());
  return t;
}

using schema::EnumRow;
constexpr std::array<EnumRow<AmaxNan>, 2> kAmaxNan{{{"propagate", AmaxNan::Propagate}, {"ignore", AmaxNan::Ignore}}};
constexpr std::array<EnumRow<FloorAt>, 3> kFloorAt{
    {{"none", FloorAt::None}, {"amax", FloorAt::Amax}, {"scale", FloorAt::Scale}}};
constexpr std::array<EnumRow<ScaleForm>, 7> kForm{{{"amax_over_fmax", ScaleForm::AmaxOverFmax},
                                                   {"amax_times_inv_fmax", ScaleForm::AmaxTimesInvFmax},
                                                   {"fmax_over_amax", ScaleForm::FmaxOverAmax},
                                                   {"mx_shared_exponent", ScaleForm::MxSharedExponent},
                                                   {"mx_shared_exponent_ceil", ScaleForm::MxSharedExponentCeil},
                                                   {"mx_shared_exponent_even", ScaleForm::MxSharedExponentEven},
                                                   {"nvfp4_two_level", ScaleForm::Nvfp4TwoLevel}}};
constexpr std::array<EnumRow<Pow2>, 6> kPow2{{{"none", Pow2::None},
                                              {"ceil_log2", Pow2::CeilLog2},
                                              {"exponent_bits_ceil", Pow2::ExponentBitsCeil},
                                              {"mask_mantissa", Pow2::MaskMantissa},
                                              {"e8m0_round_up", Pow2::E8m0RoundUp},
                                              {"e8m0_round_up_nosat", Pow2::E8m0RoundUpNoSat}}};
constexpr std::array<EnumRow<Apply>, 3> kApply{
    {{"divide", Apply::Divide}, {"reciprocal_multiply", Apply::ReciprocalMultiply}, {"multiply", Apply::Multiply}}};
constexpr std::array<EnumRow<CastRounding>, 2> kCastRounding{
    {{"nearest_even", CastRounding::NearestEven}, {"nearest_ties_to_zero", CastRounding::NearestTiesToZero}}};
constexpr std::array<EnumRow<ScaleStorage>, 3> kStorage{
    {{"fp32", ScaleStorage::Fp32}, {"ue8m0", ScaleStorage::Ue8m0}, {"e4m3", ScaleStorage::E4m3}}};

// The epsilon is written twice, as a decimal (%.9g, enough to round-trip a float32) and as a hex
// float; a reader takes either, and when both are given they must agree (an edited decimal next to
// a stale hex value would otherwise be ignored silently).
float read_epsilon(const Json& v, const Json& object, const std::string& where, bool hex) {
  std::string text;
  if (hex) {
    text = schema::read_string(v, where);
  } else {
    (void)schema::read_number(v, where);
    text = v.text;
  }
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    schema::fail(where, "\"" + text + "\"", "a hex float such as \"0x1.a36e2ep-14\"");
  const float f = static_cast<float>(d);
  const Json* other = object.find(hex ? "epsilon" : "epsilon_hex");
  if (other && (other->is_number() || other->is_string())) {
    const float g = static_cast<float>(std::strtod(other->text.c_str(), nullptr));
    if (f != g)
      throw std::invalid_argument("ScaleRule: 'epsilon' (" + (hex ? other->text : text) + ") and 'epsilon_hex' (" +
                                  (hex ? text : other->text) + ") disagree; give one of them");
  }
  return f;
}

std::string eps_text(float e, const char* fmt) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, static_cast<double>(e));
  return buf;
}

schema::Field<ScaleRule> epsilon_field(bool hex) {
  return {hex ? "epsilon_hex" : "epsilon", hex ? "string" : "number", {},
          "a finite float32 >= 0" + std::string(hex ? " as a hex float" : ""),
          [hex](const ScaleRule& r) {
            return hex ? schema::string_json(eps_text(r.epsilon, "%a")) : schema::number_json(eps_text(r.epsilon, "%.9g"));
          },
          [hex](ScaleRule& r, const Json& v, const Json& o, const std::string& w) { r.epsilon = read_epsilon(v, o, w, hex); }};
}

float pow2f(int e) { return std::ldexp(1.0f, e); }  // exact for -149 <= e <= 127

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ceil(log2 v) for a finite v > 0, exact (ilogb is exact for subnormals too).
int ceil_log2(float v) {
  const int e = std::ilogb(v);
  return v == pow2f(e) ? e : e + 1;
}

// The MX shared scale 2^(E - emax_elem), E from amax by the form's rounding, clamped below at
// 2^-127 (E8M0's smallest); a non-finite amax or an exponent above 127 gives NaN (byte 0xFF).
float mx_shared_scale(float amax, ScaleForm form, const Format& fmt) {
  if (!std::isfinite(amax)) return kNaN;
  if (form == ScaleForm::MxSharedExponentEven) {
    // torchao EVEN: round amax half-up at the element's mantissa width on its bits, keep the
    // exponent; a carry out of the largest binade makes it Inf, whose scale is NaN.
    const int shift = 23 - fmt.mantissa_bits - 1;
    const std::uint32_t b = std::bit_cast<std::uint32_t>(amax);
    amax = std::bit_cast<float>((b + (std::uint32_t{1} << shift)) & 0xFF800000u);
    if (!std::isfinite(amax)) return kNaN;
  }
  // floor(log2 amax) is the float32 exponent (ilogb); CEIL adds one when amax is not a power of two.
  int e = amax == 0.0f ? -127
                       : (form == ScaleForm::MxSharedExponentCeil ? ceil_log2(amax) : std::ilogb(amax)) -
                             fmt.max_exponent();
  if (e < -127) e = -127;
  return e > 127 ? kNaN : pow2f(e);
}

// Step 4 of compute_tile_scale: the formed value made a power of two by the rule's pow2.
float round_to_pow2(float v, Pow2 pow2) {
  switch (pow2) {
    case Pow2::None: return v;
    case Pow2::CeilLog2:
      // 2^ceil(log2 v) for finite v > 0; log2(0) = -inf gives 0, Inf and NaN pass through.
      if (std::isfinite(v) && v > 0.0f) {
        const int e = ceil_log2(v);
        return e > 127 ? std::numeric_limits<float>::infinity() : pow2f(e);
      }
      return v;
    case Pow2::ExponentBitsCeil: {
      const std::uint32_t b = std::bit_cast<std::uint32_t>(v) & 0x7FFFFFFFu;
      std::uint32_t e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0 ? 1u : 0u);
      e = e < 1u ? 1u : e > 254u ? 254u : e;
      return std::bit_cast<float>(e << 23);
    }
    case Pow2::MaskMantissa: return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0xFF800000u);
    case Pow2::E8m0RoundUp:
    case Pow2::E8m0RoundUpNoSat: {
      // cvt.rp to UE8M0 (values 2^-127 .. 2^127): v <= 2^-127 (zero included) takes the smallest
      // value; satfinite turns +Inf and values above 2^127 into 2^127, without it they are NaN.
      const bool sat = pow2 == Pow2::E8m0RoundUp;
      if (std::isnan(v)) return kNaN;
      if (std::isinf(v)) return sat ? pow2f(127) : kNaN;
      if (v <= pow2f(-127)) return pow2f(-127);
      const int e = ceil_log2(v);
      return e > 127 ? (sat ? pow2f(127) : kNaN) : pow2f(e);
    }
  }
  return v;
}

}  // namespace

std::string_view scale_form_name(ScaleForm v) { return schema::enum_name<ScaleForm>(kForm, v); }
std::string_view pow2_name(Pow2 v) { return schema::enum_name<Pow2>(kPow2, v); }
std::string_view apply_name(Apply v) { return schema::enum_name<Apply>(kApply, v); }

const schema::Schema<ScaleRule>& scale_rule_schema() {
  using S = ScaleRule;
  static const schema::Schema<S> sc{
      "ScaleRule",
      {
          schema::enumeration<S, AmaxNan>("amax_nan", &S::amax_nan, kAmaxNan),
          schema::enumeration<S, Apply>("apply", &S::apply, kApply),
          schema::enumeration<S, Overflow>("cast_overflow", &S::cast_overflow, overflow_table()),
          schema::enumeration<S, CastRounding>("cast_rounding", &S::cast_rounding, kCastRounding),
          schema::boolean<S>("clamp_before_cast", &S::clamp_before_cast),
          epsilon_field(false),
          epsilon_field(true),
          schema::enumeration<S, FloorAt>("floor_at", &S::floor_at, kFloorAt),
          schema::enumeration<S, ScaleForm>("form", &S::form, kForm),
          schema::boolean<S>("four_over_six", &S::four_over_six),
          schema::integer<S, int>("global_scale_max", &S::global_scale_max, 1, 448),
          schema::text<S>("name", &S::name),
          schema::enumeration<S, Pow2>("pow2", &S::pow2, kPow2),
          schema::text<S>("source", &S::source),
          schema::enumeration<S, ScaleStorage>("storage", &S::storage, kStorage),
          schema::boolean<S>("te_special_cases", &S::te_special_cases),
          schema::integer<S, std::size_t>("tile_elements", &S::tile_elements, 0, 1LL << 40),
      },
      [](const S& r) { r.validate(); }};
  return sc;
}

void ScaleRule::validate() const {
  const std::string who = "scale rule '" + name + "': ";
  const bool multiplier = form == ScaleForm::FmaxOverAmax;
  if (!(epsilon >= 0.0f) || !std::isfinite(epsilon))
    throw std::invalid_argument(who + "epsilon must be a finite float32 >= 0, got " + std::to_string(epsilon));
  if (!two_level() && multiplier != (apply == Apply::Multiply))
    throw std::invalid_argument(who + "apply '" + std::string(apply_name(apply)) + "' does not fit form '" +
                                std::string(scale_form_name(form)) +
                                "' (a multiplier fmax/amax is applied by 'multiply'; a scale amax/fmax by "
                                "'divide' or 'reciprocal_multiply')");
  if (pow2 == Pow2::MaskMantissa && !multiplier)
    throw std::invalid_argument(who + "pow2 'mask_mantissa' rounds a multiplier down; it needs form 'fmax_over_amax'");
  if ((pow2 == Pow2::CeilLog2 || pow2 == Pow2::ExponentBitsCeil) && multiplier)
    throw std::invalid_argument(who + "pow2 '" + std::string(pow2_name(pow2)) +
                                "' rounds a dequantisation scale up; with form 'fmax_over_amax' use 'mask_mantissa'");
  if (mx_form() && pow2 != Pow2::None)
    throw std::invalid_argument(who + "form '" + std::string(scale_form_name(form)) +
                                "' is already a power of two; pow2 must be 'none'");
  if ((pow2 == Pow2::E8m0RoundUp || pow2 == Pow2::E8m0RoundUpNoSat) && multiplier)
    throw std::invalid_argument(who + "pow2 '" + std::string(pow2_name(pow2)) +
                                "' rounds a dequantisation scale up; with form 'fmax_over_amax' use 'mask_mantissa'");
  if (te_special_cases && !multiplier)
    throw std::invalid_argument(who + "te_special_cases apply to form 'fmax_over_amax' only");
  if (floor_at == FloorAt::Scale && multiplier)
    throw std::invalid_argument(who + "floor_at 'scale' needs a dequantisation-scale form, not 'fmax_over_amax'");
  if (two_level() != (storage == ScaleStorage::E4m3))
    throw std::invalid_argument(who + "form 'nvfp4_two_level' stores E4M3 block scales and only it does: "
                                "storage must be 'e4m3' exactly when form is 'nvfp4_two_level'");
  if (two_level() && (apply != Apply::Multiply || pow2 != Pow2::None || floor_at != FloorAt::None))
    throw std::invalid_argument(who + "form 'nvfp4_two_level' applies its multiplier (apply 'multiply'), "
                                "with pow2 'none' and floor_at 'none'");
  if (four_over_six && !two_level())
    throw std::invalid_argument(who + "four_over_six needs form 'nvfp4_two_level'");
  if (storage == ScaleStorage::Ue8m0 && !power_of_two())
    throw std::invalid_argument(who + "storage 'ue8m0' holds powers of two only; set pow2 or use storage 'fp32'");
}

std::string ScaleRule::to_json() const { return schema::to_json(*this, scale_rule_schema()); }

ScaleRule scale_rule_from_json(std::string_view js) {
  const Json j = schema::parse_spec_text(js, "ScaleRule");
  // A rule is either complete (every field but name and source: no hidden default decides how a
  // kernel scales) or names the row it edits in "base".
  ScaleRule r;
  r.name = "custom";
  Json fields = j;
  if (const Json* base = j.is_object() ? j.find("base") : nullptr) {
    r = scale_rule_by_name(schema::read_string(*base, "ScaleRule.base"));
    std::erase_if(fields.members, [](const JsonMember& m) { return m.first == "base"; });
    if (!j.find("name")) r.name += "+custom";
  }
  schema::read_into(r, fields, scale_rule_schema());
  r.validate();
  if (!j.find("base")) {
    std::vector<std::string> missing;
    for (const auto& f : scale_rule_schema().fields)
      if (f.key != "name" && f.key != "source" && f.key != "epsilon" && f.key != "epsilon_hex" &&
          f.key != "four_over_six" && f.key != "global_scale_max" && f.key != "cast_rounding" && !j.find(f.key))  // fields added later keep defaults
        missing.push_back(f.key);
    if (!j.find("epsilon") && !j.find("epsilon_hex")) missing.push_back("epsilon");
    if (!missing.empty())
      throw std::invalid_argument("ScaleRule: missing key(s) " + schema::join_names(missing) +
                                  "; a rule gives every field, or names the rule it edits in \"base\" (one of " +
                                  schema::join_names(scale_rule_names()) + ")");
  }
  return r;
}

const ScaleRule& scale_rule_by_name(std::string_view name) {
  return schema::row_by_name<ScaleRule>(table(), name, "rule", "scale rule", "valid rules: ");
}

std::vector<std::string> scale_rule_names() { return schema::row_names<ScaleRule>(table()); }

float nvfp4_global_encode(float tensor_amax, const ScaleRule& rule, const Format& fmt) {
  // global_encode_scale = min((E4M3_MAX * FP4_MAX) / global_amax, FLT_MAX), 1 where it is 0 (an
  // infinite amax); an all-zero tensor gets FLT_MAX, a NaN amax NaN.
  const float num = static_cast<float>(rule.global_scale_max) * static_cast<float>(fmt.max_finite());
  float s = num / tensor_amax;
  if (s > FLT_MAX) s = FLT_MAX;
  return s == 0.0f ? 1.0f : s;
}

TileScale nvfp4_block_scale(float ds, float global_encode) {
  static const Format& e4m3 = format_by_name("e4m3");
  const float cap = static_cast<float>(e4m3.max_finite());
  if (ds > FLT_MAX) ds = FLT_MAX;                  // torch.min(decode_scale, FLT_MAX)
  ds = ds < -cap ? -cap : (ds > cap ? cap : ds);   // torch.clamp(+-448): NaN passes
  TileScale ts;
  ts.dequant = static_cast<float>(round_to_format(ds, e4m3));  // .to(torch.float8_e4m3fn)
  const float global_decode = 1.0f / global_encode;
  float enc = 1.0f / (ts.dequant * global_decode);
  ts.apply = enc > FLT_MAX ? FLT_MAX : enc;
  return ts;
}

TileScale compute_tile_scale(float amax, const ScaleRule& rule, const Format& fmt, float global_encode) {
  const float fmax = static_cast<float>(fmt.max_finite());
  // NVFP4 (default path): the FP4 reciprocal folded into the global multiplier, decode_scale =
  // vec_max * fl32(S_enc * fl32(1 / 6)).
  if (rule.two_level()) return nvfp4_block_scale(amax * (global_encode * (1.0f / fmax)), global_encode);
  // 1. The floor on amax. `amax < eps` is false for NaN, like torch.clamp and tl.maximum on a NaN.
  if (rule.floor_at == FloorAt::Amax && amax < rule.epsilon) amax = rule.epsilon;
  float v = 1.0f;  // s (a dequantisation scale) or m (a multiplier), by rule.form
  bool special = false;
  // 2. The formed value.
  switch (rule.form) {
    case ScaleForm::AmaxOverFmax: v = amax / fmax; break;
    case ScaleForm::AmaxTimesInvFmax: v = amax * (1.0f / fmax); break;
    case ScaleForm::FmaxOverAmax:
      if (rule.te_special_cases && (std::isinf(amax) || amax == 0.0f)) {
        v = 1.0f;
        special = true;
        break;
      }
      v = fmax / amax;
      if (rule.te_special_cases && std::isinf(v)) v = FLT_MAX;  // value_for_inf of a float32 input
      if (rule.te_special_cases && std::isnan(v)) v = 1.0f;
      break;
    case ScaleForm::MxSharedExponent:
    case ScaleForm::MxSharedExponentCeil:
    case ScaleForm::MxSharedExponentEven: v = mx_shared_scale(amax, rule.form, fmt); break;
    case ScaleForm::Nvfp4TwoLevel: break;  // returned above
  }
  // 3. The floor on the scale.
  if (rule.floor_at == FloorAt::Scale && v < rule.epsilon) v = rule.epsilon;
  // 4. Power of two.
  if (!special) v = round_to_pow2(v, rule.pow2);
  TileScale ts;
  if (rule.form == ScaleForm::FmaxOverAmax) {
    ts.apply = v;
    // TE's blockwise kernels write scale_inv = 1.0f / scale (float32 division). One older variant
    // writes `1.0 / scale` (double, then float): the same value whenever scale is a power of two.
    ts.dequant = 1.0f / v;
  } else {
    ts.apply = rule.apply == Apply::ReciprocalMultiply ? 1.0f / v : v;
    ts.dequant = v;
  }
  if (rule.storage == ScaleStorage::Ue8m0) {
    const float d = ts.dequant;
    int e = 0;
    const bool ok = std::isfinite(d) && d > 0.0f && (e = std::ilogb(d), e >= -127 && e <= 127) && d == pow2f(e);
    ts.ue8m0 = ok ? static_cast<std::uint8_t>(e + 127) : std::uint8_t{0xFF};
    // The stored byte is what a kernel reads: an unrepresentable scale (Inf, 0) reads back as NaN.
    ts.dequant = ok ? d : std::numeric_limits<float>::quiet_NaN();
  }
  return ts;
}

}  // namespace fp8lab

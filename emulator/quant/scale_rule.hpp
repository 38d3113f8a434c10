// How a tile's scale comes from its amax, and how a kernel applies it: one explicit, serialisable
// spec (ScaleRule). The named rules (deepseek, deepgemm, te, flashmla_cache, vllm, mx, ...) are
// rows of a table in scale_rule.cpp, each citing the source it reproduces; the arithmetic in
// compute_tile_scale()/apply_scale() never names a vendor.
//
// Every step is FP32 arithmetic, as in every source (PyTorch float32 tensors, Triton/CUDA `float`):
// amax is a float32, epsilons are float32 constants, `amax / fmax` is one correctly rounded float32
// division. fmax is the element format's largest finite value (448 for e4m3).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace fp8lab {

// How NaN elements enter the tile's amax.
enum class AmaxNan : std::uint8_t {
  Propagate,  // torch.amax / Tensor.max: any NaN makes the amax NaN
  Ignore,     // CUDA fmaxf / PTX max.f32 (TransformerEngine, Triton tl.max): NaN elements are skipped
};

// Where the epsilon floor applies.
enum class FloorAt : std::uint8_t {
  None,
  Amax,   // amax = max(amax, eps) before the scale is formed (DeepSeek, DeepGEMM, vLLM, TE)
  Scale,  // s = max(amax / fmax, eps) (FlashMLA's FP8 cache quantiser)
};

// Which quantity the rule forms from amax.
enum class ScaleForm : std::uint8_t {
  AmaxOverFmax,     // s = fl32(amax / fmax): the dequantisation scale (DeepSeek, DeepGEMM, vLLM, FlashMLA)
  AmaxTimesInvFmax, // s = fl32(amax * fl32(1 / fmax)) (DeepSeek-V3.2 tilelang act_quant's fp8_max_inv)
  FmaxOverAmax,     // m = fl32(fmax / amax): the quantisation multiplier (TransformerEngine)
  MxSharedExponent, // s = 2^(floor(log2 amax) - emax_elem), clamped to E8M0 (OCP MX v1.0 §6.3)
  // s = 2^(ceil(log2 amax) - emax_elem): torchao ScaleCalculationMode.CEIL, the exponent field of
  // amax plus one when its mantissa is not zero (mx_formats/mx_tensor.py to_mx).
  MxSharedExponentCeil,
  // s = 2^(floor(log2 round(amax)) - emax_elem), amax first rounded half-up to the element's
  // mantissa width on its float32 bits: torchao ScaleCalculationMode.EVEN
  // ((bits + (1 << (23 - mbits - 1))) & 0xFF800000).
  MxSharedExponentEven,
  // NVFP4's two-level scale (TransformerEngine custom_recipes/reference_nvfp4.py
  // _quantize_blockwise_reference, the kernel's default path): a tensor-level encode scale
  // S_enc = fl32(global_scale_max * fmax / tensor_amax) (FLT_MAX at most, 1 when it is 0), the block's
  // E4M3 decode scale e4m3(clamp(fl32(amax * fl32(S_enc * fl32(1 / fmax))), +-448)) and the element
  // multiplier fl32(1 / fl32(ds * S_dec)) (FLT_MAX at most), S_dec = fl32(1 / S_enc).
  Nvfp4TwoLevel,
};

// How the formed value is made a power of two.
enum class Pow2 : std::uint8_t {
  None,
  // s = 2^ceil(log2 s), exactly (DeepSeek ue8m0 `exp2(ceil(log2(s)))`, FlashMLA
  // `torch.pow(2, log2().ceil())`). Computed on the float32's bits, not with a libm log2.
  CeilLog2,
  // DeepGEMM's exponent-bit trick: e = exponent_field(s) + (mantissa(s) != 0), clamped to [1, 254],
  // s = e << 23 (deep_gemm/utils/math.py ceil_to_ue8m0). A subnormal or zero s becomes 2^-126,
  // an infinite or NaN s becomes 2^127.
  ExponentBitsCeil,
  // TransformerEngine: clear the multiplier's mantissa bits (`scale_bits &= 0xFF800000`,
  // recipe_common.cuh compute_scale_from_amax), i.e. round the multiplier down.
  MaskMantissa,
  // The E8M0 conversion rounding up, `cvt.rp.satfinite.ue8m0x2.f32` (TransformerEngine
  // ptx_arch_spec.cuh float_to_e8m0): 2^ceil(log2 s) for s > 2^-127, 2^-127 for smaller s and 0,
  // +Inf saturates to 2^127 (byte 0xFE), NaN stays NaN (0xFF).
  E8m0RoundUp,
  // The same without satfinite, `cvt.rp.ue8m0x2.f32` (torchao mx_tensor.py _to_mx_rceil /
  // _f32_to_e8m0_rceil): Inf, NaN and anything above 2^127 become NaN (0xFF).
  E8m0RoundUpNoSat,
};

// How the kernel applies the scale to an element, in float32.
enum class Apply : std::uint8_t {
  Divide,              // q = fl32(x / s)                    (DeepSeek act_quant, FlashMLA, vLLM, MX)
  ReciprocalMultiply,  // q = fl32(x * fl32(1 / s)): two roundings (DeepGEMM `x * (1.0 / sf)`)
  Multiply,            // q = fl32(x * m), m the multiplier; stored scale fl32(1 / m) (TransformerEngine)
};

// How the cast to the element format rounds: always to nearest; the tie rule and the zero's sign differ.
enum class CastRounding : std::uint8_t {
  NearestEven,  // CUDA/Triton cvt.rn, PyTorch's casts: every source but one
  // DeepGEMM utils/math.py _quantize_to_fp4_e2m1: code = #{midpoints m : |x| > m}, so a tie goes
  // to the smaller magnitude, and the sign bit is set only for a non-zero code (a negative value
  // that rounds to zero is +0).
  NearestTiesToZero,
};

enum class ScaleStorage : std::uint8_t {
  Fp32,   // one float32 per tile
  Ue8m0,  // one byte per tile: biased exponent, 2^(b - 127); 0xFF is NaN (OCP MX E8M0)
  E4m3,   // one E4M3 value per tile (NVFP4 block scales), times the tensor's global decode scale
};

struct ScaleRule {
  std::string name;
  std::string source;  // the code or document this rule reproduces
  AmaxNan amax_nan = AmaxNan::Propagate;
  FloorAt floor_at = FloorAt::Amax;
  float epsilon = 0.0f;  // a float32 constant, as in the sources (1e-4f is 0x1.a36e2ep-14)
  ScaleForm form = ScaleForm::AmaxOverFmax;
  Pow2 pow2 = Pow2::None;
  // TransformerEngine's special cases (recipe_common.cuh): an amax that is 0 or Inf gives
  // multiplier 1; an infinite multiplier becomes FLT_MAX; a NaN multiplier becomes 1.
  bool te_special_cases = false;
  Apply apply = Apply::Divide;
  // Clamp q to [-fmax, fmax] before the cast (vLLM `(x / s).clamp(min=-448, max=448)`; NaN passes).
  bool clamp_before_cast = false;
  // The cast's overflow: Saturate for Triton/CUDA `satfinite` casts, InfOrNan for PyTorch's
  // `.to(torch.float8_e4m3fn)` (values from 464 up become NaN). Rounding is always nearest-even.
  Overflow cast_overflow = Overflow::Saturate;
  CastRounding cast_rounding = CastRounding::NearestEven;
  ScaleStorage storage = ScaleStorage::Fp32;
  // Tiles must hold exactly this many elements (OCP MX: 32); 0 = any tile.
  std::size_t tile_elements = 0;
  // Form nvfp4_two_level: the E4M3 bound in S_enc = global_scale_max * fmax / tensor_amax (448;
  // TransformerEngine's 4over6 quantizers use 256, NVTE_NVFP4_4OVER6_E4M3_USE_256).
  int global_scale_max = 448;
  // TransformerEngine NVFP4 "4over6" (reference_nvfp4.py _quantize_blockwise_4over6_reference):
  // each block is quantised with its scale mapping amax to 6 and, 1.5x larger, to 4; the candidate
  // with the smaller summed |error| in the input domain wins (ties: map-to-6). quant/nvfp4.cpp.
  bool four_over_six = false;

  // Throws std::invalid_argument naming the field when the combination is not meaningful.
  void validate() const;
  // Canonical JSON (keys sorted, enums by name, epsilon as a hex float and a decimal).
  std::string to_json() const;
  // Whether every scale this rule produces is a power of two (or a non-finite special case).
  bool power_of_two() const { return pow2 != Pow2::None || mx_form(); }
  bool two_level() const { return form == ScaleForm::Nvfp4TwoLevel; }
  // One of the MX shared-exponent forms (OCP floor, torchao CEIL / EVEN).
  bool mx_form() const {
    return form == ScaleForm::MxSharedExponent || form == ScaleForm::MxSharedExponentCeil ||
           form == ScaleForm::MxSharedExponentEven;
  }
  bool operator==(const ScaleRule&) const = default;
};

// The named rules, in a fixed order; unknown names throw std::invalid_argument listing them.
const ScaleRule& scale_rule_by_name(std::string_view name);
std::vector<std::string> scale_rule_names();
// The declared fields of ScaleRule (common/schema.hpp).
const schema::Schema<ScaleRule>& scale_rule_schema();
// Parses ScaleRule::to_json() output, or a hand-written object: either every field (name and
// source may be left out) or {"base": "<named rule>", ...the fields it changes}. Throws
// std::invalid_argument naming the offending key, its value and what it takes.
ScaleRule scale_rule_from_json(std::string_view json);

std::string_view scale_form_name(ScaleForm v);
std::string_view pow2_name(Pow2 v);
std::string_view apply_name(Apply v);

// The scale of one tile.
struct TileScale {
  float apply = 1.0f;    // what apply_scale() uses: s (Divide), fl32(1/s) (ReciprocalMultiply), m (Multiply)
  float dequant = 1.0f;  // what QTensor stores: decoded value = element * dequant
  std::uint8_t ue8m0 = 0;  // biased exponent byte when storage == Ue8m0 (0xFF for NaN/unrepresentable)
};

// amax of a tile's valid elements (float32, NaN according to rule.amax_nan) -> its scale.
// global_encode is the tensor's S_enc (nvfp4_global_encode) for two-level rules, unused otherwise.
TileScale compute_tile_scale(float amax, const ScaleRule& rule, const Format& fmt, float global_encode = 1.0f);
// A two-level rule's tensor-level encode scale S_enc from the tensor's amax (see Nvfp4TwoLevel).
float nvfp4_global_encode(float tensor_amax, const ScaleRule& rule, const Format& fmt);
// The NVFP4 block scale for a decode scale `ds` formed in float32: clamp to +-448, E4M3 by
// nearest-even, and the element multiplier fl32(1 / fl32(e4m3 * S_dec)) capped at FLT_MAX.
TileScale nvfp4_block_scale(float ds, float global_encode);
// The float32 value that is cast to the element format (before clamp_before_cast).
inline float apply_scale(float x, const TileScale& s, Apply how) {
  return how == Apply::Divide ? x / s.apply : x * s.apply;
}
// Folds one element into a running amax (start from 0.0f).
inline float amax_step(float acc, float x, AmaxNan nan) {
  const float a = x < 0 ? -x : x;
  if (a != a) return nan == AmaxNan::Propagate ? a : acc;
  return a > acc ? a : acc;  // acc NaN stays NaN (Propagate)
}

}  // namespace fp8lab

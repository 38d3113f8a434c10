// MlaSpec: everything that changes the bits of a Multi-head Latent Attention layer, as data.
// Defaults are DeepSeek-V3's (inference/configs/config_671B.json, inference/model.py ModelArgs);
// facts in /work/shared/REFERENCE.md "MLA".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/schema.hpp"

namespace fp8lab::mla {

// Which rotary pairs are rotated together.
enum class RopeLayout : std::uint8_t {
  Interleaved,  // pairs (2i, 2i+1): DeepSeek-V3 inference/model.py apply_rotary_emb (view_as_complex)
  HalfSplit,    // pairs (i, i + d/2): the HF "rotate_half" layout (weights' rope rows permuted)
};

// Arithmetic of a projection or an attention einsum.
enum class MatmulFormat : std::uint8_t {
  Fp32,  // FP32 operands and accumulation, FP32 result
  Bf16,  // operands rounded to BF16 (products exact in FP32), FP32 accumulation, result rounded to
         // BF16 (nearest even): a BF16 GEMM with FP32 accumulation, as torch's default dtype bf16 runs
         // inference/model.py. Not the tensor-core truncation model (Bf16TensorCore is).
  Fp8,   // DeepSeek-V3's FP8 linear (inference/model.py `linear` with fp8 weights): the GEMM
         // recipe kFp8LinearRecipe (gemm/recipe.hpp: activations 1x128 and weights 128x128 E4M3
         // under the "deepseek" scale rule, Hopper FP8 tensor core, promotion every 128, DeepGEMM
         // combine, BF16 output). Projections wq_a, wq_b, wkv_a, wo; and wkv_b, where it
         // means "FP8 checkpoint weights as DeepSeek runs them" (forward.hpp wkv_b_fp8: naive =
         // this FP8 linear, absorbed = the dequantised weights). Not attn or decode_p, whose
         // bounds assume fp32 or bf16. Not bit-faithful to that Triton kernel: it promotes as
         // fma(fl(p*sa), sb, acc) under Triton's default FP fusion, and its 16-row tiles use FP16
         // mma.sync rather than FP8 wgmma (gpu/README.md, finding 3); the DeepGEMM recipe here is
         // the one DeepSeek serves with.
  Bf16TensorCore,  // BF16 operands through gemm/'s Hopper BF16 wgmma model (accumulate
                   // TensorCore, instruction "hopper_bf16": truncating alignment inside the tensor
                   // core, chained over K), BF16 output. Projections only, as Fp8.
};

// The GEMM recipe (gemm/recipe.hpp) of every MatmulFormat::Fp8 projection.
inline constexpr std::string_view kFp8LinearRecipe = "deepseek_v3_fp8_linear";

enum class CacheFormat : std::uint8_t {
  Bf16,     // [blocks, page, 1, 576] bf16: latent 512 + k_pe 64
  Fp8E4m3,  // FlashMLA FP8 layout, 656 bytes per token: 512 x E4M3 | 4 x FP32 power-of-two scales
            // (one per 128 latent channels) | 64 x BF16 k_pe (FlashMLA tests/quant.py)
};

// The op sequence of the attention einsums (scores, softmax, P.V, absorption) under attn = bf16.
enum class AttnOps : std::uint8_t {
  Fused,  // fp8lab's: the scale is applied to the FP32 dot before the one BF16 rounding of a score,
          // s = R(fl(dot(q, k) * scale)); the absorbed form's score is one dot over [q_abs | q_pe]
          // . [c | k_pe] (forward.hpp step 2).
  DeepseekReference,  // DeepSeek-V3 inference/model.py MLA.forward under its default dtype BF16,
          // every torch op's output rounded to BF16 where the reference's is (forward.hpp step 2r):
          // naive s = R(fl(R(dot(q, k)) * scale)); absorbed s = R(fl(R(fl(R(dot(q_abs, c)) +
          // R(dot(q_pe, k_pe)))) * scale)). Requires attn = bf16 and BF16 attention inputs.
};

// YaRN (arXiv 2309.00071) as inference/model.py precompute_freqs_cis applies it; active only
// when max_seq_len > original_seq_len, exactly like the reference.
struct Yarn {
  double rope_theta = 10000.0;
  double factor = 40.0;
  int original_seq_len = 4096;
  int max_seq_len = 4096 * 4;  // ModelArgs.max_seq_len
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;  // ModelArgs.mscale: mscale_value = 0.1 * mscale * ln(factor) + 1
  bool active() const { return max_seq_len > original_seq_len; }
};

struct MlaSpec {
  // Dimensions.
  int hidden = 7168;
  int heads = 128;
  int q_lora = 1536;  // 0: a single wq projection, no query latent (DeepSeek-V2-Lite style)
  int kv_lora = 512;
  int nope = 128;  // qk_nope_head_dim
  int rope = 64;   // qk_rope_head_dim
  int v = 128;     // v_head_dim
  // RMSNorm on the query latent and the KV latent only (never on k_pe).
  double rms_eps = 1e-6;
  RopeLayout rope_layout = RopeLayout::Interleaved;
  Yarn yarn;
  // "deepseek": (nope+rope)^-0.5 * mscale^2 (inference/model.py MLA.__init__);
  // "flashmla": (kv_lora+rope)^-0.5, FlashMLA's default when the caller passes none — wrong for
  // DeepSeek-V3, kept so its misuse can be shown; or a number written as text ("0.1").
  std::string softmax_scale = "deepseek";
  // Per-projection arithmetic: wq_a, wq_b (or wq), wkv_a, wkv_b, wo; and the attention einsums
  // (scores, probabilities, P.V, absorption) - rounded to BF16 after each einsum when Bf16, as the
  // reference does with torch's default dtype bf16.
  MatmulFormat wq_a = MatmulFormat::Bf16;
  MatmulFormat wq_b = MatmulFormat::Bf16;
  MatmulFormat wkv_a = MatmulFormat::Bf16;
  MatmulFormat wkv_b = MatmulFormat::Bf16;
  MatmulFormat wo = MatmulFormat::Bf16;
  MatmulFormat attn = MatmulFormat::Fp32;
  AttnOps attn_ops = AttnOps::Fused;
  CacheFormat cache = CacheFormat::Bf16;
  int page = 64;           // tokens per cache block (FlashMLA: 64)
  int num_splits = 1;      // split-KV count of decode (see decode.hpp for the exact split)
  MatmulFormat decode_p = MatmulFormat::Fp32;  // Bf16: P rounded to BF16 before P.V (FlashMLA's MMA)

  int qk_head() const { return nope + rope; }
  int cache_dim() const { return kv_lora + rope; }
  // Throws std::invalid_argument naming the field ("MlaSpec.<field> = <value>: expected ...") when
  // a value is impossible or two fields disagree.
  void validate() const;
};

// Names of the enum values (the schema's tables; specs are read by mla_spec_schema()), and the
// value of a matmul format's name (for arguments outside a spec, e.g. sparse decode's decode_p).
MatmulFormat matmul_format_by_name(std::string_view name);  // fp32, bf16, fp8, bf16_tc
std::string_view matmul_format_name(MatmulFormat x);
std::string_view cache_format_name(CacheFormat x);

// mscale of YaRN attention: 0.1 * mscale * ln(factor) + 1 when YaRN is active, else 1.
double yarn_mscale(const Yarn& y);
// The softmax scale as the FP32 value the kernels multiply by (double-computed, rounded once).
float softmax_scale_value(const MlaSpec& spec);
float softmax_scale_named(const MlaSpec& spec, std::string_view which);

// Bytes one token costs in the KV cache of one layer.
struct KvBytes {
  std::size_t mha_bf16;  // full per-head K (nope+rope) and V, BF16: heads*(qk_head+v)*2
  std::size_t mla_bf16;  // latent + k_pe, BF16: (kv_lora+rope)*2
  std::size_t mla_fp8;   // FlashMLA FP8: kv_lora + 4*(kv_lora/128) + 2*rope
};
KvBytes kv_bytes_per_token(const MlaSpec& spec);
// Bytes of one token's row in the paged cache of spec.cache.
std::size_t cache_row_bytes(const MlaSpec& spec);

// The declared fields of MlaSpec and of its nested `yarn` object (common/schema.hpp): JSON in and
// out, the binding's field list (`fp8lab._core.spec_fields("mla")`, `"mla.yarn"`).
const schema::Schema<MlaSpec>& mla_spec_schema();
const schema::Schema<Yarn>& yarn_schema();
// Canonical JSON (keys sorted) and its strict inverse (any key order, any subset of keys: missing
// keys keep their defaults; unknown keys, wrong JSON kinds and out-of-range values are errors in
// the schema vocabulary, "MlaSpec.<field> = <value>: expected ...").
std::string to_json(const MlaSpec& spec);
MlaSpec spec_from_json(std::string_view json);

}  // namespace fp8lab::mla

#include "mla/mla_spec.hpp"

#include <array>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace fp8lab::mla {

namespace {

using schema::EnumRow;

constexpr std::array<EnumRow<RopeLayout>, 2> kRopeLayout{
    {{"interleaved", RopeLayout::Interleaved}, {"half_split", RopeLayout::HalfSplit}}};
constexpr std::array<EnumRow<MatmulFormat>, 4> kMatmul{{{"fp32", MatmulFormat::Fp32},
                                                        {"bf16", MatmulFormat::Bf16},
                                                        {"fp8", MatmulFormat::Fp8},
                                                        {"bf16_tc", MatmulFormat::Bf16TensorCore}}};
constexpr std::array<EnumRow<CacheFormat>, 2> kCache{{{"bf16", CacheFormat::Bf16}, {"fp8", CacheFormat::Fp8E4m3}}};
constexpr std::array<EnumRow<AttnOps>, 2> kAttnOps{
    {{"fused", AttnOps::Fused}, {"deepseek_reference", AttnOps::DeepseekReference}}};

constexpr long long kMaxDim = 1 << 20;
bool finite_positive(double v) { return std::isfinite(v) && v > 0; }
bool finite_at_least_one(double v) { return std::isfinite(v) && v >= 1; }
bool finite_above_one(double v) { return std::isfinite(v) && v > 1; }
bool finite(double v) { return std::isfinite(v); }

// The one error vocabulary (common/schema.hpp): "MlaSpec.<field> = <value>: expected ...".
[[noreturn]] void bad(std::string_view field, const std::string& value, const std::string& expected) {
  schema::fail("MlaSpec." + std::string(field), value, expected);
}
std::string quoted(MatmulFormat f) { return json_quote(matmul_format_name(f)); }

}  // namespace

MatmulFormat matmul_format_by_name(std::string_view n) { return schema::enum_by_name<MatmulFormat>(kMatmul, n, "matmul format"); }
std::string_view matmul_format_name(MatmulFormat x) { return schema::enum_name<MatmulFormat>(kMatmul, x); }
std::string_view cache_format_name(CacheFormat x) { return schema::enum_name<CacheFormat>(kCache, x); }

const schema::Schema<Yarn>& yarn_schema() {
  using Y = Yarn;
  static const schema::Schema<Y> sc{
      "Yarn",
      {
          schema::real<Y>("beta_fast", &Y::beta_fast, finite_positive, "a finite value > 0"),
          schema::real<Y>("beta_slow", &Y::beta_slow, finite_positive, "a finite value > 0"),
          schema::real<Y>("factor", &Y::factor, finite_at_least_one, "a finite value >= 1"),
          schema::integer<Y, int>("max_seq_len", &Y::max_seq_len, 1, INT_MAX),
          schema::real<Y>("mscale", &Y::mscale, finite, "a finite number"),
          schema::integer<Y, int>("original_seq_len", &Y::original_seq_len, 1, INT_MAX),
          schema::real<Y>("rope_theta", &Y::rope_theta, finite_above_one, "a finite value > 1"),
      },
      {}};
  return sc;
}

const schema::Schema<MlaSpec>& mla_spec_schema() {
  using S = MlaSpec;
  static const schema::Schema<S> sc{
      "MlaSpec",
      {
          schema::enumeration<S, MatmulFormat>("attn", &S::attn, kMatmul),
          schema::enumeration<S, AttnOps>("attn_ops", &S::attn_ops, kAttnOps),
          schema::enumeration<S, CacheFormat>("cache", &S::cache, kCache),
          schema::enumeration<S, MatmulFormat>("decode_p", &S::decode_p, kMatmul),
          schema::integer<S, int>("heads", &S::heads, 1, kMaxDim),
          schema::integer<S, int>("hidden", &S::hidden, 1, kMaxDim),
          schema::integer<S, int>("kv_lora", &S::kv_lora, 1, kMaxDim),
          schema::integer<S, int>("nope", &S::nope, 1, kMaxDim),
          schema::integer<S, int>("num_splits", &S::num_splits, 1, kMaxDim),
          schema::integer<S, int>("page", &S::page, 1, kMaxDim),
          schema::integer<S, int>("q_lora", &S::q_lora, 0, kMaxDim),
          schema::real<S>("rms_eps", &S::rms_eps, finite_positive, "a finite value > 0"),
          schema::integer<S, int>("rope", &S::rope, 2, kMaxDim),
          schema::enumeration<S, RopeLayout>("rope_layout", &S::rope_layout, kRopeLayout),
          schema::text<S>("softmax_scale", &S::softmax_scale),
          schema::integer<S, int>("v", &S::v, 1, kMaxDim),
          schema::enumeration<S, MatmulFormat>("wkv_a", &S::wkv_a, kMatmul),
          schema::enumeration<S, MatmulFormat>("wkv_b", &S::wkv_b, kMatmul),
          schema::enumeration<S, MatmulFormat>("wo", &S::wo, kMatmul),
          schema::enumeration<S, MatmulFormat>("wq_a", &S::wq_a, kMatmul),
          schema::enumeration<S, MatmulFormat>("wq_b", &S::wq_b, kMatmul),
          schema::object<S, Yarn>("yarn", &S::yarn, yarn_schema()),
      },
      [](const S& s) { s.validate(); }};
  return sc;
}

void MlaSpec::validate() const {
  // The schema's ranges, for a spec built in C++ rather than read from JSON.
  for (const auto& [v, name] : {std::pair{hidden, "hidden"}, {heads, "heads"}, {kv_lora, "kv_lora"}, {nope, "nope"},
                                {rope, "rope"}, {this->v, "v"}, {page, "page"}, {num_splits, "num_splits"}})
    if (v <= 0) bad(name, std::to_string(v), "an integer in " + schema::range_text(1, kMaxDim));
  if (q_lora < 0) bad("q_lora", std::to_string(q_lora), "an integer >= 0 (0 = no query latent)");
  if (rope % 2) bad("rope", std::to_string(rope), "an even integer (rotary pairs)");
  if (!finite_positive(rms_eps)) bad("rms_eps", schema::g17(rms_eps), "a finite value > 0");
  // The einsums' and decode's bounds assume fp32 or bf16. wkv_b takes fp8 (forward.hpp: the FP8
  // checkpoint weights in both forms, with bounds), not bf16_tc (no bound of the BF16 tensor-core
  // model is wired into the attention bounds).
  if (wkv_b == MatmulFormat::Bf16TensorCore)
    bad("wkv_b", quoted(wkv_b), "fp32, bf16 or fp8 (bf16_tc is for the projections wq_a, wq_b, wkv_a and wo only)");
  for (const auto& [f, name] : {std::pair{attn, "attn"}, {decode_p, "decode_p"}})
    if (f == MatmulFormat::Fp8 || f == MatmulFormat::Bf16TensorCore)
      bad(name, quoted(f),
          "fp32 or bf16 (fp8 and bf16_tc are for the projections wq_a, wq_b, wkv_a, wo, and fp8 for wkv_b; the "
          "attention einsums' bounds assume fp32 or bf16)");
  if (attn_ops == AttnOps::DeepseekReference) {
    // The reference runs every einsum in its default dtype BF16 on BF16 tensors; an FP32 einsum or
    // an FP32 input would be another op sequence than the one this mode pins.
    if (attn != MatmulFormat::Bf16)
      bad("attn", quoted(attn), "bf16 under attn_ops deepseek_reference (the reference runs the einsums in BF16)");
    for (const auto& [f, name] : {std::pair{wq_b, "wq_b"}, {wkv_a, "wkv_a"}, {wkv_b, "wkv_b"}})
      if (f == MatmulFormat::Fp32)
        bad(name, quoted(f),
            "bf16, bf16_tc or fp8 under attn_ops deepseek_reference (the reference's attention inputs are BF16)");
  }
  if (cache == CacheFormat::Fp8E4m3 && kv_lora % 128)
    bad("kv_lora", std::to_string(kv_lora),
        "a multiple of 128 with cache fp8 (the FP8 cache scales every 128 latent channels)");
  if (!finite_above_one(yarn.rope_theta)) bad("yarn.rope_theta", schema::g17(yarn.rope_theta), "a finite value > 1");
  if (!finite_at_least_one(yarn.factor)) bad("yarn.factor", schema::g17(yarn.factor), "a finite value >= 1");
  if (yarn.original_seq_len <= 0)
    bad("yarn.original_seq_len", std::to_string(yarn.original_seq_len), "an integer in " + schema::range_text(1, INT_MAX));
  if (yarn.max_seq_len <= 0)
    bad("yarn.max_seq_len", std::to_string(yarn.max_seq_len), "an integer in " + schema::range_text(1, INT_MAX));
  if (!finite_positive(yarn.beta_fast)) bad("yarn.beta_fast", schema::g17(yarn.beta_fast), "a finite value > 0");
  if (!finite_positive(yarn.beta_slow)) bad("yarn.beta_slow", schema::g17(yarn.beta_slow), "a finite value > 0");
  if (!finite(yarn.mscale)) bad("yarn.mscale", schema::g17(yarn.mscale), "a finite number");
  (void)softmax_scale_value(*this);
}

double yarn_mscale(const Yarn& y) {
  // inference/model.py MLA.__init__: mscale = 0.1 * mscale * math.log(rope_factor) + 1.0
  return y.active() ? 0.1 * y.mscale * std::log(y.factor) + 1.0 : 1.0;
}

float softmax_scale_named(const MlaSpec& spec, std::string_view which) {
  if (which == "deepseek") {
    const double m = yarn_mscale(spec.yarn);
    return static_cast<float>(m * m / std::sqrt(static_cast<double>(spec.qk_head())));
  }
  if (which == "flashmla") return static_cast<float>(1.0 / std::sqrt(static_cast<double>(spec.cache_dim())));
  std::string text(which);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0) || !std::isfinite(v))
    bad("softmax_scale", json_quote(text), "\"deepseek\", \"flashmla\" or a positive finite number as text (\"0.125\")");
  return static_cast<float>(v);
}

float softmax_scale_value(const MlaSpec& spec) { return softmax_scale_named(spec, spec.softmax_scale); }

KvBytes kv_bytes_per_token(const MlaSpec& s) {
  KvBytes b{};
  b.mha_bf16 = static_cast<std::size_t>(s.heads) * (s.qk_head() + s.v) * 2;
  b.mla_bf16 = static_cast<std::size_t>(s.cache_dim()) * 2;
  b.mla_fp8 = static_cast<std::size_t>(s.kv_lora) + 4 * static_cast<std::size_t>((s.kv_lora + 127) / 128) +
              2 * static_cast<std::size_t>(s.rope);
  return b;
}

std::size_t cache_row_bytes(const MlaSpec& s) {
  const KvBytes b = kv_bytes_per_token(s);
  return s.cache == CacheFormat::Bf16 ? b.mla_bf16 : b.mla_fp8;
}

std::string to_json(const MlaSpec& s) { return schema::to_json(s, mla_spec_schema()); }

MlaSpec spec_from_json(std::string_view json) { return schema::from_json(json, mla_spec_schema()); }

}  // namespace fp8lab::mla

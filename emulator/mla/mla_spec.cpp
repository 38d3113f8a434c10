#include "mla/mla_spec.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>

namespace fp8lab::mla {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

template <class E>
E by_name(std::string_view name, std::string_view arg, std::initializer_list<std::pair<const char*, E>> table) {
  std::string valid;
  for (auto& [n, e] : table) {
    if (name == n) return e;
    valid += (valid.empty() ? "" : ", ") + std::string(n);
  }
  bad(std::string(arg) + ": unknown value '" + std::string(name) + "' (expected one of " + valid + ")");
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

RopeLayout rope_layout_by_name(std::string_view n) {
  return by_name<RopeLayout>(n, "rope_layout", {{"interleaved", RopeLayout::Interleaved}, {"half_split", RopeLayout::HalfSplit}});
}
MatmulFormat matmul_format_by_name(std::string_view n) {
  return by_name<MatmulFormat>(n, "matmul format",
                              {{"fp32", MatmulFormat::Fp32},
                               {"bf16", MatmulFormat::Bf16},
                               {"fp8", MatmulFormat::Fp8},
                               {"bf16_tc", MatmulFormat::Bf16TensorCore}});
}
CacheFormat cache_format_by_name(std::string_view n) {
  return by_name<CacheFormat>(n, "cache", {{"bf16", CacheFormat::Bf16}, {"fp8", CacheFormat::Fp8E4m3}});
}
AttnOps attn_ops_by_name(std::string_view n) {
  return by_name<AttnOps>(n, "attn_ops", {{"fused", AttnOps::Fused}, {"deepseek_reference", AttnOps::DeepseekReference}});
}
std::string_view attn_ops_name(AttnOps x) { return x == AttnOps::Fused ? "fused" : "deepseek_reference"; }
std::string_view rope_layout_name(RopeLayout x) { return x == RopeLayout::Interleaved ? "interleaved" : "half_split"; }
std::string_view matmul_format_name(MatmulFormat x) {
  switch (x) {
    case MatmulFormat::Fp32: return "fp32";
    case MatmulFormat::Bf16: return "bf16";
    case MatmulFormat::Fp8: return "fp8";
    case MatmulFormat::Bf16TensorCore: return "bf16_tc";
  }
  return "?";
}
std::string_view cache_format_name(CacheFormat x) { return x == CacheFormat::Bf16 ? "bf16" : "fp8"; }

void MlaSpec::validate() const {
  auto positive = [](int v, const char* name) {
    if (v <= 0) bad(std::string("spec.") + name + ": must be positive, got " + std::to_string(v));
  };
  positive(hidden, "hidden");
  positive(heads, "heads");
  positive(kv_lora, "kv_lora");
  positive(nope, "nope");
  positive(rope, "rope");
  positive(v, "v");
  positive(page, "page");
  positive(num_splits, "num_splits");
  if (q_lora < 0) bad("spec.q_lora: must be >= 0 (0 = no query latent), got " + std::to_string(q_lora));
  auto no_fp8 = [](MatmulFormat f, const char* name) {
    if (f == MatmulFormat::Fp8 || f == MatmulFormat::Bf16TensorCore)
      bad(std::string("spec.") + name + ": " + std::string(matmul_format_name(f)) +
          " is for the projections only (wq_a, wq_b, wkv_a, wo; and fp8 for wkv_b); the attention einsums' "
          "bounds assume fp32 or bf16 (expected fp32 or bf16)");
  };
  // wkv_b takes fp8 (forward.hpp: the FP8 checkpoint weights in both forms, with bounds), not
  // bf16_tc (no bound of the BF16 tensor-core model is wired into the attention bounds).
  if (wkv_b == MatmulFormat::Bf16TensorCore)
    bad("spec.wkv_b: bf16_tc is for the projections wq_a, wq_b, wkv_a and wo only (expected fp32, bf16 or fp8)");
  no_fp8(attn, "attn");
  no_fp8(decode_p, "decode_p");
  if (attn_ops == AttnOps::DeepseekReference) {
    // The reference runs every einsum in its default dtype BF16 on BF16 tensors; an FP32 einsum or
    // an FP32 input would be another op sequence than the one this mode pins.
    if (attn != MatmulFormat::Bf16)
      bad("spec.attn: attn_ops deepseek_reference runs the einsums in BF16 as the reference does, so attn must be "
          "bf16, got " + std::string(matmul_format_name(attn)));
    for (auto [f, name] : {std::pair{wq_b, "wq_b"}, std::pair{wkv_a, "wkv_a"}, std::pair{wkv_b, "wkv_b"}})
      if (f == MatmulFormat::Fp32)
        bad(std::string("spec.") + name + ": attn_ops deepseek_reference needs BF16 attention inputs (the reference's "
            "tensors are BF16), so " + name + " must be bf16, bf16_tc or fp8, got fp32");
  }
  if (rope % 2) bad("spec.rope: must be even (rotary pairs), got " + std::to_string(rope));
  if (!(rms_eps > 0) || !std::isfinite(rms_eps)) bad("spec.rms_eps: must be a positive finite number, got " + num(rms_eps));
  if (cache == CacheFormat::Fp8E4m3 && kv_lora % 128)
    bad("spec.kv_lora: the FP8 cache scales every 128 latent channels, so kv_lora must be a multiple of 128, got " +
        std::to_string(kv_lora));
  if (!(yarn.factor >= 1) || !std::isfinite(yarn.factor)) bad("spec.yarn.factor: must be >= 1, got " + num(yarn.factor));
  if (!(yarn.rope_theta > 1) || !std::isfinite(yarn.rope_theta)) bad("spec.yarn.rope_theta: must be > 1, got " + num(yarn.rope_theta));
  if (yarn.original_seq_len <= 0) bad("spec.yarn.original_seq_len: must be positive");
  if (yarn.max_seq_len <= 0) bad("spec.yarn.max_seq_len: must be positive");
  if (!(yarn.beta_fast > 0) || !(yarn.beta_slow > 0)) bad("spec.yarn.beta_fast/beta_slow: must be positive");
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
    bad("spec.softmax_scale: expected 'deepseek', 'flashmla' or a positive number, got '" + text + "'");
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

std::string to_json(const MlaSpec& s) {
  std::ostringstream o;
  auto str = [](std::string_view v) { return "\"" + std::string(v) + "\""; };
  o << "{\"attn\":" << str(matmul_format_name(s.attn)) << ",\"attn_ops\":" << str(attn_ops_name(s.attn_ops))
    << ",\"cache\":" << str(cache_format_name(s.cache))
    << ",\"decode_p\":" << str(matmul_format_name(s.decode_p)) << ",\"heads\":" << s.heads
    << ",\"hidden\":" << s.hidden << ",\"kv_lora\":" << s.kv_lora << ",\"nope\":" << s.nope
    << ",\"num_splits\":" << s.num_splits << ",\"page\":" << s.page << ",\"q_lora\":" << s.q_lora
    << ",\"rms_eps\":" << num(s.rms_eps) << ",\"rope\":" << s.rope
    << ",\"rope_layout\":" << str(rope_layout_name(s.rope_layout)) << ",\"softmax_scale\":" << str(s.softmax_scale)
    << ",\"v\":" << s.v << ",\"wkv_a\":" << str(matmul_format_name(s.wkv_a))
    << ",\"wkv_b\":" << str(matmul_format_name(s.wkv_b)) << ",\"wo\":" << str(matmul_format_name(s.wo))
    << ",\"wq_a\":" << str(matmul_format_name(s.wq_a)) << ",\"wq_b\":" << str(matmul_format_name(s.wq_b))
    << ",\"yarn\":{\"beta_fast\":" << num(s.yarn.beta_fast) << ",\"beta_slow\":" << num(s.yarn.beta_slow)
    << ",\"factor\":" << num(s.yarn.factor) << ",\"max_seq_len\":" << s.yarn.max_seq_len
    << ",\"mscale\":" << num(s.yarn.mscale) << ",\"original_seq_len\":" << s.yarn.original_seq_len
    << ",\"rope_theta\":" << num(s.yarn.rope_theta) << "}}";
  return o.str();
}

namespace {

// A parser for the JSON to_json writes: objects of strings, numbers and (one level of) objects.
struct Parser {
  std::string_view t;
  std::size_t i = 0;
  void ws() {
    while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
  }
  [[noreturn]] void fail(const std::string& what) { bad("spec json: " + what + " at offset " + std::to_string(i)); }
  void expect(char c) {
    ws();
    if (i >= t.size() || t[i] != c) fail(std::string("expected '") + c + "'");
    ++i;
  }
  std::string string() {
    expect('"');
    std::string s;
    while (i < t.size() && t[i] != '"') {
      if (t[i] == '\\') fail("escapes are not used in specs");
      s += t[i++];
    }
    if (i >= t.size()) fail("unterminated string");
    ++i;
    return s;
  }
  double number() {
    ws();
    std::size_t start = i;
    while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || std::string_view("+-.eE").find(t[i]) != std::string_view::npos)) ++i;
    std::string s(t.substr(start, i - start));
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) fail("expected a number");
    return v;
  }
  bool peek(char c) {
    ws();
    return i < t.size() && t[i] == c;
  }
};

int as_int(double v, const std::string& key) {
  if (v != std::floor(v) || std::fabs(v) > 1e9) bad("spec json: " + key + " must be an integer, got " + num(v));
  return static_cast<int>(v);
}

}  // namespace

MlaSpec spec_from_json(std::string_view json) {
  MlaSpec s;
  Parser p{json};
  p.expect('{');
  bool first = true;
  while (!p.peek('}')) {
    if (!first) p.expect(',');
    first = false;
    const std::string key = p.string();
    p.expect(':');
    if (key == "yarn") {
      p.expect('{');
      bool yfirst = true;
      while (!p.peek('}')) {
        if (!yfirst) p.expect(',');
        yfirst = false;
        const std::string k = p.string();
        p.expect(':');
        const double v = p.number();
        if (k == "beta_fast") s.yarn.beta_fast = v;
        else if (k == "beta_slow") s.yarn.beta_slow = v;
        else if (k == "factor") s.yarn.factor = v;
        else if (k == "max_seq_len") s.yarn.max_seq_len = as_int(v, k);
        else if (k == "mscale") s.yarn.mscale = v;
        else if (k == "original_seq_len") s.yarn.original_seq_len = as_int(v, k);
        else if (k == "rope_theta") s.yarn.rope_theta = v;
        else bad("spec json: unknown key yarn." + k);
      }
      p.expect('}');
      continue;
    }
    if (p.peek('"')) {
      const std::string v = p.string();
      if (key == "attn") s.attn = matmul_format_by_name(v);
      else if (key == "attn_ops") s.attn_ops = attn_ops_by_name(v);
      else if (key == "cache") s.cache = cache_format_by_name(v);
      else if (key == "decode_p") s.decode_p = matmul_format_by_name(v);
      else if (key == "rope_layout") s.rope_layout = rope_layout_by_name(v);
      else if (key == "softmax_scale") s.softmax_scale = v;
      else if (key == "wkv_a") s.wkv_a = matmul_format_by_name(v);
      else if (key == "wkv_b") s.wkv_b = matmul_format_by_name(v);
      else if (key == "wo") s.wo = matmul_format_by_name(v);
      else if (key == "wq_a") s.wq_a = matmul_format_by_name(v);
      else if (key == "wq_b") s.wq_b = matmul_format_by_name(v);
      else bad("spec json: unknown key " + key);
    } else {
      const double v = p.number();
      if (key == "heads") s.heads = as_int(v, key);
      else if (key == "hidden") s.hidden = as_int(v, key);
      else if (key == "kv_lora") s.kv_lora = as_int(v, key);
      else if (key == "nope") s.nope = as_int(v, key);
      else if (key == "num_splits") s.num_splits = as_int(v, key);
      else if (key == "page") s.page = as_int(v, key);
      else if (key == "q_lora") s.q_lora = as_int(v, key);
      else if (key == "rms_eps") s.rms_eps = v;
      else if (key == "rope") s.rope = as_int(v, key);
      else if (key == "v") s.v = as_int(v, key);
      else bad("spec json: unknown key " + key);
    }
  }
  p.expect('}');
  p.ws();
  if (p.i != json.size()) p.fail("trailing text");
  s.validate();
  return s;
}

}  // namespace fp8lab::mla

// fp8lab._core: mla — MLA prefill (naive / absorbed), paged latent cache, split-KV decode, exact
// references and certified bounds. Specs travel as their canonical JSON (mla/mla_spec.hpp).
#include <pybind11/stl.h>

#include <bit>
#include <cstring>
#include <memory>
#include <optional>
#include <span>

#include "arrays.hpp"
#include "formats/encode.hpp"
#include "mla/decode.hpp"
#include "mla/forward.hpp"
#include "mla/paged_cache.hpp"
#include "mla/weight_cache.hpp"
#include "mla/weights.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

using namespace fp8lab::mla;

py::array_t<float> to_numpy(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  py::array_t<float> a(shape);
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
  return a;
}
py::array_t<double> to_numpy(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  py::array_t<double> a(shape);
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(double));
  return a;
}
// A result handed to numpy without a copy: the array owns the vector (a capsule frees it), so a
// forward at DeepSeek-V3 dims does not copy its ~60 MB of results (q_absorbed alone is
// T x 128 x 576 floats) into fresh, page-faulting arrays.
py::array_t<float> to_numpy(std::vector<float>&& v, std::vector<py::ssize_t> shape) {
  auto owned = std::make_unique<std::vector<float>>(std::move(v));
  float* data = owned->data();
  py::capsule free_it(owned.get(), [](void* p) { delete static_cast<std::vector<float>*>(p); });
  owned.release();
  return py::array_t<float>(shape, data, free_it);
}

std::string shape_text(const py::array& a) { return py::str(py::tuple(py::cast(shape_of(a)))).cast<std::string>(); }

// A float32 array of expected_size elements (any shape), C-contiguous: the caller's own when it is
// one already (no copy), else numpy's converted copy.
py::array_t<float, py::array::c_style> float_array(const py::object& obj, const char* arg, std::size_t expected_size) {
  auto a = require_dtype<float>(obj, arg, "float32");
  if (static_cast<std::size_t>(a.size()) != expected_size)
    throw py::value_error(std::string(arg) + ": expected " + std::to_string(expected_size) + " elements for this spec, got " +
                          std::to_string(a.size()) + " (shape " + shape_text(a) + ")");
  return a;
}
std::vector<float> float_vector(const py::object& obj, const char* arg, std::size_t expected_size) {
  const auto a = float_array(obj, arg, expected_size);
  return std::vector<float>(a.data(), a.data() + a.size());
}

// The weights dict of one call, viewed in place: spans over the caller's float32 arrays (DeepSeek-V3's
// ~750 MB are not copied per call), which `keep` holds for as long as the call runs. Nothing is
// kept between calls: a write into an array between calls is seen by the next call (and checked
// again: validate_weights runs on every call). The optional FP8 wkv_b is encoded into a QTensor of
// the call's own.
struct CallWeights {
  MlaWeightsView spans;  // without wkv_b_fp8 (view() points it at fp8, wherever this object lives)
  std::vector<py::array> keep;
  QTensor fp8;
  MlaWeightsView view() const {
    MlaWeightsView v = spans;
    v.wkv_b_fp8 = &fp8;
    return v;
  }
};

CallWeights weights_from(const py::dict& d, const MlaSpec& s) {
  const char* names[] = {"wq_a", "q_norm", "wq_b", "wq", "wkv_a", "kv_norm", "wkv_b", "wo", "wkv_b_e4m3", "wkv_b_scale_inv"};
  for (auto item : d) {
    const std::string k = py::str(item.first);
    if (std::find(std::begin(names), std::end(names), k) == std::end(names))
      throw py::value_error("weights: unknown tensor '" + k +
                            "' (expected wq_a q_norm wq_b wq wkv_a kv_norm wkv_b wo, optionally wkv_b_e4m3 + wkv_b_scale_inv)");
  }
  CallWeights cw;
  auto get = [&](const char* name, std::size_t n) {
    if (!d.contains(name)) throw py::value_error(std::string("weights: missing tensor '") + name + "'");
    const auto a = float_array(d[name], (std::string("weights['") + name + "']").c_str(), n);
    cw.keep.push_back(a);
    return std::span<const float>(a.data(), n);
  };
  MlaWeightsView& w = cw.spans;
  const std::size_t H = s.heads, hid = s.hidden, qk = s.qk_head();
  if (s.q_lora > 0) {
    w.wq_a = get("wq_a", static_cast<std::size_t>(s.q_lora) * hid);
    w.q_norm = get("q_norm", s.q_lora);
    w.wq_b = get("wq_b", H * qk * s.q_lora);
  } else {
    w.wq = get("wq", H * qk * hid);
  }
  w.wkv_a = get("wkv_a", static_cast<std::size_t>(s.cache_dim()) * hid);
  w.kv_norm = get("kv_norm", s.kv_lora);
  w.wkv_b = get("wkv_b", H * (s.nope + s.v) * s.kv_lora);
  w.wo = get("wo", hid * H * s.v);
  // Optional FP8 checkpoint wkv_b (used when spec.wkv_b is fp8): E4M3 element values as float32
  // and the float32 multiplier of each 128x128 block (HF weight_scale_inv), both or neither.
  if (d.contains("wkv_b_e4m3") != d.contains("wkv_b_scale_inv"))
    throw py::value_error("weights: give both 'wkv_b_e4m3' and 'wkv_b_scale_inv', or neither");
  if (d.contains("wkv_b_e4m3")) {
    const std::size_t rows = H * (s.nope + s.v), cols = s.kv_lora;
    const std::span<const float> e = get("wkv_b_e4m3", rows * cols);
    QTensor& q = cw.fp8;
    q.rows = rows;
    q.cols = cols;
    q.fmt = "e4m3";
    q.tile = Tile{128, 128};
    q.rule = "deepseek";
    const Format& f = format_by_name("e4m3");
    q.bits = ElementBits(e.size(), f.storage_bits());
    for (std::size_t i = 0; i < e.size(); ++i) {
      q.bits.set(i, encode(e[i], f));
      if (!(decode(q.bits[i], f) == e[i]))
        throw py::value_error("weights['wkv_b_e4m3']: element " + std::to_string(i) + " (" + std::to_string(e[i]) +
                              ") is not an E4M3 value");
    }
    const std::span<const float> sc = get("wkv_b_scale_inv", ((rows + 127) / 128) * ((cols + 127) / 128));
    q.scales.assign(sc.begin(), sc.end());
  }
  return cw;
}

// x [tokens, hidden] float32, C-contiguous (read in place for the call, as the weights).
py::array_t<float, py::array::c_style> tokens_input(const py::object& x, const MlaSpec& s, std::size_t& T) {
  auto a = require_dtype<float>(x, "x", "float32");
  if (a.ndim() != 2 || a.shape(1) != s.hidden)
    throw py::value_error("x: expected shape [tokens, " + std::to_string(s.hidden) + "], got " +
                          shape_text(a));
  T = static_cast<std::size_t>(a.shape(0));
  return a;
}

// Optional prefix keys (latent [P, kv_lora], k_pe [P, rope]) as a Projected with only those filled.
std::optional<Projected> prefix_from(const py::object& latent, const py::object& k_pe, const MlaSpec& s) {
  if (latent.is_none() && k_pe.is_none()) return std::nullopt;
  if (latent.is_none() || k_pe.is_none())
    throw py::value_error("prefix: give both prefix_latent and prefix_k_pe, or neither");
  auto la = require_dtype<float>(latent, "prefix_latent", "float32");
  auto ka = require_dtype<float>(k_pe, "prefix_k_pe", "float32");
  if (la.ndim() != 2 || la.shape(1) != s.kv_lora)
    throw py::value_error("prefix_latent: expected shape [P, " + std::to_string(s.kv_lora) + "], got " +
                          shape_text(la));
  if (ka.ndim() != 2 || ka.shape(0) != la.shape(0) || ka.shape(1) != s.rope)
    throw py::value_error("prefix_k_pe: expected shape [" + std::to_string(la.shape(0)) + ", " + std::to_string(s.rope) +
                          "], got " + shape_text(ka));
  Projected p;
  p.tokens = static_cast<std::size_t>(la.shape(0));
  p.latent.assign(la.data(), la.data() + la.size());
  p.k_pe.assign(ka.data(), ka.data() + ka.size());
  return p;
}

// What both prefill entry points take: spec, weights, tokens, start position and optional prefix,
// checked once (errors name the argument).
struct PrefillInputs {
  MlaSpec spec;
  CallWeights weights;
  std::size_t tokens = 0;
  py::array_t<float, py::array::c_style> x;
  std::optional<Projected> prefix;
};

PrefillInputs prefill_inputs(const py::object& x, const py::dict& wd, const std::string& json, long start_pos,
                             const py::object& prefix_latent, const py::object& prefix_k_pe) {
  PrefillInputs in;
  in.spec = spec_from_json(json);
  in.weights = weights_from(wd, in.spec);
  in.x = tokens_input(x, in.spec, in.tokens);
  if (in.tokens == 0) throw py::value_error("x: at least one token is needed");
  if (start_pos < 0) throw py::value_error("start_pos: must be >= 0, got " + std::to_string(start_pos));
  in.prefix = prefix_from(prefix_latent, prefix_k_pe, in.spec);
  return in;
}

py::dict projected_dict(Projected&& p, const MlaSpec& s) {
  const py::ssize_t T = static_cast<py::ssize_t>(p.tokens);
  py::dict d;
  d["q_nope"] = to_numpy(std::move(p.q_nope), {T, s.heads, s.nope});
  d["q_pe"] = to_numpy(std::move(p.q_pe), {T, s.heads, s.rope});
  d["latent"] = to_numpy(std::move(p.latent), {T, s.kv_lora});
  d["k_pe"] = to_numpy(std::move(p.k_pe), {T, s.rope});
  return d;
}

// numpy cache (+ table, lengths) -> PagedCache, checking dtype and shape against the spec. On a
// little-endian host the array's bytes are the cache's (BF16 patterns stored little-endian): the
// PagedCache views them in place, and `keep` holds the (C-contiguous) array for as long as it is used.
PagedCache cache_from(const py::object& cache, const py::object& block_table, const py::object& seqlens, const MlaSpec& s,
                      py::array& keep) {
  py::array c = py::array::ensure(cache);
  if (!c) throw py::type_error("cache: expected a numpy array");
  const std::string given = dtype_name(c);
  c = py::array::ensure(native_order(c), py::array::c_style);
  PagedCache pc;
  pc.row_bytes = cache_row_bytes(s);
  const bool bf = s.cache == CacheFormat::Bf16;
  const py::ssize_t last = bf ? s.cache_dim() : static_cast<py::ssize_t>(pc.row_bytes);
  if (bf && !has_dtype(c, py::dtype::of<std::uint16_t>()))
    throw py::type_error("cache: spec cache=bf16 expects uint16 BF16 bit patterns, got dtype " + given);
  if (!bf && !has_dtype(c, py::dtype::of<std::uint8_t>()))
    throw py::type_error("cache: spec cache=fp8 expects uint8 bytes (FlashMLA FP8 layout), got dtype " + given);
  if (c.ndim() != 4 || c.shape(1) != s.page || c.shape(2) != 1 || c.shape(3) != last)
    throw py::value_error("cache: expected shape [blocks, " + std::to_string(s.page) + ", 1, " + std::to_string(last) +
                          "], got " + shape_text(c));
  pc.blocks = static_cast<std::size_t>(c.shape(0));
  if constexpr (std::endian::native == std::endian::little) {
    keep = c;
    pc.view = static_cast<const std::uint8_t*>(c.data());
  } else if (bf) {  // little-endian bytes whatever the host order
    pc.bytes.resize(pc.blocks * s.page * pc.row_bytes);
    const auto* src = static_cast<const std::uint16_t*>(c.data());
    for (std::size_t i = 0; i < pc.bytes.size() / 2; ++i) {
      pc.bytes[2 * i] = static_cast<std::uint8_t>(src[i] & 0xFF);
      pc.bytes[2 * i + 1] = static_cast<std::uint8_t>(src[i] >> 8);
    }
  } else {
    pc.bytes.assign(static_cast<const std::uint8_t*>(c.data()),
                    static_cast<const std::uint8_t*>(c.data()) + pc.blocks * s.page * pc.row_bytes);
  }
  auto bt = require_dtype<std::int32_t>(block_table, "block_table", "int32");
  auto sl = require_dtype<std::int32_t>(seqlens, "seqlens", "int32");
  if (sl.ndim() != 1) throw py::value_error("seqlens: expected a 1-D array [batch]");
  pc.batch = static_cast<std::size_t>(sl.shape(0));
  if (bt.ndim() != 2 || static_cast<std::size_t>(bt.shape(0)) != pc.batch)
    throw py::value_error("block_table: expected shape [batch=" + std::to_string(pc.batch) + ", max_blocks_per_seq], got " +
                          shape_text(bt));
  pc.max_blocks_per_seq = static_cast<std::size_t>(bt.shape(1));
  pc.block_table.assign(bt.data(), bt.data() + bt.size());
  pc.seqlens.assign(sl.data(), sl.data() + sl.size());
  validate_cache(pc, s);
  return pc;
}

py::tuple cache_to(const PagedCache& pc, const MlaSpec& s) {
  const py::ssize_t blocks = static_cast<py::ssize_t>(pc.blocks);
  py::array cache;
  if (s.cache == CacheFormat::Bf16) {
    py::array_t<std::uint16_t> a({blocks, static_cast<py::ssize_t>(s.page), py::ssize_t{1}, static_cast<py::ssize_t>(s.cache_dim())});
    auto* dst = a.mutable_data();
    for (std::size_t i = 0; i < pc.bytes.size() / 2; ++i)
      dst[i] = static_cast<std::uint16_t>(pc.bytes[2 * i] | (pc.bytes[2 * i + 1] << 8));
    cache = a;
  } else {
    py::array_t<std::uint8_t> a({blocks, static_cast<py::ssize_t>(s.page), py::ssize_t{1}, static_cast<py::ssize_t>(pc.row_bytes)});
    std::memcpy(a.mutable_data(), pc.bytes.data(), pc.bytes.size());
    cache = a;
  }
  py::array_t<std::int32_t> bt({static_cast<py::ssize_t>(pc.batch), static_cast<py::ssize_t>(pc.max_blocks_per_seq)});
  std::memcpy(bt.mutable_data(), pc.block_table.data(), pc.block_table.size() * 4);
  py::array_t<std::int32_t> sl({static_cast<py::ssize_t>(pc.batch)});
  std::memcpy(sl.mutable_data(), pc.seqlens.data(), pc.seqlens.size() * 4);
  return py::make_tuple(cache, bt, sl);
}

// q for decode: [batch, heads, D] (one query per sequence) or FlashMLA's [batch, s_q, heads, D].
std::vector<float> query_from(const py::object& q, const MlaSpec& s, std::size_t batch, bool& four_d, std::size_t& s_q) {
  auto a = require_dtype<float>(q, "q", "float32");
  four_d = a.ndim() == 4;
  const py::ssize_t D = s.cache_dim();
  if (four_d && a.shape(1) == 0)
    throw py::value_error("q: s_q (dimension 1 of [batch, s_q, heads, " + std::to_string(D) + "]) must be at least 1, got 0");
  s_q = four_d ? static_cast<std::size_t>(a.shape(1)) : 1;
  const bool ok3 = a.ndim() == 3 && a.shape(0) == static_cast<py::ssize_t>(batch) && a.shape(1) == s.heads && a.shape(2) == D;
  const bool ok4 = four_d && a.shape(0) == static_cast<py::ssize_t>(batch) && a.shape(2) == s.heads && a.shape(3) == D;
  if (!ok3 && !ok4)
    throw py::value_error("q: expected shape [batch=" + std::to_string(batch) + ", heads=" + std::to_string(s.heads) + ", " +
                          std::to_string(D) + "] or [batch, s_q, heads, " + std::to_string(D) + "], got " +
                          shape_text(a));
  return std::vector<float>(a.data(), a.data() + a.size());
}

// The arguments every decode binding takes, parsed and checked once: spec, paged cache and the
// queries (3-D q, or 4-D with s_q; multi when s_q > 1, where FlashMLA's 4-D layouts apply).
struct DecodeArgs {
  MlaSpec spec;
  py::array cache_array;  // the caller's cache, which `cache` reads in place
  PagedCache cache;
  std::vector<float> q;
  bool four_d = false;
  std::size_t s_q = 1;
  bool multi() const { return four_d && s_q > 1; }
};
DecodeArgs decode_args(const py::object& q, const py::object& cache, const py::object& block_table,
                       const py::object& seqlens, const std::string& json) {
  DecodeArgs d;
  d.spec = spec_from_json(json);
  d.cache = cache_from(cache, block_table, seqlens, d.spec, d.cache_array);
  d.q = query_from(q, d.spec, d.cache.batch, d.four_d, d.s_q);
  return d;
}

BoundScope scope_by_name(const std::string& name) {
  if (name == "any_kernel") return BoundScope::AnyKernel;
  if (name == "emulator") return BoundScope::ThisEmulator;
  throw py::value_error("scope: expected 'any_kernel' or 'emulator', got '" + name + "'");
}

py::dict kv_bytes_py(const std::string& json) {
  const KvBytes b = kv_bytes_per_token(spec_from_json(json));
  py::dict d;
  d["mha_bf16"] = b.mha_bf16;
  d["mla_bf16"] = b.mla_bf16;
  d["mla_fp8"] = b.mla_fp8;
  return d;
}

double softmax_scale_py(const std::string& json, const std::string& which) {
  const MlaSpec s = spec_from_json(json);
  return which.empty() ? softmax_scale_value(s) : softmax_scale_named(s, which);
}

// init_weights, each tensor generated straight into its numpy array (weight_init_plan).
py::dict init_weights_py(const std::string& json, std::uint64_t seed) {
  const MlaSpec s = spec_from_json(json);
  py::dict d;
  for (const WeightInit& row : weight_init_plan(s)) {
    std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(row.rows)};
    if (row.cols != 0) shape.push_back(static_cast<py::ssize_t>(row.cols));
    py::array_t<float> a(shape);
    float* out = a.mutable_data();
    {
      py::gil_scoped_release r;
      fill_weight(row, seed, out);
    }
    d[row.name] = a;
  }
  return d;
}

const Projected* prefix_of(const PrefillInputs& in) { return in.prefix ? &*in.prefix : nullptr; }

py::dict forward_py(const py::object& x, const py::dict& wd, const std::string& json, const std::string& form,
                    long start_pos, const py::object& prefix_latent, const py::object& prefix_k_pe) {
  const Form f = form_by_name(form);
  const PrefillInputs in = prefill_inputs(x, wd, json, start_pos, prefix_latent, prefix_k_pe);
  const MlaSpec& s = in.spec;
  ForwardResult r;
  std::vector<float> qa;
  {
    py::gil_scoped_release rel;
    r = forward(in.x.data(), in.tokens, in.weights.view(), s, f, start_pos, prefix_of(in), &qa);
  }
  py::dict d = projected_dict(std::move(r.projected), s);
  const auto T = static_cast<py::ssize_t>(in.tokens);
  d["out"] = to_numpy(std::move(r.out), {T, s.hidden});
  d["attn"] = to_numpy(std::move(r.attn), {T, s.heads, s.v});
  d["q_absorbed"] = to_numpy(std::move(qa), {T, s.heads, s.cache_dim()});
  return d;
}

py::dict compare_forms_py(const py::object& x, const py::dict& wd, const std::string& json, long start_pos,
                          const py::object& prefix_latent, const py::object& prefix_k_pe) {
  const PrefillInputs in = prefill_inputs(x, wd, json, start_pos, prefix_latent, prefix_k_pe);
  const MlaSpec& s = in.spec;
  FormsComparison fc;
  {
    py::gil_scoped_release rel;
    const MlaWeightsView w = in.weights.view();
    const Projected p = project(in.x.data(), in.tokens, w, s, start_pos);
    fc = compare_forms(p, w, s, prefix_of(in));
  }
  const std::vector<py::ssize_t> shape = {static_cast<py::ssize_t>(in.tokens), s.heads, s.v};
  py::dict d;
  d["verdict_json"] = fc.verdict.to_json();
  d["summary"] = fc.verdict.summary();
  d["absorbed"] = to_numpy(fc.absorbed, shape);
  d["naive"] = to_numpy(fc.naive, shape);
  d["exact"] = to_numpy(fc.exact, shape);
  d["bound_absorbed"] = to_numpy(fc.bound_absorbed, shape);
  d["bound_naive"] = to_numpy(fc.bound_naive, shape);
  d["max_observed_over_bound"] = fc.max_observed_over_bound;
  d["max_abs_difference"] = fc.max_abs_difference;
  d["max_rel_difference"] = fc.max_rel_difference;
  return d;
}

py::tuple wkv_b_naive_py(const py::object& latent, const py::dict& wd, const std::string& json) {
  const MlaSpec s = spec_from_json(json);
  const CallWeights w = weights_from(wd, s);
  auto la = require_dtype<float>(latent, "latent", "float32");
  if (la.ndim() != 2 || la.shape(1) != s.kv_lora || la.shape(0) == 0)
    throw py::value_error("latent: expected shape [tokens >= 1, " + std::to_string(s.kv_lora) + "], got " + shape_text(la));
  const std::size_t T = static_cast<std::size_t>(la.shape(0));
  const std::vector<float> lv(la.data(), la.data() + la.size());
  std::vector<float> kv;
  std::vector<double> bound;
  {
    py::gil_scoped_release rel;
    kv = wkv_b_naive(lv.data(), T, w.view(), s, &bound);
  }
  const std::vector<py::ssize_t> shape = {static_cast<py::ssize_t>(T), s.heads, s.nope + s.v};
  return py::make_tuple(to_numpy(kv, shape), to_numpy(bound, shape));
}

// A [sum(seqlens), width] float32 array.
py::array_t<float> token_rows(const py::object& obj, const char* arg, std::size_t total, int width) {
  auto a = require_dtype<float>(obj, arg, "float32");
  if (a.ndim() != 2 || static_cast<std::size_t>(a.shape(0)) != total || a.shape(1) != width)
    throw py::value_error(std::string(arg) + ": expected shape [sum(seqlens)=" + std::to_string(total) + ", " +
                          std::to_string(width) + "], got " + shape_text(a));
  return a;
}

void require_finite(const py::array_t<float>& a, const char* arg) {
  for (py::ssize_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a.data()[i]))
      throw py::value_error(std::string(arg) + ": element " + std::to_string(i) + " is not finite");
}

py::tuple build_cache_py(const py::object& latents, const py::object& k_pe, const py::object& seqlens,
                         const std::string& json, const py::object& block_order) {
  const MlaSpec s = spec_from_json(json);
  auto sl = require_dtype<std::int32_t>(seqlens, "seqlens", "int32");
  if (sl.ndim() != 1) throw py::value_error("seqlens: expected a 1-D array [batch]");
  std::vector<std::int32_t> lens(sl.data(), sl.data() + sl.size());
  std::size_t total = 0;
  for (std::size_t b = 0; b < lens.size(); ++b) {
    if (lens[b] < 0) throw py::value_error("seqlens: element " + std::to_string(b) + " is negative (" + std::to_string(lens[b]) + ")");
    total += static_cast<std::size_t>(lens[b]);
  }
  const auto la = token_rows(latents, "latents", total, s.kv_lora);
  const auto ka = token_rows(k_pe, "k_pe", total, s.rope);
  require_finite(la, "latents");
  require_finite(ka, "k_pe");
  std::vector<std::int32_t> order;
  const std::vector<std::int32_t>* order_ptr = nullptr;
  if (!block_order.is_none()) {
    auto bo = require_dtype<std::int32_t>(block_order, "block_order", "int32");
    order.assign(bo.data(), bo.data() + bo.size());
    order_ptr = &order;
  }
  PagedCache pc;
  {
    py::gil_scoped_release rel;
    pc = build_cache(la.data(), ka.data(), lens, s, order_ptr);
  }
  return cache_to(pc, s);
}

// decode's layouts: FlashMLA's for 4-D q, out [b, s_q, h, kv_lora] and lse [b, h, s_q]; for 3-D q
// (`four` false) out [b, h, kv_lora] and lse [b, h].
std::vector<py::ssize_t> out_shape(const DecodeArgs& a, bool four) {
  const auto B = static_cast<py::ssize_t>(a.cache.batch), Q = static_cast<py::ssize_t>(a.s_q);
  return four ? std::vector<py::ssize_t>{B, Q, a.spec.heads, a.spec.kv_lora}
              : std::vector<py::ssize_t>{B, a.spec.heads, a.spec.kv_lora};
}
std::vector<py::ssize_t> lse_shape(const DecodeArgs& a, bool four) {
  const auto B = static_cast<py::ssize_t>(a.cache.batch), Q = static_cast<py::ssize_t>(a.s_q);
  return four ? std::vector<py::ssize_t>{B, a.spec.heads, Q} : std::vector<py::ssize_t>{B, a.spec.heads};
}

py::tuple decode_py(const py::object& q, const py::object& cache, const py::object& block_table,
                    const py::object& seqlens, const std::string& json, bool causal) {
  const DecodeArgs a = decode_args(q, cache, block_table, seqlens, json);
  DecodeResult r;
  {
    py::gil_scoped_release rel;
    r = decode(a.q.data(), a.s_q, a.spec.heads, a.cache, a.spec, causal);
  }
  return py::make_tuple(to_numpy(std::move(r.out), out_shape(a, a.four_d)), to_numpy(std::move(r.lse), lse_shape(a, a.four_d)));
}

py::dict decode_reference_py(const py::object& q, const py::object& cache, const py::object& block_table,
                             const py::object& seqlens, const std::string& json, const std::string& scale_of,
                             const std::string& scope, bool causal) {
  const BoundScope sc = scope_by_name(scope);
  const DecodeArgs a = decode_args(q, cache, block_table, seqlens, json);
  const MlaSpec& s = a.spec;
  const double scale = scale_of.empty() ? softmax_scale_value(s) : softmax_scale_named(s, scale_of);
  DecodeReference ref;
  {
    py::gil_scoped_release rel;
    ref = decode_reference(a.q.data(), a.s_q, s.heads, a.cache, s, scale, causal, sc);
  }
  // One query (3-D q, or 4-D with s_q = 1): the 3-D layouts; s_q > 1: decode's FlashMLA layouts.
  const std::vector<py::ssize_t> os = out_shape(a, a.multi()), ls = lse_shape(a, a.multi());
  py::dict d;
  d["out"] = to_numpy(ref.out, os);
  d["lse"] = to_numpy(ref.lse, ls);
  d["out_bound"] = to_numpy(ref.out_bound, os);
  d["lse_bound"] = to_numpy(ref.lse_bound, ls);
  return d;
}

void expect_shape(const py::object& a, const char* arg, const std::vector<py::ssize_t>& want, const char* names) {
  auto arr = require_dtype<float>(a, arg, "float32");
  if (shape_of(arr) != want)
    throw py::value_error(std::string(arg) + ": expected shape " + names + " = " +
                          py::str(py::tuple(py::cast(want))).cast<std::string>() + " for 4-D q, got " + shape_text(arr));
}

py::dict compare_decode_py(const py::object& out, const py::object& lse, const py::object& q, const py::object& cache,
                           const py::object& block_table, const py::object& seqlens, const std::string& json,
                           const std::string& scope, bool causal) {
  const BoundScope sc = scope_by_name(scope);
  const DecodeArgs a = decode_args(q, cache, block_table, seqlens, json);
  const MlaSpec& s = a.spec;
  const std::size_t B = a.cache.batch, H = s.heads, C = s.kv_lora, sq = a.s_q;
  // s_q > 1: out and lse in decode's FlashMLA layouts, checked dimension by dimension (one query:
  // any shape of the right size, the layouts coinciding).
  const bool multi = a.multi();
  if (multi) {
    expect_shape(out, "out", out_shape(a, true), "[batch, s_q, heads, kv_lora]");
    expect_shape(lse, "lse", lse_shape(a, true), "[batch, heads, s_q]");
  }
  DecodeResult got;
  got.out = float_vector(out, "out", B * sq * H * C);
  got.lse = float_vector(lse, "lse", B * sq * H);
  DecodeVerdicts v;
  {
    py::gil_scoped_release rel;
    const DecodeReference ref = decode_reference(a.q.data(), sq, s.heads, a.cache, s, softmax_scale_value(s), causal, sc);
    v = multi ? check_decode(got, ref, B, sq, H, s) : check_decode(got, ref, B, H, s);
  }
  py::dict d;
  d["out_json"] = v.out.to_json();
  d["lse_json"] = v.lse.to_json();
  d["out_summary"] = v.out.summary();
  d["lse_summary"] = v.lse.summary();
  d["max_out_ratio"] = v.max_out_ratio;
  d["max_lse_ratio"] = v.max_lse_ratio;
  return d;
}

}  // namespace

Registration mla_registration("mla", {"quant"}, [](py::module_& m) {
  m.def("mla_spec", [](const py::object& spec) { return spec_to_dict(spec_from_py(spec, mla_spec_schema()), mla_spec_schema()); },
        py::arg("spec"), "An MlaSpec dict (or JSON text) read strictly over the defaults, validated and returned complete.");
  m.def("mla_spec_json", [](const py::object& spec) { return mla::to_json(spec_from_py(spec, mla_spec_schema())); },
        py::arg("spec"), "The canonical JSON of an MlaSpec dict (or JSON text), read strictly and validated.");
  m.def("mla_kv_bytes", &kv_bytes_py, py::arg("spec_json"));
  m.def("mla_softmax_scale", &softmax_scale_py, py::arg("spec_json"), py::arg("which") = "");
  m.def("mla_init_weights", &init_weights_py, py::arg("spec_json"), py::arg("seed"));
  m.def("mla_weight_cache_info", [] {
    const WeightCacheInfo i = weight_cache_info();
    py::dict d;
    d["entries"] = i.entries;
    d["bytes"] = i.bytes;
    d["hits"] = i.hits;
    d["misses"] = i.misses;
    d["max_entries"] = kWeightCacheEntries;
    d["max_bytes"] = kWeightCacheBytes;
    return d;
  });
  m.def("mla_clear_weight_cache", [] { clear_weight_cache(); });
  m.def("mla_forward", &forward_py, py::arg("x"), py::arg("weights"), py::arg("spec_json"), py::arg("form"),
        py::arg("start_pos"), py::arg("prefix_latent") = py::none(), py::arg("prefix_k_pe") = py::none());
  m.def("mla_compare_forms", &compare_forms_py, py::arg("x"), py::arg("weights"), py::arg("spec_json"),
        py::arg("start_pos"), py::arg("prefix_latent") = py::none(), py::arg("prefix_k_pe") = py::none());
  m.def("mla_wkv_b_naive", &wkv_b_naive_py, py::arg("latent"), py::arg("weights"), py::arg("spec_json"),
        "The naive form's keys|values [T, heads, nope+v] of latent [T, kv_lora] and their certified bound.");
  m.def("mla_build_cache", &build_cache_py, py::arg("latents"), py::arg("k_pe"), py::arg("seqlens"),
        py::arg("spec_json"), py::arg("block_order") = py::none());
  m.def("mla_decode", &decode_py, py::arg("q"), py::arg("cache"), py::arg("block_table"), py::arg("seqlens"),
        py::arg("spec_json"), py::arg("causal") = true);
  m.def("mla_decode_reference", &decode_reference_py, py::arg("q"), py::arg("cache"), py::arg("block_table"),
        py::arg("seqlens"), py::arg("spec_json"), py::arg("scale_of") = "", py::arg("scope") = "any_kernel",
        py::arg("causal") = true);
  m.def("mla_compare_decode", &compare_decode_py, py::arg("out"), py::arg("lse"), py::arg("q"), py::arg("cache"),
        py::arg("block_table"), py::arg("seqlens"), py::arg("spec_json"), py::arg("scope") = "any_kernel",
        py::arg("causal") = true);
});

}  // namespace fp8lab::bindings

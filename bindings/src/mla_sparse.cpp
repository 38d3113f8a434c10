// fp8lab._core: mla_sparse — FlashMLA's FP8 sparse KV layouts (pack / unpack / quantise /
// dequantise) and sparse MLA decode with its exact reference and certified bound
// (emulator/mla/sparse_kv_layout.hpp, sparse_decode.hpp). Shapes and dtypes are checked in
// fp8lab/mla_sparse.py; this file checks sizes again and hands the buffers to the emulator.
#include <pybind11/stl.h>

#include <cstring>

#include "arrays.hpp"
#include "mla/sparse_decode.hpp"
#include "mla/sparse_kv_layout.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {
namespace {

using namespace fp8lab::mla;

template <class T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::dict layout_py(const std::string& name) {
  const SparseKvLayoutInfo& L = layout_info(sparse_kv_layout_by_name(name));
  py::dict d;
  d["name"] = std::string(L.name);
  d["d_qk"] = L.d_qk;
  d["d_nope"] = L.d_nope;
  d["d_rope"] = L.d_rope;
  d["d_v"] = L.d_v;
  d["tile"] = L.tile;
  d["tiles"] = L.tiles;
  d["scale_storage"] = L.ue8m0 ? "ue8m0" : "fp32";
  d["bytes_per_token"] = L.bytes_per_token;
  d["scale_rule"] = std::string(L.scale_rule);
  return d;
}

std::size_t block_bytes_py(const std::string& name, std::size_t page) {
  return layout_info(sparse_kv_layout_by_name(name)).block_bytes(page);
}

// kv: uint8 [blocks, block_bytes(page)].
std::size_t kv_blocks(const py::array_t<std::uint8_t, py::array::c_style>& kv, const SparseKvLayoutInfo& L,
                      std::size_t page) {
  if (kv.ndim() != 2 || static_cast<std::size_t>(kv.shape(1)) != L.block_bytes(page))
    throw py::value_error("kv_cache: expected uint8 [blocks, " + std::to_string(L.block_bytes(page)) + "] for layout " +
                          std::string(L.name) + " with page_block_size " + std::to_string(page));
  return static_cast<std::size_t>(kv.shape(0));
}

py::array_t<std::uint8_t> quantize_py(const py::object& values, const std::string& layout) {
  const SparseKvLayout l = sparse_kv_layout_by_name(layout);
  const SparseKvLayoutInfo& L = layout_info(l);
  auto v = require_dtype<float>(values, "values", "float32");
  if (v.ndim() != 3 || static_cast<std::size_t>(v.shape(2)) != L.d_qk)
    throw py::value_error("values: expected float32 [blocks, page_block_size, " + std::to_string(L.d_qk) + "] for layout " +
                          std::string(L.name));
  const std::size_t nb = v.shape(0), page = v.shape(1);
  if (page == 0) throw py::value_error("values: page_block_size (dimension 1) must be at least 1");
  std::vector<std::uint8_t> out;
  {
    py::gil_scoped_release rel;
    out = quantize_sparse_kv(v.data(), nb, page, l);
  }
  return to_array(out, {static_cast<py::ssize_t>(nb), static_cast<py::ssize_t>(L.block_bytes(page))});
}

py::array_t<float> dequantize_py(const py::object& kv, const std::string& layout, std::size_t page, const std::string& order) {
  const SparseKvLayout l = sparse_kv_layout_by_name(layout);
  const SparseKvLayoutInfo& L = layout_info(l);
  auto k = require_dtype<std::uint8_t>(kv, "kv_cache", "uint8");
  const std::size_t nb = kv_blocks(k, L, page);
  const DequantOrder o = dequant_order_by_name(order);
  std::vector<float> out;
  {
    py::gil_scoped_release rel;
    out = dequantize_sparse_kv(k.data(), nb, page, l, o);
  }
  return to_array(out, {static_cast<py::ssize_t>(nb), static_cast<py::ssize_t>(page), static_cast<py::ssize_t>(L.d_qk)});
}

py::dict unpack_py(const py::object& kv, const std::string& layout, std::size_t page) {
  const SparseKvLayout l = sparse_kv_layout_by_name(layout);
  const SparseKvLayoutInfo& L = layout_info(l);
  auto k = require_dtype<std::uint8_t>(kv, "kv_cache", "uint8");
  const std::size_t nb = kv_blocks(k, L, page);
  const SparseKvFields f = unpack_sparse_kv(k.data(), nb, page, l);
  const auto NB = static_cast<py::ssize_t>(nb), P = static_cast<py::ssize_t>(page);
  py::dict d;
  d["nope"] = to_array(f.nope, {NB, P, static_cast<py::ssize_t>(L.d_nope)});
  if (L.ue8m0)
    d["scales"] = to_array(f.scale_bytes, {NB, P, static_cast<py::ssize_t>(L.tiles)});
  else
    d["scales"] = to_array(f.scales, {NB, P, static_cast<py::ssize_t>(L.tiles)});
  d["rope"] = to_array(f.rope, {NB, P, static_cast<py::ssize_t>(L.d_rope)});
  return d;
}

py::array_t<std::uint8_t> pack_py(const py::object& nope, const py::object& scales, const py::object& rope,
                                  const std::string& layout) {
  const SparseKvLayout l = sparse_kv_layout_by_name(layout);
  const SparseKvLayoutInfo& L = layout_info(l);
  auto n = require_dtype<std::uint8_t>(nope, "nope", "uint8 (E4M3 bit patterns)");
  auto r = require_dtype<std::uint16_t>(rope, "rope", "uint16 (BF16 bit patterns)");
  if (n.ndim() != 3 || static_cast<std::size_t>(n.shape(2)) != L.d_nope)
    throw py::value_error("nope: expected uint8 [blocks, page_block_size, " + std::to_string(L.d_nope) + "] for layout " +
                          std::string(L.name));
  const auto NB = n.shape(0), P = n.shape(1);
  if (P == 0) throw py::value_error("nope: page_block_size (dimension 1) must be at least 1");
  if (r.ndim() != 3 || r.shape(0) != NB || r.shape(1) != P || static_cast<std::size_t>(r.shape(2)) != L.d_rope)
    throw py::value_error("rope: expected uint16 [" + std::to_string(NB) + ", " + std::to_string(P) + ", " +
                          std::to_string(L.d_rope) + "] (nope's blocks and page_block_size)");
  SparseKvFields f;
  f.blocks = NB;
  f.page = P;
  f.nope.assign(n.data(), n.data() + n.size());
  f.rope.assign(r.data(), r.data() + r.size());
  auto check_scales = [&](const py::array& a) {
    if (a.ndim() != 3 || a.shape(0) != NB || a.shape(1) != P || static_cast<std::size_t>(a.shape(2)) != L.tiles)
      throw py::value_error("scales: expected [" + std::to_string(NB) + ", " + std::to_string(P) + ", " +
                            std::to_string(L.tiles) + "] for layout " + std::string(L.name));
  };
  if (L.ue8m0) {
    auto s = require_dtype<std::uint8_t>(scales, "scales", "uint8 (UE8M0 bytes) for layout model1_fp8_sparse");
    check_scales(s);
    f.scale_bytes.assign(s.data(), s.data() + s.size());
  } else {
    auto s = require_dtype<float>(scales, "scales", "float32 for layout v32_fp8_sparse");
    check_scales(s);
    f.scales.assign(s.data(), s.data() + s.size());
  }
  const std::vector<std::uint8_t> out = pack_sparse_kv(f, l);
  return to_array(out, {NB, static_cast<py::ssize_t>(L.block_bytes(P))});
}

// The decode's arguments, read once for decode and reference (shapes checked in mla_sparse.py).
struct SparseArgs {
  py::array_t<float, py::array::c_style> q;
  py::array_t<std::uint8_t, py::array::c_style> kv;
  py::array_t<std::int32_t, py::array::c_style> indices, topk_length;
  py::array_t<float, py::array::c_style> sink;
  bool has_topk_length = false, has_sink = false;
  SparseDecodeSpec spec;
  SparseDecodeInputs in;
};

SparseArgs sparse_args(const py::object& q, const py::object& kv, const py::object& indices, const std::string& layout,
                       std::size_t page, double softmax_scale, const py::object& topk_length,
                       const py::object& attn_sink, int num_splits, const std::string& decode_p,
                       const std::string& dequant) {
  SparseArgs a;
  a.spec.layout = sparse_kv_layout_by_name(layout);
  a.spec.page = page;
  a.spec.softmax_scale = softmax_scale;
  a.spec.num_splits = num_splits;
  a.spec.decode_p = matmul_format_by_name(decode_p);
  a.spec.dequant = dequant_order_by_name(dequant);
  const SparseKvLayoutInfo& L = layout_info(a.spec.layout);
  a.q = require_dtype<float>(q, "q", "float32");
  a.kv = require_dtype<std::uint8_t>(kv, "kv_cache", "uint8");
  a.indices = require_dtype<std::int32_t>(indices, "indices", "int32");
  if (a.q.ndim() != 4 || static_cast<std::size_t>(a.q.shape(3)) != L.d_qk)
    throw py::value_error("q: expected float32 [batch, s_q, heads, " + std::to_string(L.d_qk) + "] for layout " +
                          std::string(L.name));
  a.in.q = a.q.data();
  a.in.batch = a.q.shape(0);
  a.in.s_q = a.q.shape(1);
  a.in.heads = a.q.shape(2);
  a.in.kv = a.kv.data();
  a.in.blocks = kv_blocks(a.kv, L, page);
  if (a.indices.ndim() != 3 || a.indices.shape(0) != a.q.shape(0) || a.indices.shape(1) != a.q.shape(1))
    throw py::value_error("indices: expected int32 [batch, s_q, topk] with q's batch and s_q");
  a.in.indices = a.indices.data();
  a.in.topk = a.indices.shape(2);
  if (!topk_length.is_none()) {
    a.topk_length = require_dtype<std::int32_t>(topk_length, "topk_length", "int32");
    if (a.topk_length.ndim() != 1 || a.topk_length.shape(0) != a.q.shape(0))
      throw py::value_error("topk_length: expected int32 [batch] (FlashMLA: one length per sequence)");
    a.in.topk_length = a.topk_length.data();
  }
  if (!attn_sink.is_none()) {
    a.sink = require_dtype<float>(attn_sink, "attn_sink", "float32");
    if (a.sink.ndim() != 1 || a.sink.shape(0) != a.q.shape(2))
      throw py::value_error("attn_sink: expected float32 [heads]");
    a.in.attn_sink = a.sink.data();
  }
  return a;
}

py::tuple sparse_decode_py(const py::object& q, const py::object& kv, const py::object& indices, const std::string& layout,
                           std::size_t page, double softmax_scale, const py::object& topk_length,
                           const py::object& attn_sink, int num_splits, const std::string& decode_p,
                           const std::string& dequant) {
  const SparseArgs a = sparse_args(q, kv, indices, layout, page, softmax_scale, topk_length, attn_sink, num_splits,
                                   decode_p, dequant);
  DecodeResult r;
  {
    py::gil_scoped_release rel;
    r = sparse_decode(a.in, a.spec);
  }
  const auto B = static_cast<py::ssize_t>(a.in.batch), Q = static_cast<py::ssize_t>(a.in.s_q),
             H = static_cast<py::ssize_t>(a.in.heads), C = static_cast<py::ssize_t>(layout_info(a.spec.layout).d_v);
  return py::make_tuple(to_array(r.out, {B, Q, H, C}), to_array(r.lse, {B, H, Q}));
}

py::dict sparse_reference_py(const py::object& q, const py::object& kv, const py::object& indices, const std::string& layout,
                             std::size_t page, double softmax_scale, const py::object& topk_length,
                             const py::object& attn_sink, int num_splits, const std::string& decode_p,
                             const std::string& dequant, const std::string& scope) {
  const SparseArgs a = sparse_args(q, kv, indices, layout, page, softmax_scale, topk_length, attn_sink, num_splits,
                                   decode_p, dequant);
  if (scope != "any_kernel" && scope != "emulator")
    throw py::value_error("scope: expected 'any_kernel' or 'emulator', got '" + scope + "'");
  DecodeReference ref;
  {
    py::gil_scoped_release rel;
    ref = sparse_decode_reference(a.in, a.spec, scope == "emulator" ? BoundScope::ThisEmulator : BoundScope::AnyKernel);
  }
  const auto B = static_cast<py::ssize_t>(a.in.batch), Q = static_cast<py::ssize_t>(a.in.s_q),
             H = static_cast<py::ssize_t>(a.in.heads), C = static_cast<py::ssize_t>(layout_info(a.spec.layout).d_v);
  py::dict d;
  d["out"] = to_array(ref.out, {B, Q, H, C});
  d["out_bound"] = to_array(ref.out_bound, {B, Q, H, C});
  d["lse"] = to_array(ref.lse, {B, H, Q});
  d["lse_bound"] = to_array(ref.lse_bound, {B, H, Q});
  return d;
}

}  // namespace

Registration mla_sparse_registration("mla_sparse", {}, [](py::module_& m) {
  m.def("mla_sparse_kv_layout", &layout_py, py::arg("layout"));
  m.def("mla_sparse_kv_block_bytes", &block_bytes_py, py::arg("layout"), py::arg("page"));
  m.def("mla_sparse_kv_quantize", &quantize_py, py::arg("values"), py::arg("layout"));
  m.def("mla_sparse_kv_dequantize", &dequantize_py, py::arg("kv_cache"), py::arg("layout"), py::arg("page"),
        py::arg("order"));
  m.def("mla_sparse_kv_unpack", &unpack_py, py::arg("kv_cache"), py::arg("layout"), py::arg("page"));
  m.def("mla_sparse_kv_pack", &pack_py, py::arg("nope"), py::arg("scales"), py::arg("rope"), py::arg("layout"));
  m.def("mla_sparse_decode", &sparse_decode_py, py::arg("q"), py::arg("kv_cache"), py::arg("indices"), py::arg("layout"),
        py::arg("page"), py::arg("softmax_scale"), py::arg("topk_length"), py::arg("attn_sink"), py::arg("num_splits"),
        py::arg("decode_p"), py::arg("dequant"));
  m.def("mla_sparse_decode_reference", &sparse_reference_py, py::arg("q"), py::arg("kv_cache"), py::arg("indices"),
        py::arg("layout"), py::arg("page"), py::arg("softmax_scale"), py::arg("topk_length"), py::arg("attn_sink"),
        py::arg("num_splits"), py::arg("decode_p"), py::arg("dequant"), py::arg("scope"));
});

}  // namespace fp8lab::bindings

// fp8lab._core: the DeepSeek-V3.2 lightning indexer (mla/indexer.hpp) and tie-aware top-k
// selection checks (mla/indexer_select.hpp). Specs arrive as a dict or JSON text and are read by
// IndexerSpec's declared schema. Arrays: float32 holding BF16 values (the Python layer, fp8lab/
// mla_index.py, converts bfloat16 arrays and checks shapes first); every error names the argument.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>

#include "arrays.hpp"
#include "mla/indexer.hpp"
#include "mla/indexer_select.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

using namespace fp8lab::mla;

IndexerSpec spec_from_py(const py::object& obj) {
  IndexerSpec s;
  if (obj.is_none()) return s;
  schema::read_into(s, spec_object_from_py(obj, "IndexerSpec"), indexer_spec_schema());
  validate(s);
  return s;
}

template <class T>
py::array_t<T> out_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::array_t<float, py::array::c_style> f32(const py::object& obj, const char* arg, std::vector<py::ssize_t> shape) {
  auto a = require_dtype<float>(obj, arg, "float32");
  if (shape_of(a) != shape)
    throw py::value_error(std::string(arg) + ": expected shape " + py::str(py::tuple(py::cast(shape))).cast<std::string>() +
                          ", got " + py::str(py::tuple(py::cast(shape_of(a)))).cast<std::string>());
  return a;
}

std::optional<py::array_t<std::int32_t, py::array::c_style>> ranges(const py::object& obj, const char* arg, py::ssize_t m) {
  if (obj.is_none()) return std::nullopt;
  auto a = require_dtype<std::int32_t>(obj, arg, "int32");
  if (a.ndim() != 1 || a.shape(0) != m)
    throw py::value_error(std::string(arg) + ": expected shape (" + std::to_string(m) + ",) (one per query)");
  return a;
}

// q (m, H, 128), k (n, 128), weights (m, H) -> IndexerInputs viewing the arrays kept alive in `keep`.
struct Held {
  py::array_t<float, py::array::c_style> q, k, w;
  std::optional<py::array_t<std::int32_t, py::array::c_style>> starts, ends;
  IndexerInputs in;
};
Held inputs_from(const py::object& q, const py::object& k, const py::object& w, const py::object& starts,
                 const py::object& ends, const IndexerSpec& s) {
  Held h;
  py::array qa = py::array::ensure(q), ka = py::array::ensure(k);
  if (!qa || qa.ndim() != 3) throw py::value_error("q: expected a 3-D array (queries, heads, 128)");
  if (!ka || ka.ndim() != 2) throw py::value_error("k: expected a 2-D array (tokens, 128)");
  const py::ssize_t m = qa.shape(0), n = ka.shape(0), H = s.heads, D = kIndexHeadDim;
  h.q = f32(q, "q", {m, H, D});
  h.k = f32(k, "k", {n, D});
  h.w = f32(w, "weights", {m, H});
  h.starts = ranges(starts, "starts", m);
  h.ends = ranges(ends, "ends", m);
  h.in.q = h.q.data();
  h.in.k = h.k.data();
  h.in.weights = h.w.data();
  h.in.starts = h.starts ? h.starts->data() : nullptr;
  h.in.ends = h.ends ? h.ends->data() : nullptr;
  h.in.m = static_cast<std::size_t>(m);
  h.in.n = static_cast<std::size_t>(n);
  return h;
}

py::dict index_py(const py::object& q, const py::object& k, const py::object& w, const py::object& starts,
                  const py::object& ends, const py::object& spec_obj) {
  const IndexerSpec s = spec_from_py(spec_obj);
  Held h = inputs_from(q, k, w, starts, ends, s);
  IndexerResult r;
  {
    py::gil_scoped_release release;
    r = index(h.in, s);
  }
  const py::ssize_t m = static_cast<py::ssize_t>(h.in.m), n = static_cast<py::ssize_t>(h.in.n), H = s.heads,
                    D = kIndexHeadDim;
  std::vector<std::uint8_t> q8(r.ops.q8.bits.begin(), r.ops.q8.bits.end()), k8(r.ops.k8.bits.begin(), r.ops.k8.bits.end());
  py::dict d;
  d["logits"] = out_array(r.logits, {m, n});
  d["indices"] = out_array(r.indices, {m, static_cast<py::ssize_t>(s.topk)});
  d["q_rot"] = out_array(r.ops.q_rot, {m, H, D});
  d["k_rot"] = out_array(r.ops.k_rot, {n, D});
  d["q_e4m3"] = out_array(q8, {m, H, D});
  d["q_scale"] = out_array(r.ops.q8.scales, {m, H});
  d["k_e4m3"] = out_array(k8, {n, D});
  d["k_scale"] = out_array(r.ops.k_scale, {n});
  d["weights_folded"] = out_array(r.ops.w, {m, H});
  return d;
}

py::array_t<double> exact_py(const py::object& q, const py::object& k, const py::object& w, const py::object& starts,
                             const py::object& ends, const py::object& spec_obj, const std::string& inputs) {
  if (inputs != "quantised" && inputs != "unquantised")
    throw py::value_error("inputs: '" + inputs + "'; expected 'quantised' or 'unquantised'");
  const IndexerSpec s = spec_from_py(spec_obj);
  Held h = inputs_from(q, k, w, starts, ends, s);
  std::vector<double> v;
  {
    py::gil_scoped_release release;
    v = indexer_logits_exact(h.in, s, inputs == "quantised" ? ExactIndexer::Quantised : ExactIndexer::Unquantised);
  }
  return out_array(v, {static_cast<py::ssize_t>(h.in.m), static_cast<py::ssize_t>(h.in.n)});
}

py::array_t<double> bound_py(const py::object& q, const py::object& k, const py::object& w, const py::object& starts,
                             const py::object& ends, const py::object& spec_obj) {
  const IndexerSpec s = spec_from_py(spec_obj);
  Held h = inputs_from(q, k, w, starts, ends, s);
  std::vector<double> v;
  {
    py::gil_scoped_release release;
    validate_indexer_inputs(h.in, s);
    v = indexer_logit_bound(indexer_operands(h.in, s), h.in, s);
  }
  return out_array(v, {static_cast<py::ssize_t>(h.in.m), static_cast<py::ssize_t>(h.in.n)});
}

py::array_t<double, py::array::c_style> logits2d(const py::object& obj, const char* arg) {
  py::array a = require_float(obj, arg);
  if (a.ndim() != 2) throw py::value_error(std::string(arg) + ": expected a 2-D array (queries, tokens)");
  return py::array_t<double, py::array::c_style>::ensure(a);  // float32 widens exactly
}

py::dict changes_py(const py::object& a_obj, const py::object& b_obj, const py::object& starts, const py::object& ends,
                    int topk) {
  auto a = logits2d(a_obj, "a"), b = logits2d(b_obj, "b");
  if (shape_of(a) != shape_of(b)) throw py::value_error("b: expected the shape of a");
  const py::ssize_t m = a.shape(0);
  auto st = ranges(starts, "starts", m), en = ranges(ends, "ends", m);
  const auto c = selection_changes(a.data(), b.data(), static_cast<std::size_t>(m), static_cast<std::size_t>(a.shape(1)),
                                   st ? st->data() : nullptr, en ? en->data() : nullptr, topk);
  std::vector<std::int64_t> sel, ch, ta, tb;
  for (const auto& x : c) {
    sel.push_back(static_cast<std::int64_t>(x.selected));
    ch.push_back(static_cast<std::int64_t>(x.changed));
    ta.push_back(static_cast<std::int64_t>(x.ties_a));
    tb.push_back(static_cast<std::int64_t>(x.ties_b));
  }
  py::dict d;
  d["selected"] = out_array(sel, {m});
  d["changed"] = out_array(ch, {m});
  d["ties_a"] = out_array(ta, {m});
  d["ties_b"] = out_array(tb, {m});
  return d;
}

std::string check_py(const py::object& idx_obj, const py::object& logits_obj, const py::object& starts,
                     const py::object& ends, int topk) {
  auto idx = require_dtype<std::int32_t>(idx_obj, "indices", "int32");
  auto lg = logits2d(logits_obj, "logits");
  const py::ssize_t m = lg.shape(0);
  if (idx.ndim() != 2 || idx.shape(0) != m || idx.shape(1) != topk)
    throw py::value_error("indices: expected shape (" + std::to_string(m) + ", " + std::to_string(topk) + "), got " +
                          py::str(py::tuple(py::cast(shape_of(idx)))).cast<std::string>());
  auto st = ranges(starts, "starts", m), en = ranges(ends, "ends", m);
  return check_selection(idx.data(), static_cast<std::size_t>(m), topk, lg.data(), static_cast<std::size_t>(lg.shape(1)),
                         st ? st->data() : nullptr, en ? en->data() : nullptr);
}

Registration mla_index_registration("mla_index", {}, [](py::module_& m) {
  m.def("indexer_spec", [](const py::object& s) { return spec_to_dict(spec_from_py(s), indexer_spec_schema()); },
        py::arg("spec") = py::none(), "The canonical IndexerSpec dict (defaults: DeepSeek-V3.2).");
  m.def("mla_index", &index_py, py::arg("q"), py::arg("k"), py::arg("weights"), py::arg("starts"), py::arg("ends"),
        py::arg("spec"));
  m.def("mla_index_exact", &exact_py, py::arg("q"), py::arg("k"), py::arg("weights"), py::arg("starts"),
        py::arg("ends"), py::arg("spec"), py::arg("inputs"));
  m.def("mla_index_bound", &bound_py, py::arg("q"), py::arg("k"), py::arg("weights"), py::arg("starts"),
        py::arg("ends"), py::arg("spec"));
  m.def("mla_rotate_activation", [](const py::object& x, bool scaled) {
    auto a = require_dtype<float>(x, "x", "float32");
    if (a.ndim() != 2 || a.shape(1) != kIndexHeadDim) throw py::value_error("x: expected shape (rows, 128)");
    return out_array(rotate_activation(a.data(), static_cast<std::size_t>(a.shape(0)), scaled), shape_of(a));
  }, py::arg("x"), py::arg("scaled") = true);
  m.def("mla_selection_changes", &changes_py, py::arg("a"), py::arg("b"), py::arg("starts"), py::arg("ends"),
        py::arg("topk"));
  m.def("mla_check_selection", &check_py, py::arg("indices"), py::arg("logits"), py::arg("starts"), py::arg("ends"),
        py::arg("topk"));
});

}  // namespace
}  // namespace fp8lab::bindings

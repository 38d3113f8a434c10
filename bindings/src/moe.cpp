// fp8lab._core: moe — router specs, route, gate scores, load balancing, dispatch/combine and the
// tie-aware routing verdict. Arrays are checked here (dtype, shape) with errors naming the
// argument; the work is done by emulator/moe.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "arrays.hpp"
#include "moe/balance.hpp"
#include "moe/dispatch.hpp"
#include "moe/route.hpp"
#include "moe/router_spec.hpp"
#include "moe/routing_verdict.hpp"
#include "dicts.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

using namespace fp8lab::moe;

// A spec from a dict: "base" (a recipe name, default "deepseek_v3") plus any fields to override,
// read by RouterSpec's schema (strict types, one error vocabulary).
RouterSpec spec_from_dict(const py::dict& d) {
  Json j = json_from_py(d, "spec");
  std::vector<std::string> keys{"base"};
  for (const auto& f : router_spec_schema().fields) keys.push_back(f.key);
  for (const auto& m : j.members)
    if (std::find(keys.begin(), keys.end(), m.first) == keys.end())
      throw py::value_error("spec: unknown field '" + m.first + "'; valid fields: " + schema::join_names(keys));
  const Json* base = j.find("base");
  RouterSpec s = router_recipe(base ? schema::read_string(*base, "spec.base") : std::string("deepseek_v3"));
  const bool overrides = j.members.size() > (base ? 1u : 0u);
  std::erase_if(j.members, [](const JsonMember& m) { return m.first == "base"; });
  schema::read_into(s, j, router_spec_schema());
  if (!j.find("name") && overrides) s.name += "+custom";
  s.validate();
  return s;
}

py::dict spec_to_dict(const RouterSpec& s) { return fp8lab::bindings::spec_to_dict(s, router_spec_schema()); }

py::array_t<float, py::array::c_style> float2d(const py::object& o, const char* arg, int cols, const char* what) {
  auto a = require_dtype<float>(o, arg, "float32");
  if (a.ndim() != 2 || a.shape(1) != cols)
    throw py::value_error(std::string(arg) + ": expected shape (tokens, " + std::to_string(cols) + ") (" + what +
                          "), got " + py::str(py::tuple(py::cast(shape_of(a)))).cast<std::string>());
  return a;
}

py::array_t<std::int32_t, py::array::c_style> ids2d(const py::object& o, const char* arg, int topk) {
  auto a = require_dtype<std::int32_t>(o, arg, "int32");
  if (a.ndim() != 2 || (topk > 0 && a.shape(1) != topk))
    throw py::value_error(std::string(arg) + ": expected shape (tokens, " + (topk > 0 ? std::to_string(topk) : "topk") +
                          "), got " + py::str(py::tuple(py::cast(shape_of(a)))).cast<std::string>());
  return a;
}

const float* bias_ptr(const py::object& bias, int experts, py::array_t<float, py::array::c_style>& keep) {
  if (bias.is_none()) return nullptr;
  keep = require_dtype<float>(bias, "bias", "float32");
  if (keep.ndim() != 1 || keep.shape(0) != experts)
    throw py::value_error("bias: expected shape (" + std::to_string(experts) + ",), got " +
                          py::str(py::tuple(py::cast(shape_of(keep)))).cast<std::string>());
  return keep.data();
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::tuple route_py(const py::object& logits, const py::object& bias, const py::dict& spec_d, bool from_scores) {
  const RouterSpec spec = spec_from_dict(spec_d);
  auto x = float2d(logits, from_scores ? "scores" : "logits", spec.experts, "experts from the spec");
  py::array_t<float, py::array::c_style> b;
  const float* bp = bias_ptr(bias, spec.experts, b);
  const std::size_t T = static_cast<std::size_t>(x.shape(0));
  const auto K = static_cast<py::ssize_t>(spec.topk);
  // The router writes straight into the result arrays (no intermediate vectors and copies).
  py::array_t<std::int32_t> ids({static_cast<py::ssize_t>(T), K});
  py::array_t<float> weights({static_cast<py::ssize_t>(T), K});
  std::int32_t* ip = ids.mutable_data();
  float* wp = weights.mutable_data();
  {
    py::gil_scoped_release release;
    if (from_scores)
      route_from_scores_into(x.data(), T, bp, spec, ip, wp);
    else
      route_into(x.data(), T, bp, spec, ip, wp);
  }
  return py::make_tuple(ids, weights);
}

py::array gate_scores_py(const py::object& logits, const py::dict& spec_d) {
  const RouterSpec spec = spec_from_dict(spec_d);
  auto x = float2d(logits, "logits", spec.experts, "experts from the spec");
  py::array_t<float> out(shape_of(x));
  {
    py::gil_scoped_release release;
    gate_scores(x.data(), static_cast<std::size_t>(x.shape(0)), spec, out.mutable_data());
  }
  return out;
}

py::array update_bias_py(const py::object& bias, const py::object& ids, double gamma, const std::string& fmt) {
  auto b = require_dtype<float>(bias, "bias", "float32");
  if (b.ndim() != 1) throw py::value_error("bias: expected a 1-D array (experts,)");
  auto i = ids2d(ids, "ids", 0);
  const int E = static_cast<int>(b.shape(0));
  const auto nb = update_bias(b.data(), E, i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)),
                              gamma, bias_format_by_name(fmt));
  return to_array(nb, {E});
}

double balance_loss_py(const py::object& scores, const py::object& ids, double alpha) {
  auto s = require_dtype<float>(scores, "scores", "float32");
  if (s.ndim() != 2) throw py::value_error("scores: expected shape (tokens, experts)");
  auto i = ids2d(ids, "ids", 0);
  if (i.shape(0) != s.shape(0))
    throw py::value_error("ids: has " + std::to_string(i.shape(0)) + " tokens, scores has " + std::to_string(s.shape(0)));
  return balance_loss(s.data(), i.data(), static_cast<std::size_t>(s.shape(0)), static_cast<int>(s.shape(1)),
                      static_cast<int>(i.shape(1)), alpha);
}

py::array loads_py(const py::object& ids, int experts) {
  auto i = ids2d(ids, "ids", 0);
  return to_array(expert_loads(i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)), experts),
                  {experts});
}

py::dict node_stats_py(const py::object& ids, int experts, int nodes) {
  auto i = ids2d(ids, "ids", 0);
  const NodeStats st = node_stats(i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)), experts, nodes);
  py::dict d;
  d["nodes_per_token"] = to_array(st.nodes_per_token, {static_cast<py::ssize_t>(st.nodes_per_token.size())});
  d["mean"] = st.mean;
  d["max"] = st.max;
  d["histogram"] = to_array(st.histogram, {static_cast<py::ssize_t>(st.histogram.size())});
  return d;
}

py::dict dispatch_py(const py::object& ids, int experts, int alignment) {
  auto i = ids2d(ids, "ids", 0);
  Dispatch d;
  {
    py::gil_scoped_release release;
    d = dispatch(i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)), experts, alignment);
  }
  const auto T = static_cast<py::ssize_t>(d.tokens), K = static_cast<py::ssize_t>(d.topk);
  const auto R = static_cast<py::ssize_t>(d.rows());
  py::dict o;
  o["experts"] = experts;
  o["alignment"] = alignment;
  o["counts"] = to_array(d.counts, {experts});
  o["offsets"] = to_array(d.offsets, {experts + 1});
  o["m_indices"] = to_array(d.row_expert, {R});
  std::vector<std::int64_t> psum(d.counts.size());
  for (std::size_t e = 0; e < psum.size(); ++e) psum[e] = d.offsets[e] + d.counts[e];
  o["psum_layout"] = to_array(psum, {experts});
  o["row_token"] = to_array(d.row_token, {R});
  o["row_slot"] = to_array(d.row_slot, {R});
  o["token_row"] = to_array(d.token_row, {T, K});
  o["capacity"] = d.capacity;
  o["masked_m"] = to_array(d.counts, {experts});
  o["masked_token"] = to_array(d.masked_token, {static_cast<py::ssize_t>(experts), static_cast<py::ssize_t>(d.capacity)});
  o["token_masked_row"] = to_array(d.token_masked_row, {T, K});
  return o;
}

py::array gather_py(const py::object& x, const py::object& ids, int experts, int alignment, const std::string& layout) {
  auto i = ids2d(ids, "ids", 0);
  auto a = require_dtype<float>(x, "x", "float32");
  if (a.ndim() != 2 || a.shape(0) != i.shape(0))
    throw py::value_error("x: expected shape (tokens=" + std::to_string(i.shape(0)) + ", hidden)");
  const Dispatch d = dispatch(i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)), experts, alignment);
  const Layout l = layout == "contiguous" ? Layout::Contiguous
                   : layout == "masked"   ? Layout::Masked
                                          : throw py::value_error("layout: expected 'contiguous' or 'masked', got '" + layout + "'");
  const auto H = static_cast<std::size_t>(a.shape(1));
  const auto rows = gather_rows(a.data(), H, d, l);
  if (l == Layout::Masked)
    return to_array(rows, {static_cast<py::ssize_t>(experts), static_cast<py::ssize_t>(d.capacity), static_cast<py::ssize_t>(H)});
  return to_array(rows, {static_cast<py::ssize_t>(d.rows()), static_cast<py::ssize_t>(H)});
}

py::array combine_py(const py::object& y, const py::object& ids, const py::object& weights, int experts, int alignment,
                     const std::string& layout, double output_scale, const std::string& out_format) {
  auto i = ids2d(ids, "ids", 0);
  auto w = require_dtype<float>(weights, "weights", "float32");
  if (w.ndim() != 2 || w.shape(0) != i.shape(0) || w.shape(1) != i.shape(1))
    throw py::value_error("weights: expected the shape of ids (" + std::to_string(i.shape(0)) + ", " +
                          std::to_string(i.shape(1)) + ")");
  auto a = require_dtype<float>(y, "expert_out", "float32");
  const Layout l = layout == "contiguous" ? Layout::Contiguous
                   : layout == "masked"   ? Layout::Masked
                                          : throw py::value_error("layout: expected 'contiguous' or 'masked', got '" + layout + "'");
  if (a.ndim() != (l == Layout::Masked ? 3 : 2))
    throw py::value_error(std::string("expert_out: expected ") +
                          (l == Layout::Masked ? "shape (experts, capacity, hidden)" : "shape (rows, hidden)"));
  const Dispatch d = dispatch(i.data(), static_cast<std::size_t>(i.shape(0)), static_cast<int>(i.shape(1)), experts, alignment);
  const auto H = static_cast<std::size_t>(a.shape(a.ndim() - 1));
  const std::size_t rows = static_cast<std::size_t>(a.size()) / (H ? H : 1);
  std::vector<float> out;
  {
    py::gil_scoped_release release;
    out = combine(a.data(), rows, H, d, l, w.data(), output_scale, gate_format_by_name(out_format));
  }
  return to_array(out, {static_cast<py::ssize_t>(d.tokens), static_cast<py::ssize_t>(H)});
}

py::dict compare_py(const py::object& ids_a, const py::object& w_a, const py::object& ids_b, const py::object& w_b,
                    const py::object& logits, const py::object& bias, const py::dict& spec_d, bool pinned,
                    bool order_sensitive, bool inputs_are_scores) {
  const RouterSpec spec = spec_from_dict(spec_d);
  auto x = float2d(logits, inputs_are_scores ? "scores" : "logits", spec.experts, "experts from the spec");
  const auto T = x.shape(0);
  auto ia = ids2d(ids_a, "ids_a", spec.topk);
  auto wa = float2d(w_a, "weights_a", spec.topk, "topk from the spec");
  if (ia.shape(0) != T || wa.shape(0) != T) throw py::value_error("ids_a/weights_a: expected " + std::to_string(T) + " tokens");
  py::array_t<std::int32_t, py::array::c_style> ib;
  py::array_t<float, py::array::c_style> wb;
  if (ids_b.is_none() != w_b.is_none()) throw py::value_error("ids_b, weights_b: give both or neither");
  if (!ids_b.is_none()) {
    ib = ids2d(ids_b, "ids_b", spec.topk);
    wb = float2d(w_b, "weights_b", spec.topk, "topk from the spec");
    if (ib.shape(0) != T || wb.shape(0) != T) throw py::value_error("ids_b/weights_b: expected " + std::to_string(T) + " tokens");
  }
  py::array_t<float, py::array::c_style> b;
  const float* bp = bias_ptr(bias, spec.experts, b);
  RoutingCompareOptions o;
  o.pinned = pinned;
  o.order_sensitive = order_sensitive;
  o.inputs_are_scores = inputs_are_scores;
  RoutingVerdict v;
  {
    py::gil_scoped_release release;
    v = compare_routing(ia.data(), wa.data(), ids_b.is_none() ? nullptr : ib.data(), ids_b.is_none() ? nullptr : wb.data(),
                        x.data(), static_cast<std::size_t>(T), bp, spec, o);
  }
  py::list swaps, viol;
  for (const TieSwap& s : v.swaps)
    swaps.append(dict_of({{"token", s.token}, {"kernel_only", s.kernel_only}, {"reference_only", s.reference_only},
                          {"gap", s.gap}, {"bound", s.bound}}));
  for (const RoutingViolation& r : v.violations) viol.append(dict_of({{"token", r.token}, {"what", r.what}}));
  return dict_of({{"kind", std::string(verdict_kind_name(v.kind))}, {"ok", v.ok()}, {"tokens", v.tokens},
                  {"identical_tokens", v.identical_tokens}, {"weight_only_tokens", v.weight_only_tokens},
                  {"reordered_tokens", v.reordered_tokens}, {"tie_swapped_tokens", v.tie_swapped_tokens},
                  {"violation_tokens", v.violation_tokens}, {"max_weight_bound_ratio", v.max_weight_bound_ratio},
                  {"swaps", swaps}, {"violations", viol}, {"summary", v.summary()}, {"json", v.to_json()}});
}

Registration moe_registration("moe", {}, [](py::module_& m) {
  m.def("moe_recipe_names", &router_recipe_names);
  m.def("moe_spec", [](const py::dict& d) { return spec_to_dict(spec_from_dict(d)); }, py::arg("spec"));
  m.def("moe_spec_json", [](const py::dict& d) { return spec_from_dict(d).to_json(); }, py::arg("spec"));
  m.def("moe_route", &route_py, py::arg("logits"), py::arg("bias"), py::arg("spec"), py::arg("from_scores") = false);
  m.def("moe_gate_scores", &gate_scores_py, py::arg("logits"), py::arg("spec"));
  m.def("moe_update_bias", &update_bias_py, py::arg("bias"), py::arg("ids"), py::arg("gamma"), py::arg("bias_format"));
  m.def("moe_balance_loss", &balance_loss_py, py::arg("scores"), py::arg("ids"), py::arg("alpha"));
  m.def("moe_expert_loads", &loads_py, py::arg("ids"), py::arg("experts"));
  m.def("moe_node_stats", &node_stats_py, py::arg("ids"), py::arg("experts"), py::arg("nodes"));
  m.def("moe_dispatch", &dispatch_py, py::arg("ids"), py::arg("experts"), py::arg("alignment"));
  m.def("moe_gather", &gather_py, py::arg("x"), py::arg("ids"), py::arg("experts"), py::arg("alignment"), py::arg("layout"));
  m.def("moe_combine", &combine_py, py::arg("expert_out"), py::arg("ids"), py::arg("weights"), py::arg("experts"),
        py::arg("alignment"), py::arg("layout"), py::arg("output_scale"), py::arg("out_format"));
  m.def("moe_compare", &compare_py, py::arg("ids_a"), py::arg("weights_a"), py::arg("ids_b"), py::arg("weights_b"),
        py::arg("logits"), py::arg("bias"), py::arg("spec"), py::arg("pinned"), py::arg("order_sensitive"),
        py::arg("inputs_are_scores"));
});

}  // namespace
}  // namespace fp8lab::bindings

// fp8lab._core: golden — the strict trace reader/writer (golden/trace.hpp), SHA-256, canonical
// JSON, and the shared verdict comparison (checks/verdict.hpp) for the Python golden/verify code.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>

#include "arrays.hpp"
#include "checks/verdict.hpp"
#include "common/json.hpp"
#include "golden/safetensors.hpp"
#include "golden/sha256.hpp"
#include "golden/trace.hpp"
#include "dicts.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {
namespace {

namespace g = fp8lab::golden;

py::dict trace_to_dict(const g::Trace& t) {
  py::dict d = dict_of({{"op", t.op}, {"spec", t.spec}, {"producer", t.producer}, {"seed", t.seed},
                        {"extra", t.extra}, {"digest_mismatches", t.digest_mismatches}});
  py::dict tensors;
  for (const auto& [name, tt] : t.tensors) {
    py::tuple shape(tt.tensor.shape.size());
    for (std::size_t i = 0; i < tt.tensor.shape.size(); ++i) shape[i] = tt.tensor.shape[i];
    tensors[py::str(name)] = py::make_tuple(
        tt.role, tt.tensor.dtype, shape,
        py::bytes(reinterpret_cast<const char*>(tt.tensor.data.data()), tt.tensor.data.size()));
  }
  d["tensors"] = tensors;
  return d;
}

py::dict read_trace_py(const std::string& path, bool check_digests) {
  g::Trace t;
  {
    py::gil_scoped_release release;
    t = g::read_trace(path, check_digests);
  }
  return trace_to_dict(t);
}

py::dict parse_trace_py(const py::bytes& data, const std::string& source, bool check_digests) {
  const std::string_view v = data;
  return trace_to_dict(g::parse_trace(reinterpret_cast<const std::uint8_t*>(v.data()), v.size(), source, check_digests));
}

// tensors: {name: (role, dtype, shape, bytes)}
g::Trace trace_from_py(const std::string& op, const std::string& spec, const std::string& producer, std::uint64_t seed,
                       const py::dict& tensors, const std::map<std::string, std::string>& extra) {
  g::Trace t;
  t.op = op;
  t.spec = spec;
  t.producer = producer;
  t.seed = seed;
  t.extra = extra;
  for (auto item : tensors) {
    const std::string name = py::str(item.first);
    auto tup = item.second.cast<py::tuple>();
    if (tup.size() != 4) throw py::value_error("tensors['" + name + "']: expected (role, dtype, shape, bytes)");
    g::TraceTensor tt;
    tt.role = tup[0].cast<std::string>();
    tt.tensor.dtype = tup[1].cast<std::string>();
    for (auto d : tup[2].cast<py::sequence>()) {
      const auto v = d.cast<long long>();
      if (v < 0) throw py::value_error("tensors['" + name + "']: negative dimension " + std::to_string(v));
      tt.tensor.shape.push_back(static_cast<std::uint64_t>(v));
    }
    const std::string_view bytes = tup[3].cast<py::bytes>();
    tt.tensor.data.assign(bytes.begin(), bytes.end());
    t.tensors[name] = std::move(tt);
  }
  return t;
}

void write_trace_py(const std::string& path, const std::string& op, const std::string& spec, const std::string& producer,
                    std::uint64_t seed, const py::dict& tensors, const std::map<std::string, std::string>& extra,
                    bool overwrite) {
  g::Trace t = trace_from_py(op, spec, producer, seed, tensors, extra);
  py::gil_scoped_release release;
  g::write_trace(path, t, overwrite);
}

py::bytes serialize_trace_py(const std::string& op, const std::string& spec, const std::string& producer, std::uint64_t seed,
                             const py::dict& tensors, const std::map<std::string, std::string>& extra) {
  const auto b = g::serialize_safetensors(g::trace_to_safetensors(trace_from_py(op, spec, producer, seed, tensors, extra)));
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string sha256_py(const py::bytes& data) {
  const std::string_view v = data;
  return g::sha256_hex(v.data(), v.size());
}

// The shared verdict: returns (kind, summary, json).
py::tuple compare_py(const py::object& got, const py::object& expected, const py::object& exact, const py::object& bound,
                     const std::vector<std::size_t>& shape, int mantissa_bits, int min_normal_exponent,
                     const std::string& what) {
  auto g_arr = require_dtype<double>(got, "got", "float64");
  auto e_arr = require_dtype<double>(expected, "expected", "float64");
  if (g_arr.size() != e_arr.size())
    throw py::value_error("got: " + std::to_string(g_arr.size()) + " elements, expected has " + std::to_string(e_arr.size()));
  std::optional<py::array_t<double, py::array::c_style>> x_arr, b_arr;
  if (!exact.is_none()) {
    x_arr = require_dtype<double>(exact, "exact", "float64");
    if (x_arr->size() != g_arr.size()) throw py::value_error("exact: size differs from got");
  }
  if (!bound.is_none()) {
    b_arr = require_dtype<double>(bound, "bound", "float64");
    if (b_arr->size() != g_arr.size()) throw py::value_error("bound: size differs from got");
  }
  CompareInputs in;
  in.got = g_arr.data();
  in.expected = e_arr.data();
  in.exact = x_arr ? x_arr->data() : nullptr;
  in.bound = b_arr ? b_arr->data() : nullptr;
  in.count = static_cast<std::size_t>(g_arr.size());
  in.shape = shape;
  in.output_mantissa_bits = mantissa_bits;
  in.output_min_exponent = min_normal_exponent;
  in.what = what;
  Verdict v;
  {
    py::gil_scoped_release release;
    v = compare(in);
  }
  return py::make_tuple(std::string(verdict_kind_name(v.kind)), v.summary(), v.to_json());
}

// The verdict's ULP distance (checks/verdict.hpp), elementwise: the regression report counts moves
// with the same measure the verdict uses.
py::array_t<double> ulp_distances_py(const py::object& a, const py::object& b, int mantissa_bits,
                                     int min_normal_exponent) {
  auto a_arr = require_dtype<double>(a, "a", "float64");
  auto b_arr = require_dtype<double>(b, "b", "float64");
  if (a_arr.size() != b_arr.size())
    throw py::value_error("b: " + std::to_string(b_arr.size()) + " elements, a has " + std::to_string(a_arr.size()));
  py::array_t<double> out(a_arr.size());
  double* o = out.mutable_data();
  for (py::ssize_t i = 0; i < a_arr.size(); ++i)
    o[i] = ulp_distance(a_arr.data()[i], b_arr.data()[i], mantissa_bits, min_normal_exponent);
  return out;
}

Registration golden_registration("golden", {"quant"}, [](py::module_& m) {
  py::register_exception<g::TraceError>(m, "TraceError", PyExc_ValueError);
  m.def("golden_read_trace", &read_trace_py, py::arg("path"), py::arg("check_digests") = true);
  m.def("golden_parse_trace", &parse_trace_py, py::arg("data"), py::arg("source"), py::arg("check_digests") = true);
  m.def("golden_write_trace", &write_trace_py, py::arg("path"), py::arg("op"), py::arg("spec"), py::arg("producer"),
        py::arg("seed"), py::arg("tensors"), py::arg("extra"), py::arg("overwrite"));
  m.def("golden_serialize_trace", &serialize_trace_py, py::arg("op"), py::arg("spec"), py::arg("producer"), py::arg("seed"),
        py::arg("tensors"), py::arg("extra"));
  m.def("golden_sha256", &sha256_py, py::arg("data"));
  m.def("golden_canonical_json", &g::canonical_json, py::arg("text"));
  m.def("golden_dtype_names", &g::dtype_names);
  m.def("verdict_compare", &compare_py, py::arg("got"), py::arg("expected"), py::arg("exact") = py::none(),
        py::arg("bound") = py::none(), py::arg("shape") = std::vector<std::size_t>{}, py::arg("mantissa_bits") = 23,
        py::arg("min_normal_exponent") = -126, py::arg("what") = "");
  m.def("verdict_ulp_distances", &ulp_distances_py, py::arg("a"), py::arg("b"), py::arg("mantissa_bits"),
        py::arg("min_normal_exponent"));
});

}  // namespace
}  // namespace fp8lab::bindings

// fp8lab._core: gemm — block-scaled GEMM emulation, the exact reference, certified bounds and
// error metrics. Operands are QTensors (registered by the quant part) or 2-D float arrays.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "arrays.hpp"
#include "common/profile.hpp"
#include "gemm/bounds.hpp"
#include "gemm/exact.hpp"
#include "gemm/gemm.hpp"
#include "gemm/metrics.hpp"
#include "gemm/recipe.hpp"
#include "dicts.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

// A 2-D float32 array, or float64 whose values are all float32 values (no silent rounding).
PooledVector<float> float32_matrix(const py::object& obj, const char* arg, std::size_t& rows, std::size_t& cols) {
  py::array a = require_float(obj, arg);
  if (a.ndim() != 2)
    throw py::value_error(std::string(arg) + ": expected a 2-D array, got " + std::to_string(a.ndim()) + " dimensions");
  rows = static_cast<std::size_t>(a.shape(0));
  cols = static_cast<std::size_t>(a.shape(1));
  PooledVector<float> v(rows * cols);
  if (is_float32(a)) {
    std::copy_n(static_cast<const float*>(a.data()), v.size(), v.begin());
  } else {
    const auto* d = static_cast<const double*>(a.data());
    for (std::size_t i = 0; i < v.size(); ++i) {
      v[i] = static_cast<float>(d[i]);
      if (static_cast<double>(v[i]) != d[i] && !std::isnan(d[i]))
        throw py::value_error(std::string(arg) + ": element [" + std::to_string(i / cols) + ", " +
                              std::to_string(i % cols) + "] = " + py::repr(py::float_(d[i])).cast<std::string>() +
                              " is not a float32 value; cast the array to float32 first");
    }
  }
  return v;
}

GemmOperand to_operand(const py::object& obj, const char* arg) {
  try {
    const auto& q = obj.cast<const QTensor&>();
    return operand_from_qtensor(q, arg);
  } catch (const py::cast_error&) {
  }
  std::size_t rows = 0, cols = 0;
  PooledVector<float> v = float32_matrix(obj, arg, rows, cols);
  return operand_from_floats(std::move(v), rows, cols, arg);
}

std::optional<PooledVector<float>> to_c(const py::object& c, std::size_t M, std::size_t N) {
  if (c.is_none()) return std::nullopt;
  std::size_t rows = 0, cols = 0;
  PooledVector<float> v = float32_matrix(c, "c", rows, cols);
  if (rows != M || cols != N)
    throw py::value_error("c: expected shape (" + std::to_string(M) + ", " + std::to_string(N) + "), got (" +
                          std::to_string(rows) + ", " + std::to_string(cols) + ")");
  return v;
}

GemmSpec to_spec(const std::string& accumulate, int promote_every, const std::string& combine,
                 const std::string& instruction, const std::string& out) {
  GemmSpec s;
  s.accumulate = accumulate_by_name(accumulate);
  s.promote_every = promote_every;
  s.combine = combine_by_name(combine);
  s.instruction = instruction;
  s.out = output_format_by_name(out);
  return s;
}

// The result handed to numpy without a copy: the array owns the vector's buffer (a PooledVector's
// goes back to the buffer cache when the array dies, for the next call's result).
template <class Vector>
py::array_t<double> as_matrix(Vector&& v, std::size_t M, std::size_t N) {
  auto* owned = new Vector(std::move(v));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<Vector*>(p); });
  return py::array_t<double>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)}, owned->data(), free_when_done);
}

// FP8LAB_PROFILE=1 / fp8lab profile (common/profile.hpp): one line per call on sys.stderr, the
// seconds of each stage since `before`.
void print_stages(const char* what, std::size_t M, std::size_t N, std::size_t K, const StageTotals& before) {
  const StageTotals now = stage_totals();
  std::string line = std::string("fp8lab profile: ") + what + " " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                     std::to_string(K) + ":";
  double total = 0;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    const double s = now.seconds[i] - before.seconds[i];
    total += s;
    char buf[96];
    std::snprintf(buf, sizeof buf, " %s %.2f ms%s", std::string(stage_name(static_cast<Stage>(i))).c_str(), s * 1e3,
                  i + 1 < kStageCount ? "," : "");
    line += buf;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "; total %.2f ms", total * 1e3);
  py::print(line + buf, py::arg("file") = py::module_::import("sys").attr("stderr"));
}

py::array_t<double> gemm_py(const py::object& a, const py::object& b, const std::string& accumulate, int promote_every,
                            const std::string& combine, const std::string& instruction, const std::string& out,
                            const py::object& c, bool bound) {
  const GemmSpec spec = to_spec(accumulate, promote_every, combine, instruction, out);
  const bool profile = profiling();
  const StageTotals before = profile ? stage_totals() : StageTotals{};
  std::optional<StageTimer> prep(std::in_place, Stage::OperandPreparation);
  std::optional<GemmOperand> A(to_operand(a, "a")), B(to_operand(b, "b"));
  auto C = to_c(c, A->rows, B->rows);
  prep.reset();
  const std::size_t M = A->rows, N = B->rows, K = A->cols;
  std::vector<double> bounds;
  PooledVector<double> d;
  {
    py::gil_scoped_release release;
    if (bound)
      bounds = gemm_error_bound(*A, *B, spec, C ? C->data() : nullptr);
    else
      gemm_into(*A, *B, spec, C ? C->data() : nullptr, [&](std::size_t n) {
        d.resize(n);
        return d.data();
      });
    // The operands' copies are freed as part of their preparation's cost (large buffers' pages
    // take time to return to the system; the profile accounts for it).
    const StageTimer release_operands(Stage::OperandPreparation);
    A.reset();
    B.reset();
    C.reset();
  }
  py::array_t<double> r = bound ? as_matrix(std::move(bounds), M, N) : as_matrix(std::move(d), M, N);
  if (profile) print_stages(bound ? "gemm_bound" : "gemm", M, N, K, before);
  return r;
}

py::array_t<double> gemm_exact_py(const py::object& a, const py::object& b, const py::object& c, const std::string& out) {
  const GemmOperand A = to_operand(a, "a"), B = to_operand(b, "b");
  if (A.cols != B.cols)
    throw py::value_error("b: has K = " + std::to_string(B.cols) + " columns but a has K = " + std::to_string(A.cols) +
                          " (b is given N x K)");
  const auto C = to_c(c, A.rows, B.rows);
  const OutputFormat o = output_format_by_name(out);
  std::vector<double> d;
  {
    py::gil_scoped_release release;
    d = gemm_exact(A, B, C ? C->data() : nullptr, o);
  }
  return as_matrix(std::move(d), A.rows, B.rows);
}

py::dict metrics_py(const py::object& result, const py::object& exact, const std::string& out, const py::object& bound) {
  const auto r = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(require_float(result, "result"));
  const auto x = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(require_float(exact, "exact"));
  if (shape_of(r) != shape_of(x)) throw py::value_error("exact: shape differs from result's");
  py::array_t<double, py::array::c_style | py::array::forcecast> bd;
  if (!bound.is_none()) {
    bd = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(require_float(bound, "bound"));
    if (shape_of(bd) != shape_of(r)) throw py::value_error("bound: shape differs from result's");
  }
  const GemmMetrics m = gemm_metrics(r.data(), x.data(), static_cast<std::size_t>(r.size()), output_format_by_name(out),
                                     bound.is_none() ? nullptr : bd.data());
  py::dict d = dict_of({{"count", m.count}, {"nonzero_exact", m.nonzero_exact}, {"max_rel_error", m.max_rel_error},
                        {"normwise_rel_error", m.normwise_rel_error}, {"nan_results", m.nan_results},
                        {"inf_results", m.inf_results}, {"nonfinite_where_exact_finite", m.nonfinite_where_exact_finite},
                        {"mean_rel_error", m.mean_rel_error}, {"max_abs_error", m.max_abs_error},
                        {"calc_diff", m.calc_diff}, {"max_ulp", m.max_ulp}});
  py::dict hist;
  const auto labels = ulp_bucket_labels();
  for (std::size_t i = 0; i < labels.size(); ++i) hist[py::str(labels[i])] = m.ulp_histogram[i];
  d["ulp_histogram"] = hist;
  if (m.has_bound) {
    d["max_bound_ratio"] = m.max_bound_ratio;
    d["mean_bound_ratio"] = m.mean_bound_ratio;
    d["violations"] = m.violations;
  }
  return d;
}

// A recipe given as a row name, a row dict (e.g. recipe(name) with a field changed), a dict with
// "base" plus the fields it changes, or the JSON text of either.
GemmRecipe recipe_from_py(const py::object& r) {
  if (py::isinstance<py::str>(r)) {
    const std::string s = r.cast<std::string>();
    if (s.empty() || s.front() != '{') return gemm_recipe(s);
  }
  return gemm_recipe_from_json(to_canonical_json(spec_object_from_py(r, "recipe")));
}

Registration gemm_registration("gemm", {"quant"}, [](py::module_& m) {
  m.def("gemm", &gemm_py, py::arg("a"), py::arg("b"), py::arg("accumulate"), py::arg("promote_every"),
        py::arg("combine"), py::arg("instruction"), py::arg("out"), py::arg("c"), py::arg("bound") = false);
  m.def("gemm_exact", &gemm_exact_py, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("out"));
  m.def("gemm_metrics", &metrics_py, py::arg("result"), py::arg("exact"), py::arg("out"), py::arg("bound"));
  m.def("gemm_accumulate_names", &accumulate_names);
  m.def("gemm_combine_names", &combine_names);
  m.def("gemm_spec", [](const py::object& spec) {
    return spec_to_dict(spec_from_py(spec, gemm_spec_schema()), gemm_spec_schema());
  }, py::arg("spec"), "A GemmSpec dict read strictly over the defaults and returned complete.");
  m.def("gemm_spec_json", [](const py::object& spec) { return to_json(spec_from_py(spec, gemm_spec_schema())); },
        py::arg("spec"), "to_json(GemmSpec) of a dict (or JSON text) read strictly over the defaults.");
  m.def("gemm_recipes", &gemm_recipe_names);
  m.def("gemm_recipe", [](const py::object& r) { return spec_to_dict(recipe_from_py(r), gemm_recipe_schema()); },
        py::arg("recipe"));
  m.attr("default_gemm_recipe") = std::string(kDefaultGemmRecipe);
});

}  // namespace
}  // namespace fp8lab::bindings

// fp8lab._core: quant — the QTensor class (the C++ struct itself, so gemm/golden bindings take it
// as a fp8lab::QTensor argument), quantize, retile, scale rules.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "arrays.hpp"
#include "quant/quantize.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {
namespace {

// A rule given as a name ("deepseek") or as a spec: a dict of ScaleRule fields or its JSON text.
ScaleRule rule_from_py(const py::object& rule) {
  if (py::isinstance<py::str>(rule)) {
    const std::string s = rule.cast<std::string>();
    if (!s.empty() && s.front() == '{') return scale_rule_from_json(s);
    return scale_rule_by_name(s);
  }
  if (py::isinstance<py::dict>(rule)) {
    py::object json = py::module_::import("json").attr("dumps")(rule);
    return scale_rule_from_json(json.cast<std::string>());
  }
  throw py::type_error("rule: expected a rule name (str), a spec dict or its JSON text, got " +
                       py::str(py::type::of(rule).attr("__name__")).cast<std::string>());
}

Tile tile_from_py(const py::object& t) {
  if (!py::isinstance<py::sequence>(t) || py::isinstance<py::str>(t) || py::len(t) != 2)
    throw py::type_error("tile: expected a pair (rows, cols) of non-negative ints (0 = the whole dimension)");
  auto seq = t.cast<py::sequence>();
  Tile out;
  for (int i = 0; i < 2; ++i) {
    py::object v = seq[i];
    if (!py::isinstance<py::int_>(v) && !py::hasattr(v, "__index__"))
      throw py::type_error("tile: expected ints, got " + py::repr(t).cast<std::string>());
    const long long n = py::int_(v).cast<long long>();
    if (n < 0) throw py::value_error("tile: sizes must be >= 0 (0 = the whole dimension), got " + py::repr(t).cast<std::string>());
    (i == 0 ? out.rows : out.cols) = static_cast<std::size_t>(n);
  }
  return out;
}

// rbits (None, or uint32 of x's shape) and width: stochastic rounding of the elements (quantize.hpp).
QTensor quantize_py(const py::object& x_obj, const py::object& tile, const std::string& fmt, const py::object& rule_obj,
                    const py::object& rbits_obj, int width) {
  py::array x = require_float(x_obj, "x");
  if (x.ndim() != 2)
    throw py::value_error("x: expected a 2-D array, got " + std::to_string(x.ndim()) + " dimensions");
  const auto rows = static_cast<std::size_t>(x.shape(0)), cols = static_cast<std::size_t>(x.shape(1));
  const Tile t = tile_from_py(tile);
  const ScaleRule rule = rule_from_py(rule_obj);
  if (!rbits_obj.is_none()) {
    const auto r = require_dtype<std::uint32_t>(rbits_obj, "rbits", "uint32");
    if (shape_of(r) != shape_of(x)) throw py::value_error("rbits: shape must equal x's (one random word per element)");
    if (!is_float32(x)) throw py::type_error("x: stochastic rounding takes float32 x");
    const StochasticBits sr{r.data(), width};
    py::gil_scoped_release release;
    return quantize(static_cast<const float*>(x.data()), rows, cols, t, fmt, rule, &sr);
  }
  const bool f32 = is_float32(x);
  py::gil_scoped_release release;
  if (f32) return quantize(static_cast<const float*>(x.data()), rows, cols, t, fmt, rule);
  return quantize(static_cast<const double*>(x.data()), rows, cols, t, fmt, rule);
}

// quantize() into the caller's arrays (quant.py checked them: shapes, dtypes, contiguity,
// aliasing); these checks guard a direct _core call.
void quantize_into_py(const py::object& x_obj, const py::object& tile, const std::string& fmt_name,
                      const py::object& rule_obj, py::array bits, py::array scales) {
  auto x = require_dtype<float>(x_obj, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x: expected a 2-D array, got " + std::to_string(x.ndim()) + " dimensions");
  const Format& f = format_by_name(fmt_name);
  const ScaleRule rule = rule_from_py(rule_obj);
  const bool ue8m0 = rule.storage == ScaleStorage::Ue8m0;
  const auto writable = [](const py::array& a) { return (a.flags() & py::array::c_style) && a.writeable(); };
  if (!has_dtype(bits, storage_dtype(f)) || bits.size() != x.size() || !writable(bits))
    throw py::value_error("out: bits must be a writeable C-contiguous array of " + std::to_string(x.size()) +
                          " elements of " + py::str(storage_dtype(f)).cast<std::string>());
  if (!has_dtype(scales, ue8m0 ? py::dtype::of<std::uint8_t>() : py::dtype::of<float>()) || !writable(scales))
    throw py::value_error(std::string("out: scales must be a writeable C-contiguous ") + (ue8m0 ? "uint8" : "float32") + " array");
  QuantizeOut out;
  out.bits = bits.mutable_data();
  out.bits_width = f.storage_bits();
  if (ue8m0) out.scale_bytes = static_cast<std::uint8_t*>(scales.mutable_data());
  else out.scales = static_cast<float*>(scales.mutable_data());
  const auto rows = static_cast<std::size_t>(x.shape(0)), cols = static_cast<std::size_t>(x.shape(1));
  const Tile t = tile_from_py(tile);
  const std::size_t tr = t.rows == 0 ? rows : t.rows, tc = t.cols == 0 ? cols : t.cols;
  const std::size_t grid = rows == 0 || cols == 0 ? 0 : ((rows + tr - 1) / tr) * ((cols + tc - 1) / tc);
  if (static_cast<std::size_t>(scales.size()) != grid)
    throw py::value_error("out: scales must have " + std::to_string(grid) + " elements (one per tile)");
  py::gil_scoped_release release;
  quantize_into(x.data(), rows, cols, t, fmt_name, rule, out);
}

// The QTensor's own bit buffer as a read-only numpy array of the storage dtype, without a copy: the
// array keeps `self` (the Python QTensor owning the buffer) alive, and a QTensor's bits never change
// after construction. Patterns held at another width than the format's (a hand-built QTensor) are
// converted into a new array.
py::array bits_array(const py::object& self) {
  const QTensor& q = self.cast<const QTensor&>();
  const Format& f = q.format();
  const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(q.rows), static_cast<py::ssize_t>(q.cols)};
  if (q.bits.size() == q.rows * q.cols && q.bits.width_bits() == f.storage_bits() && !q.bits.empty()) {
    py::array view(storage_dtype(f), shape, {}, q.bits.raw(), self);
    view.attr("flags").attr("writeable") = false;
    return view;
  }
  py::array out(storage_dtype(f), shape);
  const std::size_t n = std::min(q.bits.size(), static_cast<std::size_t>(out.size()));
  for (std::size_t i = 0; i < n; ++i) {
    if (f.storage_bits() == 8) static_cast<std::uint8_t*>(out.mutable_data())[i] = static_cast<std::uint8_t>(q.bits[i]);
    else if (f.storage_bits() == 16) static_cast<std::uint16_t*>(out.mutable_data())[i] = static_cast<std::uint16_t>(q.bits[i]);
    else static_cast<std::uint32_t*>(out.mutable_data())[i] = q.bits[i];
  }
  return out;
}

std::vector<py::ssize_t> grid_shape(const QTensor& q) {
  return {static_cast<py::ssize_t>(q.tile_grid_rows()), static_cast<py::ssize_t>(q.tile_grid_cols())};
}

py::array scale_values_array_impl(const QTensor& q) {
  py::array_t<float> out(grid_shape(q));
  if (!q.scales.empty()) std::memcpy(out.mutable_data(), q.scales.data(), q.scales.size() * sizeof(float));
  return out;
}

py::array scales_array(const QTensor& q) {
  if (!q.scale_bits_ue8m0.empty()) {
    py::array_t<std::uint8_t> out(grid_shape(q));
    std::memcpy(out.mutable_data(), q.scale_bits_ue8m0.data(), q.scale_bits_ue8m0.size());
    return out;
  }
  return scale_values_array_impl(q);
}

// A scale a kernel hands over must be a finite number > 0: a negative, zero, NaN or infinite scale
// would make every value of its tile wrong (or NaN) downstream without a word. allow_nonfinite
// admits NaN and +Inf, which the quantisers themselves produce from NaN/Inf input (quant.py).
void check_scale(float s, std::uint8_t byte, bool ue8m0, std::size_t i, const QTensor& q, bool allow_nonfinite) {
  const bool nonfinite = std::isnan(s) || s == std::numeric_limits<float>::infinity();
  if ((std::isfinite(s) && s > 0.0f) || (allow_nonfinite && nonfinite)) return;
  const std::size_t gc = q.tile_grid_cols();
  char v[48];
  if (ue8m0) std::snprintf(v, sizeof v, "0x%02X (NaN in UE8M0)", static_cast<unsigned>(byte));
  else std::snprintf(v, sizeof v, "%.9g", static_cast<double>(s));
  throw py::value_error("scales: tile [" + std::to_string(i / gc) + ", " + std::to_string(i % gc) + "] = " + v +
                        ": expected a finite scale > 0" +
                        (nonfinite ? " (pass allow_nonfinite=True to wrap a quantiser's output for NaN/Inf input)" : ""));
}

QTensor from_parts(const py::object& bits_obj, const py::object& scales_obj, const std::string& fmt_name,
                   const py::object& tile, const py::object& rule_obj, bool allow_nonfinite, float global_scale,
                   float global_amax) {
  const Format& f = format_by_name(fmt_name);
  const ScaleRule rule = rule_from_py(rule_obj);
  if (!(global_scale > 0.0f) || !std::isfinite(global_scale))
    throw py::value_error("global_scale: expected a finite float32 > 0, got " + std::to_string(global_scale));
  if (global_scale != 1.0f && !rule.two_level())
    throw py::value_error("global_scale: rule '" + rule.name + "' has one level of scales; only two-level (NVFP4) rules take a global scale");
  if (global_amax != 0.0f && !rule.two_level())
    throw py::value_error("global_amax: rule '" + rule.name + "' has one level of scales; only two-level (NVFP4) rules take a tensor amax");
  if (!(global_amax >= 0.0f) || !std::isfinite(global_amax))
    throw py::value_error("global_amax: expected a finite float32 >= 0, got " + std::to_string(global_amax));
  py::array bits = py::array::ensure(bits_obj);
  if (!bits) throw py::type_error("bits: expected a numpy array of unsigned integers");
  const py::dtype want = storage_dtype(f);
  if (!has_dtype(native_order(bits), want))
    throw py::type_error("bits: format " + f.name + " is stored as " + py::str(want).cast<std::string>() +
                         ", got dtype " + dtype_name(bits));
  bits = native_order(bits);
  if (bits.ndim() != 2) throw py::value_error("bits: expected a 2-D array, got " + std::to_string(bits.ndim()) + " dimensions");
  bits = py::array::ensure(bits, py::array::c_style);
  QTensor q;
  q.rows = static_cast<std::size_t>(bits.shape(0));
  q.cols = static_cast<std::size_t>(bits.shape(1));
  q.fmt = f.name;
  q.tile = tile_from_py(tile);
  q.rule = rule.name;
  q.rule_spec = rule.to_json();
  // One copy at the storage width (the dtype check above makes it the format's); validate_qtensor
  // below rejects patterns outside the format.
  q.bits = ElementBits::uninitialized(q.rows * q.cols, f.storage_bits());
  if (!q.bits.empty()) std::memcpy(q.bits.raw(), bits.data(), q.bits.byte_size());
  const std::size_t ns = q.tile_grid_rows() * q.tile_grid_cols();
  py::array sc = py::array::ensure(scales_obj);
  if (!sc) throw py::type_error("scales: expected a numpy array");
  if (static_cast<std::size_t>(sc.size()) != ns)
    throw py::value_error("scales: expected " + std::to_string(ns) + " scales (a " + std::to_string(q.tile_grid_rows()) +
                          " x " + std::to_string(q.tile_grid_cols()) + " tile grid), got " + std::to_string(sc.size()));
  const std::string sc_given = dtype_name(sc);
  sc = py::array::ensure(native_order(sc), py::array::c_style);
  if (rule.storage == ScaleStorage::Ue8m0) {
    if (!has_dtype(sc, py::dtype::of<std::uint8_t>()))
      throw py::type_error("scales: rule '" + rule.name + "' stores UE8M0 bytes: expected dtype uint8, got " + sc_given);
    const auto* b = static_cast<const std::uint8_t*>(sc.data());
    q.scale_bits_ue8m0.assign(b, b + ns);
    q.scales.resize(ns);
    for (std::size_t i = 0; i < ns; ++i)
      q.scales[i] = b[i] == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(b[i]) - 127);
  } else {
    if (!has_dtype(sc, py::dtype::of<float>()))
      throw py::type_error("scales: rule '" + rule.name + "' stores float32 scales: expected dtype float32, got " +
                           sc_given);
    const auto* s = static_cast<const float*>(sc.data());
    q.scales.assign(s, s + ns);
  }
  for (std::size_t i = 0; i < ns; ++i)
    check_scale(q.scales[i], q.scale_bits_ue8m0.empty() ? 0 : q.scale_bits_ue8m0[i], !q.scale_bits_ue8m0.empty(), i, q,
                allow_nonfinite);
  validate_qtensor(q, "bits");
  q.global_scale = global_scale;
  q.global_amax = global_amax;
  return q;
}

py::dict rule_dict(const ScaleRule& r) {
  py::object loads = py::module_::import("json").attr("loads");
  return loads(r.to_json()).cast<py::dict>();
}

Registration quant_registration("quant", {}, [](py::module_& m) {
  py::class_<Tile>(m, "Tile")
      .def(py::init([](std::size_t r, std::size_t c) { return Tile{r, c}; }), py::arg("rows"), py::arg("cols"))
      .def_readonly("rows", &Tile::rows)
      .def_readonly("cols", &Tile::cols)
      .def("__repr__", [](const Tile& t) { return "(" + std::to_string(t.rows) + ", " + std::to_string(t.cols) + ")"; });

  py::class_<QTensor>(m, "QTensor",
                      "A block-quantised matrix: element bit patterns in `fmt` and one scale per tile.\n"
                      "value[r, c] = decode(bits[r, c]) * scale of its tile * global_scale.")
      .def_property_readonly("bits", &bits_array, "element bit patterns (rows x cols; uint8 / uint16 / uint32): a read-only view of the "
                             "QTensor's own buffer (np.array(q.bits) for a writeable copy)")
      .def_property_readonly("scales", &scales_array,
                             "one per tile (grid rows x grid cols): float32 dequantisation multipliers, or the "
                             "UE8M0 bytes (uint8) for rules that store UE8M0")
      .def_property_readonly("scale_values", &scale_values_array_impl,
                             "the float32 dequantisation multiplier of every tile (2^(b-127) for UE8M0 bytes)")
      .def_property_readonly("global_scale", [](const QTensor& q) { return q.global_scale; },
                             "tensor-level dequantisation factor after the tile scale (NVFP4's S_dec; 1 otherwise)")
      .def_property_readonly("global_amax", [](const QTensor& q) { return q.global_amax; },
                             "the tensor amax S_dec came from (two-level rules; 0 otherwise): the NVFP4 GEMM's "
                             "epilogue alpha is formed from it")
      .def_property_readonly("fmt", [](const QTensor& q) { return q.fmt; })
      .def_property_readonly("tile", [](const QTensor& q) { return py::make_tuple(q.tile.rows, q.tile.cols); })
      .def_property_readonly("rule", [](const QTensor& q) { return q.rule; })
      .def_property_readonly("rule_spec", [](const QTensor& q) { return rule_dict(rule_of(q)); })
      .def_property_readonly("shape", [](const QTensor& q) { return py::make_tuple(q.rows, q.cols); })
      .def("dequantize",
           [](const QTensor& q) {
             validate_qtensor(q, "q");  // before allocating the result
             py::array_t<double> out(std::vector<py::ssize_t>{static_cast<py::ssize_t>(q.rows), static_cast<py::ssize_t>(q.cols)});
             double* o = out.mutable_data();
             {
               py::gil_scoped_release release;
               dequantize_into(q, o);  // straight into the array, in parallel: no second buffer and copy
             }
             return out;
           },
           "exact values element * scale as float64 (rows x cols)")
      .def_static("from_parts", &from_parts, py::arg("bits"), py::arg("scales"), py::arg("fmt"), py::arg("tile"),
                  py::arg("rule"), py::kw_only(), py::arg("allow_nonfinite") = false, py::arg("global_scale") = 1.0f,
                  py::arg("global_amax") = 0.0f)
      .def("__repr__", [](const QTensor& q) {
        return "QTensor(shape=(" + std::to_string(q.rows) + ", " + std::to_string(q.cols) + "), fmt='" + q.fmt +
               "', tile=(" + std::to_string(q.tile.rows) + ", " + std::to_string(q.tile.cols) + "), rule='" + q.rule + "')";
      });

  m.def("quantize", &quantize_py, py::arg("x"), py::arg("tile"), py::arg("fmt"), py::arg("rule"),
        py::arg("rbits") = py::none(), py::arg("width") = 8);
  m.def("quantize_into", &quantize_into_py, py::arg("x"), py::arg("tile"), py::arg("fmt"), py::arg("rule"),
        py::arg("bits"), py::arg("scales"));
  m.def("retile", [](const QTensor& q, const py::object& tile) {
    const Tile t = tile_from_py(tile);
    py::gil_scoped_release release;
    return retile(q, t);
  }, py::arg("q"), py::arg("tile"));
  m.def("scale_rules", &scale_rule_names);
  m.def("scale_rule", [](const py::object& rule) { return rule_dict(rule_from_py(rule)); }, py::arg("rule"));
});

}  // namespace
}  // namespace fp8lab::bindings

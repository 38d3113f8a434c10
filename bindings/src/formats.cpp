// fp8lab._core: formats — encode, decode, format_info, formats, thread count.
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>

#include "arrays.hpp"
#include "common/buffer_pool.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "formats/fnuz.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

// `out`, when given, is the caller's array, already checked by formats.py (_args.out_array);
// these checks guard a direct _core call.
py::array out_or_new(const py::object& out, const py::dtype& dtype, const py::array& like) {
  if (out.is_none()) return py::array(dtype, shape_of(like));
  auto o = py::reinterpret_borrow<py::array>(out);
  if (!py::isinstance<py::array>(out) || !has_dtype(o, dtype) || o.size() != like.size() ||
      !(o.flags() & py::array::c_style) || !o.writeable())
    throw py::value_error("out: expected a writeable C-contiguous " + py::str(dtype).cast<std::string>() + " array of " +
                          std::to_string(like.size()) + " elements");
  return o;
}

py::array encode_py(const py::object& x, const std::string& fmt_name, const std::string& rounding,
                    const std::string& overflow, std::uint64_t seed, bool flush_subnormals, const py::object& out_obj) {
  const Format& fmt = format_by_name(fmt_name);
  EncodeOptions opt;
  opt.rounding = rounding_by_name(rounding);
  opt.overflow = overflow_by_name(overflow);
  opt.seed = seed;
  opt.flush_subnormals = flush_subnormals;
  py::array in = require_float(x, "x");
  py::array out = out_or_new(out_obj, storage_dtype(fmt), in);
  const auto n = static_cast<std::size_t>(in.size());
  {
    py::gil_scoped_release release;
    if (is_float32(in)) encode_array(static_cast<const float*>(in.data()), n, fmt, opt, out.mutable_data());
    else encode_array(static_cast<const double*>(in.data()), n, fmt, opt, out.mutable_data());
  }
  return out;
}

// The index of the first pattern of p[0, n) at or above `limit`, or n: a block's maximum first
// (a loop that vectorises), the offending block searched only.
template <class T>
std::size_t first_at_or_above(const T* p, std::size_t n, std::uint32_t limit) {
  constexpr std::size_t kBlock = 4096;
  for (std::size_t b0 = 0; b0 < n; b0 += kBlock) {
    const std::size_t b1 = std::min(n, b0 + kBlock);
    T high = 0;
    for (std::size_t i = b0; i < b1; ++i) high = std::max(high, p[i]);
    if (high < limit) continue;
    for (std::size_t i = b0; i < b1; ++i)
      if (p[i] >= limit) return i;
  }
  return n;
}

// float32 holds every value of fmt exactly (mantissa and exponent range within float32's).
bool exact_in_float32(const Format& f) {
  return f.mantissa_bits <= 23 && f.max_finite() <= 0x1.fffffep127 && f.min_positive() >= 0x1p-149;
}

py::array decode_py(const py::object& bits, const std::string& fmt_name, bool to_float32, const py::object& out_obj) {
  const Format& fmt = format_by_name(fmt_name);
  py::array in = py::array::ensure(bits);
  if (!in) throw py::type_error("bits: expected a numpy array of unsigned integers");
  py::dtype want = storage_dtype(fmt);
  const std::string given = dtype_name(in);
  in = native_order(in);
  if (!has_dtype(in, want))
    throw py::type_error("bits: format " + fmt.name + " is stored as " + py::str(want).cast<std::string>() +
                         ", got dtype " + given);
  if (to_float32 && !exact_in_float32(fmt))
    throw py::value_error("dtype: float32 cannot hold every value of " + fmt.name + " exactly; use float64");
  in = py::array::ensure(in, py::array::c_style);
  const auto n = static_cast<std::size_t>(in.size());
  // Reject stray high bits before decoding so the error names the first offending element.
  if (fmt.total_bits() < fmt.storage_bits()) {
    const std::uint32_t limit = 1u << fmt.total_bits();
    std::size_t i;
    {
      py::gil_scoped_release release;
      i = fmt.storage_bits() == 8 ? first_at_or_above(static_cast<const std::uint8_t*>(in.data()), n, limit)
                                  : first_at_or_above(static_cast<const std::uint16_t*>(in.data()), n, limit);
    }
    if (i != n) {
      const std::uint32_t b = fmt.storage_bits() == 8 ? static_cast<const std::uint8_t*>(in.data())[i]
                                                      : static_cast<const std::uint16_t*>(in.data())[i];
      throw py::value_error("bits: element " + std::to_string(i) + " = " + std::to_string(b) + " does not fit the " +
                            std::to_string(fmt.total_bits()) + "-bit format " + fmt.name);
    }
  }
  py::array out = out_or_new(out_obj, to_float32 ? py::dtype::of<float>() : py::dtype::of<double>(), in);
  {
    py::gil_scoped_release release;
    if (to_float32) decode_array(in.data(), n, fmt, static_cast<float*>(out.mutable_data()));
    else decode_array(in.data(), n, fmt, static_cast<double*>(out.mutable_data()));
  }
  return out;
}

// The row's declared fields (format_schema()) and the facts derived from them.
py::dict format_info_py(const std::string& fmt_name) {
  const Format& f = format_by_name(fmt_name);
  py::dict d = spec_to_dict(f, format_schema());
  d["signed"] = f.is_signed;  // the key before the row had a schema (golden/ops/cast.py reads it)
  d["total_bits"] = f.total_bits();
  d["storage_bits"] = f.storage_bits();
  d["has_inf"] = f.has_inf();
  d["has_nan"] = f.has_nan();
  d["has_zero"] = f.has_zero();
  d["has_negative_zero"] = f.has_negative_zero();
  d["has_subnormals"] = f.has_subnormals();
  d["max_finite"] = f.max_finite();
  d["min_normal"] = f.min_normal();
  d["min_positive"] = f.min_positive();
  d["min_normal_exponent"] = f.min_normal_exponent();
  d["max_exponent"] = f.max_exponent();
  if (f.has_nan()) d["nan_bits"] = f.canonical_nan();
  return d;
}

// OCP <-> FNUZ on uint8 patterns (formats/fnuz.hpp); the scale is Python's (times or over 2).
py::array ocp_fnuz_py(const py::array& bits, const std::string& from_name, bool to_fnuz, const std::string& overflow) {
  const Format& from = format_by_name(from_name);
  if (to_fnuz == (from.nan_encoding == NanEncoding::NegativeZero))
    throw py::value_error("fmt: '" + from.name + "' is not an " + (to_fnuz ? "OCP" : "FNUZ") + " format; " +
                          (to_fnuz ? "ocp_to_fnuz takes e4m3 or e5m2" : "fnuz_to_ocp takes e4m3fnuz or e5m2fnuz"));
  const Format& to = fnuz_twin(from);
  EncodeOptions opt;
  opt.overflow = overflow_by_name(overflow);
  py::array in = py::array::ensure(bits, py::array::c_style);
  py::array out(py::dtype("uint8"), shape_of(in));
  const auto* src = static_cast<const std::uint8_t*>(in.data());
  auto* dst = static_cast<std::uint8_t*>(out.mutable_data());
  const auto n = static_cast<std::size_t>(in.size());
  if (to_fnuz) ocp_to_fnuz_array(src, n, from, to, dst);
  else fnuz_to_ocp_array(src, n, from, to, opt, dst);
  return out;
}

Registration formats_registration("formats", {}, [](py::module_& m) {
  m.def("formats", &format_names, "Names of the built-in formats (any eXmY is accepted as well).");
  m.def("format_rows", [] {
    py::list rows;
    for (const Format& f : format_rows()) rows.append(spec_to_dict(f, format_schema()));
    return rows;
  }, "Every row of the format table as its declared fields (name, layout, NaN encoding, ml_dtypes, source).");
  m.def("rounding_modes", &rounding_names);
  m.def("overflow_modes", &overflow_names);
  m.def("encode", &encode_py, py::arg("x"), py::arg("fmt"), py::arg("rounding") = "nearest_even",
        py::arg("overflow") = "saturate", py::arg("seed") = 0, py::arg("flush_subnormals") = false,
        py::arg("out") = py::none());
  m.def("decode", &decode_py, py::arg("bits"), py::arg("fmt"), py::arg("float32") = false, py::arg("out") = py::none());
  m.def("ocp_to_fnuz", [](const py::array& bits, const std::string& fmt) { return ocp_fnuz_py(bits, fmt, true, "saturate"); },
        py::arg("bits"), py::arg("fmt"));
  m.def("fnuz_to_ocp", [](const py::array& bits, const std::string& fmt, const std::string& overflow) {
    return ocp_fnuz_py(bits, fmt, false, overflow);
  }, py::arg("bits"), py::arg("fmt"), py::arg("overflow"));
  m.def("format_info", &format_info_py, py::arg("fmt"));
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("num_threads", &num_threads);
  m.def("buffer_cache_info", [] {
    const BufferPoolStats s = buffer_pool_stats();
    py::dict d;
    d["cached_bytes"] = s.cached_bytes;
    d["cached_buffers"] = s.cached_buffers;
    d["reused"] = s.reused;
    d["allocated"] = s.allocated;
    return d;
  });
  m.def("release_buffer_cache", &release_cached_buffers);
});

}  // namespace
}  // namespace fp8lab::bindings

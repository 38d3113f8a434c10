// Argument checking shared by every binding: numpy arrays in, with errors that name the argument,
// the value and what was expected (TypeError for a wrong dtype, ValueError for a wrong shape).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "formats/format.hpp"

namespace fp8lab::bindings {

namespace py = pybind11;

// The numpy dtype that holds one value of f (its storage width).
inline py::dtype storage_dtype(const Format& f) {
  switch (f.storage_bits()) {
    case 8: return py::dtype::of<std::uint8_t>();
    case 16: return py::dtype::of<std::uint16_t>();
    default: return py::dtype::of<std::uint32_t>();
  }
}
inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Dtypes are compared as numpy does (PyArray_EquivTypes: same kind, size and byte order), never by
// descriptor identity: np.longlong and int64, a float32 descriptor carrying metadata, or one made
// by newbyteorder('=') are distinct objects of the same type, and `is` refused them.
inline bool same_dtype(const py::dtype& got, const py::dtype& want) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(got.ptr(), want.ptr());
}
inline bool has_dtype(const py::array& a, const py::dtype& want) { return same_dtype(a.dtype(), want); }

// An input array in native byte order: a big-endian '>f4' array holds float32 values all the
// same, so it is read through a byte-swapped copy (values unchanged; only `out=` arrays, which
// are written in place, must be native and are refused otherwise).
inline py::array native_order(const py::array& a) {
  if (a.dtype().byteorder() != '<' && a.dtype().byteorder() != '>') return a;  // '=' native, '|' bytes
  const py::dtype native = a.dtype().attr("newbyteorder")("=");
  if (same_dtype(a.dtype(), native)) return a;  // '<' spelled out on a little-endian machine
  return a.attr("astype")(native);
}

// A C-contiguous array of dtype T (any equivalent dtype, either byte order). Other dtypes raise
// TypeError naming `arg` (no silent casts: a float64 array given where bits are expected is a
// bug in the caller).
template <class T>
py::array_t<T, py::array::c_style> require_dtype(const py::object& obj, const char* arg, const char* expected) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(arg) + ": expected a numpy array of " + expected);
  const py::array native = native_order(a);
  if (!has_dtype(native, py::dtype::of<T>()))
    throw py::type_error(std::string(arg) + ": expected dtype " + expected + ", got " + dtype_name(a));
  return py::array_t<T, py::array::c_style>::ensure(native);
}

// Float input: float32 or float64 (ml_dtypes' bfloat16/float8 arrays should be decoded or cast by
// the caller first); returns which one it is.
inline bool is_float32(const py::array& a) { return has_dtype(a, py::dtype::of<float>()); }
inline bool is_float64(const py::array& a) { return has_dtype(a, py::dtype::of<double>()); }

// A C-contiguous float32 or float64 array in native byte order.
inline py::array require_float(const py::object& obj, const char* arg) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(arg) + ": expected a numpy array of float32 or float64");
  const py::array native = native_order(a);
  if (!is_float32(native) && !is_float64(native))
    throw py::type_error(std::string(arg) + ": expected dtype float32 or float64, got " + dtype_name(a));
  return py::array::ensure(native, py::array::c_style);
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

}  // namespace fp8lab::bindings

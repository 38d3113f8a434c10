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

// A C-contiguous array of exactly dtype T. Accepts any array-like whose dtype is T already; other
// dtypes raise TypeError naming `arg` (no silent casts: a float64 array given where bits are
// expected is a bug in the caller).
template <class T>
py::array_t<T, py::array::c_style> require_dtype(const py::object& obj, const char* arg, const char* expected) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(arg) + ": expected a numpy array of " + expected);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(arg) + ": expected dtype " + expected + ", got " + dtype_name(a));
  return py::array_t<T, py::array::c_style>::ensure(a);
}

// Float input: float32 or float64 (ml_dtypes' bfloat16/float8 arrays should be decoded or cast by
// the caller first); returns which one it is.
inline bool is_float32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
inline bool is_float64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

inline py::array require_float(const py::object& obj, const char* arg) {
  py::array a = py::array::ensure(obj);
  if (!a) throw py::type_error(std::string(arg) + ": expected a numpy array of float32 or float64");
  if (!is_float32(a) && !is_float64(a))
    throw py::type_error(std::string(arg) + ": expected dtype float32 or float64, got " + dtype_name(a));
  return py::array::ensure(a, py::array::c_style);
}

inline std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

}  // namespace fp8lab::bindings

// fp8lab._core: the size-16 random Hadamard transform (gemm/rht.hpp) and stochastic rounding with
// given random bits (quant/stochastic.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>

#include "arrays.hpp"
#include "gemm/rht.hpp"
#include "quant/stochastic.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {
namespace {

py::array_t<float> rht16_py(const py::object& x_obj) {
  const auto x = require_dtype<float>(x_obj, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x: expected a 2-D array, got " + std::to_string(x.ndim()) + " dimensions");
  const auto rows = static_cast<std::size_t>(x.shape(0)), cols = static_cast<std::size_t>(x.shape(1));
  py::array_t<float> out(std::vector<py::ssize_t>{x.shape(0), x.shape(1)});
  const float* in = x.data();
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    rht16(in, rows, cols, o);
  }
  return out;
}

py::array stochastic_round_py(const py::object& x_obj, const std::string& fmt_name, const py::object& rbits_obj, int width) {
  const Format& f = format_by_name(fmt_name);
  const auto x = require_dtype<float>(x_obj, "x", "float32");
  const auto r = require_dtype<std::uint32_t>(rbits_obj, "rbits", "uint32");
  if (shape_of(x) != shape_of(r))
    throw py::value_error("rbits: shape must equal x's (one random word per element)");
  std::vector<std::uint32_t> codes(static_cast<std::size_t>(x.size()));
  round_stochastic_bits(x.data(), r.data(), codes.size(), f, width, codes.data());
  py::array out(storage_dtype(f), shape_of(x));
  auto* dst = static_cast<unsigned char*>(out.mutable_data());
  const int bytes = f.storage_bits() / 8;
  for (std::size_t i = 0; i < codes.size(); ++i) std::memcpy(dst + i * bytes, &codes[i], bytes);  // little endian
  return out;
}

Registration microscale_registration("microscale", {}, [](py::module_& m) {
  m.def("rht16", &rht16_py, py::arg("x"));
  m.def("rht16_signs", [] {
    py::list out;
    for (const int s : te_rht_signs()) out.append(s);
    return out;
  });
  m.def("stochastic_round", &stochastic_round_py, py::arg("x"), py::arg("fmt"), py::arg("rbits"), py::arg("width"));
});

}  // namespace
}  // namespace fp8lab::bindings

// Each bindings/src/*.cpp adds its part of fp8lab._core by defining a Registration at namespace
// scope; module.cpp runs them in (order, name) order. This keeps the areas in separate files
// without a central list to edit.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <string>

namespace fp8lab::bindings {

namespace py = pybind11;

struct Registration {
  // Lower `order` runs first: types other parts use (Format, QTensor) register early.
  Registration(int order, std::string name, std::function<void(py::module_&)> define);
};

}  // namespace fp8lab::bindings

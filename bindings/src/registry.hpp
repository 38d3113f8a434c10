// Each bindings/src/*.cpp adds its part of fp8lab._core by defining a Registration at namespace
// scope; module.cpp runs them so that every part runs after the parts it names in `after` (the
// parts whose classes its signatures use, e.g. "quant" for QTensor), ties broken by name. This
// keeps the areas in separate files without a central list to edit.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <string>
#include <vector>

namespace fp8lab::bindings {

namespace py = pybind11;

struct Registration {
  Registration(std::string name, std::vector<std::string> after, std::function<void(py::module_&)> define);
};

}  // namespace fp8lab::bindings

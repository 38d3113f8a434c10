#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "registry.hpp"

namespace fp8lab::bindings {

namespace {
struct Entry {
  int order;
  std::string name;
  std::function<void(py::module_&)> define;
};
std::vector<Entry>& entries() {
  static std::vector<Entry> all;
  return all;
}
}  // namespace

Registration::Registration(int order, std::string name, std::function<void(py::module_&)> define) {
  entries().push_back({order, std::move(name), std::move(define)});
}

}  // namespace fp8lab::bindings

PYBIND11_MODULE(_core, m) {
  using fp8lab::bindings::entries;
  m.doc() = "fp8lab's C++ emulator (use the fp8lab package, not this module directly)";
  m.attr("__version__") = FP8LAB_VERSION;
  auto& all = entries();
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return std::tie(a.order, a.name) < std::tie(b.order, b.name);
  });
  for (auto& e : all) e.define(m);
}

#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "registry.hpp"

namespace fp8lab::bindings {

namespace {
struct Entry {
  std::string name;
  std::vector<std::string> after;
  std::function<void(py::module_&)> define;
};
std::vector<Entry>& entries() {
  static std::vector<Entry> all;
  return all;
}

// The parts in an order where each follows the parts it names (by name among the ready ones).
std::vector<Entry*> ordered() {
  auto& all = entries();
  std::sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  std::vector<Entry*> out;
  std::vector<bool> done(all.size(), false);
  auto is_done = [&](const std::string& n) {
    for (std::size_t i = 0; i < all.size(); ++i)
      if (all[i].name == n) return static_cast<bool>(done[i]);
    throw std::logic_error("fp8lab._core: a part runs after '" + n + "', which is not registered");
  };
  while (out.size() < all.size()) {
    bool progress = false;
    for (std::size_t i = 0; i < all.size() && !progress; ++i) {
      if (done[i] || !std::all_of(all[i].after.begin(), all[i].after.end(), is_done)) continue;
      done[i] = progress = true;
      out.push_back(&all[i]);
    }
    if (!progress) throw std::logic_error("fp8lab._core: the parts' `after` lists form a cycle");
  }
  return out;
}
}  // namespace

Registration::Registration(std::string name, std::vector<std::string> after, std::function<void(py::module_&)> define) {
  entries().push_back({std::move(name), std::move(after), std::move(define)});
}

}  // namespace fp8lab::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "fp8lab's C++ emulator (use the fp8lab package, not this module directly)";
  m.attr("__version__") = FP8LAB_VERSION;
  for (auto* e : fp8lab::bindings::ordered()) e->define(m);
}

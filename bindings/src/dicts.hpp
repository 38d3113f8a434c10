// A result struct as a Python dict, written as one list of (key, value) pairs: the bindings' one
// struct-to-dict helper (specs with a schema go through specs.hpp's spec_to_dict instead).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <initializer_list>
#include <type_traits>
#include <utility>

namespace fp8lab::bindings {

struct DictItem {
  const char* key;
  pybind11::object value;
  template <class T>
  DictItem(const char* k, T&& v) : key(k) {
    if constexpr (std::is_base_of_v<pybind11::handle, std::decay_t<T>>)
      value = pybind11::reinterpret_borrow<pybind11::object>(v);  // already a Python object
    else
      value = pybind11::cast(std::forward<T>(v));
  }
};

inline pybind11::dict dict_of(std::initializer_list<DictItem> items) {
  pybind11::dict d;
  for (const DictItem& item : items) d[item.key] = item.value;
  return d;
}

}  // namespace fp8lab::bindings

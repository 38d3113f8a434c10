// Python objects <-> the emulator's spec schemas (common/schema.hpp). A spec arrives as a dict (or
// its JSON text) and is read by the spec's declared fields, so no binding repeats a field, a
// default or an enum name, and every spec gets the same strict typing and error vocabulary.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "common/schema.hpp"

namespace fp8lab::bindings {

namespace py = pybind11;

// A JSON value from a Python object: dict (str keys), list/tuple, str, bool, int, float (finite),
// None, and numpy scalars. Anything else is a TypeError naming `where`.
Json json_from_py(py::handle obj, const std::string& where);
// A dict (or JSON text: a str starting with '{') as a JSON object.
Json spec_object_from_py(const py::object& obj, const std::string& where);
py::object py_from_json_text(const std::string& text);

// A spec read strictly by its schema from a dict or JSON text (absent keys keep `base`'s values),
// then validated.
template <class S>
S spec_from_py(const py::object& obj, const schema::Schema<S>& sc, S base = S{}) {
  schema::read_into(base, spec_object_from_py(obj, sc.name), sc);
  if (sc.validate) sc.validate(base);
  return base;
}

template <class S>
py::dict spec_to_dict(const S& s, const schema::Schema<S>& sc) {
  return py_from_json_text(schema::to_json(s, sc)).template cast<py::dict>();
}

// The declared fields of a schema, for Python: [{"key", "kind", "choices", "default", "expected"}].
template <class S>
py::list fields_to_py(const schema::Schema<S>& sc, const S& defaults = S{}) {
  py::list out;
  for (const auto& f : sc.fields) {
    py::dict d;
    d["key"] = f.key;
    d["kind"] = f.kind;
    d["choices"] = py::cast(f.choices);
    d["default"] = py_from_json_text(to_canonical_json(f.write(defaults)));
    d["expected"] = f.expected;
    out.append(d);
  }
  return out;
}

}  // namespace fp8lab::bindings

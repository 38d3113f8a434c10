#include "specs.hpp"

#include <cmath>

#include "gemm/recipe.hpp"
#include "mla/indexer_spec.hpp"
#include "mla/mla_spec.hpp"
#include "moe/router_spec.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {

Json json_from_py(py::handle obj, const std::string& where) {
  Json j;
  if (obj.is_none()) return j;
  if (py::isinstance<py::bool_>(obj)) return schema::bool_json(obj.cast<bool>());
  if (py::isinstance<py::str>(obj)) return schema::string_json(obj.cast<std::string>());
  if (py::isinstance<py::int_>(obj)) return schema::number_json(py::str(obj).cast<std::string>());
  if (py::isinstance<py::float_>(obj)) {
    const double v = obj.cast<double>();
    if (!std::isfinite(v)) schema::fail(where, py::repr(obj).cast<std::string>(), "a finite number");
    return schema::number_json(py::repr(obj).cast<std::string>());
  }
  if (py::isinstance<py::dict>(obj)) {
    j.kind = Json::Kind::Object;
    for (auto item : obj.cast<py::dict>()) {
      if (!py::isinstance<py::str>(item.first))
        throw py::type_error(where + ": keys must be strings, got " + py::repr(item.first).cast<std::string>());
      const std::string key = item.first.cast<std::string>();
      j.members.push_back(JsonMember{key, json_from_py(item.second, where + "." + key)});
    }
    return j;
  }
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    j.kind = Json::Kind::Array;
    std::size_t i = 0;
    for (auto item : obj) j.items.push_back(json_from_py(item, where + "[" + std::to_string(i++) + "]"));
    return j;
  }
  // numpy scalars (np.int64, np.float32, np.bool_): their Python value.
  if (py::hasattr(obj, "dtype") && py::hasattr(obj, "item") && py::len(obj.attr("shape")) == 0)
    return json_from_py(obj.attr("item")(), where);
  throw py::type_error(where + ": expected a JSON value (dict, list, str, bool, int, float, None), got " +
                       py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
}

Json spec_object_from_py(const py::object& obj, const std::string& where) {
  if (py::isinstance<py::str>(obj)) return schema::parse_spec_text(obj.cast<std::string>(), where);
  if (!py::isinstance<py::dict>(obj))
    throw py::type_error(where + ": expected a dict (or its JSON text), got " +
                         py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return json_from_py(obj, where);
}

py::object py_from_json_text(const std::string& text) { return py::module_::import("json").attr("loads")(text); }

namespace {
Registration specs_registration("specs", {}, [](py::module_& m) {
  m.def("spec_fields", [](const std::string& spec) -> py::list {
    if (spec == "gemm") return fields_to_py(gemm_spec_schema());
    if (spec == "scale_rule") return fields_to_py(scale_rule_schema());
    if (spec == "recipe") return fields_to_py(gemm_recipe_schema(), gemm_recipe(kDefaultGemmRecipe));
    if (spec == "router") return fields_to_py(moe::router_spec_schema(), moe::router_recipe("deepseek_v3"));
    if (spec == "mla") return fields_to_py(mla::mla_spec_schema());
    if (spec == "mla.yarn") return fields_to_py(mla::yarn_schema());
    if (spec == "indexer") return fields_to_py(mla::indexer_spec_schema());
    throw py::value_error("spec: unknown value '" + spec +
                          "'; expected one of gemm, scale_rule, recipe, router, mla, mla.yarn, indexer");
  }, py::arg("spec"), "The declared fields of a spec: key, kind, choices, default and what each takes.");
});
}  // namespace

}  // namespace fp8lab::bindings

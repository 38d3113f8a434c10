// fp8lab._core: the build and the machine — which kernel variants were compiled, which one runs
// (common/isa.hpp), and the stage timer behind `fp8lab profile` (common/profile.hpp).
#include <pybind11/stl.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "common/isa.hpp"
#include "common/profile.hpp"
#include "registry.hpp"

namespace fp8lab::bindings {
namespace {

py::dict build_info() {
  py::dict d;
  py::list built, runnable;
  py::dict flags;
  for (const Isa isa : built_isas()) {
    built.append(std::string(isa_name(isa)));
    flags[py::str(std::string(isa_name(isa)))] = std::string(isa_flags(isa));
  }
  for (const Isa isa : runnable_isas()) runnable.append(std::string(isa_name(isa)));
  d["version"] = FP8LAB_VERSION;
  d["variants_built"] = built;
  d["variants_runnable"] = runnable;
  d["variant_flags"] = flags;
  d["cpu"] = std::string(isa_name(active_isa()));  // throws (ValueError) on a bad FP8LAB_CPU
  const char* env = std::getenv("FP8LAB_CPU");
  d["cpu_override"] = env && *env ? py::object(py::str(env)) : py::object(py::none());
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#endif
  return d;
}

void set_cpu(const py::object& name) {
  if (name.is_none()) return set_isa(std::nullopt);
  if (!py::isinstance<py::str>(name))
    throw py::type_error("cpu: expected a variant name (portable, avx2, avx512) or None, got " +
                         py::str(py::type::of(name).attr("__name__")).cast<std::string>());
  set_isa(isa_by_name(name.cast<std::string>(), "cpu"));
}

py::dict stage_seconds() {
  const StageTotals t = stage_totals();
  py::dict d;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    py::dict s;
    s["seconds"] = t.seconds[i];
    s["count"] = t.count[i];
    d[py::str(std::string(stage_name(static_cast<Stage>(i))))] = s;
  }
  return d;
}

Registration system_registration("system", {}, [](py::module_& m) {
  m.def("build_info", &build_info);
  m.def("set_cpu", &set_cpu, py::arg("cpu"));
  m.def("profiling", &profiling);
  m.def("set_profiling", &set_profiling, py::arg("on"));
  m.def("stage_seconds", &stage_seconds);
  m.def("reset_stage_seconds", &reset_stage_totals);
});

}  // namespace
}  // namespace fp8lab::bindings

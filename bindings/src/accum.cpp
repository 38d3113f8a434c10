// fp8lab._core: accum — single tensor-core instructions (fused_dot_add) batched over leading
// dimensions, and the preset table.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "accum/tensor_core.hpp"
#include "arrays.hpp"
#include "common/parallel.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"
#include "formats/representable.hpp"
#include "gemm/dot_batch.hpp"
#include "registry.hpp"
#include "specs.hpp"

namespace fp8lab::bindings {
namespace {

// "[i, j, k]" for flat index `flat` of an array of shape `shape`.
std::string index_text(std::size_t flat, const std::vector<py::ssize_t>& shape) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    const auto extent = static_cast<std::size_t>(shape[d]);
    idx[d] = extent == 0 ? 0 : flat % extent;
    flat = extent == 0 ? 0 : flat / extent;
  }
  std::string out = "[";
  for (std::size_t d = 0; d < idx.size(); ++d) out += (d ? ", " : "") + std::to_string(idx[d]);
  return out + "]";
}

std::string repr(double x) { return py::repr(py::float_(x)).cast<std::string>(); }

// A float32/float64 array's values as float32: float32 data in place (no copy); float64
// converted in parallel, the first element that is not a float32 value (NaN aside) noted in
// not_float32 (n when none). Call without the GIL (arr's dtype is checked already).
struct Floats {
  const float* data;
  std::vector<float> owned;
  std::size_t not_float32;
};
Floats as_floats(const py::array& arr, bool f32) {
  const auto n = static_cast<std::size_t>(arr.size());
  if (f32) return {static_cast<const float*>(arr.data()), {}, n};
  const auto* x = static_cast<const double*>(arr.data());
  Floats out{nullptr, std::vector<float>(n), n};
  float* v = out.owned.data();
  constexpr std::size_t kGrain = 1 << 16;
  std::vector<std::size_t> first((n + kGrain - 1) / kGrain, n);
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    bool any = false;
    for (std::size_t i = begin; i < end; ++i) {
      v[i] = static_cast<float>(x[i]);
      any |= !(static_cast<double>(v[i]) == x[i] || x[i] != x[i]);
    }
    if (any)
      for (std::size_t i = begin; i < end && first[begin / kGrain] == n; ++i)
        if (!(static_cast<double>(v[i]) == x[i] || x[i] != x[i])) first[begin / kGrain] = i;
  });
  for (const std::size_t i : first) out.not_float32 = std::min(out.not_float32, i);
  out.data = v;
  return out;
}

// ValueError: element `bad` of `arr` (argument `arg`) is not a value of fmt.
[[noreturn]] void not_representable(const py::array& arr, const char* arg, std::size_t bad, const Format& fmt) {
  const double x = is_float32(arr) ? static_cast<double>(static_cast<const float*>(arr.data())[bad])
                                   : static_cast<const double*>(arr.data())[bad];
  throw py::value_error(std::string(arg) + ": element " + index_text(bad, shape_of(arr)) + " = " + repr(x) +
                        " is not exactly representable in " + fmt.name + " (round it first, e.g. fp8lab.decode(fp8lab.encode(x, '" +
                        fmt.name + "'), '" + fmt.name + "'))");
}

// The values of a float32/float64 array as float32, each exactly representable in `fmt`
// (NaN allowed where the format has one, infinities where it has them). The first element that
// is not raises ValueError naming `arg`, its index, its value and the format. The checks run
// in bulk without the GIL (formats/representable's vectorised test, on the parallel_for threads).
std::vector<float> operand_values(const py::array& arr, const char* arg, const Format& fmt) {
  const auto n = static_cast<std::size_t>(arr.size());
  const bool f32 = is_float32(arr);
  std::vector<float> v;
  std::size_t bad = n;
  {
    py::gil_scoped_release release;
    Floats f = as_floats(arr, f32);
    v = f32 ? std::vector<float>(f.data, f.data + n) : std::move(f.owned);
    bad = std::min(f.not_float32, RepresentableTest(fmt).first_bad_parallel(v.data(), f.not_float32));
  }
  if (bad != n) not_representable(arr, arg, bad, fmt);
  return v;
}

std::string shape_text(const std::vector<py::ssize_t>& s) {
  std::string out = "(";
  for (std::size_t d = 0; d < s.size(); ++d) out += (d ? ", " : "") + std::to_string(s[d]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// The preset with the same instruction as `m` for input format `fmt`, for the error message.
std::string sibling_hint(const TensorCoreModel& m, const std::string& fmt) {
  for (const TensorCoreModel& o : tensor_core_presets()) {
    if (std::string(o.input_format) == fmt && o.k == m.k && o.block == m.block &&
        o.alignment_frac_bits == m.alignment_frac_bits && o.exact_sum == m.exact_sum &&
        o.scale_block == m.scale_block)
      return "; for " + fmt + " inputs use instruction='" + (o.alias[0] ? o.alias : o.name) + "'";
  }
  return "";
}

py::array_t<float> dot_py(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
                          const std::string& instruction, const std::string& fmt_name, const py::object& sa_obj,
                          const py::object& sb_obj) {
  const TensorCoreModel& m = tensor_core_by_name(instruction);
  const Format& fmt = format_by_name(m.input_format);
  if (!fmt_name.empty() && format_by_name(fmt_name).name != fmt.name)
    throw py::value_error("fmt: instruction '" + instruction + "' multiplies " + fmt.name + " values, not " +
                          fmt_name + sibling_hint(m, format_by_name(fmt_name).name));
  py::array a = require_float(a_obj, "a");
  py::array b = require_float(b_obj, "b");
  const auto sa_shape = shape_of(a), sb_shape = shape_of(b);
  const auto k = static_cast<py::ssize_t>(m.k);
  if (a.ndim() < 1 || sa_shape.back() != k)
    throw py::value_error("a: the last dimension must be the instruction's k = " + std::to_string(k) + " (" +
                          instruction + "), got shape " + shape_text(sa_shape));
  if (sb_shape != sa_shape)
    throw py::value_error("b: shape " + shape_text(sb_shape) + " differs from a's " + shape_text(sa_shape));
  const std::vector<py::ssize_t> out_shape(sa_shape.begin(), sa_shape.end() - 1);
  const std::size_t batch = static_cast<std::size_t>(a.size()) / static_cast<std::size_t>(k);

  // C: None (zeros), a scalar, or an array of the batch shape; float32 values only (FP16 values
  // when the instruction accumulates in FP16). Checked without the GIL; the first offender raises.
  std::vector<float> c(batch, 0.0f);
  if (!c_obj.is_none()) {
    py::array ca = require_float(c_obj, "c");
    const auto cs = shape_of(ca);
    if (!(ca.ndim() == 0 || cs == out_shape))
      throw py::value_error("c: expected shape " + shape_text(out_shape) + " (a's leading dimensions) or a scalar, got " +
                            shape_text(cs));
    const bool f32 = is_float32(ca), scalar = ca.ndim() == 0, fp16 = m.accumulator == AccumulatorFormat::Fp16;
    const Format& half = format_by_name("fp16");
    std::size_t bad = batch;
    bool bad_fp16 = false;
    {
      py::gil_scoped_release release;
      for (std::size_t i = 0; i < batch && bad == batch; ++i) {
        const std::size_t j = scalar ? 0 : i;
        const double x = f32 ? static_cast<double>(static_cast<const float*>(ca.data())[j])
                             : static_cast<const double*>(ca.data())[j];
        c[i] = static_cast<float>(x);
        if (std::isnan(x)) continue;
        if (static_cast<double>(c[i]) != x || (fp16 && round_to_format(x, half) != x)) {
          bad = j;
          bad_fp16 = static_cast<double>(c[i]) == x;
        }
      }
    }
    if (bad != batch) {
      const double x = f32 ? static_cast<double>(static_cast<const float*>(ca.data())[bad]) : static_cast<const double*>(ca.data())[bad];
      if (!bad_fp16)
        throw py::value_error("c: element " + index_text(bad, cs) + " = " + repr(x) +
                              " is not a float32 value (the accumulator is FP32); cast c to float32 first");
      throw py::value_error("c: element " + index_text(bad, cs) + " = " + repr(x) + " is not an fp16 value (instruction '" +
                            instruction + "' accumulates in FP16)");
    }
  }
  py::array_t<float> out(out_shape);
  float* o = out.mutable_data();
  if (m.scale_block == 0) {
    if (!sa_obj.is_none() || !sb_obj.is_none())
      throw py::value_error("scale_a: instruction '" + instruction + "' takes no block scales");
    // Operands in place (float32) or converted once (float64); the representability check runs
    // inside the batch, chunk by chunk with the kernel (gemm/dot_batch), not in passes of its own.
    const bool a32 = is_float32(a), b32 = is_float32(b);
    const std::size_t n = batch * static_cast<std::size_t>(k);
    std::size_t bad_a = n, bad_b = n;
    {
      py::gil_scoped_release release;
      const Floats av = as_floats(a, a32), bv = as_floats(b, b32);
      const DotBatchCheck check = fused_dot_add_batch_checked(av.data, bv.data, c.data(), batch, m, o);
      bad_a = std::min(av.not_float32, check.a);
      bad_b = std::min(bv.not_float32, check.b);
    }
    if (bad_a != n) not_representable(a, "a", bad_a, fmt);
    if (bad_b != n) not_representable(b, "b", bad_b, format_by_name(b_input_format(m)));
    return out;
  }
  // Block-scaled presets: one scale per scale_block elements of a and of b, as values of the
  // preset's scale format (float arrays) or, for UE8M0, as unbiased exponents (integer arrays).
  const std::vector<float> av = operand_values(a, "a", fmt);
  const std::vector<float> bv = operand_values(b, "b", format_by_name(b_input_format(m)));
  std::vector<float> sa, sb;
  {
    const Format& sf = format_by_name(m.scale_format);
    const auto nblk = static_cast<py::ssize_t>(m.k / m.scale_block);
    std::vector<py::ssize_t> want = out_shape;
    want.push_back(nblk);
    auto read_scales = [&](const py::object& obj, const char* arg) {
      if (obj.is_none())
        throw py::value_error(std::string(arg) + ": instruction '" + instruction + "' is block-scaled; give its " +
                              sf.name + " scales (shape " + shape_text(want) + "): values as a float array" +
                              (sf.mantissa_bits == 0 ? ", or unbiased exponents as an int32 array" : ""));
      py::array arr = py::array::ensure(obj);
      if (arr && arr.dtype().kind() == 'i') {
        if (sf.mantissa_bits != 0)
          throw py::type_error(std::string(arg) + ": instruction '" + instruction + "' takes " + sf.name +
                               " scale values (a float array), not exponents");
        auto s = require_dtype<std::int32_t>(obj, arg, "int32");
        if (shape_of(s) != want)
          throw py::value_error(std::string(arg) + ": expected shape " + shape_text(want) + ", got " +
                                shape_text(shape_of(s)));
        std::vector<float> v(static_cast<std::size_t>(s.size()));
        for (std::size_t i = 0; i < v.size(); ++i) {
          const int e = s.data()[i];
          if (e < -127 || e > 127)
            throw py::value_error(std::string(arg) + ": element " + index_text(i, want) + " = " + std::to_string(e) +
                                  " is outside the UE8M0 exponent range [-127, 127]");
          v[i] = std::ldexp(1.0f, e);
        }
        return v;
      }
      py::array f = require_float(obj, arg);
      if (shape_of(f) != want)
        throw py::value_error(std::string(arg) + ": expected shape " + shape_text(want) + ", got " +
                              shape_text(shape_of(f)));
      return operand_values(f, arg, sf);
    };
    sa = read_scales(sa_obj, "scale_a");
    sb = read_scales(sb_obj, "scale_b");
  }

  {
    py::gil_scoped_release release;
    const auto ku = static_cast<std::size_t>(m.k);
    const std::size_t nblk = ku / static_cast<std::size_t>(m.scale_block);
    parallel_for(batch, 4096, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        o[i] = fused_dot_add_scaled(&av[i * ku], &bv[i * ku], &sa[i * nblk], &sb[i * nblk], c[i], m);
    });
  }
  return out;
}

py::list presets_py() {
  py::list out;
  for (const TensorCoreModel& m : tensor_core_presets()) out.append(spec_to_dict(m, tensor_core_schema()));
  return out;
}

Registration accum_registration("accum", {}, [](py::module_& m) {
  m.def("tensor_core_dot", &dot_py, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("instruction"),
        py::arg("fmt"), py::arg("scale_a"), py::arg("scale_b"));
  m.def("tensor_core_presets", &presets_py);
  m.def("tensor_core_names", &tensor_core_names);
});

}  // namespace
}  // namespace fp8lab::bindings

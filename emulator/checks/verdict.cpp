#include "checks/verdict.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace fp8lab {

namespace {

std::vector<std::size_t> unravel(std::size_t index, const std::vector<std::size_t>& shape) {
  if (shape.empty()) return {index};
  std::vector<std::size_t> c(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    c[d] = shape[d] ? index % shape[d] : 0;
    index = shape[d] ? index / shape[d] : 0;
  }
  return c;
}

std::string hex_and_decimal(double v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%a (%.9g)", v, v);
  return buf;
}

std::string coordinate_text(const std::vector<std::size_t>& c) {
  std::string s = "[";
  for (std::size_t i = 0; i < c.size(); ++i) s += (i ? ", " : "") + std::to_string(c[i]);
  return s + "]";
}

void json_number(std::ostringstream& out, double v) {
  if (std::isnan(v)) out << "\"nan\"";
  else if (std::isinf(v)) out << (v > 0 ? "\"inf\"" : "\"-inf\"");
  else {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    out << buf;
  }
}

void json_offender(std::ostringstream& out, const std::optional<Offender>& o) {
  if (!o) {
    out << "null";
    return;
  }
  out << "{\"bound\":";
  json_number(out, o->bound);
  out << ",\"coordinate\":[";
  for (std::size_t i = 0; i < o->coordinate.size(); ++i) out << (i ? "," : "") << o->coordinate[i];
  out << "],\"exact\":";
  json_number(out, o->exact);
  out << ",\"expected\":";
  json_number(out, o->expected);
  out << ",\"got\":";
  json_number(out, o->got);
  out << ",\"index\":" << o->index << "}";
}

}  // namespace

std::string_view verdict_kind_name(VerdictKind k) {
  switch (k) {
    case VerdictKind::BitIdentical: return "bit-identical";
    case VerdictKind::WithinBound: return "within-bound";
    case VerdictKind::Violation: return "violation";
  }
  return "?";
}

double ulp_distance(double a, double b, int mantissa_bits, int min_normal_exponent) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : std::numeric_limits<double>::infinity();
  if (a == b) return 0;
  if (std::isinf(a) || std::isinf(b)) return std::numeric_limits<double>::infinity();
  // Distance measured in ULPs of the larger magnitude's binade (exact for neighbours in the same
  // binade; a conservative count across binades).
  const double m = std::max(std::fabs(a), std::fabs(b));
  const int e = std::max(std::ilogb(m), min_normal_exponent);
  return std::fabs(a - b) / std::ldexp(1.0, e - mantissa_bits);
}

Verdict compare(const CompareInputs& in) {
  Verdict v;
  v.count = in.count;
  v.what = in.what;
  for (std::size_t i = 0; i < in.count; ++i) {
    const double g = in.got[i], x = in.expected[i];
    const bool same = std::bit_cast<std::uint64_t>(g) == std::bit_cast<std::uint64_t>(x) ||
                      (std::isnan(g) && std::isnan(x));
    const double exact = in.exact ? in.exact[i] : x;
    const double err = std::fabs(g - exact);
    if (exact != 0 && std::isfinite(exact))
      v.max_rel_error = std::isfinite(g) ? std::max(v.max_rel_error, err / std::fabs(exact))
                                         : std::numeric_limits<double>::infinity();
    if (in.bound) {
      const double ratio = in.bound[i] > 0 ? err / in.bound[i] : (err == 0 ? 0 : std::numeric_limits<double>::infinity());
      if (!std::isnan(ratio)) v.max_bound_ratio = std::max(v.max_bound_ratio, ratio);
    }
    if (same) continue;
    ++v.differing;
    v.max_ulp = std::max(v.max_ulp, ulp_distance(g, x, in.output_mantissa_bits, in.output_min_exponent));
    Offender o{i, unravel(i, in.shape), g, x, exact, in.bound ? in.bound[i] : 0.0};
    if (!v.first_difference) v.first_difference = o;
    const bool within = in.bound && in.exact && std::isfinite(g) && err <= in.bound[i];
    if (!within) {
      ++v.violations;
      if (!v.first_violation) v.first_violation = o;
      if (v.first_violations.size() < kMaxOffenders) v.first_violations.push_back(o);
    }
  }
  v.kind = v.violations ? VerdictKind::Violation : v.differing ? VerdictKind::WithinBound : VerdictKind::BitIdentical;
  return v;
}

std::string Verdict::summary() const {
  std::ostringstream out;
  out << (what.empty() ? "" : what + ": ") << verdict_kind_name(kind);
  switch (kind) {
    case VerdictKind::BitIdentical: out << " (" << count << " elements)"; break;
    case VerdictKind::WithinBound:
      out << " (" << differing << " of " << count << " elements differ; max " << max_ulp << " ULP, max rel. error "
          << max_rel_error << ", max error/bound " << max_bound_ratio << ")";
      break;
    case VerdictKind::Violation: {
      const Offender& o = *first_violation;
      out << " at " << coordinate_text(o.coordinate) << ": got " << hex_and_decimal(o.got) << ", expected "
          << hex_and_decimal(o.expected);
      if (o.bound > 0) out << ", exact " << hex_and_decimal(o.exact) << ", bound " << o.bound;
      out << " (" << violations << " violations, " << differing << " of " << count << " elements differ)";
      break;
    }
  }
  return out.str();
}

std::string Verdict::to_json() const {
  std::ostringstream out;
  out << "{\"count\":" << count << ",\"differing\":" << differing << ",\"first_difference\":";
  json_offender(out, first_difference);
  out << ",\"first_violation\":";
  json_offender(out, first_violation);
  out << ",\"first_violations\":[";
  for (std::size_t i = 0; i < first_violations.size(); ++i) {
    if (i) out << ",";
    json_offender(out, first_violations[i]);
  }
  out << "]";
  out << ",\"kind\":\"" << verdict_kind_name(kind) << "\",\"max_bound_ratio\":";
  json_number(out, max_bound_ratio);
  out << ",\"max_rel_error\":";
  json_number(out, max_rel_error);
  out << ",\"max_ulp\":";
  json_number(out, max_ulp);
  out << ",\"violations\":" << violations << ",\"what\":\"" << what << "\"}";
  return out.str();
}

}  // namespace fp8lab

// Renders a RoutingVerdict: the one-line summary and its canonical JSON (keys sorted).
#include <cmath>
#include <cstdio>
#include <string>

#include "moe/routing_verdict.hpp"

namespace fp8lab::moe {

std::string RoutingVerdict::summary() const {
  std::string s = what + ": " + std::string(verdict_kind_name(kind)) + " (" + std::to_string(tokens) + " tokens: " +
                  std::to_string(identical_tokens) + " identical, " + std::to_string(weight_only_tokens) +
                  " weights within bound, " + std::to_string(reordered_tokens) + " reordered, " +
                  std::to_string(tie_swapped_tokens) + " near-tie swaps, " + std::to_string(violation_tokens) +
                  " violations)";
  if (!violations.empty()) s += "; first violation: token " + std::to_string(violations[0].token) + ": " + violations[0].what;
  else if (!swaps.empty()) s += "; first swap: token " + std::to_string(swaps[0].token);
  return s;
}

namespace {
std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}
std::string json_ids(const std::vector<std::int32_t>& v) {
  std::string o = "[";
  for (std::size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + std::to_string(v[i]);
  return o + "]";
}
std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

std::string RoutingVerdict::to_json() const {
  std::string j = "{";
  j += "\"identical_tokens\": " + std::to_string(identical_tokens);
  j += ", \"kind\": " + json_str(std::string(verdict_kind_name(kind)));
  j += ", \"max_weight_bound_ratio\": " + json_num(max_weight_bound_ratio);
  j += ", \"reordered_tokens\": " + std::to_string(reordered_tokens);
  j += ", \"swaps\": [";
  for (std::size_t i = 0; i < swaps.size(); ++i) {
    const TieSwap& s = swaps[i];
    j += std::string(i ? ", " : "") + "{\"bound\": " + json_num(s.bound) + ", \"gap\": " + json_num(s.gap) +
         ", \"kernel_only\": " + json_ids(s.kernel_only) + ", \"reference_only\": " + json_ids(s.reference_only) +
         ", \"token\": " + std::to_string(s.token) + "}";
  }
  j += "], \"tie_swapped_tokens\": " + std::to_string(tie_swapped_tokens);
  j += ", \"tokens\": " + std::to_string(tokens);
  j += ", \"violation_tokens\": " + std::to_string(violation_tokens);
  j += ", \"violations\": [";
  for (std::size_t i = 0; i < violations.size(); ++i)
    j += std::string(i ? ", " : "") + "{\"token\": " + std::to_string(violations[i].token) + ", \"what\": " +
         json_str(violations[i].what) + "}";
  j += "], \"weight_only_tokens\": " + std::to_string(weight_only_tokens);
  j += ", \"what\": " + json_str(what) + "}";
  return j;
}

}  // namespace fp8lab::moe

#pragma once
// How the routing verdicts print a number in their reasons: hex for the exact bits a reviewer
// compares, decimal beside it for reading.
#include <cstdio>
#include <string>

namespace fp8lab::moe::detail {

inline std::string hexnum(double v) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%a (%.9g)", v, v);
  return buf;
}

inline std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace fp8lab::moe::detail

#include "common/schema.hpp"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace fp8lab::schema {

void fail(std::string_view where, std::string_view value, std::string_view expected) {
  throw std::invalid_argument(std::string(where) + " = " + std::string(value) + ": expected " + std::string(expected));
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

Json number_json(std::string literal) {
  Json j;
  j.kind = Json::Kind::Number;
  j.text = std::move(literal);
  return j;
}
Json string_json(std::string text) {
  Json j;
  j.kind = Json::Kind::String;
  j.text = std::move(text);
  return j;
}
Json bool_json(bool b) {
  Json j;
  j.kind = Json::Kind::Bool;
  j.boolean = b;
  return j;
}

// A double always reads back as a float (4.0, not 4), so a spec that passes through Python's json
// keeps float fields floats and its canonical text is the same whichever way it went.
std::string g17(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  if (std::isfinite(v) && s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string range_text(long long lo, long long hi) {
  // Appended in order rather than "[" + to_string(lo) + ...: GCC 12's -Wrestrict misreads the
  // latter's insert at position 0 (a false warning in every build).
  std::string s = "[";
  s += std::to_string(lo);
  s += ", ";
  s += std::to_string(hi);
  s += "]";
  return s;
}

namespace {
std::string shown(const Json& v) { return to_canonical_json(v); }
}  // namespace

long long read_integer(const Json& v, const std::string& where, long long lo, long long hi) {
  const std::string expected = "an integer in " + range_text(lo, hi);
  if (!v.is_number()) fail(where, shown(v), expected);
  // JSON integers only: no fraction or exponent (128.0 is a float, as in Python's json).
  const std::string& t = v.text;
  if (t.find_first_of(".eE") != std::string::npos) fail(where, t, expected);
  errno = 0;
  char* end = nullptr;
  const long long n = std::strtoll(t.c_str(), &end, 10);
  if (errno == ERANGE || end != t.c_str() + t.size() || n < lo || n > hi) fail(where, t, expected);
  return n;
}

double read_number(const Json& v, const std::string& where) {
  if (!v.is_number()) fail(where, shown(v), "a number");
  return std::strtod(v.text.c_str(), nullptr);  // the literal passed the strict JSON grammar
}

bool read_bool(const Json& v, const std::string& where) {
  if (v.kind != Json::Kind::Bool) fail(where, shown(v), "true or false (a JSON boolean, not a string or number)");
  return v.boolean;
}

const std::string& read_string(const Json& v, const std::string& where) {
  if (!v.is_string()) fail(where, shown(v), "a string");
  return v.text;
}

void unknown_key(std::string_view spec, std::string_view key, const std::vector<std::string>& valid) {
  throw std::invalid_argument(std::string(spec) + ": unknown key '" + std::string(key) + "'; valid keys: " +
                              join_names(valid));
}

void not_an_object(std::string_view where, const Json& v) { fail(where, shown(v), "a JSON object"); }

Json parse_spec_text(std::string_view text, std::string_view spec) {
  try {
    return parse_json(text);
  } catch (const JsonError& e) {
    throw std::invalid_argument(std::string(spec) + ": " + e.what());
  }
}

}  // namespace fp8lab::schema

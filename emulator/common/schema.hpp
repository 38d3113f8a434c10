// One declared schema per spec (after CPFloat's single option struct with one validator): a table
// of fields, each a key, a JSON kind, the member it reads and writes and the constraint it checks.
// The table drives the spec's canonical JSON (keys sorted, common/json.hpp's writer), its strict
// reader (no unknown keys, no "false" for false, no 1.5 for an integer), the enum <-> name
// mapping, and the Python binding's field list, so no spec re-declares its fields anywhere else.
//
// One error vocabulary for every spec (std::invalid_argument):
//   "<Spec>.<field> = <value as JSON>: expected <what the field takes>"
// e.g. `GemmSpec.promote_every = 0: expected an integer in [1, 2147483647]`.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.hpp"

namespace fp8lab::schema {

[[noreturn]] void fail(std::string_view where, std::string_view value, std::string_view expected);

// ---- enums: one table of (name, value) rows per enum, the only place its names are written

template <class E>
struct EnumRow {
  std::string_view name;
  E value;
};

std::string join_names(const std::vector<std::string>& names);

// ---- tables of named rows (enum rows, scale rules, GEMM and router recipes): one name list and
// one lookup, whose error names the argument and lists the rows

template <class Row>
std::vector<std::string> row_names(std::span<const Row> rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.emplace_back(r.name);
  return out;
}
// The row called `name`, else std::invalid_argument "<arg>: unknown <what> '<name>'; <listed><names>"
// (listed: e.g. "valid rules: ").
template <class Row>
const Row& row_by_name(std::span<const Row> rows, std::string_view name, std::string_view arg, std::string_view what,
                       std::string_view listed) {
  for (const auto& r : rows)
    if (r.name == name) return r;
  throw std::invalid_argument(std::string(arg) + ": unknown " + std::string(what) + " '" + std::string(name) + "'; " +
                              std::string(listed) + join_names(row_names(rows)));
}

// A table's rows once each has passed its validate() (tables are built once, on first use).
template <class Row>
std::vector<Row> validated(std::vector<Row> rows) {
  for (const auto& r : rows) r.validate();
  return rows;
}

template <class E>
std::vector<std::string> enum_names(std::span<const EnumRow<E>> table) {
  return row_names(table);
}
template <class E>
std::string_view enum_name(std::span<const EnumRow<E>> table, E v) {
  for (const auto& r : table)
    if (r.value == v) return r.name;
  return "?";
}
// `where` names the argument or field (e.g. "combine", "ScaleRule.pow2").
template <class E>
E enum_by_name(std::span<const EnumRow<E>> table, std::string_view name, std::string_view where) {
  return row_by_name(table, name, where, "value", "expected one of ").value;
}

// ---- JSON values

Json number_json(std::string literal);
Json string_json(std::string text);
Json bool_json(bool b);
std::string g17(double v);  // %.17g: round-trips every double

// ---- fields

template <class S>
struct Field {
  std::string key;
  std::string kind;                  // int, number, bool, string, enum, tile, object, custom
  std::vector<std::string> choices;  // enum names
  std::string expected;              // the constraint, in the words of the error vocabulary
  std::function<Json(const S&)> write;
  // Reads `value` into the spec; `object` is the whole object being read (for fields whose value
  // must agree with another key); `where` is "<Spec>.<key>".
  std::function<void(S&, const Json& value, const Json& object, const std::string& where)> read;
};

template <class S>
struct Schema {
  std::string name;              // "GemmSpec", "RouterSpec", ...
  std::vector<Field<S>> fields;  // sorted by key (the canonical JSON order)
  std::function<void(const S&)> validate;  // cross-field rules; empty when there are none
};

// Readers shared by the field builders: they check the JSON kind and range and name the field.
long long read_integer(const Json& v, const std::string& where, long long lo, long long hi);
double read_number(const Json& v, const std::string& where);
bool read_bool(const Json& v, const std::string& where);
const std::string& read_string(const Json& v, const std::string& where);
std::string range_text(long long lo, long long hi);

template <class S, class T>
Field<S> integer(std::string key, T S::*m, long long lo, long long hi) {
  return {std::move(key), "int", {}, "an integer in " + range_text(lo, hi),
          [m](const S& s) { return number_json(std::to_string(s.*m)); },
          [m, lo, hi](S& s, const Json& v, const Json&, const std::string& w) { s.*m = static_cast<T>(read_integer(v, w, lo, hi)); }};
}

// A double; `ok` is the domain (e.g. finite and > 0), `expected` says it in words.
template <class S>
Field<S> real(std::string key, double S::*m, bool (*ok)(double), std::string expected) {
  return {std::move(key), "number", {}, expected,
          [m](const S& s) { return number_json(g17(s.*m)); },
          [m, ok, expected](S& s, const Json& v, const Json&, const std::string& w) {
            const double x = read_number(v, w);
            if (!ok(x)) fail(w, g17(x), expected);
            s.*m = x;
          }};
}

template <class S>
Field<S> boolean(std::string key, bool S::*m) {
  return {std::move(key), "bool", {}, "true or false",
          [m](const S& s) { return bool_json(s.*m); },
          [m](S& s, const Json& v, const Json&, const std::string& w) { s.*m = read_bool(v, w); }};
}

template <class S>
Field<S> text(std::string key, std::string S::*m) {
  return {std::move(key), "string", {}, "a string",
          [m](const S& s) { return string_json(s.*m); },
          [m](S& s, const Json& v, const Json&, const std::string& w) { s.*m = read_string(v, w); }};
}

template <class S, class E>
Field<S> enumeration(std::string key, E S::*m, std::span<const EnumRow<E>> table) {
  return {std::move(key), "enum", enum_names(table), "one of " + join_names(enum_names(table)),
          [m, table](const S& s) { return string_json(std::string(enum_name(table, s.*m))); },
          [m, table](S& s, const Json& v, const Json&, const std::string& w) {
            s.*m = enum_by_name(table, read_string(v, w), w);
          }};
}

// ---- the operations every schema gets

// The spec as a JSON object (members sorted by key).
template <class S>
Json to_json_value(const S& s, const Schema<S>& sc) {
  Json o;
  o.kind = Json::Kind::Object;
  for (const auto& f : sc.fields) o.members.push_back(JsonMember{f.key, f.write(s)});
  return o;
}
template <class S>
std::string to_json(const S& s, const Schema<S>& sc) {
  return to_canonical_json(to_json_value(s, sc));
}

[[noreturn]] void unknown_key(std::string_view spec, std::string_view key, const std::vector<std::string>& valid);
[[noreturn]] void not_an_object(std::string_view where, const Json& v);

// Reads the keys present in `obj` into `s` (absent keys keep their value in `s`). Does not
// validate: callers layer several objects (a recipe row, then overrides) and validate once.
template <class S>
void read_into(S& s, const Json& obj, const Schema<S>& sc, const std::string& prefix = {}) {
  const std::string spec = prefix.empty() ? sc.name : prefix;
  if (!obj.is_object()) not_an_object(spec, obj);
  for (const auto& m : obj.members) {
    const Field<S>* f = nullptr;
    for (const auto& x : sc.fields)
      if (x.key == m.first) f = &x;
    if (!f) {
      std::vector<std::string> keys;
      for (const auto& x : sc.fields) keys.push_back(x.key);
      unknown_key(spec, m.first, keys);
    }
    f->read(s, m.second, obj, spec + "." + m.first);
  }
}

// Parses JSON text (std::invalid_argument naming the spec for malformed text).
Json parse_spec_text(std::string_view text, std::string_view spec);

template <class S>
S from_json(std::string_view text, const Schema<S>& sc, S base = S{}) {
  read_into(base, parse_spec_text(text, sc.name), sc);
  if (sc.validate) sc.validate(base);
  return base;
}

// A nested spec as a field (e.g. MlaSpec.yarn).
template <class S, class N>
Field<S> object(std::string key, N S::*m, const Schema<N>& sub) {
  return {std::move(key), "object", {}, "an object of " + sub.name,
          [m, &sub](const S& s) { return to_json_value(s.*m, sub); },
          [m, &sub](S& s, const Json& v, const Json&, const std::string& w) { read_into(s.*m, v, sub, w); }};
}

}  // namespace fp8lab::schema

// A small strict JSON (RFC 8259) reader and canonical writer, enough for safetensors headers and
// trace metadata. Strict because a trace header is untrusted input: duplicate keys, trailing
// garbage, bad escapes, invalid UTF-8, leading zeros and nesting deeper than 64 are errors, never
// guesses. Errors are JsonError with the byte offset of the problem.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fp8lab {

struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct JsonMember;

struct Json {
  enum class Kind : std::uint8_t { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  std::string text;  // String: the decoded UTF-8; Number: the literal as written
  std::vector<Json> items;                            // Array
  std::vector<JsonMember> members;  // Object, in file order (keys unique)

  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Number; }
  const Json* find(std::string_view key) const;
  // A Number written as a plain non-negative integer (no sign, fraction or exponent) that fits
  // in 64 bits; false otherwise.
  bool as_u64(std::uint64_t& out) const;
};

// An object member (a struct, not std::pair, so Json may hold a vector of them while incomplete).
struct JsonMember {
  std::string first;
  Json second;
};

Json parse_json(std::string_view text, int max_depth = 64);

// Canonical text: no whitespace, object keys sorted by their UTF-8 bytes, strings escaped the
// minimal way (", \ and control characters; \u00XX for the latter except \b \f \n \r \t).
std::string to_canonical_json(const Json& value);
std::string json_quote(std::string_view s);
// Canonical JSON of a flat string -> string map (keys sorted by std::map).
std::string json_object_of_strings(const std::map<std::string, std::string>& m);

}  // namespace fp8lab

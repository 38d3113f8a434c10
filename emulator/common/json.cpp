#include "common/json.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace fp8lab {

namespace {

// The two-character escapes of RFC 8259 §7: the letter after the backslash and the character it
// stands for. The parser reads them (and "\/", which the writer never needs); json_quote writes them.
struct Escape {
  char letter, value;
};
constexpr std::array<Escape, 7> kEscapes{
    {{'"', '"'}, {'\\', '\\'}, {'b', '\b'}, {'f', '\f'}, {'n', '\n'}, {'r', '\r'}, {'t', '\t'}}};

class Parser {
 public:
  Parser(std::string_view s, int max_depth) : s_(s), max_depth_(max_depth) {}

  Json document() {
    skip_ws();
    Json v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw JsonError("invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) fail("unknown literal");
    pos_ += w.size();
  }

  Json value(int depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    if (pos_ >= s_.size()) fail("unexpected end of text");
    Json v;
    switch (s_[pos_]) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"':
        v.kind = Json::Kind::String;
        v.text = string();
        break;
      case 't': expect_word("true"); v.kind = Json::Kind::Bool; v.boolean = true; break;
      case 'f': expect_word("false"); v.kind = Json::Kind::Bool; break;
      case 'n': expect_word("null"); break;
      default: number(v);
    }
    return v;
  }

  // The members of an object or the items of an array, from its opening bracket on: `element`
  // reads one; they are separated by ',' and end at `close`.
  template <class Element>
  void elements(char close, Element element) {
    ++pos_;
    skip_ws();
    if (eat(close)) return;
    for (;;) {
      skip_ws();
      element();
      skip_ws();
      if (eat(',')) continue;
      if (eat(close)) return;
      fail(std::string("expected ',' or '") + close + "'");
    }
  }

  void object(Json& v, int depth) {
    v.kind = Json::Kind::Object;
    elements('}', [&] {
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      const std::size_t key_pos = pos_;
      std::string key = string();
      for (const auto& m : v.members)
        if (m.first == key) {
          pos_ = key_pos;
          fail("duplicate key \"" + key + "\"");
        }
      skip_ws();
      if (!eat(':')) fail("expected ':'");
      skip_ws();
      v.members.push_back(JsonMember{std::move(key), value(depth + 1)});
    });
  }

  void array(Json& v, int depth) {
    v.kind = Json::Kind::Array;
    elements(']', [&] { v.items.push_back(value(depth + 1)); });
  }

  void number(Json& v) {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d;
    };
    eat('-');
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') fail("expected a value");
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') fail("leading zero in a number");
    } else {
      digits();
    }
    if (eat('.') && !digits()) fail("expected digits after '.'");
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (!eat('+')) eat('-');
      if (!digits()) fail("expected digits in the exponent");
    }
    v.kind = Json::Kind::Number;
    v.text = std::string(s_.substr(start, pos_ - start));
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      u <<= 4;
      if (c >= '0' && c <= '9') u |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') u |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') u |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return u;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // One UTF-8 sequence copied through after checking it is well formed (RFC 3629 §4: no
  // overlongs, no surrogates, nothing above U+10FFFF).
  void utf8_sequence(std::string& out) {
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    int len = 0;
    unsigned cp = 0, min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, cp = b0 & 0x1F, min = 0x80;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, cp = b0 & 0x0F, min = 0x800;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, cp = b0 & 0x07, min = 0x10000;
    else fail("invalid UTF-8 byte");
    if (pos_ + std::size_t(len) > s_.size()) fail("truncated UTF-8 sequence");
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(s_[pos_ + std::size_t(i)]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8 continuation byte");
      cp = cp << 6 | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8 code point");
    out.append(s_.substr(pos_, std::size_t(len)));
    pos_ += std::size_t(len);
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("control character in a string");
      if (c >= 0x80) {
        utf8_sequence(out);
        continue;
      }
      ++pos_;
      if (c != '\\') {
        out += char(c);
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      if (e == 'u') {
        put_utf8(out, escaped_code_point());
      } else if (e == '/') {
        out += '/';
      } else {
        const auto* x = std::find_if(kEscapes.begin(), kEscapes.end(), [e](const Escape& r) { return r.letter == e; });
        if (x == kEscapes.end()) fail(std::string("unknown escape \\") + e);
        out += x->value;
      }
    }
  }

  // The code point of a \uXXXX escape (its "\u" already read), a surrogate pair taking a second one.
  unsigned escaped_code_point() {
    unsigned cp = hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (!(eat('\\') && eat('u'))) fail("high surrogate not followed by a low surrogate");
      const unsigned lo = hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate not followed by a low surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return cp;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  int max_depth_;
};

}  // namespace

const Json* Json::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

bool Json::as_u64(std::uint64_t& out) const {
  if (kind != Kind::Number || text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t d = std::uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

Json parse_json(std::string_view text, int max_depth) { return Parser(text, max_depth).document(); }

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const auto* x = std::find_if(kEscapes.begin(), kEscapes.end(), [ch](const Escape& r) { return r.value == ch; });
    if (x != kEscapes.end()) {
      out += '\\';
      out += x->letter;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string to_canonical_json(const Json& v) {
  switch (v.kind) {
    case Json::Kind::Null: return "null";
    case Json::Kind::Bool: return v.boolean ? "true" : "false";
    case Json::Kind::Number: return v.text;
    case Json::Kind::String: return json_quote(v.text);
    case Json::Kind::Array: {
      std::string out = "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        out += to_canonical_json(v.items[i]);
      }
      return out + "]";
    }
    case Json::Kind::Object: {
      std::vector<const JsonMember*> sorted;
      for (const auto& m : v.members) sorted.push_back(&m);
      std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
      std::string out = "{";
      for (std::size_t i = 0; i < sorted.size(); ++i) {
        if (i) out += ',';
        out += json_quote(sorted[i]->first);
        out += ':';
        out += to_canonical_json(sorted[i]->second);
      }
      return out + "}";
    }
  }
  return "null";
}

std::string json_object_of_strings(const std::map<std::string, std::string>& m) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : m) {
    if (!first) out += ',';
    out += json_quote(k);
    out += ':';
    out += json_quote(v);
    first = false;
  }
  return out + "}";
}

}  // namespace fp8lab

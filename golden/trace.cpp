#include "golden/trace.hpp"

#include <set>
#include <stdexcept>

#include "common/json.hpp"
#include "golden/sha256.hpp"

namespace fp8lab::golden {

namespace {

[[noreturn]] void fail(std::string_view source, const std::string& what) {
  throw TraceError(std::string(source) + ": " + what);
}

const std::set<std::string, std::less<>> kRequired = {"format", "op", "spec", "spec_sha256", "producer", "seed", "roles", "sha256"};

bool valid_role(std::string_view r) { return r == "input" || r == "output" || r == "intermediate"; }

// A metadata value that must hold a JSON object of strings.
std::map<std::string, std::string> string_map(const std::string& text, std::string_view source, const std::string& key) {
  Json j;
  try {
    j = parse_json(text);
  } catch (const JsonError& e) {
    fail(source, "__metadata__[\"" + key + "\"]: " + e.what());
  }
  if (!j.is_object()) fail(source, "__metadata__[\"" + key + "\"] is not a JSON object");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.members) {
    if (!v.is_string()) fail(source, "__metadata__[\"" + key + "\"][\"" + k + "\"] is not a string");
    out[k] = v.text;
  }
  return out;
}

}  // namespace

std::string canonical_json(std::string_view text) {
  try {
    return to_canonical_json(parse_json(text));
  } catch (const JsonError& e) {
    throw std::invalid_argument(std::string("spec: ") + e.what());
  }
}

Trace trace_from_safetensors(const Safetensors& file, std::string_view source, bool check_digests) {
  const auto& md = file.metadata;
  for (const auto& key : kRequired)
    if (!md.count(key)) fail(source, "not an fp8lab trace: __metadata__ has no \"" + key + "\"");
  if (md.at("format") != kTraceFormat)
    fail(source, "unsupported trace format \"" + md.at("format") + "\" (this fp8lab reads " + std::string(kTraceFormat) + ")");
  Trace t;
  t.op = md.at("op");
  t.spec = md.at("spec");
  t.producer = md.at("producer");
  if (t.op.empty()) fail(source, "__metadata__[\"op\"] is empty");
  Json spec;
  try {
    spec = parse_json(t.spec);
  } catch (const JsonError& e) {
    fail(source, std::string("__metadata__[\"spec\"]: ") + e.what());
  }
  if (!spec.is_object()) fail(source, "__metadata__[\"spec\"] is not a JSON object");
  if (to_canonical_json(spec) != t.spec) fail(source, "__metadata__[\"spec\"] is not in canonical JSON form (hand-edited?)");
  const std::string spec_hash = sha256_hex(t.spec);
  if (md.at("spec_sha256") != spec_hash)
    fail(source, "spec digest mismatch: recorded spec_sha256 " + md.at("spec_sha256") + ", computed " + spec_hash);
  const std::string& seed = md.at("seed");
  Json seed_json;
  seed_json.kind = Json::Kind::Number;
  seed_json.text = seed;
  if (!seed_json.as_u64(t.seed) || (seed.size() > 1 && seed[0] == '0'))
    fail(source, "__metadata__[\"seed\"] = \"" + seed + "\" is not a decimal unsigned 64-bit integer");
  const auto roles = string_map(md.at("roles"), source, "roles");
  const auto digests = string_map(md.at("sha256"), source, "sha256");
  for (const auto& [name, tensor] : file.tensors) {
    auto r = roles.find(name);
    if (r == roles.end()) fail(source, "tensor '" + name + "' has no role in __metadata__[\"roles\"]");
    if (!valid_role(r->second))
      fail(source, "tensor '" + name + "' has role \"" + r->second + "\" (expected input, output or intermediate)");
    auto d = digests.find(name);
    if (d == digests.end()) fail(source, "tensor '" + name + "' has no digest in __metadata__[\"sha256\"]");
    const std::string got = sha256_hex(tensor.data.data(), tensor.data.size());
    if (got != d->second) {
      const std::string what = "digest mismatch for tensor '" + name + "': recorded sha256 " + d->second +
                               ", data hashes to " + got + " (corrupted or hand-edited)";
      if (check_digests) fail(source, what);
      t.digest_mismatches.push_back(std::string(source) + ": " + what);
    }
    t.tensors[name] = {r->second, tensor};
  }
  for (const auto& [name, digest] : digests)
    if (!file.tensors.count(name)) fail(source, "__metadata__[\"sha256\"] names tensor '" + name + "', which the file does not hold");
  for (const auto& [name, role] : roles)
    if (!file.tensors.count(name)) fail(source, "__metadata__[\"roles\"] names tensor '" + name + "', which the file does not hold");
  for (const auto& [k, v] : md)
    if (!kRequired.count(k)) t.extra[k] = v;
  return t;
}

Safetensors trace_to_safetensors(const Trace& trace) {
  if (trace.op.empty()) throw std::invalid_argument("op: must not be empty");
  const std::string spec = canonical_json(trace.spec);
  if (spec.empty() || spec[0] != '{') throw std::invalid_argument("spec: must be a JSON object");
  Safetensors out;
  std::map<std::string, std::string> roles, digests;
  for (const auto& [name, tt] : trace.tensors) {
    if (!valid_role(tt.role))
      throw std::invalid_argument("tensors['" + name + "']: role \"" + tt.role + "\" is not input, output or intermediate");
    roles[name] = tt.role;
    digests[name] = sha256_hex(tt.tensor.data.data(), tt.tensor.data.size());
    out.tensors[name] = tt.tensor;
  }
  for (const auto& [k, v] : trace.extra) {
    if (kRequired.count(k)) throw std::invalid_argument("extra: key \"" + k + "\" is reserved");
    out.metadata[k] = v;
  }
  out.metadata["format"] = std::string(kTraceFormat);
  out.metadata["op"] = trace.op;
  out.metadata["spec"] = spec;
  out.metadata["spec_sha256"] = sha256_hex(spec);
  out.metadata["producer"] = trace.producer;
  out.metadata["seed"] = std::to_string(trace.seed);
  out.metadata["roles"] = json_object_of_strings(roles);
  out.metadata["sha256"] = json_object_of_strings(digests);
  return out;
}

Trace parse_trace(const std::uint8_t* bytes, std::size_t size, std::string_view source, bool check_digests) {
  return trace_from_safetensors(parse_safetensors(bytes, size, source), source, check_digests);
}

Trace read_trace(const std::string& path, bool check_digests) {
  const auto bytes = read_file(path);
  return parse_trace(bytes.data(), bytes.size(), path, check_digests);
}

void write_trace(const std::string& path, const Trace& trace, bool overwrite) {
  write_file_atomic(path, serialize_safetensors(trace_to_safetensors(trace)), overwrite);
}

}  // namespace fp8lab::golden

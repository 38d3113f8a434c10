#include "golden/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/json.hpp"

namespace fp8lab::golden {

namespace {

struct DtypeRow {
  const char* name;
  std::size_t size;
};
// The dtypes of the safetensors format (its Dtype enum). F8_E4M3 is OCP E4M3FN and F8_E5M2 is
// OCP E5M2, the same bit layouts as fp8lab's e4m3 and e5m2.
constexpr DtypeRow kDtypes[] = {{"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
                                {"U32", 4},  {"F32", 4},  {"F64", 8},  {"I64", 8},     {"U64", 8}};

[[noreturn]] void fail(std::string_view source, const std::string& what) {
  throw TraceError(std::string(source) + ": " + what);
}

std::string sys_error() { return std::strerror(errno); }

}  // namespace

std::size_t dtype_size(std::string_view dtype) {
  for (const auto& row : kDtypes)
    if (dtype == row.name) return row.size;
  return 0;
}

std::vector<std::string> dtype_names() {
  std::vector<std::string> out;
  for (const auto& row : kDtypes) out.emplace_back(row.name);
  return out;
}

std::uint64_t Tensor::elements() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Safetensors parse_safetensors(const std::uint8_t* bytes, std::size_t size, std::string_view source) {
  if (size < 8) fail(source, "truncated file: " + std::to_string(size) + " bytes, fewer than the 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | bytes[i];
  if (n > kMaxHeaderBytes) fail(source, "bad header length " + std::to_string(n) + " (over the 100 MB limit)");
  if (n > size - 8)
    fail(source, "bad header length " + std::to_string(n) + ": the file has only " + std::to_string(size - 8) +
                     " bytes after the length (truncated file?)");
  if (n < 2) fail(source, "bad header length " + std::to_string(n) + ": too short for a JSON object");
  const std::string_view text(reinterpret_cast<const char*>(bytes + 8), static_cast<std::size_t>(n));
  if (text.front() != '{') fail(source, "header does not start with '{'");
  Json header;
  try {
    header = parse_json(text);
  } catch (const JsonError& e) {
    fail(source, std::string("bad JSON header: ") + e.what());
  }
  if (!header.is_object()) fail(source, "bad JSON header: not an object");

  Safetensors out;
  const std::uint64_t buffer_size = size - 8 - n;
  const std::uint8_t* buffer = bytes + 8 + n;
  struct Span {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.members) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(source, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.members) {
        if (!v.is_string()) fail(source, "__metadata__[\"" + k + "\"] is not a string (safetensors metadata values must be strings)");
        out.metadata[k] = v.text;
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) fail(source, where + ": entry is not an object");
    for (const auto& m : entry.members)
      if (m.first != "dtype" && m.first != "shape" && m.first != "data_offsets")
        fail(source, where + ": unknown field \"" + m.first + "\"");
    const Json* dtype = entry.find("dtype");
    const Json* shape = entry.find("shape");
    const Json* offsets = entry.find("data_offsets");
    if (!dtype || !dtype->is_string()) fail(source, where + ": missing or non-string \"dtype\"");
    const std::size_t esize = dtype_size(dtype->text);
    if (!esize) fail(source, where + ": unknown dtype \"" + dtype->text + "\"");
    if (!shape || !shape->is_array()) fail(source, where + ": missing or non-array \"shape\"");
    if (shape->items.size() > kMaxRank) fail(source, where + ": rank " + std::to_string(shape->items.size()) + " over " + std::to_string(kMaxRank));
    Tensor t;
    t.dtype = dtype->text;
    std::uint64_t elements = 1;
    bool overflow = false;
    for (const auto& d : shape->items) {
      std::uint64_t v = 0;
      if (!d.as_u64(v)) fail(source, where + ": shape entry is not a non-negative integer");
      t.shape.push_back(v);
      if (v && elements > UINT64_MAX / v) overflow = true;
      elements *= v;
    }
    if (overflow || (elements && esize > UINT64_MAX / elements))
      fail(source, where + ": shape's byte size overflows 64 bits");
    const std::uint64_t nbytes = elements * esize;
    if (!offsets || !offsets->is_array() || offsets->items.size() != 2)
      fail(source, where + ": \"data_offsets\" must be [begin, end]");
    std::uint64_t b = 0, e = 0;
    if (!offsets->items[0].as_u64(b) || !offsets->items[1].as_u64(e))
      fail(source, where + ": data_offsets are not non-negative integers");
    if (b > e) fail(source, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] end before they begin");
    if (e > buffer_size)
      fail(source, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                       "] out of range (the data buffer has " + std::to_string(buffer_size) + " bytes; truncated file?)");
    if (e - b != nbytes)
      fail(source, where + ": data_offsets cover " + std::to_string(e - b) + " bytes but dtype " + t.dtype + " and shape need " +
                       std::to_string(nbytes));
    t.data.assign(buffer + b, buffer + e);
    spans.push_back({b, e, name});
    out.tensors.emplace(name, std::move(t));
  }
  // The buffer must be covered exactly: no overlap, no hole, nothing after the last tensor.
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (s.begin < at)
      fail(source, "tensor '" + s.name + "' overlaps tensor '" + spans[i - 1].name + "' (data_offsets begin at " +
                       std::to_string(s.begin) + ", before " + std::to_string(at) + ")");
    if (s.begin > at)
      fail(source, "hole in the data buffer: bytes [" + std::to_string(at) + ", " + std::to_string(s.begin) +
                       ") belong to no tensor");
    at = s.end;
  }
  if (at != buffer_size)
    fail(source, std::to_string(buffer_size - at) + " bytes after the last tensor belong to no tensor");
  return out;
}

std::vector<std::uint8_t> serialize_safetensors(const Safetensors& file) {
  std::string header = "{";
  if (!file.metadata.empty()) header += "\"__metadata__\":" + json_object_of_strings(file.metadata);
  std::uint64_t at = 0;
  for (const auto& [name, t] : file.tensors) {
    if (name == "__metadata__") throw std::invalid_argument("tensors: the name __metadata__ is reserved");
    const std::size_t esize = dtype_size(t.dtype);
    if (!esize) throw std::invalid_argument("tensors['" + name + "']: unknown dtype \"" + t.dtype + "\"");
    if (t.elements() * esize != t.data.size())
      throw std::invalid_argument("tensors['" + name + "']: " + std::to_string(t.data.size()) + " data bytes but dtype " + t.dtype +
                                  " and shape need " + std::to_string(t.elements() * esize));
    std::string shape = "[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i) shape += ',';
      shape += std::to_string(t.shape[i]);
    }
    shape += "]";
    if (header.size() > 1) header += ",";
    header += json_quote(name) + ":{\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + t.data.size()) +
              "],\"dtype\":" + json_quote(t.dtype) + ",\"shape\":" + shape + "}";
    at += t.data.size();
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';
  const std::uint64_t n = header.size();
  std::vector<std::uint8_t> out(8 + header.size() + at);
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  std::size_t pos = 8;
  std::copy(header.begin(), header.end(), out.begin() + std::ptrdiff_t(pos));
  pos += header.size();
  for (const auto& [name, t] : file.tensors) {
    std::copy(t.data.begin(), t.data.end(), out.begin() + std::ptrdiff_t(pos));
    pos += t.data.size();
  }
  return out;
}

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading: " + sys_error());
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error: " + sys_error());
  return bytes;
}

void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes, bool overwrite) {
  struct stat st;
  if (!overwrite && ::stat(path.c_str(), &st) == 0)
    fail(path, "already exists; refusing to overwrite a trace (pass --update / update=True to replace it)");
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail(path, "cannot create a temporary file next to it: " + sys_error());
  auto abandon = [&](const std::string& what) {
    const std::string err = sys_error();
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, what + ": " + err);
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      abandon("write failed");
    }
    done += std::size_t(w);
  }
  if (::fchmod(fd, 0644) != 0) abandon("chmod failed");
  if (::fsync(fd) != 0) abandon("fsync failed");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail(path, "close failed: " + sys_error());
  }
  if (!overwrite) {
    // link() fails if the name appeared meanwhile, so a concurrent writer is never clobbered.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      const int link_errno = errno;
      const std::string err = sys_error();
      ::unlink(tmp.c_str());
      fail(path, link_errno == EEXIST ? "already exists; refusing to overwrite a trace (pass --update / update=True to replace it)"
                                 : "cannot create: " + err);
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = sys_error();
    ::unlink(tmp.c_str());
    fail(path, "rename failed: " + err);
  }
  // Make the new directory entry durable too.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace fp8lab::golden

// The safetensors container (https://github.com/huggingface/safetensors, "Format" section of its
// README): 8 bytes little-endian u64 N, N bytes of UTF-8 JSON header, then the byte buffer. The
// header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the start of the buffer) plus an optional "__metadata__" object of string -> string.
// The reader is strict: it accepts only files the format allows and rejects everything else with
// a TraceError naming the file and the problem — the buffer must be covered exactly, without holes
// or overlaps, as the format requires; it never reads out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fp8lab::golden {

// Every problem with a trace file: the message starts with the file name.
struct TraceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Element size in bytes of a safetensors dtype name ("F8_E4M3", "BF16", "F32", ...), or 0 when the
// name is not one of the format's dtypes.
std::size_t dtype_size(std::string_view dtype);
std::vector<std::string> dtype_names();

struct Tensor {
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint8_t> data;  // little-endian element bytes, row-major
  std::uint64_t elements() const;
};

struct Safetensors {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;  // sorted by name
};

// Limits beyond which a header is refused (the upstream reader refuses headers over 100 MB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;
inline constexpr std::size_t kMaxRank = 16;

// Parses a whole file's bytes. `source` names the file in error messages.
Safetensors parse_safetensors(const std::uint8_t* bytes, std::size_t size, std::string_view source);
// Serialises: header keys in canonical JSON order, tensors laid out by name, the header padded
// with spaces to a multiple of 8 bytes so the buffer is 8-byte aligned (as upstream does).
std::vector<std::uint8_t> serialize_safetensors(const Safetensors& file);

std::vector<std::uint8_t> read_file(const std::string& path);
// Writes atomically: a temporary file in the same folder, fsync, rename over `path`, fsync of the
// folder. Refuses (TraceError) when `path` exists and `overwrite` is false.
void write_file_atomic(const std::string& path, const std::vector<std::uint8_t>& bytes, bool overwrite);

}  // namespace fp8lab::golden

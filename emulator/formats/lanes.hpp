// The hot loops of the casts, built once per instruction set (FP8LAB_DISPATCH_SOURCES in
// emulator/CMakeLists.txt, common/isa.hpp): the float32 lane encoder under Encoder and
// encode_array (formats/encode_lanes.cpp), and the 256-entry table decoder under decode_array.
// Every variant gives the same bits as the scalar encode()/decode() (tests/cpp/test_formats_lanes.cpp
// runs each variant this CPU has).
#pragma once

#include <cstddef>
#include <cstdint>

#include "formats/encode.hpp"

namespace fp8lab {

// Whether encode_float_lanes takes a plan: every rounding but stochastic, on a target whose
// precision and lowest binade lie within float32's (the lanes work on the input's bits directly).
bool lanes_take(const detail::EncodePlan& plan);
// Encodes in[0, n) into out: n elements of out_bits width (8, 16 or 32). Requires lanes_take(plan).
// Serial; the same bits as encode() element by element.
void encode_float_lanes(const float* in, std::size_t n, const detail::EncodePlan& plan, void* out, int out_bits);

// out[i] = table[in[i]] for the 256-entry tables of decode_array (8-bit storage). Serial.
void decode_bytes_f32(const std::uint8_t* in, std::size_t n, const float* table, float* out);
void decode_bytes_f64(const std::uint8_t* in, std::size_t n, const double* table, double* out);

}  // namespace fp8lab

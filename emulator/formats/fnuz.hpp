// OCP FP8 <-> AMD FNUZ FP8 as AMD's software stacks convert them: the same bit pattern, and the
// tensor's scale doubled. An FNUZ format's bias is one more than the OCP format's with the same
// field widths (E4M3FNUZ 8 vs E4M3 7, E5M2FNUZ 16 vs E5M2 15), so every pattern's FNUZ value is
// exactly half its OCP value, and value * scale is unchanged when the scale doubles. Source: vLLM
// model_executor/layers/quantization/utils/w8a8_utils.py `normalize_e4m3fn_to_e4m3fnuz` (weight
// bits reinterpreted, 0x80 set to 0, weight_scale and input_scale times 2; after ONNX's float8
// notes); ROCm's hipBLASLt FP8 paths take FNUZ operands with the scales so doubled.
#pragma once

#include <cstddef>
#include <cstdint>

#include "formats/encode.hpp"

namespace fp8lab {

// The other member of an (OCP, FNUZ) pair in the format table: e4m3 <-> e4m3fnuz, e5m2 <->
// e5m2fnuz (same widths, biases one apart, one of them with the negative_zero NaN encoding).
// std::invalid_argument naming `fmt` when the table has none.
const Format& fnuz_twin(const Format& fmt);

// The ratio ocp value / fnuz value of one pattern: 2 (the scale factor the conversion applies).
inline constexpr double kOcpToFnuzScale = 2.0;

// `bits` of `ocp` as a pattern of `fnuz` whose value times 2 is the OCP value: the same pattern,
// except that OCP's -0 (the FNUZ NaN pattern) becomes +0, and an OCP NaN or Inf becomes the FNUZ
// NaN (vLLM reinterprets those too, which would turn E4M3's NaN 0x7F into 240: a NaN is kept here).
// Throws std::invalid_argument unless the two rows have the same widths, the FNUZ bias is the
// OCP bias + 1, and `fnuz` has the negative_zero NaN encoding.
std::uint32_t ocp_to_fnuz_bits(std::uint32_t bits, const Format& ocp, const Format& fnuz);
// The inverse direction: the OCP pattern of 2 * (FNUZ value), rounded by `options` where it is not
// exact (only the top binade's last values: E4M3FNUZ 240 is OCP 480, beyond E4M3's 448), NaN to
// the OCP NaN.
std::uint32_t fnuz_to_ocp_bits(std::uint32_t bits, const Format& fnuz, const Format& ocp,
                               const EncodeOptions& options = {});
// Whole arrays (8-bit storage): out[i] = the conversion of in[i]. The caller multiplies the
// scale by kOcpToFnuzScale (OCP -> FNUZ) or divides by it (FNUZ -> OCP).
void ocp_to_fnuz_array(const std::uint8_t* in, std::size_t n, const Format& ocp, const Format& fnuz, std::uint8_t* out);
void fnuz_to_ocp_array(const std::uint8_t* in, std::size_t n, const Format& fnuz, const Format& ocp,
                       const EncodeOptions& options, std::uint8_t* out);

}  // namespace fp8lab

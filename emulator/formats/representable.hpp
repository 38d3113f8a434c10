// Which float32 numbers are values of a format, as one branch-free bit test that vectorises (the
// representability checks of gemm and dot run it on every operand element). A finite non-zero x
// is a value of fmt iff min_positive <= |x| <= max_finite, x >= 0 for an unsigned format, and x
// is a multiple of fmt's quantum at x's binade, 2^(max(e, emin) - mantissa_bits); zero iff fmt
// has a zero; NaN iff fmt has a NaN; +-Inf iff fmt has infinities. For formats within float32
// (mantissa_bits <= 23, exponent range inside float32's). tests/cpp/test_formats_representable.cpp
// checks it against decode(encode(x)) == x for every format.
#pragma once

#include <cstddef>
#include <cstdint>

#include "formats/format.hpp"

namespace fp8lab {

// The facts of a format the test reads, as float32 and small integers.
struct RepresentableRow {
  float max_finite, min_positive;
  int min_exp, mant_bits;
  bool is_signed, zero, nan, inf;
};

// The scan itself, built once per instruction set (formats/representable_scan.cpp, common/isa.hpp):
// the index of the first of v[0, n) that is not a value of the row's format, or n. Serial.
std::size_t representable_first_bad(const float* v, std::size_t n, const RepresentableRow& row);

class RepresentableTest {
 public:
  explicit RepresentableTest(const Format& fmt);  // std::invalid_argument for a format wider than float32
  bool operator()(float x) const;
  // The index of the first of v[0, n) that is not a value of the format, or n. Serial (callers
  // that want threads split the range).
  std::size_t first_bad(const float* v, std::size_t n) const;
  // The same over chunks on the parallel_for threads (the answer does not depend on their number).
  std::size_t first_bad_parallel(const float* v, std::size_t n) const;

 private:
  RepresentableRow row_;
};

}  // namespace fp8lab

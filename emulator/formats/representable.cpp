#include "formats/representable.hpp"

#include <stdexcept>
#include <vector>

#include "common/parallel.hpp"

namespace fp8lab {

RepresentableTest::RepresentableTest(const Format& fmt)
    : row_{static_cast<float>(fmt.max_finite()), static_cast<float>(fmt.min_positive()), fmt.min_normal_exponent(),
           fmt.mantissa_bits, fmt.is_signed, fmt.has_zero(), fmt.has_nan(), fmt.has_inf()} {
  if (fmt.mantissa_bits > 23 || fmt.max_finite() > 0x1.fffffep127 || fmt.min_positive() < 0x1p-149)
    throw std::invalid_argument("fmt: " + fmt.name + " is wider than float32; the representability test covers formats within it");
}

bool RepresentableTest::operator()(float x) const { return representable_first_bad(&x, 1, row_) == 1; }

std::size_t RepresentableTest::first_bad(const float* v, std::size_t n) const { return representable_first_bad(v, n, row_); }

std::size_t RepresentableTest::first_bad_parallel(const float* v, std::size_t n) const {
  constexpr std::size_t kGrain = 1 << 16;
  std::vector<std::size_t> first((n + kGrain - 1) / kGrain, n);
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    const std::size_t i = first_bad(v + begin, end - begin);
    if (i != end - begin) first[begin / kGrain] = begin + i;
  });
  for (const std::size_t i : first)
    if (i != n) return i;
  return n;
}

}  // namespace fp8lab

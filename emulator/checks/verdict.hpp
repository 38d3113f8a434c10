// One vocabulary for every comparison in fp8lab (tests, CLI, Python, verify): a comparison of a
// result against an expected result ends in exactly one of three verdicts.
//   bit-identical — every element has the expected bits;
//   within bound  — some differ, but each is within its certified bound of the exact value;
//   violation     — some element is outside its bound (the first one is named, with both values,
//                   the exact value and the bound).
// Bounds come from the spec (see gemm/bounds), never from an ad-hoc atol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/row_constants.hpp"

namespace fp8lab {

// How many offending elements a verdict lists (text, JSON, JUnit show them decoded).
inline constexpr std::size_t kMaxOffenders = 8;

enum class VerdictKind : std::uint8_t { BitIdentical, WithinBound, Violation };
std::string_view verdict_kind_name(VerdictKind k);  // "bit-identical", "within-bound", "violation"

struct Offender {
  std::size_t index = 0;                  // flat (row-major) index
  std::vector<std::size_t> coordinate;    // index unravelled over the shape
  double got = 0, expected = 0, exact = 0, bound = 0;
};

struct Verdict {
  VerdictKind kind = VerdictKind::BitIdentical;
  std::size_t count = 0;             // elements compared
  std::size_t differing = 0;         // elements whose bits differ from expected
  std::size_t violations = 0;        // elements outside their bound
  double max_ulp = 0;                // max distance in units in the last place of the output format
  // max |got - exact| / |exact| over non-zero finite exact values (exact = expected when the
  // spec pins the bits); +inf when a result is NaN/Inf where the exact value is finite.
  double max_rel_error = 0;
  double max_bound_ratio = 0;        // max |got - exact| / bound (<= 1 unless a violation)
  std::optional<Offender> first_violation;
  std::vector<Offender> first_violations;  // the first kMaxOffenders violations, in index order
  std::optional<Offender> first_difference;
  std::string what;                  // what was compared (operation, spec name)

  bool ok() const { return kind != VerdictKind::Violation; }
  // One line a person reads: "gemm deepgemm: violation at [3, 17]: got 0x1.8p+2 (6), expected ...".
  std::string summary() const;
  // Canonical JSON (keys sorted).
  std::string to_json() const;
};

// Compares `got` with `expected` elementwise. Elements with identical bit patterns (NaN equal to
// NaN of the same bits) count as identical. A differing element is within bound when
// |got - exact| <= bound[i]; when `exact`/`bound` are empty, any difference is a violation (the
// spec is pinned: bits must match). `ulp_of` gives the ULP size of the output format at a value
// (pass nullptr to use float32's). Shape is used only to unravel indices.
struct CompareInputs {
  const double* got = nullptr;
  const double* expected = nullptr;
  const double* exact = nullptr;   // optional
  const double* bound = nullptr;   // optional, same length
  std::size_t count = 0;
  std::vector<std::size_t> shape;  // empty: 1-D
  // ULP counted in this precision (23 fp32, 7 bf16, 3 e4m3 ...), FP32's by default.
  int output_mantissa_bits = binary32::kMantissaBits;
  int output_min_exponent = binary32::kMinExponent;  // min normal exponent of the output format (subnormal ULPs)
  std::string what;
};
Verdict compare(const CompareInputs& in);

// ULP distance between two values in a format of the given precision (exact for finite values;
// +inf when exactly one is NaN or the signs of infinities differ).
double ulp_distance(double a, double b, int mantissa_bits, int min_normal_exponent);

}  // namespace fp8lab

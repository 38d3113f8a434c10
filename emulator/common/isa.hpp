// Runtime CPU dispatch: which build of the hot kernels runs. The sources listed in
// FP8LAB_DISPATCH_SOURCES (emulator/CMakeLists.txt) are compiled once per instruction set
// (cmake/dispatch.cmake), each into namespace fp8lab::isa_<variant>; the first dispatched call picks
// the best variant this CPU runs (CPUID, through __builtin_cpu_supports), unless FP8LAB_CPU names
// one. The variants compute the same integers and floats in the same order: the choice changes
// speed, never bits (tests/cpp/test_isa.cpp, property_tests/prop_gemm.cpp and the
// gemm_digest_every_isa test run every variant this CPU has).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// In a dispatched source this is the variant's namespace (isa_portable, isa_avx2, isa_avx512);
// elsewhere (a test including a kernel header) the portable one.
#ifndef FP8LAB_ISA_NS
#define FP8LAB_ISA_NS isa_portable
#endif

namespace fp8lab {
namespace FP8LAB_ISA_NS {
namespace {
// std::bit_cast for dispatched sources, whose vectors (GCC vector extensions) are bit_cast lane by
// lane. std::bit_cast<V> is one template for every variant: where a build does not inline it (-O0),
// each variant's objects emit it as a weak symbol under one mangled name (int __vector(8) is the
// same type with or without AVX), the linker keeps one copy, and a variant that returns 32- or
// 64-byte vectors in registers calls one that returns them in memory: the -O0 build of
// tools/determinism.sh crashed in the AVX2 bound kernel. The builtin has no symbol, and this
// function has internal linkage: one copy per variant.
// (Internal linkage also makes GCC's note that returning a wide vector without AVX changes the ABI
// moot: no other object calls it.)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
template <class To, class From>
inline To lanes_cast(const From& x) {
  return __builtin_bit_cast(To, x);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
}  // namespace
}  // namespace FP8LAB_ISA_NS

enum class Isa : std::uint8_t { Portable, Avx2, Avx512 };

std::string_view isa_name(Isa isa);  // "portable", "avx2", "avx512"
// The variant named `name`; std::invalid_argument naming `what` (e.g. "FP8LAB_CPU") otherwise.
Isa isa_by_name(std::string_view name, std::string_view what);
std::vector<Isa> built_isas();        // compiled into this build, portable first
bool isa_supported(Isa isa);          // this CPU (and OS) can run the variant
// Built and supported here, portable first: what a test loops over.
std::vector<Isa> runnable_isas();
// The compiler flags the variant was built with ("" for portable: the build's own flags).
std::string_view isa_flags(Isa isa);

// The variant dispatched calls use: set_isa()'s, else FP8LAB_CPU's (checked: an unknown, unbuilt
// or unsupported name throws std::invalid_argument naming FP8LAB_CPU), else the best runnable one.
Isa active_isa();
// Forces a variant for this process (tests, benches, fp8lab.set_cpu); std::invalid_argument when it
// is not built or this CPU cannot run it. std::nullopt restores the default choice.
void set_isa(std::optional<Isa> isa);

// Sets a variant for a scope and restores the previous choice (tests).
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa);
  ~ScopedIsa();
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  std::optional<Isa> previous_;
};

// Chooses among the variants' builds of one function (nullptr for a variant not built).
template <class F>
F isa_pick(F portable, F avx2, F avx512) {
  switch (active_isa()) {
    case Isa::Avx512: return avx512;
    case Isa::Avx2: return avx2;
    case Isa::Portable: break;
  }
  return portable;
}

}  // namespace fp8lab

#if FP8LAB_BUILT_AVX2
#define FP8LAB_ISA_IF_AVX2(f) &::fp8lab::isa_avx2::f
#else
#define FP8LAB_ISA_IF_AVX2(f) nullptr
#endif
#if FP8LAB_BUILT_AVX512
#define FP8LAB_ISA_IF_AVX512(f) &::fp8lab::isa_avx512::f
#else
#define FP8LAB_ISA_IF_AVX512(f) nullptr
#endif

// In a dispatched source, after the namespace fp8lab::FP8LAB_ISA_NS { ... } that defines `name`:
// declares `name` in every variant's namespace and, in the portable build of the file only
// (FP8LAB_ISA_PRIMARY, set by cmake/dispatch.cmake), defines the public fp8lab::name, which calls
// the active variant's. `name` must not be overloaded; `ret` must not contain a comma.
//   FP8LAB_DISPATCH_ENTRY(float, dot, (const float* a, std::size_t n), (a, n))
#define FP8LAB_ISA_DECLARE_ALL(ret, name, params) \
  namespace isa_portable {                        \
  ret name params;                                \
  }                                               \
  namespace isa_avx2 {                            \
  ret name params;                                \
  }                                               \
  namespace isa_avx512 {                          \
  ret name params;                                \
  }
#if FP8LAB_ISA_PRIMARY
#define FP8LAB_DISPATCH_ENTRY(ret, name, params, args)                                                      \
  namespace fp8lab {                                                                                        \
  FP8LAB_ISA_DECLARE_ALL(ret, name, params)                                                                 \
  ret name params {                                                                                         \
    return ::fp8lab::isa_pick<ret(*) params>(&isa_portable::name, FP8LAB_ISA_IF_AVX2(name),                  \
                                             FP8LAB_ISA_IF_AVX512(name)) args;                               \
  }                                                                                                         \
  }
#else
#define FP8LAB_DISPATCH_ENTRY(ret, name, params, args)
#endif

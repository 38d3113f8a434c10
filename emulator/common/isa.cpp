// The runtime choice of kernel variant (common/isa.hpp): CPUID through the compiler's
// __builtin_cpu_supports (libgcc / compiler-rt also check that the OS saves the AVX and AVX-512
// register state, XGETBV), FP8LAB_CPU, and the override tests use.
#include "common/isa.hpp"

#include <array>
#include <atomic>
#include <cstdlib>
#include <stdexcept>

#ifndef FP8LAB_BUILT_AVX2
#define FP8LAB_BUILT_AVX2 0
#endif
#ifndef FP8LAB_BUILT_AVX512
#define FP8LAB_BUILT_AVX512 0
#endif
#ifndef FP8LAB_FLAGS_PORTABLE
#define FP8LAB_FLAGS_PORTABLE ""
#endif
#ifndef FP8LAB_FLAGS_AVX2
#define FP8LAB_FLAGS_AVX2 ""
#endif
#ifndef FP8LAB_FLAGS_AVX512
#define FP8LAB_FLAGS_AVX512 ""
#endif

namespace fp8lab {
namespace {

struct IsaRow {
  Isa isa;
  std::string_view name;
  bool built;
  std::string_view flags;
};
// One row per variant, in preference order (worst first); cmake/dispatch.cmake holds the flags.
constexpr std::array<IsaRow, 3> kIsas{{
    {Isa::Portable, "portable", true, FP8LAB_FLAGS_PORTABLE},
    {Isa::Avx2, "avx2", FP8LAB_BUILT_AVX2 != 0, FP8LAB_FLAGS_AVX2},
    {Isa::Avx512, "avx512", FP8LAB_BUILT_AVX512 != 0, FP8LAB_FLAGS_AVX512},
}};

const IsaRow& row(Isa isa) { return kIsas[static_cast<std::size_t>(isa)]; }

// Every feature the variant's flags enable (cmake/dispatch.cmake), so that no instruction the
// compiler may emit for it is missing.
bool cpu_has(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
  }();
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  switch (isa) {
    case Isa::Portable: return true;
    case Isa::Avx2: return avx2;
    case Isa::Avx512: return avx512;
  }
  return false;
#else
  return isa == Isa::Portable;
#endif
}

// -1: no override; else the Isa's value.
std::atomic<int> forced{-1};

Isa checked(Isa isa, std::string_view what) {
  const IsaRow& r = row(isa);
  if (!r.built)
    throw std::invalid_argument(std::string(what) + " = '" + std::string(r.name) +
                                "': this build of fp8lab has no such variant (built: " + [] {
                                  std::string s;
                                  for (const Isa i : built_isas()) s += (s.empty() ? "" : ", ") + std::string(isa_name(i));
                                  return s;
                                }() + ")");
  if (!cpu_has(isa))
    throw std::invalid_argument(std::string(what) + " = '" + std::string(r.name) +
                                "': this CPU cannot run that variant (it lacks an instruction set the variant needs)");
  return isa;
}

Isa default_isa() {
  if (const char* env = std::getenv("FP8LAB_CPU"); env && *env) return checked(isa_by_name(env, "FP8LAB_CPU"), "FP8LAB_CPU");
  Isa best = Isa::Portable;
  for (const IsaRow& r : kIsas)
    if (r.built && cpu_has(r.isa)) best = r.isa;
  return best;
}

}  // namespace

std::string_view isa_name(Isa isa) { return row(isa).name; }

Isa isa_by_name(std::string_view name, std::string_view what) {
  for (const IsaRow& r : kIsas)
    if (r.name == name) return r.isa;
  throw std::invalid_argument(std::string(what) + " = '" + std::string(name) +
                              "': expected one of portable, avx2, avx512");
}

std::vector<Isa> built_isas() {
  std::vector<Isa> v;
  for (const IsaRow& r : kIsas)
    if (r.built) v.push_back(r.isa);
  return v;
}

bool isa_supported(Isa isa) { return cpu_has(isa); }

std::vector<Isa> runnable_isas() {
  std::vector<Isa> v;
  for (const IsaRow& r : kIsas)
    if (r.built && cpu_has(r.isa)) v.push_back(r.isa);
  return v;
}

std::string_view isa_flags(Isa isa) { return row(isa).flags; }

Isa active_isa() {
  const int f = forced.load(std::memory_order_relaxed);
  if (f >= 0) return static_cast<Isa>(f);
  // Decided once (FP8LAB_CPU is read at the first call); an invalid FP8LAB_CPU throws at every call.
  static const Isa chosen = default_isa();
  return chosen;
}

void set_isa(std::optional<Isa> isa) {
  if (!isa) {
    forced.store(-1);
    return;
  }
  forced.store(static_cast<int>(checked(*isa, "cpu")));
}

ScopedIsa::ScopedIsa(Isa isa) {
  const int f = forced.load();
  if (f >= 0) previous_ = static_cast<Isa>(f);
  set_isa(isa);
}

ScopedIsa::~ScopedIsa() { set_isa(previous_); }

}  // namespace fp8lab

// The register tile and the packed operand panels of the blocked GEMM kernels that vectorise
// across output columns: gemm/fp32_kernel.cpp (16 float lanes) and gemm/exact_kernel.cpp (8 double
// lanes). Include only from a dispatched source (FP8LAB_DISPATCH_SOURCES, common/isa.hpp):
// everything here lives in the variant's namespace, inside an anonymous namespace, so each
// instruction-set build inlines its own copy (tools/check_isa_symbols.sh checks that none leaks).
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "common/isa.hpp"

// The 64-byte vectors below are internal (anonymous namespace, inlined), so the compilers' note
// that passing them changes the ABI without AVX-512 (portable builds) does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// 64 bytes of T, one lane per output column, as a GCC/Clang vector extension (a zmm with AVX-512,
// two ymm with AVX2, scalar code elsewhere). Lane-wise operators are T's IEEE operations, one per
// lane; -ffp-contract=off keeps * and + unfused.
template <class T>
struct Lanes {
  typedef T V __attribute__((vector_size(64)));
  static constexpr std::size_t kCount = 64 / sizeof(T);
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
};

constexpr std::size_t kGroups = 2;  // column vectors per tile
// Rows per tile: kRows x kGroups independent sums hide the add or FMA latency (4 cycles, 2 ports:
// 8 chains) and, with the kGroups B vectors and a broadcast, fit the register file (32 zmm; 16 ymm
// halves without AVX-512).
#if defined(__AVX512F__)
constexpr std::size_t kRows = 6;
#else
constexpr std::size_t kRows = 2;
#endif

// Operands packed for the tile, zeros past the ends: A (M x K) per block of kRows rows as
// K x kRows, B (N x K) per group of one vector's rows as K x lanes, the groups rounded up to whole
// tiles (kGroups vectors).
template <class T>
struct Panels {
  static constexpr std::size_t kLanes = Lanes<T>::kCount;
  std::size_t K = 0, row_blocks = 0, groups = 0;
  std::vector<T> x, y;

  Panels(std::size_t M, std::size_t N, std::size_t k)
      : K(k),
        row_blocks((M + kRows - 1) / kRows),
        groups((N + kLanes * kGroups - 1) / (kLanes * kGroups) * kGroups),
        x(row_blocks * K * kRows, T{}),
        y(groups * K * kLanes, T{}) {}
  const T* block(std::size_t ib) const { return x.data() + ib * K * kRows; }
  const T* group(std::size_t g) const { return y.data() + g * K * kLanes; }
  // Where element k = 0 of row i of A (of row j of B) goes; element k is k * kRows (k * kLanes)
  // further.
  T* a_row(std::size_t i) { return x.data() + (i / kRows) * K * kRows + i % kRows; }
  T* b_row(std::size_t j) { return y.data() + (j / kLanes) * K * kLanes + j % kLanes; }
};

}  // namespace
}  // namespace fp8lab::FP8LAB_ISA_NS

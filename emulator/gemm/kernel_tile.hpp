// The register tile and the packed operand panels of the blocked GEMM kernels that vectorise
// across output columns: gemm/fp32_kernel.cpp (float lanes) and gemm/exact_kernel.cpp (double
// lanes), one machine register wide (16 / 8 lanes with AVX-512, 8 / 4 with AVX2, 4 / 2 with SSE2).
// Include only from a dispatched source (FP8LAB_DISPATCH_SOURCES, common/isa.hpp): everything here
// lives in the variant's namespace, inside an anonymous namespace, so each instruction-set build
// inlines its own copy (tools/check_isa_symbols.sh checks that none leaks).
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "common/buffer_pool.hpp"
#include "common/isa.hpp"

// The vectors below are internal (anonymous namespace, inlined), so the compilers' note that
// passing them changes the ABI does not apply.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace fp8lab::FP8LAB_ISA_NS {
namespace {

// Bytes of one vector: the widest register of the instruction set. Wider vector-extension types
// than the registers (64 bytes under AVX2, as before) made GCC keep the tile's sums on the stack
// (a store and a reload per sum every k) and spill the temporaries.
#if defined(__AVX512F__)
constexpr std::size_t kVectorBytes = 64;
#elif defined(__AVX__)
constexpr std::size_t kVectorBytes = 32;
#else
constexpr std::size_t kVectorBytes = 16;
#endif

// kVectorBytes of T, one lane per output column, as a GCC/Clang vector extension (a zmm with
// AVX-512, a ymm with AVX2, an xmm elsewhere). Lane-wise operators are T's IEEE operations, one
// per lane; -ffp-contract=off keeps * and + unfused.
template <class T>
struct Lanes {
  typedef T V __attribute__((vector_size(kVectorBytes)));
  static constexpr std::size_t kCount = kVectorBytes / sizeof(T);
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static V splat(T x) { return splat(x, std::make_index_sequence<kCount>{}); }  // x in every lane

 private:
  template <std::size_t... I>
  static V splat(T x, std::index_sequence<I...>) {  // an initialiser list: one broadcast instruction
    return V{((void)I, x)...};
  }
};

constexpr std::size_t kGroups = 2;  // column vectors per tile
// Rows per tile: kRows x kGroups independent sums hide the add or FMA latency (3-5 cycles, 2
// ports: 6-10 chains) and, with the kGroups B vectors, a broadcast and a product, fit the register
// file: 12 + 2 + 1 + 1 = 16 of 32 zmm, of 16 ymm (AVX2) or of 16 xmm (SSE2).
constexpr std::size_t kRows = 6;

// Operands packed for the tile, zeros past the ends: A (M x K) per block of kRows rows as
// K x kRows, B (N x K) per group of one vector's rows as K x lanes, the groups rounded up to whole
// tiles (kGroups vectors).
template <class T>
struct Panels {
  static constexpr std::size_t kLanes = Lanes<T>::kCount;
  std::size_t K = 0, row_blocks = 0, groups = 0;
  PooledVector<T> x, y;  // reused between calls (common/buffer_pool.hpp)

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

// Large buffers kept for reuse between calls. A GEMM allocates megabytes per call (its operands'
// values, the kernels' packed layouts) and frees them when it returns. Fresh memory costs a page
// fault and a page clear per 4 KiB, and freeing it hands it back to the system, so every call paid
// both again: ~2.4 of the ~4 ms of operand preparation of a 1024^3 GEMM from Python (2026-12-03,
// GLIBC_TUNABLES that stop glibc returning memory: 3.9 -> 1.5 ms). Buffers of at least
// kPooledMinBytes go through a process-wide cache instead: a freed one is kept (up to a total of
// FP8LAB_BUFFER_CACHE_MB MiB, default 256; 0 turns the cache off) and handed to the next request
// it fits. A PooledVector's new elements are default-initialised, not zeroed (resize(n), (n)): its
// users write every element, and zeroing what is about to be overwritten is a pass for nothing
// (1 M doubles, element by element through the allocator: ~2 ms of a 1024^2 GEMM's output).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace fp8lab {

inline constexpr std::size_t kPooledMinBytes = std::size_t{1} << 20;

// 64-byte aligned storage of at least `bytes`; throws std::bad_alloc like operator new.
void* pooled_allocate(std::size_t bytes);
// Returns storage from pooled_allocate(bytes) (the same `bytes`).
void pooled_release(void* p, std::size_t bytes) noexcept;

// What the cache holds and has done since the process started, for tests and benchmarks.
struct BufferPoolStats {
  std::size_t cached_bytes;   // freed buffers held now
  std::size_t cached_buffers;
  std::uint64_t reused;       // requests served from the cache
  std::uint64_t allocated;    // requests of kPooledMinBytes or more that took new memory
};
BufferPoolStats buffer_pool_stats();
// Frees every cached buffer (memory back to the system now).
void release_cached_buffers();

template <class T>
struct PooledAllocator {
  using value_type = T;
  PooledAllocator() = default;
  template <class U>
  PooledAllocator(const PooledAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(pooled_allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { pooled_release(p, n * sizeof(T)); }
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const PooledAllocator<U>&) const noexcept { return true; }
};

template <class T>
using PooledVector = std::vector<T, PooledAllocator<T>>;

}  // namespace fp8lab

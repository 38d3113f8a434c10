// Deterministic parallel loops. Work is cut into chunks whose boundaries depend only on the
// problem size and the grain — never on the thread count — so any per-chunk reduction done in
// chunk order gives the same bits with 1 or N threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace fp8lab {

inline constexpr int kMaxThreads = 4096;

// Threads used by parallel loops: the set_num_threads() override, else FP8LAB_THREADS if set (an
// integer in [1, kMaxThreads], anything else throws std::invalid_argument naming it), else
// std::thread::hardware_concurrency().
int num_threads();
// Overrides the thread count for this process (1 <= n <= kMaxThreads); 0 restores the default.
// Other values throw std::invalid_argument naming `n`.
void set_num_threads(int n);

// Calls body(begin, end) for consecutive chunks [begin, end) of [0, n), each at most `grain` long.
// Chunks run concurrently on up to num_threads() threads: the caller and a persistent pool of
// workers, started when first needed (a forked child starts its own). Small work stays on the
// caller: a loop of many chunks is handed to the pool only once the chunks run so far say the rest
// takes over ~100 us (less is not worth a fork/join); one of few chunks, at once. A call made
// inside a body, or while another thread's call holds the pool, runs its chunks on the calling
// thread, in order. The call returns when all are done. An exception thrown by body is rethrown
// here (the first one, by chunk order).
void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body);

// What the parallel loops did since the process started (all threads' calls): load-independent
// figures of their fixed cost, for benchmarks and tests. calls: parallel_for calls with work;
// jobs: those handed to the pool (a fork/join; the others ran inline); wakes: sleeping workers
// woken (a system call each; a worker still polling after its last job needs none); join_sleeps:
// jobs whose caller slept waiting for a worker to finish its chunk; helper_chunks: chunks the
// workers ran.
struct ParallelCounts {
  std::uint64_t calls, jobs, wakes, join_sleeps, helper_chunks;
};
ParallelCounts parallel_counts();

}  // namespace fp8lab

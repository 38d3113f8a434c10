// Deterministic parallel loops. Work is cut into chunks whose boundaries depend only on the
// problem size and the grain — never on the thread count — so any per-chunk reduction done in
// chunk order gives the same bits with 1 or N threads.
#pragma once

#include <cstddef>
#include <functional>

namespace fp8lab {

// Threads used by parallel loops: FP8LAB_THREADS if set, else std::thread::hardware_concurrency().
int num_threads();
// Overrides the thread count for this process (n >= 1); 0 restores the default.
void set_num_threads(int n);

// Calls body(begin, end) for consecutive chunks [begin, end) of [0, n), each at most `grain` long.
// Chunks run concurrently on up to num_threads() threads; the call returns when all are done.
// An exception thrown by body is rethrown here (the first one, by chunk order).
void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body);

}  // namespace fp8lab

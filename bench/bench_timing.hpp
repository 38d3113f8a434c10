// Wall-clock timing shared by the C++ benches: the best of `reps` runs (the least disturbed by the
// rest of the machine), in seconds.
#pragma once

#include <algorithm>
#include <chrono>

namespace fp8lab::bench {

template <class F>
double best_seconds(F&& f, int reps) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace fp8lab::bench

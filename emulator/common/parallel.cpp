#include "common/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <exception>
#include <string>
#include <thread>
#include <vector>

namespace fp8lab {

namespace {
std::atomic<int> thread_override{0};

// FP8LAB_THREADS, when set, must be a whole positive number: a typo ("0", "-3", "abc") is an error,
// not a silent fall back to every core, since thread count is the one knob a user sets to share a
// machine (results never depend on it).
int default_threads() {
  if (const char* env = std::getenv("FP8LAB_THREADS")) {
    const std::string text(env);
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || n < 1 || n > kMaxThreads)
      throw std::invalid_argument("FP8LAB_THREADS = '" + text + "': expected a positive integer in [1, " +
                                  std::to_string(kMaxThreads) + "] (the emulator's thread count; unset it to use every core)");
    return static_cast<int>(n);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}
}  // namespace

int num_threads() {
  const int n = thread_override.load();
  return n >= 1 ? n : default_threads();
}

void set_num_threads(int n) {
  if (n < 0 || n > kMaxThreads)
    throw std::invalid_argument("n = " + std::to_string(n) + ": expected 0 (the default) or a thread count in [1, " +
                                std::to_string(kMaxThreads) + "]");
  thread_override.store(n);
}

void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t chunks = (n + grain - 1) / grain;
  const std::size_t threads = std::min<std::size_t>(chunks, static_cast<std::size_t>(num_threads()));
  if (threads <= 1) {
    for (std::size_t c = 0; c < chunks; ++c) body(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> errors(chunks);
  auto worker = [&] {
    for (std::size_t c; (c = next.fetch_add(1)) < chunks;) {
      try {
        body(c * grain, std::min(n, (c + 1) * grain));
      } catch (...) {
        errors[c] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace fp8lab

#include "common/parallel.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
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

namespace {

// One parallel_for call's shared state: chunks are handed out by `next`; the first exception by
// chunk order is kept.
struct Job {
  Job(const std::function<void(std::size_t, std::size_t)>& b, std::size_t size, std::size_t g, std::size_t c)
      : body(b), n(size), grain(g), chunks(c) {}
  const std::function<void(std::size_t, std::size_t)>& body;
  std::size_t n, grain, chunks;
  std::atomic<std::size_t> next{0};
  std::mutex error_mutex;
  std::size_t error_chunk = SIZE_MAX;
  std::exception_ptr error;

  void work() {
    for (std::size_t c; (c = next.fetch_add(1)) < chunks;) {
      try {
        body(c * grain, std::min(n, (c + 1) * grain));
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (c < error_chunk) error_chunk = c, error = std::current_exception();
      }
    }
  }
};

thread_local bool on_pool_worker = false;

// Persistent worker threads, started when first needed and kept for the process (never joined:
// they wait on a condition variable between jobs). One job at a time: the caller runs chunks
// too, and waits only for the workers that joined the job, so a worker slow to wake costs the
// caller nothing (a job can finish before any worker has woken).
class Pool {
 public:
  explicit Pool(Pool* abandoned) : abandoned_(abandoned) {}

  void run(Job& job, std::size_t helpers) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      try {
        while (workers_.size() < helpers) {
          const std::size_t index = workers_.size();
          workers_.emplace_back([this, index] { loop(index); });
        }
      } catch (const std::system_error&) {  // no more threads to be had: work with those there are
      }
      job_ = &job;
      helpers_ = std::min(helpers, workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    job.work();
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = nullptr;  // no worker joins from here on
    idle_.wait(lock, [this] { return inside_ == 0; });
  }

 private:
  void loop(std::size_t index) {
    on_pool_worker = true;
    std::unique_lock<std::mutex> lock(mutex_);
    std::uint64_t seen = 0;
    for (;;) {
      wake_.wait(lock, [&] { return job_ != nullptr && generation_ != seen && index < helpers_; });
      seen = generation_;
      Job* job = job_;
      ++inside_;
      lock.unlock();
      job->work();
      lock.lock();
      if (--inside_ == 0) idle_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  Job* job_ = nullptr;
  std::uint64_t generation_ = 0;
  std::size_t helpers_ = 0, inside_ = 0;
  std::vector<std::thread> workers_;
  Pool* abandoned_;  // a forked child's pool keeps its parent's reachable (leak checkers)
};

// The pool and who holds it: a call that finds it held (another thread's call, or a parallel_for
// inside a body) runs its chunks itself, in order.
Pool* pool = nullptr;
std::atomic<bool> pool_held{false};

// After fork() the child has only the forking thread: its copy of the pool names workers that do
// not exist (and may be mid-job, or hold a lock one of them held). The child starts a new pool
// when it needs one.
void forget_pool_in_child() {
  pool = pool ? new Pool(pool) : nullptr;
  pool_held.store(false);
  on_pool_worker = false;
}

}  // namespace

void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t chunks = (n + grain - 1) / grain;
  const std::size_t threads = std::min<std::size_t>(chunks, static_cast<std::size_t>(num_threads()));
  Job job(body, n, grain, chunks);
  if (threads <= 1 || on_pool_worker || pool_held.exchange(true)) {
    job.work();
  } else {
    static const int registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    (void)registered;
    if (!pool) pool = new Pool(nullptr);
    pool->run(job, threads - 1);
    pool_held.store(false);
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace fp8lab

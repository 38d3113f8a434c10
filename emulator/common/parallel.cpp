#include "common/parallel.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
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
// chunk order is kept. `helpers`: the pool workers (by index) allowed to join.
struct Job {
  Job(const std::function<void(std::size_t, std::size_t)>& b, std::size_t size, std::size_t g, std::size_t c)
      : body(b), n(size), grain(g), chunks(c) {}
  const std::function<void(std::size_t, std::size_t)>& body;
  std::size_t n, grain, chunks, helpers = 0;
  std::atomic<std::size_t> next{0};
  std::mutex error_mutex;
  std::size_t error_chunk = SIZE_MAX;
  std::exception_ptr error;

  // Runs chunk c (an exception is kept, not thrown: the other chunks still run).
  void run(std::size_t c) {
    try {
      body(c * grain, std::min(n, (c + 1) * grain));
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (c < error_chunk) error_chunk = c, error = std::current_exception();
    }
  }
  // Runs chunks until none is left; returns how many this thread ran.
  std::size_t work() {
    std::size_t ran = 0;
    for (std::size_t c; (c = next.fetch_add(1)) < chunks; ++ran) run(c);
    return ran;
  }
};

thread_local bool on_pool_worker = false;

struct Counters {
  std::atomic<std::uint64_t> calls{0}, jobs{0}, wakes{0}, join_sleeps{0}, helper_chunks{0};
} counters;

void count(std::atomic<std::uint64_t>& c, std::uint64_t by = 1) { c.fetch_add(by, std::memory_order_relaxed); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a thread polls before it sleeps: a worker that finished a job, for the next one; a
// caller that finished its chunks, for the workers still inside its job. A futex wake-up costs
// tens of microseconds on a loaded VM (more than a whole small GEMM's kernel, issue 15), while
// back-to-back calls come within microseconds; polling is bounded so that an idle pool costs no
// CPU, and skipped when threads outnumber cores (a poller would hold the core a worker needs).
constexpr std::chrono::microseconds kSpin{50};

// Polls `done` for up to kSpin; true when it held.
template <class Done>
bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= until) return done();
  }
}

// Persistent worker threads, started when first needed and kept for the process (never joined).
// One job at a time: the caller runs chunks too and waits only for the workers that joined the
// job, so a worker slow to wake costs the caller nothing (a job can finish before any worker has
// woken). Between jobs a worker polls for a while, then sleeps on its own condition variable;
// the caller wakes (a system call) only the sleeping workers its job may use.
//
// Sleeping and waking pair a store with a load on each side (the worker: `asleep`, then the
// generation; the caller: the generation, then `asleep`), all sequentially consistent, so one of
// the two sees the other: a worker never sleeps through a job it was meant to join. The join
// uses the same pattern on `inside_` and `caller_asleep_`.
class Pool {
 public:
  explicit Pool(Pool* abandoned) : abandoned_(abandoned) {}

  void run(Job& job, std::size_t helpers, bool spin) {
    start_workers(helpers);
    job.helpers = std::min(helpers, started_.load());
    spin_.store(spin);
    helpers_.store(job.helpers);
    job_.store(&job);
    generation_.fetch_add(1);
    count(counters.jobs);
    bool sleeping = false;
    for (std::size_t i = 0; i < job.helpers; ++i) sleeping |= workers_[i]->asleep.load();
    if (sleeping) {
      { const std::lock_guard<std::mutex> lock(mutex_); }  // a worker seen asleep is inside its wait now
      for (std::size_t i = 0; i < job.helpers; ++i)
        if (workers_[i]->asleep.load()) workers_[i]->wake.notify_one(), count(counters.wakes);
    }
    job.work();
    job_.store(nullptr);  // no worker joins from here on
    const auto joined = [this] { return inside_.load() == 0; };
    if (!(spin && spin_until(joined))) {
      std::unique_lock<std::mutex> lock(mutex_);
      caller_asleep_.store(true);
      if (!joined()) count(counters.join_sleeps);
      idle_.wait(lock, joined);
      caller_asleep_.store(false);
    }
  }

 private:
  struct Worker {
    std::condition_variable wake;
    std::atomic<bool> asleep{false};
  };

  void start_workers(std::size_t helpers) {
    if (started_.load() >= helpers) return;
    const std::lock_guard<std::mutex> lock(mutex_);
    try {
      while (workers_.size() < helpers) {
        workers_.push_back(std::make_unique<Worker>());
        const std::size_t index = workers_.size() - 1;
        std::thread(&Pool::loop, this, workers_.back().get(), index, generation_.load()).detach();
        started_.store(workers_.size());
      }
    } catch (const std::system_error&) {  // no more threads to be had: work with those there are
      workers_.resize(started_.load());
    }
  }

  // `w`: this worker's slot (the vector that holds it may grow meanwhile; the slot does not move).
  void loop(Worker* w, std::size_t index, std::uint64_t seen) {
    on_pool_worker = true;
    for (;;) {
      const auto called = [&] { return generation_.load() != seen && index < helpers_.load(); };
      if (!(spin_.load() && spin_until(called))) {
        std::unique_lock<std::mutex> lock(mutex_);
        w->asleep.store(true);
        w->wake.wait(lock, called);
        w->asleep.store(false);
      }
      seen = generation_.load();
      inside_.fetch_add(1);
      if (Job* job = job_.load(); job && index < job->helpers) count(counters.helper_chunks, job->work());
      if (inside_.fetch_sub(1) == 1 && caller_asleep_.load()) {
        { const std::lock_guard<std::mutex> lock(mutex_); }
        idle_.notify_one();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable idle_;
  std::atomic<Job*> job_{nullptr};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::size_t> helpers_{0}, inside_{0}, started_{0};
  std::atomic<bool> spin_{true}, caller_asleep_{false};
  std::vector<std::unique_ptr<Worker>> workers_;
  Pool* abandoned_;  // a forked child's pool keeps its parent's reachable (leak checkers)
};

// Below this much work a loop runs on the calling thread alone: waking a worker (a system call,
// then tens of microseconds before it runs on a loaded VM), sharing the chunks and waiting for its
// last one cost about as much as the work they would save (issue 15: a 64x64x128 GEMM's kernel
// takes ~25 us and was slower forked on 2 threads than on 1).
constexpr std::chrono::microseconds kWorthForking{100};

// Runs job's chunks on this thread for as long as the rest of them is estimated (from the time the
// ones done so far took) to take under kWorthForking. True when all are done; false when the rest
// is worth handing to the pool (job.next onwards). A loop of no more chunks than threads is handed
// over at once. One of a few more chunks is timed on its first chunk: the operand preparation of a
// small GEMM (3-4 chunks of a few microseconds) then never wakes a worker; the price is paid by a
// loop of 2 x threads long chunks, which takes 3 chunks' time instead of 2 (the first ran alone).
bool ran_alone(Job& job, std::size_t threads) {
  if (job.chunks <= threads) return false;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t done = 1;; ++done) {
    const std::size_t c = job.next.fetch_add(1);
    if (c >= job.chunks) return true;
    job.run(c);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    if (elapsed * static_cast<double>(job.chunks - c - 1) > kWorthForking * static_cast<double>(done)) return false;
  }
}

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

// Set up when the library loads, before any thread exists. Registered at the pool's first use
// instead, a fork() between another thread's taking the pool (pool_held) and its registering this
// handler left the child with the pool held and no handler to release it: every parallel_for there
// ran on its caller alone (ParallelFor.ForkedChildNeverDeadlocks: 3 runs of 150 under load); one
// inside that first use's static initialisation would have waited on its guard forever.
[[maybe_unused]] const int kForkHandler = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
const std::size_t kCores = std::max(1u, std::thread::hardware_concurrency());

}  // namespace

ParallelCounts parallel_counts() {
  return {counters.calls.load(), counters.jobs.load(), counters.wakes.load(), counters.join_sleeps.load(),
          counters.helper_chunks.load()};
}

void parallel_for(std::size_t n, std::size_t grain, const std::function<void(std::size_t, std::size_t)>& body) {
  if (n == 0) return;
  count(counters.calls);
  grain = std::max<std::size_t>(grain, 1);
  const std::size_t chunks = (n + grain - 1) / grain;
  const auto wanted = static_cast<std::size_t>(num_threads());
  const std::size_t threads = std::min(chunks, wanted);
  Job job(body, n, grain, chunks);
  if (threads <= 1 || on_pool_worker) {
    job.work();
  } else if (!ran_alone(job, threads)) {
    if (pool_held.exchange(true)) {
      job.work();
    } else {
      if (!pool) pool = new Pool(nullptr);
      pool->run(job, threads - 1, wanted <= kCores);
      pool_held.store(false);
    }
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace fp8lab

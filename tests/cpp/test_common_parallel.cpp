// parallel_for on its persistent pool: every chunk exactly once with the documented boundaries on
// any thread count, workers kept across calls (not started per call), small loops kept on the
// caller and long ones shared, calls nested in a body and calls from several threads at once, the
// first exception by chunk order, and fork(): a child forked while the parent's pool is busy runs
// parallel loops without deadlock.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/parallel.hpp"

namespace fp8lab {
namespace {

// Restores the default thread count when a test ends.
struct Threads {
  explicit Threads(int n) { set_num_threads(n); }
  ~Threads() { set_num_threads(0); }
};

// Each chunk's start, once: the chunks of n by grain, whatever ran them.
std::vector<int> chunk_marks(std::size_t n, std::size_t grain) {
  std::vector<std::atomic<int>> seen(n);
  parallel_for(n, grain, [&](std::size_t b, std::size_t e) {
    EXPECT_EQ(b % grain, 0u);
    EXPECT_EQ(e, std::min(n, b + grain));
    for (std::size_t i = b; i < e; ++i) seen[i].fetch_add(i == b ? 1000 : 1);
  });
  std::vector<int> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = seen[i].load();
  return out;
}

TEST(ParallelFor, EveryChunkOnceOnAnyThreadCount) {
  for (const int threads : {1, 2, 3, 8}) {
    const Threads use(threads);
    for (const std::size_t n : {1, 7, 64, 1000, 4099})
      for (const std::size_t grain : {1, 5, 64, 5000}) {
        const std::vector<int> marks = chunk_marks(n, grain);
        for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(marks[i], i % grain == 0 ? 1000 : 1) << threads << " " << n << " " << grain;
      }
  }
}

std::atomic<int> threads_seen{0};
struct CountThread {
  CountThread() { threads_seen.fetch_add(1); }
};
thread_local CountThread count_thread;

TEST(ParallelFor, WorkersPersistAcrossCalls) {
  const Threads use(4);
  (void)&count_thread;
  const int before = threads_seen.load();
  std::atomic<std::size_t> sum{0};
  for (int call = 0; call < 200; ++call)
    parallel_for(64, 1, [&](std::size_t b, std::size_t) {
      (void)&count_thread;  // constructs this thread's counter once in its lifetime
      std::this_thread::sleep_for(std::chrono::microseconds(b % 4 == 0 ? 50 : 0));
      sum.fetch_add(b);
    });
  EXPECT_EQ(sum.load(), 200u * (63 * 64 / 2));
  // At most the 3 helpers are new threads (a thread per chunk per call would be hundreds).
  EXPECT_LE(threads_seen.load() - before, 3);
}

// The threads that ran a loop's chunks, and whether it was a fork/join (parallel_counts).
struct Ran {
  std::set<std::thread::id> threads;
  bool forked;
};
Ran run_loop(std::size_t chunks, std::chrono::microseconds each) {
  std::mutex m;
  Ran ran{{}, false};
  const std::uint64_t jobs = parallel_counts().jobs;
  parallel_for(chunks, 1, [&](std::size_t, std::size_t) {
    if (each.count()) std::this_thread::sleep_for(each);
    const std::lock_guard<std::mutex> lock(m);
    ran.threads.insert(std::this_thread::get_id());
  });
  ran.forked = parallel_counts().jobs != jobs;
  return ran;
}

TEST(ParallelFor, SmallLoopsStayOnTheCaller) {
  const Threads use(2);
  run_loop(64, std::chrono::microseconds(300));  // the pool exists, its worker has just run
  // 64 chunks of next to nothing: no fork/join. (A caller preempted inside its first chunks may
  // misjudge the work as long on a loaded machine: most calls, not all, must stay alone.)
  int alone = 0;
  for (int call = 0; call < 20; ++call) {
    const Ran r = run_loop(64, std::chrono::microseconds(0));
    alone += !r.forked && r.threads == std::set<std::thread::id>{std::this_thread::get_id()};
  }
  EXPECT_GE(alone, 15);
}

TEST(ParallelFor, LongLoopsAndFewLongChunksAreShared) {
  const Threads use(2);
  // 40 chunks of 500 us: handed to the pool after the first chunk, the worker takes some.
  const Ran many = run_loop(40, std::chrono::microseconds(500));
  EXPECT_TRUE(many.forked);
  EXPECT_EQ(many.threads.size(), 2u);
  // 2 chunks of 20 ms: no chunk to learn from first, shared at once (one each).
  const Ran few = run_loop(2, std::chrono::milliseconds(20));
  EXPECT_TRUE(few.forked);
  EXPECT_EQ(few.threads.size(), 2u);
}

TEST(ParallelFor, NestedAndConcurrentCallsComplete) {
  const Threads use(3);
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<std::size_t> sum{0};
        parallel_for(40, 3, [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; ++i)
            parallel_for(10, 2, [&](std::size_t ib, std::size_t ie) {
              for (std::size_t j = ib; j < ie; ++j) sum.fetch_add(i * 10 + j);
            });
        });
        if (sum.load() != 399 * 400 / 2) wrong.fetch_add(1);
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(ParallelFor, RethrowsTheFirstExceptionByChunkOrderAndStaysUsable) {
  const Threads use(4);
  for (int rep = 0; rep < 20; ++rep) {
    try {
      parallel_for(100, 1, [](std::size_t b, std::size_t) {
        if (b == 71 || b == 13 || b == 90) throw std::runtime_error("chunk " + std::to_string(b));
      });
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "chunk 13");
    }
  }
  EXPECT_EQ(chunk_marks(300, 7)[294], 1000);
}

// Runs a parallel loop in a forked child (alarm: a deadlock ends it by SIGALRM); true when the
// child computed the right sum on more than one thread (its own pool: the chunks wait for a
// second thread, see below) and exited normally.
bool child_runs_parallel_for() {
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    std::atomic<std::size_t> sum{0};
    std::mutex m;
    std::set<std::thread::id> ran_on;
    parallel_for(100, 1, [&](std::size_t b, std::size_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::unique_lock<std::mutex> lock(m);
      ran_on.insert(std::this_thread::get_id());
      // Chunk 0 may run alone (parallel_for times it before it wakes a worker); every later chunk
      // waits, up to 20 s, until a second thread has run one. A worker slow to start on a loaded
      // machine (it once took longer than the ~100 ms the other chunks lasted) is then no
      // failure; a pool that never runs anything in the child still is.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (b > 0 && ran_on.size() < 2 && std::chrono::steady_clock::now() < deadline) {
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        lock.lock();
      }
      sum.fetch_add(b);
    });
    _exit(sum.load() != 99 * 100 / 2 ? 3 : ran_on.size() < 2 ? 4 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(ParallelFor, ForkedChildNeverDeadlocks) {
  const Threads use(3);
  chunk_marks(100, 1);  // the pool exists
  EXPECT_TRUE(child_runs_parallel_for()) << "idle pool";
  // Fork while another thread keeps the pool busy: the child's copy of the pool (and possibly its
  // lock) is that of a running job.
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load()) parallel_for(64, 1, [](std::size_t, std::size_t) { std::this_thread::yield(); });
  });
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(child_runs_parallel_for()) << "busy pool, fork " << i;
  stop.store(true);
  busy.join();
}

}  // namespace
}  // namespace fp8lab

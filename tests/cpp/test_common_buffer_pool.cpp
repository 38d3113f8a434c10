// common/buffer_pool.hpp: large buffers are reused, fitted, aligned, capped; the cache survives
// threads and fork; FP8LAB_BUFFER_CACHE_MB is validated (its ctest runs set it).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/buffer_pool.hpp"

namespace fp8lab {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

bool env_set() { return std::getenv("FP8LAB_BUFFER_CACHE_MB") != nullptr; }

bool aligned64(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

TEST(BufferPool, FreedBufferIsHandedToTheNextRequestItFits) {
  if (env_set()) GTEST_SKIP() << "runs with the default limit";
  release_cached_buffers();
  const BufferPoolStats s0 = buffer_pool_stats();
  void* p = pooled_allocate(3 * kMiB);
  std::memset(p, 0x5A, 3 * kMiB);
  pooled_release(p, 3 * kMiB);
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 3 * kMiB);
  // A request the cached block fits (and does not dwarf) gets it; the block keeps its capacity.
  void* q = pooled_allocate(2 * kMiB);
  EXPECT_EQ(q, p);
  EXPECT_EQ(buffer_pool_stats().reused, s0.reused + 1);
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 0u);
  pooled_release(q, 2 * kMiB);  // freed with the smaller size: the cache still counts 3 MiB
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 3 * kMiB);
  // Too small for 4 MiB, too large (more than twice) for 1 MiB: new memory both times.
  void* big = pooled_allocate(4 * kMiB);
  void* small = pooled_allocate(kMiB + 1);
  EXPECT_NE(big, p);
  EXPECT_NE(small, p);
  EXPECT_EQ(buffer_pool_stats().allocated, s0.allocated + 3);
  pooled_release(big, 4 * kMiB);
  pooled_release(small, kMiB + 1);
  // Of two that fit, the smaller.
  void* r = pooled_allocate(3 * kMiB);
  EXPECT_EQ(r, p);
  pooled_release(r, 3 * kMiB);
  release_cached_buffers();
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 0u);
  EXPECT_EQ(buffer_pool_stats().cached_buffers, 0u);
}

TEST(BufferPool, SmallAndLargeAre64ByteAligned) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{100}, kPooledMinBytes - 1, kPooledMinBytes, 5 * kMiB + 3}) {
    void* p = pooled_allocate(n);
    EXPECT_TRUE(aligned64(p)) << n;
    std::memset(p, 1, n);
    pooled_release(p, n);
  }
  PooledVector<double> v(3 * kMiB / sizeof(double), 1.5);  // an explicit value is written
  EXPECT_TRUE(aligned64(v.data()));
  EXPECT_EQ(v.front(), 1.5);
  EXPECT_EQ(v.back(), 1.5);
}

TEST(BufferPool, NewElementsAreNotZeroed) {
  if (env_set()) GTEST_SKIP() << "runs with the default limit";
  release_cached_buffers();
  // resize(n) default-initialises: a reused buffer shows its previous contents (what a user must
  // overwrite), where a value-initialising vector would spend a pass zeroing it.
  const std::size_t n = 2 * kMiB / sizeof(float);
  const float* first = nullptr;
  {
    PooledVector<float> v(n, 3.0f);
    first = v.data();
  }
  PooledVector<float> w;
  w.resize(n);
  ASSERT_EQ(w.data(), first);
  EXPECT_EQ(w[0], 3.0f);
  EXPECT_EQ(w[n - 1], 3.0f);
  release_cached_buffers();
}

TEST(BufferPool, CacheStaysWithinItsLimitOldestOut) {
  if (env_set()) GTEST_SKIP() << "runs with the default limit";
  release_cached_buffers();
  // Five 64 MiB buffers freed (320 MiB) against the default 256 MiB: the first one freed goes.
  std::vector<void*> p;
  for (int i = 0; i < 5; ++i) p.push_back(pooled_allocate(64 * kMiB));
  for (void* x : p) pooled_release(x, 64 * kMiB);
  const BufferPoolStats s = buffer_pool_stats();
  EXPECT_EQ(s.cached_bytes, 256 * kMiB);
  EXPECT_EQ(s.cached_buffers, 4u);
  // A buffer larger than the whole limit is never kept.
  void* huge = pooled_allocate(300 * kMiB);
  pooled_release(huge, 300 * kMiB);
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 256 * kMiB);
  release_cached_buffers();
}

TEST(BufferPool, ThreadsGetDistinctBuffers) {
  // Each thread writes its own pattern into buffers it takes and frees, over and over; a buffer
  // handed to two threads at once would show the other's bytes.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &bad] {
      for (int i = 0; i < 200; ++i) {
        const std::size_t n = (1 + (i + t) % 3) * kMiB;
        auto* p = static_cast<unsigned char*>(pooled_allocate(n));
        std::memset(p, t + 1, n);
        std::this_thread::yield();
        for (std::size_t k = 0; k < n; k += 4093)
          if (p[k] != t + 1) ++bad;
        pooled_release(p, n);
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(BufferPool, ForkedChildCanAllocate) {
  // Fork while another thread keeps taking and freeing buffers: the child's copy of the cache's
  // lock must not be a held one.
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop.load()) pooled_release(pooled_allocate(2 * kMiB), 2 * kMiB);
  });
  for (int i = 0; i < 20; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(10);  // a deadlock ends the child with SIGALRM, not a hung test
      void* p = pooled_allocate(2 * kMiB);
      pooled_release(p, 2 * kMiB);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "fork " << i << ": status " << status;
  }
  stop.store(true);
  busy.join();
}

// Run by ctest with FP8LAB_BUFFER_CACHE_MB=0: nothing is kept.
TEST(BufferPoolEnv, ZeroTurnsTheCacheOff) {
  const char* v = std::getenv("FP8LAB_BUFFER_CACHE_MB");
  if (!v || std::string(v) != "0") GTEST_SKIP() << "needs FP8LAB_BUFFER_CACHE_MB=0";
  for (int i = 0; i < 2; ++i) {
    void* p = pooled_allocate(2 * kMiB);
    pooled_release(p, 2 * kMiB);
  }
  EXPECT_EQ(buffer_pool_stats().cached_bytes, 0u);
  EXPECT_EQ(buffer_pool_stats().reused, 0u);
  EXPECT_EQ(buffer_pool_stats().allocated, 2u);  // both took new memory, and the count says so
}

// Run by ctest with FP8LAB_BUFFER_CACHE_MB=12x: the first large request says what is wrong.
TEST(BufferPoolEnv, MalformedLimitIsAnErrorNamingTheVariable) {
  const char* v = std::getenv("FP8LAB_BUFFER_CACHE_MB");
  if (!v || std::string(v) == "0") GTEST_SKIP() << "needs a malformed FP8LAB_BUFFER_CACHE_MB";
  try {
    pooled_allocate(2 * kMiB);
    FAIL() << "FP8LAB_BUFFER_CACHE_MB=" << v << " accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("FP8LAB_BUFFER_CACHE_MB: '" + std::string(v) + "'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace fp8lab

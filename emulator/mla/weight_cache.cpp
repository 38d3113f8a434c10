#include "mla/weight_cache.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <string>
#include <vector>

#include "common/parallel.hpp"

namespace fp8lab::mla {

namespace {

constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;  // odd: multiplication by it is a bijection mod 2^64
constexpr std::size_t kLanes = 8, kGrain = std::size_t{1} << 18;  // words per chunk (fixed: thread-count independent)

// One step of a lane: bijective in the state for a fixed word and in the word for a fixed state.
inline std::uint64_t step(std::uint64_t h, std::uint64_t w) {
  h = (h ^ w) * kMul;
  return h ^ (h >> 29);
}

inline std::uint64_t word(const float* p, std::size_t i) {
  std::uint64_t w;
  std::memcpy(&w, p + 2 * i, sizeof w);  // two floats' bits, read without aliasing them
  return w;
}

// n 64-bit words from p (2n floats).
std::uint64_t chunk_fingerprint(const float* p, std::size_t n) {
  std::uint64_t lane[kLanes];
  for (std::size_t l = 0; l < kLanes; ++l) lane[l] = kMul * (l + 1);
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) lane[l] = step(lane[l], word(p, i + l));
  for (std::size_t l = 0; i + l < n; ++l) lane[l] = step(lane[l], word(p, i + l));
  std::uint64_t h = n;
  for (std::size_t l = 0; l < kLanes; ++l) h = step(h, lane[l]);
  return h;
}

struct Entry {
  std::uint64_t fingerprint;
  std::size_t rows, cols;
  std::string recipe;  // format, tile and the rule's JSON
  std::shared_ptr<const QTensor> q;
  std::size_t bytes;
  std::uint64_t last_use;
};

struct Cache {
  std::mutex mu;
  std::vector<Entry> entries;
  std::size_t bytes = 0;
  std::uint64_t clock = 0, hits = 0, misses = 0;
};

// Never destroyed (a call at exit finds it). Its mutex is held across fork() (pthread_atfork), so a
// child forked while another thread was inside the cache starts with it unlocked and consistent.
Cache* the_cache = nullptr;

Cache& cache() {
  static const bool made = [] {
    the_cache = new Cache;
    pthread_atfork([] { the_cache->mu.lock(); }, [] { the_cache->mu.unlock(); }, [] { the_cache->mu.unlock(); });
    return true;
  }();
  (void)made;
  return *the_cache;
}

// Made when the library loads, before any thread exists (as common/buffer_pool.cpp's cache): a
// fork() while another thread was inside cache()'s first call would leave the child waiting forever
// on the initialisation's guard, which no thread of the child releases (gdb: __cxa_guard_acquire in
// cache(); MlaWeightCache.ForkedChildWhileAnotherThreadUsesTheCache hung at its second fork in 2
// runs of 40, and 1 of 60).
[[maybe_unused]] const bool kCacheMade = (cache(), true);

std::string recipe_key(const OperandRecipe& op) {
  return op.format + "|" + std::to_string(op.tile.rows) + "x" + std::to_string(op.tile.cols) + "|" + op.rule.to_json();
}

std::size_t bytes_of(const QTensor& q) {
  return q.bits.byte_size() + q.scales.size() * sizeof(float) + q.scale_bits_ue8m0.size();
}

}  // namespace

std::uint64_t weights_fingerprint(const float* values, std::size_t n) {
  // The floats as 64-bit words (an odd count's last float alone, zero-extended), in chunks of
  // kGrain words whose fingerprints are chained in chunk order.
  const std::size_t words = n / 2, chunks = (words + kGrain - 1) / kGrain;
  std::vector<std::uint64_t> part(chunks);
  parallel_for(chunks, 1, [&](std::size_t b, std::size_t e) {
    for (std::size_t c = b; c < e; ++c) {
      const std::size_t w0 = c * kGrain;
      part[c] = chunk_fingerprint(values + 2 * w0, std::min(kGrain, words - w0));
    }
  });
  std::uint64_t h = step(kMul, n);
  for (std::uint64_t p : part) h = step(h, p);
  if (n % 2) {
    std::uint32_t last;
    std::memcpy(&last, values + n - 1, sizeof last);
    h = step(h, last);
  }
  return h;
}

std::shared_ptr<const QTensor> quantized_weights(std::span<const float> w, std::size_t rows, std::size_t cols,
                                                 const OperandRecipe& op) {
  const std::uint64_t fp = weights_fingerprint(w.data(), std::min(w.size(), rows * cols));
  const std::string key = recipe_key(op);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (Entry& e : c.entries)
      if (e.fingerprint == fp && e.rows == rows && e.cols == cols && e.recipe == key) {
        e.last_use = ++c.clock;
        ++c.hits;
        return e.q;
      }
    ++c.misses;
  }
  auto q = std::make_shared<const QTensor>(quantize_operand(w.data(), rows, cols, op));
  const std::size_t bytes = bytes_of(*q);
  if (bytes > kWeightCacheBytes) return q;
  std::lock_guard<std::mutex> lock(c.mu);
  for (const Entry& e : c.entries)  // another thread kept the same tensor meanwhile
    if (e.fingerprint == fp && e.rows == rows && e.cols == cols && e.recipe == key) return e.q;
  while (!c.entries.empty() && (c.entries.size() >= kWeightCacheEntries || c.bytes + bytes > kWeightCacheBytes)) {
    const auto lru = std::min_element(c.entries.begin(), c.entries.end(),
                                      [](const Entry& a, const Entry& b) { return a.last_use < b.last_use; });
    c.bytes -= lru->bytes;
    c.entries.erase(lru);
  }
  c.entries.push_back(Entry{fp, rows, cols, key, q, bytes, ++c.clock});
  c.bytes += bytes;
  return q;
}

WeightCacheInfo weight_cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return WeightCacheInfo{c.entries.size(), c.bytes, c.hits, c.misses};
}

void clear_weight_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.entries.clear();
  c.bytes = 0;
}

}  // namespace fp8lab::mla

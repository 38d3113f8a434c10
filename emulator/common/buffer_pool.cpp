#include "common/buffer_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

namespace fp8lab {
namespace {

constexpr std::align_val_t kAlign{64};
// A pooled buffer starts one alignment unit after its block, which holds the block's capacity (a
// reused buffer may be larger than the request its user frees it with).
constexpr std::size_t kHeader = 64;

struct Block {
  void* base;
  std::size_t capacity;  // usable bytes after the header
};

struct Cache {
  std::mutex lock;
  std::vector<Block> blocks;  // oldest first
  std::size_t bytes = 0;
  std::uint64_t reused = 0, allocated = 0;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: buffers may be freed during static destruction
  return *c;
}

// FP8LAB_BUFFER_CACHE_MB: a whole number of MiB, 0 .. 1048576. Anything else is reported by the
// first large request (a library must not throw while it loads).
struct Settings {
  std::size_t limit = std::size_t{256} << 20;
  std::string error;
};

Settings read_settings() {
  Settings out;
  const char* v = std::getenv("FP8LAB_BUFFER_CACHE_MB");
  if (!v) return out;
  const std::string s(v);
  const bool digits = !s.empty() && s.size() <= 7 && s.find_first_not_of("0123456789") == std::string::npos;
  const unsigned long long mb = digits ? std::stoull(s) : ~0ull;
  if (mb > (1ull << 20))
    out.error = "FP8LAB_BUFFER_CACHE_MB: '" + s + "' is not a whole number of MiB in [0, 1048576] (0 turns the buffer "
                "cache off)";
  else
    out.limit = static_cast<std::size_t>(mb) << 20;
  return out;
}

const Settings& settings() {
  static const Settings s = read_settings();
  return s;
}

// Everything set up when the library loads, before any thread exists: a fork while another thread
// was inside a lazy static's first initialisation, or held the lock, would leave the child's copy
// waiting forever (hence the fork handlers too).
[[maybe_unused]] const int kSetUp = (cache(), settings(),
                                     pthread_atfork([] { cache().lock.lock(); }, [] { cache().lock.unlock(); },
                                                    [] { cache().lock.unlock(); }));

std::size_t limit() {
  const Settings& s = settings();
  if (!s.error.empty()) throw std::invalid_argument(s.error);
  return s.limit;
}

void free_block(const Block& b) noexcept { ::operator delete(b.base, kAlign); }

}  // namespace

void* pooled_allocate(std::size_t bytes) {
  if (bytes < kPooledMinBytes) return ::operator new(std::max<std::size_t>(bytes, 1), kAlign);
  limit();  // FP8LAB_BUFFER_CACHE_MB checked before the first large request, even with the cache off
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> hold(c.lock);
    // The smallest cached block (none when the cache is off) that fits and wastes less than the request.
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
      if (it->capacity >= bytes && it->capacity / 2 <= bytes && (best == c.blocks.end() || it->capacity < best->capacity))
        best = it;
    if (best != c.blocks.end()) {
      void* base = best->base;
      c.bytes -= best->capacity;
      c.blocks.erase(best);
      ++c.reused;
      return static_cast<char*>(base) + kHeader;
    }
    ++c.allocated;
  }
  if (bytes > static_cast<std::size_t>(-1) - kHeader) throw std::bad_array_new_length();
  void* base = ::operator new(bytes + kHeader, kAlign);
  *static_cast<std::size_t*>(base) = bytes;
  return static_cast<char*>(base) + kHeader;
}

void pooled_release(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  if (bytes < kPooledMinBytes) {
    ::operator delete(p, kAlign);
    return;
  }
  const Block b{static_cast<char*>(p) - kHeader, *reinterpret_cast<std::size_t*>(static_cast<char*>(p) - kHeader)};
  const std::size_t cap = settings().limit;  // valid: pooled_allocate(bytes) succeeded
  if (b.capacity > cap) {
    free_block(b);
    return;
  }
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> hold(c.lock);
    try {
      c.blocks.push_back(b);
    } catch (...) {  // no memory for the list entry: free the buffer instead
      free_block(b);
      return;
    }
    c.bytes += b.capacity;
    std::size_t drop = 0;
    while (c.bytes > cap) c.bytes -= c.blocks[drop++].capacity;
    for (std::size_t i = 0; i < drop; ++i) free_block(c.blocks[i]);
    c.blocks.erase(c.blocks.begin(), c.blocks.begin() + static_cast<std::ptrdiff_t>(drop));
  }
}

BufferPoolStats buffer_pool_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> hold(c.lock);
  return {c.bytes, c.blocks.size(), c.reused, c.allocated};
}

void release_cached_buffers() {
  Cache& c = cache();
  std::lock_guard<std::mutex> hold(c.lock);
  for (const Block& b : c.blocks) free_block(b);
  c.blocks.clear();
  c.bytes = 0;
}

}  // namespace fp8lab

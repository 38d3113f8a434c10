#include "common/profile.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace fp8lab {
namespace {

// -1: not decided yet (FP8LAB_PROFILE is read at the first use); 0 off; 1 on.
std::atomic<int> state{-1};
std::array<std::atomic<std::uint64_t>, kStageCount> ns{};
std::array<std::atomic<std::uint64_t>, kStageCount> calls{};

constexpr std::array<std::string_view, kStageCount> kNames{"operand preparation", "representability checks", "kernel",
                                                           "output rounding"};

}  // namespace

std::string_view stage_name(Stage s) { return kNames[static_cast<std::size_t>(s)]; }

bool profiling() {
  const int s = state.load(std::memory_order_relaxed);
  if (s >= 0) return s == 1;
  const char* env = std::getenv("FP8LAB_PROFILE");
  const bool on = env && *env && std::strcmp(env, "0") != 0;
  int expected = -1;
  state.compare_exchange_strong(expected, on ? 1 : 0);
  return state.load() == 1;
}

void set_profiling(bool on) { state.store(on ? 1 : 0); }

StageTotals stage_totals() {
  StageTotals t;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    t.seconds[i] = static_cast<double>(ns[i].load()) * 1e-9;
    t.count[i] = calls[i].load();
  }
  return t;
}

void reset_stage_totals() {
  for (std::size_t i = 0; i < kStageCount; ++i) {
    ns[i].store(0);
    calls[i].store(0);
  }
}

std::uint64_t StageTimer::now_ns() {
  // steady_clock's epoch is boot-ish, so a real reading is never 0 (0 marks "not timing").
  return static_cast<std::uint64_t>(
             std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
                 .count()) |
         1u;
}

void StageTimer::add(Stage s, std::uint64_t d) {
  ns[static_cast<std::size_t>(s)].fetch_add(d, std::memory_order_relaxed);
  calls[static_cast<std::size_t>(s)].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace fp8lab

// A stage timer for "where does a call's time go" (fp8lab profile, FP8LAB_PROFILE=1): the wall time
// of each stage of a call (operand preparation, representability checks, kernel, output rounding)
// summed process-wide. Off, a StageTimer is one relaxed atomic load and a branch: no clock is read.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace fp8lab {

enum class Stage : std::uint8_t { OperandPreparation, RepresentabilityChecks, Kernel, OutputRounding };
inline constexpr std::size_t kStageCount = 4;
std::string_view stage_name(Stage s);  // "operand preparation", ...

// On when set_profiling(true) was called, else when FP8LAB_PROFILE is set to anything but "" or "0".
bool profiling();
void set_profiling(bool on);

struct StageTotals {
  std::array<double, kStageCount> seconds{};
  std::array<std::uint64_t, kStageCount> count{};
};
StageTotals stage_totals();
void reset_stage_totals();

class StageTimer {
 public:
  explicit StageTimer(Stage s) : stage_(s), start_(profiling() ? now_ns() : 0) {}
  ~StageTimer() {
    if (start_) add(stage_, now_ns() - start_);
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  static std::uint64_t now_ns();
  static void add(Stage s, std::uint64_t ns);
  Stage stage_;
  std::uint64_t start_;  // 0: not timing
};

}  // namespace fp8lab

// Replays the emulator against every hardware trace committed in fixtures/hardware/ (captured by
// gpu/check.sh on a real GPU) and requires bit-identity: a "gemm" trace against the GemmSpec it
// names, a "tc_probe" trace against its instruction preset. With no trace committed the test is
// SKIPPED and says so — hardware bits come from hardware, never from a guess.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "golden/trace.hpp"
#include "gpu/hardware_trace.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<std::string> hardware_traces() {
  std::vector<std::string> files;
  const fs::path dir = fs::path(FP8LAB_SOURCE_DIR) / "fixtures" / "hardware";
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(GpuReplay, EmulatorReproducesEveryCommittedHardwareTrace) {
  const std::vector<std::string> files = hardware_traces();
  if (files.empty()) {
    GTEST_SKIP() << "no hardware traces exist yet in fixtures/hardware/: they are captured by gpu/check.sh on an "
                    "H100/H200 (see fixtures/hardware/README.md)";
  }
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    const fp8lab::golden::Trace t = fp8lab::golden::read_trace(path);
    ASSERT_TRUE(t.extra.count("gpu")) << path << ": a hardware trace names its GPU in __metadata__[\"gpu\"]";
    ASSERT_TRUE(t.extra.count("driver")) << path << ": a hardware trace names its driver in __metadata__[\"driver\"]";
    std::string diff;
    if (t.op == "gemm") {
      diff = fp8lab::gpu::replay_gemm_trace(t);
    } else if (t.op == "tc_probe") {
      diff = fp8lab::gpu::replay_probe_trace(t);
    } else {
      FAIL() << path << ": op '" << t.op << "' is not a hardware trace kind (gemm, tc_probe)";
    }
    EXPECT_EQ(diff, "") << path << " (" << t.producer << "): " << diff;
  }
}

}  // namespace

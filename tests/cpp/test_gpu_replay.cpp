// Replays the emulator against every hardware trace committed in fixtures/hardware/ (captured by
// gpu/check.sh on a real GPU) and requires bit-identity: a "gemm" trace against the GemmSpec it
// names, a "tc_probe" trace against its instruction preset. With no trace committed the test is
// SKIPPED and says so — hardware bits come from hardware, never from a guess.
// FP8LAB_HARDWARE_TRACES_DIR, when set, names the folder instead of the checkout's
// fixtures/hardware compiled in: gpu/check.sh sets it (a build carried to another machine does not
// find its build machine's source path there), and tools/import-hardware-traces.sh uses it to
// replay traces returned by a device run before they are committed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "golden/trace.hpp"
#include "gpu/hardware_trace.hpp"

namespace {

namespace fs = std::filesystem;

fs::path hardware_dir() {
  if (const char* env = std::getenv("FP8LAB_HARDWARE_TRACES_DIR"); env != nullptr && *env != '\0') return env;
  return fs::path(FP8LAB_SOURCE_DIR) / "fixtures" / "hardware";
}

std::vector<std::string> hardware_traces(const fs::path& dir) {
  std::vector<std::string> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(GpuReplay, EmulatorReproducesEveryCommittedHardwareTrace) {
  const fs::path dir = hardware_dir();
  // A folder named explicitly must exist: a typo must not pass as "no traces yet".
  if (const char* env = std::getenv("FP8LAB_HARDWARE_TRACES_DIR"); env != nullptr && *env != '\0') {
    ASSERT_TRUE(fs::is_directory(dir)) << "FP8LAB_HARDWARE_TRACES_DIR=" << dir.string() << " is not a folder";
  }
  const std::vector<std::string> files = hardware_traces(dir);
  if (files.empty()) {
    GTEST_SKIP() << "no hardware traces exist yet in " << dir.string()
                 << ": they are captured by gpu/check.sh on an H100/H200 (see fixtures/hardware/README.md)";
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

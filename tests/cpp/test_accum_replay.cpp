// Hardware truth: every published tensor-core measurement (shared/tc-measurements, Khattak &
// Mikaitis, format in its README) replayed through the preset that models it, requiring bit
// identity sample by sample. Where a published model is kept although the data contradict it, the
// test pins the number of matching samples established here and says why.
//
// Not replayed: the d_*_fp16.txt files (FP16 output). No preset models FP16 output, and
// REFERENCE.md records that neither published model reproduces the H100 FP8 -> FP16 files; a
// first look here (sample 0 of H100/E4M3: exact a.b + c = 4.41871, hardware 4.421875, one FP16
// ulp above nearest and truncation alike) agrees that something else happens there.
//
// Data location: $FP8LAB_TC_MEASUREMENTS, else FP8LAB_SOURCE_DIR/../shared/tc-measurements; the
// tests skip with a message naming both when neither holds the data.
#include <gtest/gtest.h>

#include <bitset>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "accum/tensor_core.hpp"
#include "formats/encode.hpp"
#include "formats/format.hpp"

namespace fp8lab {
namespace {

namespace fs = std::filesystem;

fs::path data_dir() {
  if (const char* env = std::getenv("FP8LAB_TC_MEASUREMENTS"); env != nullptr && env[0] != '\0') return env;
  return fs::path(FP8LAB_SOURCE_DIR) / ".." / "shared" / "tc-measurements";
}

struct DataSet {
  std::vector<std::uint32_t> a, b, c, d;
};

std::vector<std::uint32_t> read_hex_words(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::uint32_t> out;
  std::string w;
  while (in >> w) out.push_back(static_cast<std::uint32_t>(std::stoul(w, nullptr, 16)));
  return out;
}

std::vector<std::uint32_t> read_binary_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::uint32_t> out;
  std::string w;
  while (in >> w) out.push_back(static_cast<std::uint32_t>(std::bitset<32>(w).to_ulong()));
  return out;
}

// Loads ARCH/FMT; returns false (and a reason) when a file is missing.
bool load(const std::string& arch, const std::string& fmt, DataSet& ds, std::string& why) {
  const fs::path dir = data_dir() / arch / fmt;
  const fs::path fa = dir / ("a_" + arch + "_" + fmt + ".txt"), fb = dir / ("b_" + arch + "_" + fmt + ".txt"),
                 fc = dir / ("c_" + arch + "_fp32.txt"), fd = dir / ("d_" + arch + "_fp32.txt");
  for (const auto& f : {fa, fb, fc, fd})
    if (!fs::exists(f)) {
      why = "tensor-core measurements not found (" + f.string() +
            "); set FP8LAB_TC_MEASUREMENTS to the tc-measurements directory";
      return false;
    }
  ds.a = read_hex_words(fa);
  ds.b = read_hex_words(fb);
  ds.c = read_binary_lines(fc);
  ds.d = read_binary_lines(fd);
  return true;
}

float f32(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
std::uint32_t u32(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

struct Replay {
  int matches = 0;
  int samples = 0;
  std::string first_mismatch;
};

// Replays `samples` of K_data products each through `preset`; a sample with fewer products than
// the instruction's k is zero-padded (zero products take no part in the model). With c_zero the
// accumulator input is 0 (the H100 FP8 runs: README "For H100 FP8 the accumulator input c is zero").
Replay replay(const DataSet& ds, const char* preset, int k_data, bool c_zero) {
  const TensorCoreModel& m = tensor_core_by_name(preset);
  const int k = tensor_core_k(m);
  Replay r;
  r.samples = static_cast<int>(ds.d.size());
  std::vector<float> a(static_cast<std::size_t>(k)), b(static_cast<std::size_t>(k));
  for (int i = 0; i < r.samples; ++i) {
    std::fill(a.begin(), a.end(), 0.0f);
    std::fill(b.begin(), b.end(), 0.0f);
    for (int j = 0; j < k_data; ++j) {
      a[static_cast<std::size_t>(j)] = f32(ds.a[static_cast<std::size_t>(i * k_data + j)]);
      b[static_cast<std::size_t>(j)] = f32(ds.b[static_cast<std::size_t>(i * k_data + j)]);
    }
    const float c = c_zero ? 0.0f : f32(ds.c[static_cast<std::size_t>(i)]);
    const std::uint32_t got = u32(fused_dot_add(a.data(), b.data(), c, m));
    if (got == ds.d[static_cast<std::size_t>(i)]) {
      ++r.matches;
    } else if (r.first_mismatch.empty()) {
      std::ostringstream os;
      os << "sample " << i << ": model 0x" << std::hex << got << ", hardware 0x" << ds.d[static_cast<std::size_t>(i)];
      r.first_mismatch = os.str();
    }
  }
  return r;
}

struct Case {
  const char* arch;
  const char* fmt;
  const char* preset;
  int k_data;  // products per sample in the files (README)
  bool c_zero;
  int expected_matches;  // 5000 = bit identity on every sample
};

class TcReplay : public ::testing::TestWithParam<Case> {};

TEST_P(TcReplay, MatchesHardware) {
  const Case& cs = GetParam();
  DataSet ds;
  std::string why;
  if (!load(cs.arch, cs.fmt, ds, why)) GTEST_SKIP() << why;
  ASSERT_EQ(ds.d.size(), 5000u) << "README promises 5000 samples per set";
  ASSERT_EQ(ds.a.size(), 5000u * static_cast<std::size_t>(cs.k_data));
  ASSERT_EQ(ds.b.size(), ds.a.size());
  ASSERT_EQ(ds.c.size(), 5000u);
  const Replay r = replay(ds, cs.preset, cs.k_data, cs.c_zero);
  std::cout << "[ replay ] " << cs.arch << "/" << cs.fmt << " through " << cs.preset << ": " << r.matches << "/"
            << r.samples << " bit-identical\n";
  EXPECT_EQ(r.matches, cs.expected_matches) << r.first_mismatch;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = std::string(info.param.arch) + "_" + info.param.fmt + "_" + info.param.preset;
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

// Every (architecture, format) set in the measurements has a preset that reproduces it.
INSTANTIATE_TEST_SUITE_P(
    AllMeasuredSets, TcReplay,
    ::testing::Values(Case{"H100", "E4M3", "hopper_fp8", 32, true, 5000},
                      Case{"H100", "E5M2", "hopper_fp8_e5m2", 32, true, 5000},
                      Case{"H100", "bf16", "hopper_bf16", 16, false, 5000},
                      Case{"H100", "fp16", "hopper_fp16", 16, false, 5000},
                      Case{"H100", "tf32", "hopper_tf32", 4, false, 5000},
                      Case{"Ada", "E4M3", "ada_fp8", 32, false, 5000},
                      Case{"Ada", "E5M2", "ada_fp8_e5m2", 32, false, 5000},
                      Case{"Ada", "bf16", "ada_bf16", 8, false, 5000},
                      Case{"Ada", "fp16", "ada_fp16", 8, false, 5000},
                      Case{"Ada", "tf32", "ada_tf32", 4, false, 5000},
                      Case{"A100", "bf16", "ampere_bf16", 8, false, 5000},
                      Case{"A100", "fp16", "ampere_fp16", 8, false, 5000},
                      Case{"A100", "tf32", "ampere_tf32", 4, false, 5000},
                      Case{"B200", "E4M3", "blackwell_mma_fp8", 32, false, 5000},
                      Case{"B200", "E5M2", "blackwell_mma_fp8_e5m2", 32, false, 5000},
                      Case{"B200", "bf16", "blackwell_bf16", 16, false, 5000},
                      Case{"B200", "fp16", "blackwell_fp16", 16, false, 5000},
                      Case{"B200", "tf32", "blackwell_tf32", 4, false, 5000}),
    case_name);

// The published Blackwell FP8 model (25 fractional bits, truncation: MMA-Sim, and Khattak &
// Mikaitis' B200TC.m) against the B200 mma.sync FP8 data: it does NOT reproduce them (REFERENCE.md:
// "looks correctly rounded"; blackwell_mma_fp8 above is what does). The counts are what this
// model gives on these files, established by this test; they document the disagreement and catch
// any change to the model's arithmetic. The samples it misses are those where its truncations
// and the hardware's final nearest-even addition of C part ways.
INSTANTIATE_TEST_SUITE_P(PublishedModelContradicted, TcReplay,
                         ::testing::Values(Case{"B200", "E4M3", "blackwell_fp8", 32, false, 3207},
                                           Case{"B200", "E5M2", "blackwell_fp8_e5m2", 32, false, 3236}),
                         case_name);

// FP16 accumulators: Ada FP8 mma.sync .f16 (d_Ada_fp16.txt, FP16 values written as FP32 bit
// strings), C = the c file rounded to FP16 (the measuring kernel converts it); every sample.
TEST(TcReplayFp16Output, AdaFp8WithFp16AccumulatorMatchesEverySample) {
  const Format& fp16 = format_by_name("fp16");
  for (const auto& [fmt, preset] : {std::pair{"E4M3", "ada_fp8_f16"}, std::pair{"E5M2", "ada_fp8_e5m2_f16"}}) {
    DataSet ds;
    std::string why;
    if (!load("Ada", fmt, ds, why)) GTEST_SKIP() << why;
    const fs::path f16 = data_dir() / "Ada" / fmt / "d_Ada_fp16.txt";
    if (!fs::exists(f16)) GTEST_SKIP() << "missing " << f16.string();
    const std::vector<std::uint32_t> d16 = read_binary_lines(f16);
    ASSERT_EQ(d16.size(), 5000u);
    const TensorCoreModel& m = tensor_core_by_name(preset);
    int matches = 0;
    std::string first;
    float a[32], b[32];
    for (std::size_t i = 0; i < d16.size(); ++i) {
      for (std::size_t j = 0; j < 32; ++j) {
        a[j] = f32(ds.a[i * 32 + j]);
        b[j] = f32(ds.b[i * 32 + j]);
      }
      const float c16 = static_cast<float>(round_to_format(f32(ds.c[i]), fp16));
      const std::uint32_t got = u32(fused_dot_add(a, b, c16, m));
      if (got == d16[i]) {
        ++matches;
      } else if (first.empty()) {
        first = "sample " + std::to_string(i) + ": model " + std::to_string(got) + ", hardware " + std::to_string(d16[i]);
      }
    }
    std::cout << "[ replay ] Ada/" << fmt << " FP16 output through " << preset << ": " << matches
              << "/5000 bit-identical\n";
    EXPECT_EQ(matches, 5000) << first;
  }
}

// H100 FP8 with FP16 output (d_H100_fp16.txt, FP16 values written as FP32 bit strings): the
// published model (MMA-Sim nv_ptx/sim.py, WGMMA with an f16 accumulator: C and D in FP16, the
// same 13-bit alignment, then "RNE-FP16") does NOT reproduce the files; REFERENCE.md: neither
// published model does. It is built here from the hopper_fp8 row with a 24-bit output (exact:
// the aligned sum has at most 20 significant bits) followed by nearest-even rounding to FP16,
// with C = the c file rounded to FP16. The counts are what it gives on these files, established
// by this test (mmasim 2.1.1's own WGMMA("Hopper", "m64n8k32.f16.e4m3.e4m3") gives the same
// 3113/5000 on the E4M3 files); no Hopper preset claims FP16 output until a model reproduces them.
TEST(TcReplayFp16Output, PublishedHopperModelMatchesOnlyPartOfTheH100Files) {
  const Format& fp16 = format_by_name("fp16");
  for (const auto& [fmt, preset, expected] :
       {std::tuple{"E4M3", "hopper_fp8", 3113}, std::tuple{"E5M2", "hopper_fp8_e5m2", 3340}}) {
    DataSet ds;
    std::string why;
    if (!load("H100", fmt, ds, why)) GTEST_SKIP() << why;
    const fs::path f16 = data_dir() / "H100" / fmt / "d_H100_fp16.txt";
    if (!fs::exists(f16)) GTEST_SKIP() << "missing " << f16.string();
    const std::vector<std::uint32_t> d16 = read_binary_lines(f16);
    ASSERT_EQ(d16.size(), 5000u);
    TensorCoreModel m = tensor_core_by_name(preset);
    m.output_precision = 24;  // keep the aligned sum whole; the FP16 rounding follows
    int matches = 0;
    float a[32], b[32];
    for (std::size_t i = 0; i < d16.size(); ++i) {
      for (std::size_t j = 0; j < 32; ++j) {
        a[j] = f32(ds.a[i * 32 + j]);
        b[j] = f32(ds.b[i * 32 + j]);
      }
      const float c16 = static_cast<float>(round_to_format(f32(ds.c[i]), fp16));
      const float s = fused_dot_add(a, b, c16, m);
      const float d = static_cast<float>(round_to_format(s, fp16));
      matches += u32(d) == d16[i];
    }
    std::cout << "[ replay ] H100/" << fmt << " FP16 output, published model: " << matches
              << "/5000 bit-identical\n";
    EXPECT_EQ(matches, expected) << fmt;
  }
}

}  // namespace
}  // namespace fp8lab

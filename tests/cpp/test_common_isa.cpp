// Runtime CPU dispatch (common/isa.hpp): the variant table, the refusals and the default choice.
// The kernels' variants are checked in test_gemm (HopperFp8Kernel), prop_gemm and the
// gemm_digest_every_isa test.
#include <gtest/gtest.h>

#include <bit>
#include <stdexcept>
#include <string>

#include "common/isa.hpp"

namespace fp8lab {
namespace {

TEST(Isa, NamesRoundTripAndUnknownNamesAreErrors) {
  for (const Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) EXPECT_EQ(isa_by_name(isa_name(isa), "x"), isa);
  try {
    isa_by_name("sse9", "FP8LAB_CPU");
    FAIL() << "sse9 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("FP8LAB_CPU = 'sse9'"), std::string::npos) << e.what();
  }
}

TEST(Isa, PortableIsAlwaysBuiltAndRunnable) {
  ASSERT_FALSE(built_isas().empty());
  EXPECT_EQ(built_isas().front(), Isa::Portable);
  EXPECT_TRUE(isa_supported(Isa::Portable));
  EXPECT_EQ(runnable_isas().front(), Isa::Portable);
  for (const Isa isa : runnable_isas()) EXPECT_TRUE(isa_supported(isa));
}

TEST(Isa, DefaultIsTheBestRunnableVariant) {
  // FP8LAB_CPU unset in ctest: the last (best) runnable variant.
  EXPECT_EQ(active_isa(), runnable_isas().back());
}

TEST(Isa, ForcingAVariantAndRefusals) {
  for (const Isa isa : runnable_isas()) {
    const ScopedIsa use(isa);
    EXPECT_EQ(active_isa(), isa);
  }
  EXPECT_EQ(active_isa(), runnable_isas().back());  // restored
  for (const Isa isa : {Isa::Avx2, Isa::Avx512}) {
    bool runnable = false;
    for (const Isa r : runnable_isas()) runnable |= r == isa;
    if (runnable) continue;
    try {
      set_isa(isa);
      FAIL() << isa_name(isa) << " forced although not runnable";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(isa_name(isa))), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace fp8lab

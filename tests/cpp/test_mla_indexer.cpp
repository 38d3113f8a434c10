// The lightning indexer's C++ surface (mla/indexer*.hpp): IndexerSpec's declared schema (canonical
// JSON, strict reader, refusals naming the field), rotate_activation on hand-worked vectors, and the
// tie-aware selection helpers on hand-made rows. The arithmetic end to end is pinned against a numpy
// re-formulation and MMA-Sim in tests/python/test_mla_index.py.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mla/indexer.hpp"
#include "mla/indexer_select.hpp"
#include "mla/indexer_spec.hpp"

using namespace fp8lab::mla;

namespace {

std::string error_of(const std::string& json) {
  try {
    indexer_spec_from_json(json);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(IndexerSpec, CanonicalJsonRoundTripsWithV32Defaults) {
  const IndexerSpec d;
  EXPECT_EQ(to_json(d),
            R"({"heads":64,"instruction":"hopper_fp8","reduction":"v32_tilelang","scale_rule":"deepseek_v32_ue8m0","topk":2048})");
  const IndexerSpec s = indexer_spec_from_json(R"({"reduction":"deepgemm_sm90","topk":16,"heads":8})");
  EXPECT_EQ(s.reduction, IndexReduction::DeepgemmSm90);
  EXPECT_EQ(indexer_spec_from_json(to_json(s)).topk, 16);
}

TEST(IndexerSpec, RefusalsNameTheField) {
  EXPECT_EQ(error_of(R"({"heads":0})"), "IndexerSpec.heads = 0: expected an integer in [1, 1024]");
  EXPECT_NE(error_of(R"({"topk":"8"})").find("IndexerSpec.topk"), std::string::npos);
  EXPECT_NE(error_of(R"({"reduction":"fast"})").find("IndexerSpec.reduction: unknown value 'fast'"), std::string::npos);
  EXPECT_NE(error_of(R"({"instruction":"hopper_bf16"})").find("IndexerSpec.instruction"), std::string::npos);
  EXPECT_NE(error_of(R"({"instruction":"nope"})").find("IndexerSpec.instruction: "), std::string::npos);
  EXPECT_NE(error_of(R"({"scale_rule":"nope"})").find("IndexerSpec.scale_rule: "), std::string::npos);
  EXPECT_NE(error_of(R"({"heads":12,"reduction":"deepgemm_sm90"})").find("a multiple of 8"), std::string::npos);
  EXPECT_NE(error_of(R"({"top_k":8})").find("top_k"), std::string::npos);
}

TEST(IndexerRotate, OneHotGivesAScaledHadamardRow) {
  // fl32(128^-1/2) = 0x3DB504F3 rounds to the BF16 0x3DB5 (0.08837890625).
  const float s = std::bit_cast<float>(0x3DB50000u);
  for (int i : {0, 1, 77, 127}) {
    std::vector<float> x(128, 0.0f);
    x[i] = 1.0f;
    const std::vector<float> y = rotate_activation(x.data(), 1);
    for (int j = 0; j < 128; ++j) EXPECT_EQ(y[j], (std::popcount(static_cast<unsigned>(i & j)) % 2 ? -s : s)) << i << "," << j;
    const std::vector<float> u = rotate_activation(x.data(), 1, false);
    const std::vector<float> back = rotate_activation(u.data(), 1, false);  // H H = 128 I
    for (int j = 0; j < 128; ++j) EXPECT_EQ(back[j], j == i ? 128.0f : 0.0f);
  }
}

TEST(IndexerSelect, TieAwareChangesAndVerdicts) {
  const double inf = std::numeric_limits<double>::infinity();
  // Row a: tokens 1 and 2 tie at the 2nd largest; b prefers token 3.
  const std::vector<double> a{5, 3, 3, 1, -inf}, b{5, 1, 2, 4, -inf};
  const std::vector<std::int32_t> ends{4};
  auto c = selection_changes(a.data(), a.data(), 1, 5, nullptr, ends.data(), 2);
  EXPECT_EQ(c[0].changed, 0u);
  EXPECT_EQ(c[0].ties_a, 2u);
  c = selection_changes(a.data(), b.data(), 1, 5, nullptr, ends.data(), 2);
  EXPECT_EQ(c[0].changed, 1u);  // {0, 1 or 2} vs {0, 3}
  const std::vector<std::int32_t> ok{2, 0}, ok2{0, 1}, low{0, 3}, dup{0, 0}, out{0, 4};
  EXPECT_EQ(check_selection(ok.data(), 1, 2, a.data(), 5, nullptr, ends.data()), "");
  EXPECT_EQ(check_selection(ok2.data(), 1, 2, a.data(), 5, nullptr, ends.data()), "");
  EXPECT_EQ(check_selection(low.data(), 1, 2, a.data(), 5, nullptr, ends.data()),
            "query 0: token 3 (logit 1) is selected but lies below the 2-th largest logit 3");
  EXPECT_EQ(check_selection(dup.data(), 1, 2, a.data(), 5, nullptr, ends.data()), "query 0: token 0 is selected twice");
  EXPECT_EQ(check_selection(out.data(), 1, 2, a.data(), 5, nullptr, ends.data()),
            "query 0: position 1 holds index 4, outside the query's tokens [0, 4) (and not the padding -1)");
  const std::vector<std::int32_t> bad_ends{6};
  EXPECT_THROW(selection_changes(a.data(), b.data(), 1, 5, nullptr, bad_ends.data(), 2), std::invalid_argument);
}

TEST(IndexerInputs, TopkLargerThanTheContextIsRefused) {
  std::vector<float> q(8 * 128, 0.0f), k(4 * 128, 0.0f), w(8, 1.0f);
  IndexerInputs in;
  in.q = q.data();
  in.k = k.data();
  in.weights = w.data();
  in.m = 1;
  in.n = 4;
  IndexerSpec s;
  s.heads = 8;
  s.topk = 5;
  try {
    index(in, s);
    FAIL() << "topk 5 over 4 tokens was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "topk: 5 is larger than the context (4 tokens)");
  }
  s.topk = 4;
  const IndexerResult r = index(in, s);  // all-zero keys: every logit 0, ties broken to the lower token
  EXPECT_EQ(r.indices, (std::vector<std::int32_t>{0, 1, 2, 3}));
}

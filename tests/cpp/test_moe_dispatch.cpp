// Load balancing, dispatch layouts and combine, on hand-worked cases.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "moe/balance.hpp"
#include "moe/dispatch.hpp"

namespace {

using namespace fp8lab::moe;

// 4 tokens, top-2 over 4 experts: loads [3, 1, 2, 2], mean load 4*2/4 = 2.
const std::vector<std::int32_t> kIds = {0, 2, 0, 1, 3, 0, 2, 3};

TEST(MoeBalance, LoadsAndSignRule) {
  EXPECT_EQ(expert_loads(kIds.data(), 4, 2, 4), (std::vector<std::int64_t>{3, 1, 2, 2}));
  const std::vector<float> bias = {0.5f, 0.5f, 0.5f, -0.25f};
  const std::vector<float> nb = update_bias(bias.data(), 4, kIds.data(), 4, 2, 0.125);
  // Expert 0 overloaded: 0.5 - 0.125; expert 1 underloaded: 0.5 + 0.125; 2 and 3 exactly at the mean.
  EXPECT_EQ(nb, (std::vector<float>{0.375f, 0.625f, 0.5f, -0.25f}));
  // gamma 0.001 on a bf16 bias of 1.0: 1 - 0.001 rounds back to 1 in bf16 (ulp 2^-7 below 2: the
  // half-ulp below 1 is 2^-9 = 0.00195 > 0.001) — a bf16 bias cannot move by gamma at 1.0.
  const std::vector<float> one = {1.0f, 1.0f, 1.0f, 1.0f};
  EXPECT_EQ(update_bias(one.data(), 4, kIds.data(), 4, 2, 0.001, BiasFormat::Bf16)[0], 1.0f);
  EXPECT_EQ(update_bias(one.data(), 4, kIds.data(), 4, 2, 0.001, BiasFormat::Fp32)[0], 1.0f - 0.001f);
  EXPECT_THROW(update_bias(bias.data(), 4, kIds.data(), 4, 2, -1.0), std::invalid_argument);
  const std::vector<std::int32_t> bad = {0, 4};
  EXPECT_THROW(expert_loads(bad.data(), 1, 2, 4), std::invalid_argument);
}

// Perfect balance with uniform scores gives loss = alpha exactly: f_i = 1, P_i = 1/E.
TEST(MoeBalance, BalanceLossKnownValues) {
  const std::vector<std::int32_t> ids = {0, 1, 2, 3};  // 2 tokens, top-2, 4 experts: each expert once
  const std::vector<float> scores(8, 0.3f);
  EXPECT_DOUBLE_EQ(balance_loss(scores.data(), ids.data(), 2, 4, 2, 1e-4), 1e-4);
  // All load on experts 0,1 with all score mass there: f = (2, 2, 0, 0), P = (1/2, 1/2, 0, 0):
  // loss = alpha * (2 * 1/2 + 2 * 1/2) = 2 alpha — the worst case E/K * alpha... for E = 4, K = 2.
  const std::vector<std::int32_t> ids2 = {0, 1, 0, 1};
  const std::vector<float> s2 = {0.5f, 0.5f, 0.0f, 0.0f, 0.25f, 0.25f, 0.0f, 0.0f};
  EXPECT_DOUBLE_EQ(balance_loss(s2.data(), ids2.data(), 2, 4, 2, 1.0), 2.0);
  const std::vector<float> zero(8, 0.0f);
  EXPECT_TRUE(std::isnan(balance_loss(zero.data(), ids.data(), 2, 4, 2, 1.0)));
}

TEST(MoeBalance, NodeStats) {
  // 4 experts on 2 nodes: {0,1} node 0, {2,3} node 1. Tokens {0,2} {0,1} {3,0} {2,3} touch
  // 2, 1, 2, 1 nodes.
  const NodeStats st = node_stats(kIds.data(), 4, 2, 4, 2);
  EXPECT_EQ(st.nodes_per_token, (std::vector<std::int32_t>{2, 1, 2, 1}));
  EXPECT_EQ(st.max, 2);
  EXPECT_DOUBLE_EQ(st.mean, 1.5);
  EXPECT_EQ(st.histogram, (std::vector<std::int64_t>{0, 2, 2}));
  EXPECT_THROW(node_stats(kIds.data(), 4, 2, 4, 3), std::invalid_argument);
}

TEST(MoeDispatch, ContiguousLayoutPadsWithMinusOne) {
  const Dispatch d = dispatch(kIds.data(), 4, 2, 4, 4);
  EXPECT_EQ(d.counts, (std::vector<std::int64_t>{3, 1, 2, 2}));
  EXPECT_EQ(d.offsets, (std::vector<std::int64_t>{0, 4, 8, 12, 16}));
  // Expert 0 gets (t0,s0), (t1,s0), (t2,s1) then one padding row, and so on.
  EXPECT_EQ(d.row_expert, (std::vector<std::int32_t>{0, 0, 0, -1, 1, -1, -1, -1, 2, 2, -1, -1, 3, 3, -1, -1}));
  EXPECT_EQ(d.row_token, (std::vector<std::int32_t>{0, 1, 2, -1, 1, -1, -1, -1, 0, 3, -1, -1, 2, 3, -1, -1}));
  EXPECT_EQ(d.row_slot, (std::vector<std::int32_t>{0, 0, 1, -1, 1, -1, -1, -1, 1, 0, -1, -1, 0, 1, -1, -1}));
  EXPECT_EQ(d.token_row, (std::vector<std::int64_t>{0, 8, 1, 4, 12, 2, 9, 13}));
  // Masked layout: capacity = max count 3 rounded up to 4.
  EXPECT_EQ(d.capacity, 4);
  EXPECT_EQ(d.masked_token, (std::vector<std::int32_t>{0, 1, 2, -1, 1, -1, -1, -1, 0, 3, -1, -1, 2, 3, -1, -1}));
  const Dispatch d1 = dispatch(kIds.data(), 4, 2, 4, 1);
  EXPECT_EQ(d1.rows(), 8u);
}

TEST(MoeDispatch, CombineIsTheWeightedSumAndSkipsPadding) {
  const Dispatch d = dispatch(kIds.data(), 4, 2, 4, 4);
  const std::size_t H = 3;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<float> w = {0.5f, 0.25f, 1.0f, 2.0f, 0.125f, 4.0f, 1.0f, 1.0f};
  for (Layout layout : {Layout::Contiguous, Layout::Masked}) {
    std::vector<float> y = gather_rows(x.data(), H, d, layout);
    // Identity experts; poison every padding row: combine must never read it.
    const std::vector<std::int32_t>& src = layout == Layout::Contiguous ? d.row_token : d.masked_token;
    for (std::size_t r = 0; r < src.size(); ++r)
      if (src[r] < 0)
        for (std::size_t h = 0; h < H; ++h) y[r * H + h] = std::nanf("");
    const std::vector<float> out = combine(y.data(), src.size(), H, d, layout, w.data());
    // out[t] = (w0 + w1) * x[t] (both experts are the identity), exact here.
    for (std::size_t t = 0; t < 4; ++t)
      for (std::size_t h = 0; h < H; ++h) EXPECT_EQ(out[t * H + h], (w[2 * t] + w[2 * t + 1]) * x[t * H + h]);
    // Output scale 2.5 and bf16 output.
    const std::vector<float> o2 = combine(y.data(), src.size(), H, d, layout, w.data(), 2.5, fp8lab::moe::GateFormat::Bf16);
    EXPECT_EQ(o2[0], 0x1.ep+0f * 1.0f);  // (0.75 * 1) * 2.5 = 1.875
  }
  EXPECT_THROW(combine(x.data(), 4, H, d, Layout::Contiguous, w.data()), std::invalid_argument);
}

TEST(MoeDispatch, RejectsBadIds) {
  const std::vector<std::int32_t> dup = {1, 1};
  EXPECT_THROW(dispatch(dup.data(), 1, 2, 4, 1), std::invalid_argument);
  const std::vector<std::int32_t> neg = {-1, 1};
  EXPECT_THROW(dispatch(neg.data(), 1, 2, 4, 1), std::invalid_argument);
  EXPECT_THROW(dispatch(kIds.data(), 4, 2, 4, 0), std::invalid_argument);
}

}  // namespace

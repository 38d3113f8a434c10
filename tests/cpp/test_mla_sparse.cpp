// Sparse MLA decode and FlashMLA's FP8 sparse KV layouts against second formulations: the V32
// layout is byte for byte the dense decode's FP8 cache (paged_cache.cpp builds it with its own
// tile-scale code, the layout with quant/'s "flashmla_cache" row), and selecting every token in
// order makes the sparse decode the dense decode bit for bit. Plus thread-count independence, the
// sink's -inf identity and errors that name the argument. (numpy re-formulations of FlashMLA's
// tests/ref.py and tests/quant.py: tests/python/test_mla_sparse.py.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "mla/decode.hpp"
#include "mla/paged_cache.hpp"
#include "mla/sparse_decode.hpp"
#include "mla/sparse_kv_layout.hpp"
#include "test_mla_support.hpp"

using namespace fp8lab;
using namespace fp8lab::mla;

namespace {

std::vector<float> values(std::size_t n, std::uint64_t seed, double width) {
  return fp8lab::mla::testing::uniform_values(n, seed, width, 47);
}

MlaSpec v32_dense_spec(int splits) {
  MlaSpec s;  // DeepSeek-V3's cache dims: kv_lora 512, rope 64, page 64
  s.heads = 4;
  s.cache = CacheFormat::Fp8E4m3;
  s.decode_p = MatmulFormat::Bf16;
  s.num_splits = splits;
  return s;
}

template <class F>
void expect_throw_naming(F f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument naming " << what;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(MlaSparse, V32LayoutIsTheDenseFp8CacheAndAllTokensInOrderIsDenseDecode) {
  for (int splits : {1, 3}) {
    const MlaSpec s = v32_dense_spec(splits);
    const std::size_t L = 200, blocks = 4, page = 64, H = 4;  // 3 full blocks + 8 tokens
    const auto lat = values(L * 512, 1, 2.0), kpe = values(L * 64, 2, 2.0);
    const PagedCache dense = build_cache(lat.data(), kpe.data(), {static_cast<std::int32_t>(L)}, s);
    // The same tokens through the layout's quantiser: rows [L, 576], unused slots zero.
    std::vector<float> rows(blocks * page * 576, 0.0f);
    for (std::size_t t = 0; t < L; ++t) {
      std::copy_n(&lat[t * 512], 512, &rows[t * 576]);
      std::copy_n(&kpe[t * 64], 64, &rows[t * 576 + 512]);
    }
    const auto bytes = quantize_sparse_kv(rows.data(), blocks, page, SparseKvLayout::V32Fp8Sparse);
    ASSERT_EQ(bytes.size(), blocks * page * 656);
    // Slots past the sequence differ (build_cache leaves them zero; the quantiser stores the
    // all-zero tile's floor scale), the L tokens' rows are the same bytes.
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.begin() + L * 656, dense.bytes.begin())) << "token bytes differ";
    const auto q = values(H * 576, 3, 1.0);
    const DecodeResult d = decode(q.data(), H, dense, s);
    std::vector<std::int32_t> idx(L);
    std::iota(idx.begin(), idx.end(), 0);
    SparseDecodeInputs in;
    in.q = q.data();
    in.batch = 1;
    in.s_q = 1;
    in.heads = H;
    in.kv = bytes.data();
    in.blocks = blocks;
    in.indices = idx.data();
    in.topk = L;
    SparseDecodeSpec sp;
    sp.softmax_scale = softmax_scale_value(s);
    sp.num_splits = splits;
    const DecodeResult r = sparse_decode(in, sp);
    EXPECT_EQ(r.out_bf16, d.out_bf16) << "splits " << splits;
    for (std::size_t h = 0; h < H; ++h) EXPECT_EQ(r.lse[h], d.lse[h]) << h;
  }
}

TEST(MlaSparse, ResultDoesNotDependOnThreadCountAndSinkMinusInfIsNoSink) {
  for (SparseKvLayout l : {SparseKvLayout::V32Fp8Sparse, SparseKvLayout::Model1Fp8Sparse}) {
    const SparseKvLayoutInfo& L = layout_info(l);
    const std::size_t blocks = 3, page = 41, B = 2, Q = 2, H = 4, K = 100;
    const auto kv = quantize_sparse_kv(values(blocks * page * L.d_qk, 4, 3.0).data(), blocks, page, l);
    EXPECT_EQ(kv.size(), blocks * L.block_bytes(page));
    const SparseKvFields f = unpack_sparse_kv(kv.data(), blocks, page, l);
    EXPECT_EQ(pack_sparse_kv(f, l), kv);
    const auto q = values(B * Q * H * L.d_qk, 5, 1.0);
    std::vector<std::int32_t> idx(B * Q * K);
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i % 7 == 3 ? -1 : static_cast<std::int32_t>((i * 37) % (blocks * page));
    const std::vector<std::int32_t> tl = {63, 100};
    SparseDecodeInputs in;
    in.q = q.data();
    in.batch = B;
    in.s_q = Q;
    in.heads = H;
    in.kv = kv.data();
    in.blocks = blocks;
    in.indices = idx.data();
    in.topk = K;
    in.topk_length = tl.data();
    SparseDecodeSpec sp;
    sp.layout = l;
    sp.page = page;
    sp.softmax_scale = 0.07;
    sp.num_splits = 2;
    set_num_threads(1);
    const DecodeResult a = sparse_decode(in, sp);
    set_num_threads(4);
    const DecodeResult b = sparse_decode(in, sp);
    const std::vector<float> sink(H, -std::numeric_limits<float>::infinity());
    in.attn_sink = sink.data();
    const DecodeResult c = sparse_decode(in, sp);
    set_num_threads(0);
    EXPECT_EQ(a.out_bf16, b.out_bf16);
    EXPECT_EQ(a.out_bf16, c.out_bf16);
    for (std::size_t i = 0; i < a.lse.size(); ++i) {
      EXPECT_EQ(a.lse[i], b.lse[i]);
      EXPECT_EQ(a.lse[i], c.lse[i]);
    }
    const DecodeReference ref = sparse_decode_reference(in, sp, BoundScope::ThisEmulator);
    for (std::size_t i = 0; i < a.out.size(); ++i) ASSERT_LE(std::fabs(a.out[i] - ref.out[i]), ref.out_bound[i]) << i;
  }
}

TEST(MlaSparse, BadInputNamesTheArgument) {
  const std::size_t blocks = 2, page = 64;
  const auto kv = quantize_sparse_kv(values(blocks * page * 576, 6, 1.0).data(), blocks, page, SparseKvLayout::V32Fp8Sparse);
  const auto q = values(576, 7, 1.0);
  std::vector<std::int32_t> idx = {0, 5, -1, 127};
  SparseDecodeInputs in;
  in.q = q.data();
  in.batch = in.s_q = in.heads = 1;
  in.kv = kv.data();
  in.blocks = blocks;
  in.indices = idx.data();
  in.topk = idx.size();
  SparseDecodeSpec sp;
  sp.softmax_scale = 0.05;
  EXPECT_NO_THROW(sparse_decode(in, sp));
  idx[3] = 128;
  expect_throw_naming([&] { sparse_decode(in, sp); }, "indices: element [0, 0, 3] = 128");
  idx[3] = -5;
  expect_throw_naming([&] { sparse_decode(in, sp); }, "indices: element [0, 0, 3] = -5");
  const std::int32_t tl = 3;
  in.topk_length = &tl;  // entry 3 is no longer counted: its value does not matter
  EXPECT_NO_THROW(sparse_decode(in, sp));
  const std::int32_t tl_bad = 5;
  in.topk_length = &tl_bad;
  expect_throw_naming([&] { sparse_decode(in, sp); }, "topk_length: element 0 = 5");
  in.topk_length = nullptr;
  in.topk = 129;
  std::vector<std::int32_t> many(129, -1);
  in.indices = many.data();
  expect_throw_naming([&] { sparse_decode(in, sp); }, "exceeds the cache's context of 128");
  SparseKvFields f = unpack_sparse_kv(kv.data(), blocks, page, SparseKvLayout::V32Fp8Sparse);
  f.scales[5] = std::numeric_limits<float>::quiet_NaN();
  expect_throw_naming([&] { pack_sparse_kv(f, SparseKvLayout::V32Fp8Sparse); }, "scales: element [0, 1, 1]");
  expect_throw_naming([] { sparse_kv_layout_by_name("v4"); }, "layout: unknown sparse KV layout 'v4'");
}

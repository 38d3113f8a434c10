#include "moe/dispatch.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/parallel.hpp"
#include "common/pinned_math.hpp"

namespace fp8lab::moe {

Dispatch dispatch(const std::int32_t* ids, std::size_t tokens, int topk, int experts, int alignment) {
  if (topk < 1) throw std::invalid_argument("ids: topk = " + std::to_string(topk) + ", expected >= 1");
  if (experts < 1) throw std::invalid_argument("experts = " + std::to_string(experts) + ": expected >= 1");
  if (alignment < 1) throw std::invalid_argument("alignment = " + std::to_string(alignment) + ": expected >= 1");
  const std::size_t K = static_cast<std::size_t>(topk), E = static_cast<std::size_t>(experts);
  Dispatch d;
  d.tokens = tokens;
  d.topk = topk;
  d.experts = experts;
  d.alignment = alignment;
  d.counts.assign(E, 0);
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t j = 0; j < K; ++j) {
      const std::int32_t e = ids[t * K + j];
      if (e < 0 || e >= experts)
        throw std::invalid_argument("ids: element [" + std::to_string(t) + ", " + std::to_string(j) + "] = " +
                                    std::to_string(e) + " is not an expert index in [0, " + std::to_string(experts) + ")");
      for (std::size_t i = 0; i < j; ++i)
        if (ids[t * K + i] == e)
          throw std::invalid_argument("ids: token " + std::to_string(t) + " lists expert " + std::to_string(e) +
                                      " twice (slots " + std::to_string(i) + " and " + std::to_string(j) + ")");
      ++d.counts[static_cast<std::size_t>(e)];
    }
  }
  const auto align = [&](std::int64_t n) { return (n + alignment - 1) / alignment * alignment; };
  d.offsets.assign(E + 1, 0);
  std::int64_t maxc = 0;
  for (std::size_t e = 0; e < E; ++e) {
    d.offsets[e + 1] = d.offsets[e] + align(d.counts[e]);
    maxc = std::max(maxc, d.counts[e]);
  }
  const std::size_t rows = static_cast<std::size_t>(d.offsets[E]);
  d.row_expert.assign(rows, -1);
  d.row_token.assign(rows, -1);
  d.row_slot.assign(rows, -1);
  d.token_row.assign(tokens * K, -1);
  d.capacity = align(maxc);
  d.masked_token.assign(E * static_cast<std::size_t>(d.capacity), -1);
  d.token_masked_row.assign(tokens * K, -1);
  std::vector<std::int64_t> fill(E, 0);
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t j = 0; j < K; ++j) {
      const std::size_t e = static_cast<std::size_t>(ids[t * K + j]);
      const std::int64_t r = fill[e]++;
      const std::size_t row = static_cast<std::size_t>(d.offsets[e] + r);
      d.row_expert[row] = static_cast<std::int32_t>(e);
      d.row_token[row] = static_cast<std::int32_t>(t);
      d.row_slot[row] = static_cast<std::int32_t>(j);
      d.token_row[t * K + j] = static_cast<std::int64_t>(row);
      const std::int64_t mrow = static_cast<std::int64_t>(e) * d.capacity + r;
      d.masked_token[static_cast<std::size_t>(mrow)] = static_cast<std::int32_t>(t);
      d.token_masked_row[t * K + j] = mrow;
    }
  }
  return d;
}

std::vector<float> gather_rows(const float* x, std::size_t hidden, const Dispatch& d, Layout layout) {
  const std::vector<std::int32_t>& src = layout == Layout::Contiguous ? d.row_token : d.masked_token;
  std::vector<float> out(src.size() * hidden, 0.0f);
  parallel_for(src.size(), 512, [&](std::size_t b, std::size_t e) {
    for (std::size_t r = b; r < e; ++r)
      if (src[r] >= 0) std::copy_n(x + static_cast<std::size_t>(src[r]) * hidden, hidden, out.data() + r * hidden);
  });
  return out;
}

std::vector<float> combine(const float* y, std::size_t y_rows, std::size_t hidden, const Dispatch& d, Layout layout,
                           const float* weights, double output_scale, GateFormat out_format) {
  const std::size_t need = layout == Layout::Contiguous ? d.rows() : static_cast<std::size_t>(d.experts) * static_cast<std::size_t>(d.capacity);
  if (y_rows != need)
    throw std::invalid_argument("expert_out: has " + std::to_string(y_rows) + " rows, the " +
                                (layout == Layout::Contiguous ? std::string("contiguous") : std::string("masked")) +
                                " layout has " + std::to_string(need));
  if (!std::isfinite(output_scale)) throw std::invalid_argument("output_scale: expected a finite value");
  const std::vector<std::int64_t>& where = layout == Layout::Contiguous ? d.token_row : d.token_masked_row;
  const std::size_t K = static_cast<std::size_t>(d.topk);
  const float scale = static_cast<float>(output_scale);
  std::vector<float> out(d.tokens * hidden);
  parallel_for(d.tokens, 64, [&](std::size_t b, std::size_t e) {
    for (std::size_t t = b; t < e; ++t) {
      float* o = out.data() + t * hidden;
      std::fill(o, o + hidden, 0.0f);
      for (std::size_t j = 0; j < K; ++j) {
        const float w = weights[t * K + j];
        const float* row = y + static_cast<std::size_t>(where[t * K + j]) * hidden;
        for (std::size_t h = 0; h < hidden; ++h) {
          const float p = w * row[h];
          o[h] = o[h] + p;
        }
      }
      if (scale != 1.0f)
        for (std::size_t h = 0; h < hidden; ++h) o[h] = o[h] * scale;
      if (out_format == GateFormat::Bf16)
        for (std::size_t h = 0; h < hidden; ++h) o[h] = round_to_bf16(o[h]);
    }
  });
  return out;
}

}  // namespace fp8lab::moe

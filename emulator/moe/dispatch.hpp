// Token -> expert dispatch in the layouts grouped GEMMs consume, and the combine back to token
// order.
//   Contiguous (DeepGEMM m_grouped_gemm_*_contiguous): all rows of expert 0, then expert 1, ...;
//     each expert's segment is padded to a multiple of `alignment` rows (DeepGEMM's block M, 128
//     on SM90) and padding rows carry expert id -1 in the m_indices / grouped_layout vector, which
//     the kernel skips (DeepGEMM tests/generators.py generate_m_grouped_contiguous:
//     grouped_layout[start:actual_end] = i, grouped_layout[actual_end:aligned_end] = -1, padding
//     rows of A zeroed — gather_rows zeroes them too). Its "psum" variant lists, per expert, the
//     end row of its real rows: offsets[e] + counts[e].
//   Masked (DeepGEMM m_grouped_gemm_*_masked): a [experts, capacity] block per expert with
//     masked_m[e] = count of valid rows; rows beyond the count are garbage and never read.
// Inside an expert, rows are in (token, slot) order — stable, so the layout is a pure function of ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe/router_spec.hpp"

namespace fp8lab::moe {

struct Dispatch {
  std::size_t tokens = 0;
  int topk = 0, experts = 0, alignment = 1;
  std::vector<std::int64_t> counts;       // [experts] rows per expert
  // Contiguous layout.
  std::vector<std::int64_t> offsets;      // [experts + 1]: expert e owns rows [offsets[e], offsets[e+1])
  std::vector<std::int32_t> row_expert;   // [rows] expert id; -1 on padding rows (DeepGEMM m_indices)
  std::vector<std::int32_t> row_token;    // [rows] source token; -1 on padding rows
  std::vector<std::int32_t> row_slot;     // [rows] slot j of the token's top-k; -1 on padding rows
  std::vector<std::int64_t> token_row;    // [tokens * topk] the contiguous row of (t, j)
  // Masked layout.
  std::int64_t capacity = 0;              // rows per expert block (max count rounded up to alignment)
  std::vector<std::int32_t> masked_token; // [experts * capacity] source token; -1 beyond masked_m
  std::vector<std::int64_t> token_masked_row;  // [tokens * topk] e * capacity + r of (t, j)
  std::size_t rows() const { return row_expert.size(); }
};

// ids: [tokens, topk], each in [0, experts), distinct within a row; alignment >= 1.
// std::invalid_argument names the argument and the first offending element.
Dispatch dispatch(const std::int32_t* ids, std::size_t tokens, int topk, int experts, int alignment);

enum class Layout : std::uint8_t { Contiguous, Masked };

// The grouped GEMM's input: row r of the layout holds x[row_token[r]]; padding / unused rows are 0.
// x is [tokens, hidden]; the result is [rows or experts*capacity, hidden].
std::vector<float> gather_rows(const float* x, std::size_t hidden, const Dispatch& d, Layout layout);

// Combine: out[t] = sum over j = 0 .. topk-1 (ascending slot order) of w[t, j] * y[row(t, j)],
// each product rounded to float32, accumulated in float32 from +0 (no fma); then multiplied by
// output_scale (1 unless the spec scales the output: ScaleTarget::Output) in float32, and rounded
// to out_format. Padding rows are never read. y is [layout rows, hidden]; w is [tokens, topk].
std::vector<float> combine(const float* y, std::size_t y_rows, std::size_t hidden, const Dispatch& d, Layout layout,
                           const float* weights, double output_scale = 1.0, GateFormat out_format = GateFormat::Fp32);

}  // namespace fp8lab::moe

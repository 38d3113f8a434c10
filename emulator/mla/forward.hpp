// Prefill of one MLA layer in the two forms DeepSeek-V3 inference/model.py has (attn_impl "naive"
// and "absorb"), each returning, if asked, a certified per-element bound on its distance from the
// exact attention of the shared inputs.
//
// Stated arithmetic (every step FP32 unless the spec says BF16; dots in numerics.hpp's order):
//  1. projections: y = R(dot(R(x), R(W))) with R the projection's MatmulFormat rounding;
//     RMSNorm: r = 1 / sqrt(fl(dot(x,x) / n) + eps), y = R(fl(fl(x*r)*g)) (query and KV latent only);
//     RoPE (rope.hpp) on q_pe and k_pe, then R.
//  These "shared inputs" (q_nope, q_pe, latent, k_pe) are the same bits in both forms.
//  2. naive: k_nope = R_wkv_b(W_UK c), v = R_wkv_b(W_UV c) per head (wkv_b fp8: the FP8 linear,
//     and the absorbed form's W_UK/W_UV are the dequantised weights; see wkv_b_fp8 below); s = R_attn(fl(dot(q_nope|q_pe,
//     k_nope|k_pe) * scale)); absorbed: q_abs = R_attn(W_UK^T q_nope), s = R_attn(fl(dot(q_abs|q_pe,
//     c|k_pe) * scale)).
//  2r. attn_ops deepseek_reference (mla_spec.hpp AttnOps) replaces step 2's scores by the op
//     sequence of deepseek-ai/DeepSeek-V3 inference/model.py MLA.forward (commit 9b4e978) under
//     its default dtype BF16 (generate.py: torch.set_default_dtype(torch.bfloat16)):
//       naive   `scores = torch.einsum("bshd,bthd->bsht", q, k_cache) * self.softmax_scale`:
//               s = R(fl(R(dot(q, k)) * scale)) - the einsum's BF16 output, then torch's BF16
//               multiply by a Python float (computed in FP32 opmath with the scale as FP32, rounded
//               to BF16: checked against torch CPU, tests/python/test_mla_reference.py);
//       absorb  `(einsum(q_nope, kv_cache) + einsum(q_pe, pe_cache)) * self.softmax_scale`:
//               s = R(fl(R(fl(R(dot(q_abs, c)) + R(dot(q_pe, k_pe)))) * scale)), q_abs =
//               R(einsum(q_nope, W_UK)) as in step 2.
//     The rest is step 3-4 unchanged, which is already the reference's: `scores += mask` adds 0
//     or -inf in BF16 (exact; -inf becomes exp = 0, here the causal truncation), `.softmax(dim=-1,
//     dtype=torch.float32)` is an FP32 softmax of the BF16 scores, `.type_as(x)` is R, and each
//     value einsum ("bsht,bthd->bshd"; absorb "bsht,btc->bshc" then "bshc,hdc->bshd") is an FP32
//     accumulation rounded once to BF16. What is pinned is this sequence of roundings. Inside one
//     FP32 accumulation and inside the FP32 softmax, torch's order and exp are its build's and
//     ISA's (oneDNN/MKL blocking, AVX2 or AVX-512 lanes, a vectorised exp that is not correctly
//     rounded); fp8lab keeps numerics.hpp's dot order, the key-order sum and the correctly rounded
//     exp there, so bits equal torch's except where those FP32 differences cross a BF16 rounding
//     boundary. Torch 2.15 CPU (AVX-512): none in the test's 2 x 3072 elements; at DeepSeek's head
//     dims (nope 128, rope 64, kv_lora 512, v 128; 16 heads, 64 tokens) 171 (naive) and 137
//     (absorbed) of 131072, against 70623 and 87722 for the fused sequence. Its BF16 einsum alone
//     equalled bf16(sequential FP32 sum) on 4 x 6144 random dots (n = 16..512) and this order's in
//     all but 2: the rest comes from those flips carried through the softmax, and from torch's
//     softmax. The bound is certified for fp8lab's values; each extra BF16 rounding adds kUBf16
//     times its result.
//  3. softmax over keys j <= i (causal within the call): m = max s, e = exp_pinned(fl(s - m)),
//     S = sum e in key order, p = R_attn(fl(e / S)).
//  4. naive: o = R_attn(sum_j p_j v_j) in key order; absorbed: o_lat = R_attn(sum_j p_j c_j),
//     o = R_attn(dot(W_UV, o_lat)).
//  5. out = wo projection of o (heads*v wide).
// start_pos shifts the RoPE positions of the T tokens. Keys: an optional prefix (the latents and
// k_pe of earlier positions, e.g. a cache, as the reference's start_pos > 0 reads its kv_cache)
// followed by the T tokens; query t sees the whole prefix and the call's tokens up to t. With the
// same arithmetic per query, a prefill split into chunks gives the same bits as one call.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "checks/verdict.hpp"
#include "mla/mla_spec.hpp"
#include "mla/weights.hpp"

namespace fp8lab::mla {

enum class Form : std::uint8_t { Naive, Absorbed };
Form form_by_name(std::string_view name);  // naive, absorbed
std::string_view form_name(Form f);

// Step 1's results, shared by both forms.
struct Projected {
  std::size_t tokens = 0;
  std::vector<float> q_nope;  // [T, heads, nope]
  std::vector<float> q_pe;    // [T, heads, rope] (after RoPE)
  std::vector<float> latent;  // [T, kv_lora] (after RMSNorm): the cached c_KV
  std::vector<float> k_pe;    // [T, rope] (after RoPE): the cached k_pe
};

// x is [tokens, hidden] (row-major). Throws std::invalid_argument on sizes or non-finite input.
Projected project(const float* x, std::size_t tokens, const MlaWeightsView& w, const MlaSpec& spec, long start_pos);

// The absorbed query of decode: [T, heads, kv_lora + rope] = R_attn(W_UK^T q_nope) | q_pe.
std::vector<float> absorbed_query(const Projected& p, const MlaWeightsView& w, const MlaSpec& spec);

// wkv_b with spec.wkv_b == Fp8: "FP8 checkpoint weights as DeepSeek-V3 runs them". What the
// reference does (deepseek-ai/DeepSeek-V3 inference/, commit 9b4e978, files as of Aug 2025):
//  - model.py 184-187: a Linear whose weight has element_size 1 (float8_e4m3fn) carries a float32
//    `scale` of [ceil(out/128), ceil(in/128)] (block_size = 128, model.py 15); convert.py 60 renames
//    the HF checkpoint's `weight_scale_inv` to `scale`: the multiplier, W = e4m3 * scale.
//  - naive, model.py 471-473: kv = self.wkv_b(self.kv_norm(kv)) -> Linear.forward -> linear()
//    (model.py 131-162): with gemm_impl == "fp8", x, s = act_quant(x, 128, scale_fmt) (kernel.py
//    10-35: 1x128 blocks, s = max(amax, 1e-4) / 448, y = x / s cast to E4M3) and
//    y = fp8_gemm(x, s, weight, weight.scale), written in torch's default dtype (kernel.py 193),
//    which generate.py 109 (and model.py 802) set to bfloat16. (Its Triton fp8_gemm combines
//    `acc += dot * a_s * b_s`, kernel.py 163; fp8lab uses the default GemmSpec's DeepGEMM combine
//    (gemm/gemm_spec.hpp), as every FP8 projection here does: GemmSpec combine "triton" would
//    model kernel.py itself.) With the module default gemm_impl == "bf16" (model.py 16) the naive path instead dequantises like the absorbed one (model.py 155-157):
//    that case is spec.wkv_b = bf16 on the dequantised weights (wkv_b_absorbed below).
//  - absorbed, model.py 481-483 and 494-495: wkv_b = weight_dequant(weight, scale, block_size)
//    (kernel.py 61-110: y = fl32(x * s), stored in the default dtype, so BF16 under model.py 802),
//    then the einsums q_nope . W_UK and o_lat . W_UV run on those values.
// fp8lab models exactly this: naive k_nope/v = gemm() of the 1x128 "deepseek"-quantised latent and
// the E4M3 weight with the default GemmSpec (Hopper FP8 tensor core, promotion every 128, DeepGEMM
// combine, BF16 out); absorbed weights = R_attn(fl32(e4m3 * scale)) (R_attn = BF16 when spec.attn is
// bf16, as the default dtype; FP32 otherwise). The exact weights of both forms (exact_attention) are
// the real products e4m3 * scale (wkv_b_exact).
//
// The FP8 wkv_b: w.wkv_b_fp8 when given (a checkpoint's), else w.wkv_b quantised 128x128 to E4M3
// with the "deepseek" rule. Throws std::invalid_argument naming weights.wkv_b_fp8 on bad input.
QTensor wkv_b_fp8(const MlaWeightsView& w, const MlaSpec& spec);
// The exact weights both forms approximate: e4m3 * scale in binary64 (exact) under Fp8, else wkv_b.
std::vector<double> wkv_b_exact(const MlaWeightsView& w, const MlaSpec& spec);
// The weights the absorbed form multiplies by: R_attn(fl32(e4m3 * scale)) under Fp8, else wkv_b.
std::vector<float> wkv_b_absorbed(const MlaWeightsView& w, const MlaSpec& spec);
// The naive form's per-head keys and values: [tokens, heads, nope + v] = R_wkv_b(W_UKV c) for
// latent [tokens, kv_lora] (Fp8: the FP8 linear above). If bound is given it receives, per element,
// a certified bound on |result - sum_c wkv_b_exact[o, c] * latent[t, c]| (derivation in forward.cpp).
std::vector<float> wkv_b_naive(const float* latent, std::size_t tokens, const MlaWeightsView& w, const MlaSpec& spec,
                               std::vector<double>* bound = nullptr);

// Attention output before wo: [T, heads, v]. If bound is given it receives, per element, a
// certified bound on |result - exact| where exact is the real-number attention of p's values
// (exact_attention below). Derivation in forward.cpp.
std::vector<float> attention(const Projected& p, const MlaWeightsView& w, const MlaSpec& spec, Form form,
                             std::vector<double>* bound = nullptr, const Projected* prefix = nullptr);

// The exact attention of p (float64 arithmetic with a pinned exp: within ~1e-15 relative of the
// real-number result, far below every FP32 bound; the bounds add 2^-40 relative to cover it).
std::vector<double> exact_attention(const Projected& p, const MlaWeightsView& w, const MlaSpec& spec,
                                    double softmax_scale, const Projected* prefix = nullptr);

struct ForwardResult {
  Projected projected;
  std::vector<float> attn;  // [T, heads, v]
  std::vector<float> out;   // [T, hidden]
};
// The weights are checked once (validate_weights), then read in place for the call. q_absorbed, if
// given, receives absorbed_query(projected) (the absorbed form's own queries, not computed twice).
ForwardResult forward(const float* x, std::size_t tokens, const MlaWeightsView& w, const MlaSpec& spec, Form form,
                      long start_pos, const Projected* prefix = nullptr, std::vector<float>* q_absorbed = nullptr);

// The wo projection alone: o [T, heads*v] -> [T, hidden].
std::vector<float> output_projection(const std::vector<float>& o, std::size_t tokens, const MlaWeightsView& w,
                                     const MlaSpec& spec);

// absorbed vs naive on the same shared inputs: within bound when every element differs by at
// most bound_absorbed + bound_naive (both certified against the same exact attention).
struct FormsComparison {
  Verdict verdict;
  std::vector<float> absorbed, naive;
  std::vector<double> exact, bound_absorbed, bound_naive;
  double max_observed_over_bound = 0;  // max |absorbed - naive| / (bound_a + bound_n)
  double max_abs_difference = 0;
  double max_rel_difference = 0;  // max |a - n| / max |exact| (normwise)
};
FormsComparison compare_forms(const Projected& p, const MlaWeightsView& w, const MlaSpec& spec,
                              const Projected* prefix = nullptr);

}  // namespace fp8lab::mla

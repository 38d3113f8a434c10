/* fp8lab_kernel.h — the C ABI through which `fp8lab verify --kernel lib.so:symbol --op OP` checks a
 * kernel that is not part of fp8lab (a CUDA launcher, a vendor library wrapper, a CPU reference).
 *
 * A shared library exports one function per operation it implements, with the signature below
 * for that operation. fp8lab calls it on inputs its generators aim at known failure modes (zero
 * and extreme blocks, exact ties, ragged shapes, NaN/Inf), and on the inputs of every golden
 * trace of that operation, and compares the outputs with the emulator's, bit for bit or within
 * the spec's certified bound. The function must be reentrant; it is called from one thread.
 *
 * Conventions common to every operation:
 *  - Arrays are dense, row-major, little-endian, in host memory; fp8lab owns every buffer.
 *  - Element bit patterns are right-aligned in the narrowest unsigned integer that holds them
 *    (uint8_t for 8-bit formats: OCP E4M3FN, OCP E5M2, UE8M0; uint16_t for bf16/fp16; ...).
 *  - `spec_json` is the operation's spec as canonical JSON (keys sorted, no whitespace), exactly as
 *    stored in golden traces: the kernel declares what it implements; it may reject a spec it does
 *    not implement by returning non-zero.
 *  - Return 0 on success. On failure return non-zero and write a NUL-terminated message of at most
 *    `error_len` bytes (including the NUL) to `error`; fp8lab reports it as an error (exit code 2),
 *    never as a verdict.
 *  - Shapes may be zero (empty inputs): the function must then write nothing and return 0.
 *  - fp8lab loads the library into a worker process, not its own: a kernel that crashes (a signal)
 *    or does not return within the per-case timeout (`--timeout`, default 30 s) is a *violation* of
 *    that case (exit code 1), named with the signal; the case's inputs are saved as a trace
 *    (`--failures DIR`) that `fp8lab golden check --kernel` replays. Output written by the kernel
 *    to stdout goes to stderr.
 *  - If the library exports `fp8lab_kernel_abi_version`, it must return FP8LAB_KERNEL_ABI_VERSION;
 *    another value is refused when the library is loaded (exit code 2).
 */
#ifndef FP8LAB_KERNEL_H
#define FP8LAB_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this ABI; a library may export `int fp8lab_kernel_abi_version(void)` returning it. */
#define FP8LAB_KERNEL_ABI_VERSION 1

/* op "cast": y[i] = encode(x[i]) into spec "to", with spec "rounding" (nearest_even, toward_zero,
 * up, down, stochastic), "overflow" (saturate | inf_or_nan), "flush_subnormals" (bool) and "seed"
 * (stochastic rounding: the random word of element i is fp8lab's stochastic_bits(seed, i)).
 * `y` has n elements of the target format's storage width (1, 2 or 4 bytes). */
typedef int (*fp8lab_cast_fn)(const float* x, size_t n, const char* spec_json, void* y, char* error,
                              size_t error_len);

/* op "gemm": D = A · Bᵀ (DeepGEMM's NT layout) with block-scaled operands.
 *  a:        m x k element bit patterns in spec "a_format" (uint8_t for FP8), row-major;
 *  a_scales: the dequantisation multipliers of A's tiles (spec "a_tile" = [rows, cols], 0 = whole
 *            dimension), row-major over the ceil(m/rows) x ceil(k/cols) tile grid, as float32;
 *  b, b_scales: likewise for B, n x k, tiles "b_tile";
 *  d:        m x n float32 results, each exactly a value of spec "out" (bf16 values are written as
 *            the float32 with the same value).
 * The value of A[r][c] is decode(a[r*k + c]) * a_scales[tile of (r, c)]. Spec "accumulate",
 * "promote_every", "combine", "instruction" say how the sum is accumulated (gemm/gemm_spec.hpp). */
typedef int (*fp8lab_gemm_fn)(const void* a, const float* a_scales, const void* b, const float* b_scales,
                              size_t m, size_t n, size_t k, const char* spec_json, float* d, char* error,
                              size_t error_len);

/* op "moe_route": top-k routing of `tokens` tokens over spec "experts" experts.
 *  logits:  tokens x experts float32 gate logits (u . e_i);
 *  bias:    experts float32 aux-loss-free bias (used for selection only);
 *  ids:     tokens x topk int32 selected experts, in descending biased-score order (ties: lower
 *           index first), topk = spec "topk";
 *  weights: tokens x topk float32 gate weights in the same order (after renormalisation and the
 *           routed scale, as spec "renormalize", "routed_scale", "scale_target" say).
 * The spec is the moe area's RouterSpec (score function, gate/bias formats, groups, node limit). */
typedef int (*fp8lab_moe_route_fn)(const float* logits, const float* bias, size_t tokens, size_t experts,
                                   const char* spec_json, int32_t* ids, float* weights, char* error,
                                   size_t error_len);

/* op "mla_sparse_decode": sparse MLA decode as FlashMLA's flash_mla_with_kvcache with `indices`
 * (emulator/mla/sparse_decode.hpp).
 *  q:           batch x s_q x heads x d_qk float32 (BF16 values); d_qk 576 (v32_fp8_sparse) or 512
 *               (model1_fp8_sparse), spec "layout";
 *  kv_cache:    blocks x block_bytes bytes in the layout, spec "page_block_size" tokens per block;
 *  indices:     batch x s_q x topk int32 token indices (block * page + slot), -1 invalid;
 *  topk_length: batch int32, only the first topk_length[b] indices of sequence b's queries count;
 *  attn_sink:   heads float32 (-inf: none); out is scaled by 1 / (1 + exp(sink - lse));
 *  out:         batch x s_q x heads x 512 float32, each a BF16 value;
 *  lse:         batch x heads x s_q float32 (natural log, without the sink; +inf where nothing is
 *               attended, and out 0 there).
 * Spec "softmax_scale" (null: d_qk^-0.5), "num_splits", "decode_p", "dequant" say what is pinned. */
typedef int (*fp8lab_mla_sparse_decode_fn)(const float* q, size_t batch, size_t s_q, size_t heads, size_t d_qk,
                                           const uint8_t* kv_cache, size_t blocks, size_t block_bytes,
                                           const int32_t* indices, size_t topk, const int32_t* topk_length,
                                           const float* attn_sink, const char* spec_json, float* out, float* lse,
                                           char* error, size_t error_len);

#ifdef __cplusplus
}
#endif

#endif /* FP8LAB_KERNEL_H */

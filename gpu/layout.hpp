// Host-and-device layout arithmetic of the sm_90a kernels: where an element of an operand lives in
// shared memory for wgmma, how a wgmma shared-memory descriptor is encoded, which element each lane
// of an mma.sync / wgmma fragment holds, and how host operands are padded for the kernels. Pure
// integer functions (no CUDA types) so that the host unit tests (gpu/tests/test_gpu_host.cpp) check
// them without a device against the PTX ISA tables they are written from.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define FP8LAB_HD __host__ __device__
#else
#define FP8LAB_HD
#endif

namespace fp8lab::gpu {

// ---- wgmma operands in shared memory, no swizzle, K-major (PTX ISA 8.x, "Shared Memory Matrix
// Layout" of wgmma: a "core matrix" is 8 rows x 16 bytes stored as 128 contiguous bytes; the
// leading-dimension byte offset (LBO) steps between core matrices along K, the stride byte offset
// (SBO) between core matrices along M/N). FP8 wgmma takes only K-major A and B, which is the NT
// layout of DeepGEMM (A is M x K, B is N x K, both row-major).
//
// Our tile of R rows x 32 bytes (one k32 instruction) is laid out with the two K core matrices of
// a row group next to each other: LBO = 128 bytes, SBO = 256 bytes; a chunk of several k32 slices
// stores slice s at s * R * 32 bytes.
inline constexpr std::uint32_t kCoreRows = 8;
inline constexpr std::uint32_t kCoreBytes = 16;
inline constexpr std::uint32_t kWgmmaLbo = 128;
inline constexpr std::uint32_t kWgmmaSbo = 256;

// Byte offset of element (row r, k) of a tile of `rows` rows (rows a multiple of 8) holding
// several k32 slices.
FP8LAB_HD constexpr std::uint32_t wgmma_kmajor_offset(std::uint32_t r, std::uint32_t k, std::uint32_t rows) {
  const std::uint32_t slice = k / 32, kk = k % 32;
  return slice * rows * 32 + (r / kCoreRows) * kWgmmaSbo + (kk / kCoreBytes) * kWgmmaLbo + (r % kCoreRows) * kCoreBytes +
         kk % kCoreBytes;
}

// The 64-bit wgmma matrix descriptor (PTX ISA "Matrix Descriptor Format"): bits 0-13 start address
// >> 4, 16-29 LBO >> 4, 32-45 SBO >> 4, 49-51 base offset (0: no swizzle), 62-63 swizzle mode
// (0 = none). `smem_addr` is a shared-window address (cvta.to.shared), 16-byte aligned.
FP8LAB_HD constexpr std::uint64_t wgmma_descriptor(std::uint32_t smem_addr, std::uint32_t lbo = kWgmmaLbo,
                                                   std::uint32_t sbo = kWgmmaSbo) {
  return (static_cast<std::uint64_t>((smem_addr & 0x3FFFF) >> 4)) |
         (static_cast<std::uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<std::uint64_t>((sbo >> 4) & 0x3FFF) << 32);
}

// ---- Accumulator fragment of wgmma m64nNk32 with FP32 D (PTX ISA "Register Fragments and Shared
// Memory Matrix Layouts", wgmma D for .f32): warp w of the warpgroup owns rows 16w..16w+15; lane l,
// with g = l / 4 and t = l % 4, holds N/2 registers d[4j + i], i in 0..3, at
// row 16w + g + 8*(i / 2), column 8j + 2t + (i % 2).
struct RowCol {
  std::uint32_t row, col;
};
FP8LAB_HD constexpr RowCol wgmma_d_position(std::uint32_t thread, std::uint32_t reg) {
  const std::uint32_t w = thread / 32, lane = thread % 32, g = lane / 4, t = lane % 4;
  const std::uint32_t j = reg / 4, i = reg % 4;
  return {16 * w + g + 8 * (i / 2), 8 * j + 2 * t + (i % 2)};
}

// ---- mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 fragments (PTX ISA "Matrix Fragments
// for mma.m16n8k32", the .e4m3/.e5m2 rows): g = lane / 4, t = lane % 4.
// A (16 x 32): byte i of 16 (4 per .b32 register, low byte first):
//   row g for i in [0,4) and [8,12), g + 8 otherwise; column 4t + i%4, plus 16 for i >= 8.
FP8LAB_HD constexpr RowCol mma_m16n8k32_a_position(std::uint32_t lane, std::uint32_t i) {
  const std::uint32_t g = lane / 4, t = lane % 4;
  const bool upper = (i >= 4 && i < 8) || i >= 12;
  return {g + (upper ? 8u : 0u), 4 * t + (i % 4) + (i >= 8 ? 16u : 0u)};
}
// B (32 x 8, "col": stored as N rows of K): byte i of 8: k = 4t + i%4 (+16 for i >= 4), n = g.
// Returned as {row = n, col = k} to index our N x K storage.
FP8LAB_HD constexpr RowCol mma_m16n8k32_b_position(std::uint32_t lane, std::uint32_t i) {
  const std::uint32_t g = lane / 4, t = lane % 4;
  return {g, 4 * t + (i % 4) + (i >= 4 ? 16u : 0u)};
}
// C/D (16 x 8, FP32): register i of 4: row g (+8 for i >= 2), column 2t + i%2.
FP8LAB_HD constexpr RowCol mma_m16n8k32_c_position(std::uint32_t lane, std::uint32_t i) {
  const std::uint32_t g = lane / 4, t = lane % 4;
  return {g + (i >= 2 ? 8u : 0u), 2 * t + (i % 2)};
}

// ---- Padding: the GEMM kernel works on whole tiles (BM = 64 rows of A, BN = 128 rows of B,
// K in chunks of 128); the host launcher zero-fills the rest (what TMA's out-of-bounds fill does in
// DeepGEMM). Zero terms never change a tensor-core result (REFERENCE.md "Tensor cores").
inline constexpr std::size_t kGemmBlockM = 64;
inline constexpr std::size_t kGemmBlockN = 128;
inline constexpr std::size_t kGemmChunkK = 128;
FP8LAB_HD constexpr std::size_t round_up(std::size_t x, std::size_t to) { return (x + to - 1) / to * to; }

// ---- The promotion schedule of the GEMM kernel, shared by the kernel and the host test that
// replays it with the emulator's instruction model (gpu/tests/test_gpu_host.cpp): instruction
// `step` (k32 number) of `k_steps`, promotion every `promote_steps` instructions (0 = once after the
// last). `first`: the instruction starts the tensor-core sum from zero (wgmma scale-d = 0);
// `promote`: after it the partial sum is combined into the FP32 accumulator, with the scales of
// the interval that starts at element `interval_start` of K.
struct StepPlan {
  bool first, promote;
  std::uint32_t interval_start;
};
FP8LAB_HD constexpr StepPlan promotion_step(std::uint32_t step, std::uint32_t k_steps, std::uint32_t promote_steps) {
  if (promote_steps == 0) return {step == 0, step + 1 == k_steps, 0};
  return {step % promote_steps == 0, (step + 1) % promote_steps == 0 || step + 1 == k_steps,
          (step / promote_steps) * promote_steps * 32};
}

// Index of the scale of row `r` (clamped to the operand's rows: padding rows read the last real
// row's scale, their products are zero) for the K interval starting at `k0`.
FP8LAB_HD constexpr std::uint32_t scale_index(std::uint32_t r, std::uint32_t k0, std::uint32_t rows,
                                              std::uint32_t tile_rows, std::uint32_t tile_cols,
                                              std::uint32_t grid_cols) {
  const std::uint32_t rr = r < rows ? r : rows - 1;
  return (rr / tile_rows) * grid_cols + k0 / tile_cols;
}

}  // namespace fp8lab::gpu

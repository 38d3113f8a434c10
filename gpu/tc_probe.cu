// Device side of the tensor-core probe (gpu/tc_probe.hpp): one mma.sync kernel, one wgmma kernel.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "formats/encode.hpp"
#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"
#include "gpu/sm90_wgmma.cuh"
#include "gpu/tc_probe.hpp"

namespace fp8lab::gpu {

namespace {

constexpr int kMaxSteps = 8;

// steps x (16 x 32) A, steps x (8 x 32) B (N rows of K), 16 x 8 C and D, one warp.
__global__ void mma_sync_probe_kernel(const std::uint8_t* a, const std::uint8_t* b, const float* c, float* d,
                                      int steps) {
  const unsigned lane = threadIdx.x;
  float acc[4];
#pragma unroll
  for (unsigned i = 0; i < 4; ++i) {
    const RowCol p = mma_m16n8k32_c_position(lane, i);
    acc[i] = c[p.row * 8 + p.col];
  }
  for (int s = 0; s < steps; ++s) {
    std::uint32_t ra[4] = {0, 0, 0, 0}, rb[2] = {0, 0};
    for (unsigned i = 0; i < 16; ++i) {
      const RowCol p = mma_m16n8k32_a_position(lane, i);
      ra[i / 4] |= std::uint32_t(a[s * 512 + p.row * 32 + p.col]) << (8 * (i % 4));
    }
    for (unsigned i = 0; i < 8; ++i) {
      const RowCol p = mma_m16n8k32_b_position(lane, i);
      rb[i / 4] |= std::uint32_t(b[s * 256 + p.row * 32 + p.col]) << (8 * (i % 4));
    }
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(rb[0]), "r"(rb[1]));
  }
#pragma unroll
  for (unsigned i = 0; i < 4; ++i) {
    const RowCol p = mma_m16n8k32_c_position(lane, i);
    d[p.row * 8 + p.col] = acc[i];
  }
}

// steps x (64 x 32) A, steps x (8 x 32) B, 64 x 8 C and D, one warpgroup; the accumulator
// registers carry D of one wgmma into the next (scale-d = 1), as in a GEMM's K loop.
__global__ void __launch_bounds__(128) wgmma_probe_kernel(const std::uint8_t* a, const std::uint8_t* b, const float* c,
                                                          float* d, int steps) {
  __shared__ __align__(128) std::uint8_t smem_a[64 * 32 * kMaxSteps];
  __shared__ __align__(128) std::uint8_t smem_b[8 * 32 * kMaxSteps];
  const unsigned tid = threadIdx.x;
  for (unsigned idx = tid; idx < unsigned(steps) * 64 * 32; idx += 128) {
    const unsigned s = idx / 2048, r = (idx % 2048) / 32, k = idx % 32;
    smem_a[wgmma_kmajor_offset(r, s * 32 + k, 64)] = a[idx];
  }
  for (unsigned idx = tid; idx < unsigned(steps) * 8 * 32; idx += 128) {
    const unsigned s = idx / 256, r = (idx % 256) / 32, k = idx % 32;
    smem_b[wgmma_kmajor_offset(r, s * 32 + k, 8)] = b[idx];
  }
  fence_smem_for_async_proxy();
  __syncthreads();
  float acc[4];
#pragma unroll
  for (unsigned i = 0; i < 4; ++i) {
    const RowCol p = wgmma_d_position(tid, i);
    acc[i] = c[p.row * 8 + p.col];
  }
  const std::uint32_t base_a = smem_address(smem_a), base_b = smem_address(smem_b);
  for (int s = 0; s < steps; ++s) {
    wgmma_fence();
    wgmma_m64n8k32_e4m3(acc, wgmma_descriptor(base_a + s * 64 * 32), wgmma_descriptor(base_b + s * 8 * 32), 1);
    wgmma_commit();
    wgmma_wait_all();
  }
#pragma unroll
  for (unsigned i = 0; i < 4; ++i) {
    const RowCol p = wgmma_d_position(tid, i);
    d[p.row * 8 + p.col] = acc[i];
  }
}

// E4M3 byte of a probe value; NaN keeps its sign (0x7F / 0xFF), which encode() canonicalises away.
std::uint8_t e4m3_byte(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xFF : 0x7F;
  return static_cast<std::uint8_t>(encode(x, format_by_name("e4m3")));
}

struct ProbeBuffers {
  std::vector<std::uint8_t> a, b;
  std::vector<float> c;
};
// Row 0 of A and row 0 of B (column 0 of Bᵀ) carry the case; everything else is zero.
ProbeBuffers layout_probe(const ProbeCase& p, int a_rows) {
  if (p.steps < 1 || p.steps > kMaxSteps || p.a.size() != std::size_t(32 * p.steps) || p.b.size() != p.a.size()) {
    throw std::invalid_argument("probe '" + p.name + "': steps must be 1.." + std::to_string(kMaxSteps) +
                                " with 32 * steps values in a and b");
  }
  ProbeBuffers bufs;
  bufs.a.assign(std::size_t(p.steps) * a_rows * 32, 0);
  bufs.b.assign(std::size_t(p.steps) * 8 * 32, 0);
  bufs.c.assign(std::size_t(a_rows) * 8, 0.0f);
  for (int s = 0; s < p.steps; ++s) {
    for (int k = 0; k < 32; ++k) {
      bufs.a[std::size_t(s) * a_rows * 32 + k] = e4m3_byte(p.a[32 * s + k]);
      bufs.b[std::size_t(s) * 8 * 32 + k] = e4m3_byte(p.b[32 * s + k]);
    }
  }
  std::memcpy(&bufs.c[0], &p.c_bits, 4);
  return bufs;
}

std::uint32_t first_bits(const std::vector<float>& d) {
  std::uint32_t u;
  std::memcpy(&u, &d[0], 4);
  return u;
}

}  // namespace

std::uint32_t run_probe_mma_sync(const ProbeCase& p) {
  require_device("run_probe_mma_sync");
  const ProbeBuffers h = layout_probe(p, 16);
  DeviceBuffer<std::uint8_t> a(h.a), b(h.b);
  DeviceBuffer<float> c(h.c), d(h.c.size());
  mma_sync_probe_kernel<<<1, 32>>>(a.data(), b.data(), c.data(), d.data(), p.steps);
  check_cuda(cudaGetLastError(), "mma_sync_probe_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "mma_sync_probe_kernel");
  return first_bits(d.to_host());
}

std::uint32_t run_probe_wgmma(const ProbeCase& p) {
  require_device("run_probe_wgmma");
  const ProbeBuffers h = layout_probe(p, 64);
  DeviceBuffer<std::uint8_t> a(h.a), b(h.b);
  DeviceBuffer<float> c(h.c), d(h.c.size());
  wgmma_probe_kernel<<<1, 128>>>(a.data(), b.data(), c.data(), d.data(), p.steps);
  check_cuda(cudaGetLastError(), "wgmma_probe_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "wgmma_probe_kernel");
  return first_bits(d.to_host());
}

}  // namespace fp8lab::gpu

// The promoted FP8 GEMM kernel (see the header for what it implements).
//
// Shape of the kernel, chosen for being checkable rather than fast: one warpgroup (128 threads)
// per 64 x 128 tile of D; K is staged through shared memory 128 elements at a time (4 k32
// slices, no swizzle, gpu/layout.hpp); the wgmmas of one promotion interval are issued back to
// back, the first with scale-d = 0 (the tensor-core accumulator starts from zero, as DeepGEMM's
// first WGMMA of each block does), then waited for and combined into the FP32 accumulator with
// the spec's order. No TMA, no pipelining, no warp specialisation: DeepGEMM has those; this
// kernel's job is to be the emulator's Promoted model in silicon, and to be measured.
#include "gpu/sm90_fp8_gemm_promoted.hpp"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "formats/encode.hpp"
#include "gemm/gemm.hpp"
#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"
#include "gpu/event_timer.hpp"
#include "gpu/sm90_wgmma.cuh"

namespace fp8lab::gpu {

namespace {

struct GemmParams {
  const std::uint8_t* a;  // m_pad x k_pad
  const std::uint8_t* b;  // n_pad x k_pad
  const float* sa;
  const float* sb;
  unsigned a_rows, b_rows;
  unsigned a_tile_rows, a_tile_cols, a_grid_cols;
  unsigned b_tile_rows, b_tile_cols, b_grid_cols;
  unsigned k_pad;
  unsigned k_steps;        // ceil(K / 32): instructions issued per output
  unsigned promote_steps;  // N_C / 32; 0 = one promotion after the last instruction
  const float* c;          // m_pad x n_pad or null
  void* d;                 // m_pad x n_pad, float or bf16
  unsigned n_pad;
};

// The three combine orders of gemm/combine.hpp, each with explicitly rounded intrinsics so that
// nvcc's contraction (on by default, --fmad=true) cannot change them.
template <int kCombine>
__device__ __forceinline__ float combine(float p, float sa, float sb, float acc) {
  if constexpr (kCombine == static_cast<int>(Combine::DeepGemm)) {
    return __fmaf_rn(__fmul_rn(sa, sb), p, acc);
  } else if constexpr (kCombine == static_cast<int>(Combine::Triton)) {
    return __fadd_rn(__fmul_rn(__fmul_rn(p, sa), sb), acc);
  } else {
    return __fmaf_rn(__fmul_rn(p, sa), sb, acc);
  }
}

constexpr unsigned kThreads = 128;
constexpr unsigned kSmemA = kGemmBlockM * kGemmChunkK;  // 8 KiB
constexpr unsigned kSmemB = kGemmBlockN * kGemmChunkK;  // 16 KiB

template <int kCombine, bool kBf16Out>
__global__ void __launch_bounds__(kThreads) sm90_fp8_gemm_promoted_kernel(GemmParams p) {
  __shared__ __align__(128) std::uint8_t smem_a[kSmemA];
  __shared__ __align__(128) std::uint8_t smem_b[kSmemB];
  const unsigned tid = threadIdx.x;
  const unsigned m0 = blockIdx.y * kGemmBlockM, n0 = blockIdx.x * kGemmBlockN;

  float part[64], acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) part[i] = acc[i] = 0.0f;

  const std::uint32_t base_a = smem_address(smem_a), base_b = smem_address(smem_b);
  unsigned step = 0;
  for (unsigned chunk = 0; step < p.k_steps; ++chunk) {
    __syncthreads();  // the previous chunk's wgmmas have been waited for by every thread
    // 16-byte pieces: A has 64 rows x 8 pieces, B 128 rows x 8 pieces.
#pragma unroll
    for (unsigned j = 0; j < kGemmBlockM * 8 / kThreads; ++j) {
      const unsigned u = tid + j * kThreads, r = u / 8, k = (u % 8) * 16;
      const uint4 v = *reinterpret_cast<const uint4*>(p.a + std::size_t(m0 + r) * p.k_pad + chunk * kGemmChunkK + k);
      *reinterpret_cast<uint4*>(smem_a + wgmma_kmajor_offset(r, k, kGemmBlockM)) = v;
    }
#pragma unroll
    for (unsigned j = 0; j < kGemmBlockN * 8 / kThreads; ++j) {
      const unsigned u = tid + j * kThreads, r = u / 8, k = (u % 8) * 16;
      const uint4 v = *reinterpret_cast<const uint4*>(p.b + std::size_t(n0 + r) * p.k_pad + chunk * kGemmChunkK + k);
      *reinterpret_cast<uint4*>(smem_b + wgmma_kmajor_offset(r, k, kGemmBlockN)) = v;
    }
    fence_smem_for_async_proxy();
    __syncthreads();

    unsigned s = 0;
    while (s < 4 && step < p.k_steps) {
      // One run of instructions up to the end of the chunk or of the promotion interval.
      StepPlan plan;
      wgmma_fence();
      do {
        plan = promotion_step(step, p.k_steps, p.promote_steps);
        wgmma_m64n128k32_e4m3(part, wgmma_descriptor(base_a + s * kGemmBlockM * 32),
                              wgmma_descriptor(base_b + s * kGemmBlockN * 32), plan.first ? 0 : 1);
        ++s;
        ++step;
      } while (!plan.promote && s < 4);
      wgmma_commit();
      wgmma_wait_all();
      if (plan.promote) {
#pragma unroll
        for (unsigned i = 0; i < 64; ++i) {
          const RowCol rc = wgmma_d_position(tid, i);
          const float sa = p.sa[scale_index(m0 + rc.row, plan.interval_start, p.a_rows, p.a_tile_rows, p.a_tile_cols,
                                            p.a_grid_cols)];
          const float sb = p.sb[scale_index(n0 + rc.col, plan.interval_start, p.b_rows, p.b_tile_rows, p.b_tile_cols,
                                            p.b_grid_cols)];
          acc[i] = combine<kCombine>(part[i], sa, sb, acc[i]);
        }
      }
    }
  }

#pragma unroll
  for (unsigned i = 0; i < 64; ++i) {
    const RowCol rc = wgmma_d_position(tid, i);
    const std::size_t at = std::size_t(m0 + rc.row) * p.n_pad + n0 + rc.col;
    float v = acc[i];
    if (p.c) v = __fadd_rn(v, p.c[at]);  // C joins last, in FP32 (gemm/gemm.hpp)
    if constexpr (kBf16Out) {
      static_cast<__nv_bfloat16*>(p.d)[at] = __float2bfloat16_rn(v);
    } else {
      static_cast<float*>(p.d)[at] = v;
    }
  }
}

using KernelFn = void (*)(GemmParams);
KernelFn kernel_for(Combine combine, bool bf16) {
  switch (combine) {
    case Combine::DeepGemm:
      return bf16 ? sm90_fp8_gemm_promoted_kernel<0, true> : sm90_fp8_gemm_promoted_kernel<0, false>;
    case Combine::Triton:
      return bf16 ? sm90_fp8_gemm_promoted_kernel<1, true> : sm90_fp8_gemm_promoted_kernel<1, false>;
    case Combine::Cublas:
    default:
      return bf16 ? sm90_fp8_gemm_promoted_kernel<2, true> : sm90_fp8_gemm_promoted_kernel<2, false>;
  }
}

static_assert(static_cast<int>(Combine::DeepGemm) == 0 && static_cast<int>(Combine::Triton) == 1 &&
              static_cast<int>(Combine::Cublas) == 2);

float bf16_bits_to_float(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

__global__ void fill_random_e4m3(std::uint8_t* x, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 0x9E3779B9u ^ seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    std::uint8_t v = static_cast<std::uint8_t>(h);
    if ((v & 0x7F) == 0x7F) v ^= 1;  // no NaN
    x[i] = v;
  }
}

}  // namespace

// DeepGEMM writes its promotion as `final_accum += scale * accum` in plain C++ and leaves the
// contraction to nvcc. This kernel is that source line alone, so that the SASS test
// (gpu/tests/check_sass.sh) can tell whether it becomes one FFMA (= Combine::DeepGemm,
// fma(sa*sb, p, acc)) or FMUL + FADD.
// Not in the anonymous namespace, so that it is emitted although nothing launches it.
__global__ void deepgemm_style_promotion_kernel(const float* partial, const float* sa, const float* sb, float* final_acc) {
  const unsigned i = threadIdx.x;
  const float scale = sa[i] * sb[i];
  final_acc[i] += scale * partial[i];
}

PaddedOperand pad_operand_e4m3(const GemmOperand& x, std::size_t row_block, std::string_view arg) {
  if (x.fmt != "e4m3") {
    throw std::invalid_argument(std::string(arg) + ": element format is '" + x.fmt +
                                "'; the sm90 FP8 kernels take E4M3 operands only");
  }
  PaddedOperand p;
  p.rows = x.rows;
  p.cols = x.cols;
  p.rows_pad = round_up(std::max<std::size_t>(x.rows, 1), row_block);
  p.cols_pad = round_up(std::max<std::size_t>(x.cols, 1), kGemmChunkK);
  p.bits.assign(p.rows_pad * p.cols_pad, 0);
  const Format& e4m3 = format_by_name("e4m3");
  for (std::size_t r = 0; r < x.rows; ++r) {
    for (std::size_t k = 0; k < x.cols; ++k) {
      p.bits[r * p.cols_pad + k] = static_cast<std::uint8_t>(encode(x.elements[r * x.cols + k], e4m3));
    }
  }
  p.scales = x.scales;
  if (p.scales.empty()) p.scales.push_back(1.0f);
  p.tile_rows = std::max<std::size_t>(x.tile_rows, 1);
  p.tile_cols = std::max<std::size_t>(x.tile_cols, 1);
  p.grid_cols = std::max<std::size_t>(x.grid_cols(), 1);
  return p;
}

int validate_promoted_gemm(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec) {
  validate_gemm(a, b, spec);
  if (spec.accumulate != Accumulate::Promoted && spec.accumulate != Accumulate::TensorCore) {
    throw std::invalid_argument("spec.accumulate: '" + std::string(accumulate_name(spec.accumulate)) +
                                "' is not a tensor-core mode; the sm90 kernel does promoted or tensorcore");
  }
  if (spec.instruction != "hopper_fp8" && spec.instruction != "hopper_wgmma_m64nNk32_f32_e4m3") {
    throw std::invalid_argument("spec.instruction: '" + spec.instruction +
                                "'; the sm90 kernel issues wgmma k32 E4M3 (hopper_fp8) only");
  }
  if (spec.out == OutputFormat::Fp64) throw std::invalid_argument("spec.out: fp64; the sm90 kernel writes bf16 or fp32");
  if (a.fmt != "e4m3") throw std::invalid_argument("a: element format '" + a.fmt + "'; expected e4m3");
  if (b.fmt != "e4m3") throw std::invalid_argument("b: element format '" + b.fmt + "'; expected e4m3");
  if (a.rows == 0 || b.rows == 0 || a.cols == 0) throw std::invalid_argument("a, b: empty GEMM (M, N and K must be >= 1)");
  if (spec.accumulate == Accumulate::TensorCore) return 0;
  if (spec.promote_every <= 0 || spec.promote_every % 32 != 0) {
    throw std::invalid_argument("spec.promote_every: " + std::to_string(spec.promote_every) +
                                "; the kernel promotes after whole k32 instructions (a positive multiple of 32)");
  }
  return spec.promote_every;
}

std::vector<double> sm90_fp8_gemm_promoted(const GemmOperand& a, const GemmOperand& b, const GemmSpec& spec,
                                           const float* c) {
  const int nc = validate_promoted_gemm(a, b, spec);
  require_device("sm90_fp8_gemm_promoted");
  const PaddedOperand pa = pad_operand_e4m3(a, kGemmBlockM, "a");
  const PaddedOperand pb = pad_operand_e4m3(b, kGemmBlockN, "b");
  const std::size_t m = a.rows, n = b.rows, k = a.cols;
  const bool bf16 = spec.out == OutputFormat::Bf16;

  DeviceBuffer<std::uint8_t> da(pa.bits), db(pb.bits);
  DeviceBuffer<float> dsa(pa.scales), dsb(pb.scales);
  DeviceBuffer<float> dc;
  if (c) {
    std::vector<float> cpad(pa.rows_pad * pb.rows_pad, 0.0f);
    for (std::size_t i = 0; i < m; ++i) std::memcpy(&cpad[i * pb.rows_pad], c + i * n, n * sizeof(float));
    dc = DeviceBuffer<float>(cpad);
  }
  DeviceBuffer<std::uint8_t> dd(pa.rows_pad * pb.rows_pad * (bf16 ? 2 : 4));

  GemmParams prm{};
  prm.a = da.data();
  prm.b = db.data();
  prm.sa = dsa.data();
  prm.sb = dsb.data();
  prm.a_rows = unsigned(m);
  prm.b_rows = unsigned(n);
  prm.a_tile_rows = unsigned(pa.tile_rows);
  prm.a_tile_cols = unsigned(pa.tile_cols);
  prm.a_grid_cols = unsigned(pa.grid_cols);
  prm.b_tile_rows = unsigned(pb.tile_rows);
  prm.b_tile_cols = unsigned(pb.tile_cols);
  prm.b_grid_cols = unsigned(pb.grid_cols);
  prm.k_pad = unsigned(pa.cols_pad);
  prm.k_steps = unsigned((k + 31) / 32);
  prm.promote_steps = unsigned(nc / 32);
  prm.c = c ? dc.data() : nullptr;
  prm.d = dd.data();
  prm.n_pad = unsigned(pb.rows_pad);
  const dim3 grid(unsigned(pb.rows_pad / kGemmBlockN), unsigned(pa.rows_pad / kGemmBlockM));
  kernel_for(spec.combine, bf16)<<<grid, kThreads>>>(prm);
  check_cuda(cudaGetLastError(), "sm90_fp8_gemm_promoted_kernel launch");
  check_cuda(cudaDeviceSynchronize(), "sm90_fp8_gemm_promoted_kernel");
  const std::vector<std::uint8_t> raw = dd.to_host();

  std::vector<double> out(m * n);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t at = i * pb.rows_pad + j;
      if (bf16) {
        std::uint16_t h;
        std::memcpy(&h, &raw[at * 2], 2);
        out[i * n + j] = bf16_bits_to_float(h);
      } else {
        float f;
        std::memcpy(&f, &raw[at * 4], 4);
        out[i * n + j] = f;
      }
    }
  }
  return out;
}

double time_sm90_fp8_gemm_promoted(std::size_t m, std::size_t n, std::size_t k, int iters) {
  require_device("time_sm90_fp8_gemm_promoted");
  if (m % kGemmBlockM || n % kGemmBlockN || k % kGemmChunkK || iters < 1) {
    throw std::invalid_argument("time_sm90_fp8_gemm_promoted: m % 64, n % 128, k % 128 must be 0 and iters >= 1");
  }
  DeviceBuffer<std::uint8_t> da(m * k), db(n * k), dd(m * n * 2);
  fill_random_e4m3<<<256, 256>>>(da.data(), m * k, 1);
  fill_random_e4m3<<<256, 256>>>(db.data(), n * k, 2);
  const std::size_t kb = k / 128;
  DeviceBuffer<float> dsa(std::vector<float>(m * kb, 1.0f)), dsb(std::vector<float>(((n + 127) / 128) * kb, 1.0f));
  GemmParams prm{da.data(), db.data(), dsa.data(), dsb.data(), unsigned(m), unsigned(n), 1, 128, unsigned(kb),
                 128, 128, unsigned(kb), unsigned(k), unsigned(k / 32), 4, nullptr, dd.data(), unsigned(n)};
  const dim3 grid(unsigned(n / kGemmBlockN), unsigned(m / kGemmBlockM));
  auto fn = kernel_for(Combine::DeepGemm, true);
  fn<<<grid, kThreads>>>(prm);
  check_cuda(cudaDeviceSynchronize(), "time_sm90_fp8_gemm_promoted warm-up");
  return seconds_per_call(iters, [&] { fn<<<grid, kThreads>>>(prm); }, "time_sm90_fp8_gemm_promoted");
}

}  // namespace fp8lab::gpu

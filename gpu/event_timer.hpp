// Device time per call of a launch, measured with CUDA events around `iters` back-to-back calls
// (after the caller's warm-up). Shared by the GEMM and cuBLASLt benchmarks.
#pragma once

#include <cuda_runtime_api.h>

#include "gpu/device.hpp"

namespace fp8lab::gpu {

template <class Launch>
double seconds_per_call(int iters, Launch&& launch, const char* what) {
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  cudaEventRecord(start);
  for (int i = 0; i < iters; ++i) launch();
  cudaEventRecord(stop);
  check_cuda(cudaEventSynchronize(stop), what);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e-3 / iters;
}

}  // namespace fp8lab::gpu

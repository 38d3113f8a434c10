#include "gpu/cublaslt_fp8.hpp"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "formats/encode.hpp"
#include "gemm/gemm.hpp"
#include "gpu/device.hpp"
#include "gpu/device_buffer.hpp"
#include "gpu/event_timer.hpp"

namespace fp8lab::gpu {

namespace {

#if defined(CUBLASLT_MATMUL_DESC_A_SCALE_MODE) || CUBLAS_VERSION >= 120900
constexpr bool kHaveBlockScaling = true;
#else
constexpr bool kHaveBlockScaling = false;
#endif

void check_lt(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw CudaError(std::string(call) + ": cuBLASLt status " + std::to_string(static_cast<int>(s)) + " (" +
                    cublasLtGetStatusName(s) + ": " + cublasLtGetStatusString(s) + ")");
  }
}

std::vector<std::uint8_t> e4m3_bytes(const GemmOperand& x) {
  std::vector<std::uint8_t> out(x.elements.size());
  const Format& f = format_by_name("e4m3");
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(encode(x.elements[i], f));
  return out;
}

// One cuBLASLt FP8 matmul configuration (handle, descriptors, chosen algorithm, workspace) made
// once, so that timing measures cublasLtMatmul alone. d is N x M column-major = M x N row-major.
class LtCall {
 public:
  LtCall(std::size_t m, std::size_t n, std::size_t k, CublasLtMode mode, OutputFormat out, const float* sa,
         const float* sb)
      : mode_(mode) {
    check_lt(cublasLtCreate(&h_), "cublasLtCreate");
    check_lt(cublasLtMatmulDescCreate(&op_, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    set(CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta, "TRANSA");
    set(CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb, "TRANSB");
    // cuBLAS's A is our B and vice versa.
    set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sb, sizeof sb, "A_SCALE_POINTER");
    set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sa, sizeof sa, "B_SCALE_POINTER");
    if (mode == CublasLtMode::PerTensorFastAccum) {
      const std::int8_t fast = 1;
      set(CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast, "FAST_ACCUM");
    }
#if defined(CUBLASLT_MATMUL_DESC_A_SCALE_MODE) || CUBLAS_VERSION >= 120900
    if (mode == CublasLtMode::Block1x128x128) {
      const std::int32_t ma = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, mb = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
      set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &ma, sizeof ma, "A_SCALE_MODE");
      set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mb, sizeof mb, "B_SCALE_MODE");
    }
#endif
    const cudaDataType_t dt = out == OutputFormat::Bf16 ? CUDA_R_16BF : CUDA_R_32F;
    check_lt(cublasLtMatrixLayoutCreate(&la_, CUDA_R_8F_E4M3, k, n, k), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&lb_, CUDA_R_8F_E4M3, k, m, k), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&ld_, dt, n, m, n), "layout D");
    check_lt(cublasLtMatmulPreferenceCreate(&pref_), "preference");
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes_,
                                                  sizeof ws_bytes_),
             "workspace");
    int found = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(h_, op_, la_, lb_, ld_, ld_, pref_, 1, &res_, &found);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
      check_lt(hs == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : hs,
               (std::string("cublasLtMatmulAlgoGetHeuristic (") + std::string(cublaslt_mode_name(mode)) + ")").c_str());
    }
    ws_ = DeviceBuffer<std::uint8_t>(ws_bytes_);
  }
  LtCall(const LtCall&) = delete;
  LtCall& operator=(const LtCall&) = delete;
  ~LtCall() {
    if (pref_) cublasLtMatmulPreferenceDestroy(pref_);
    if (la_) cublasLtMatrixLayoutDestroy(la_);
    if (lb_) cublasLtMatrixLayoutDestroy(lb_);
    if (ld_) cublasLtMatrixLayoutDestroy(ld_);
    if (op_) cublasLtMatmulDescDestroy(op_);
    if (h_) cublasLtDestroy(h_);
  }

  void run(const void* a, const void* b, void* d) {
    const float alpha = 1.0f, beta = 0.0f;
    check_lt(cublasLtMatmul(h_, op_, &alpha, b, la_, a, lb_, &beta, d, ld_, d, ld_, &res_.algo, ws_.data(), ws_bytes_,
                            nullptr),
             "cublasLtMatmul");
  }

 private:
  void set(cublasLtMatmulDescAttributes_t attr, const void* v, std::size_t size, const char* what) {
    check_lt(cublasLtMatmulDescSetAttribute(op_, attr, v, size), what);
  }
  CublasLtMode mode_;
  cublasLtHandle_t h_ = nullptr;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t la_ = nullptr, lb_ = nullptr, ld_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
  cublasLtMatmulHeuristicResult_t res_{};
  std::size_t ws_bytes_ = 32u << 20;
  DeviceBuffer<std::uint8_t> ws_;
};

}  // namespace

std::string_view cublaslt_mode_name(CublasLtMode m) {
  switch (m) {
    case CublasLtMode::PerTensor: return "per_tensor";
    case CublasLtMode::PerTensorFastAccum: return "per_tensor_fast_accum";
    case CublasLtMode::Block1x128x128: return "block_1x128_128x128";
  }
  return "?";
}

CublasLtMode cublaslt_mode_by_name(std::string_view name) {
  for (CublasLtMode m : {CublasLtMode::PerTensor, CublasLtMode::PerTensorFastAccum, CublasLtMode::Block1x128x128})
    if (cublaslt_mode_name(m) == name) return m;
  throw std::invalid_argument("mode: unknown cuBLASLt mode '" + std::string(name) +
                              "' (per_tensor, per_tensor_fast_accum, block_1x128_128x128)");
}

std::vector<CublasLtMode> cublaslt_modes() {
  std::vector<CublasLtMode> v{CublasLtMode::PerTensor, CublasLtMode::PerTensorFastAccum};
  if (kHaveBlockScaling) v.push_back(CublasLtMode::Block1x128x128);
  return v;
}

void validate_cublaslt_fp8_gemm(const GemmOperand& a, const GemmOperand& b, CublasLtMode mode, OutputFormat out) {
  if (a.fmt != "e4m3") throw std::invalid_argument("a: element format '" + a.fmt + "'; cuBLASLt FP8 takes e4m3 here");
  if (b.fmt != "e4m3") throw std::invalid_argument("b: element format '" + b.fmt + "'; cuBLASLt FP8 takes e4m3 here");
  if (a.cols != b.cols) {
    throw std::invalid_argument("a, b: K differs (" + std::to_string(a.cols) + " vs " + std::to_string(b.cols) + ")");
  }
  if (a.rows % 16 || b.rows % 16 || a.cols % 16 || a.rows == 0 || b.rows == 0 || a.cols == 0) {
    throw std::invalid_argument("a, b: M, N and K must be positive multiples of 16 for cuBLASLt FP8 (got M=" +
                                std::to_string(a.rows) + ", N=" + std::to_string(b.rows) + ", K=" +
                                std::to_string(a.cols) + ")");
  }
  if (out == OutputFormat::Fp64) throw std::invalid_argument("out: fp64; cuBLASLt writes bf16 or fp32 here");
  if (mode == CublasLtMode::Block1x128x128) {
    if (!kHaveBlockScaling) throw std::invalid_argument("mode: this cuBLASLt has no VEC128/BLK128x128 scaling");
    if (a.tile_rows != 1 || a.tile_cols != 128) throw std::invalid_argument("a: block mode needs 1x128 scale tiles");
    if (b.tile_rows != 128 || b.tile_cols != 128) throw std::invalid_argument("b: block mode needs 128x128 scale tiles");
  } else {
    if (a.scales.size() != 1) throw std::invalid_argument("a: per-tensor mode needs exactly one scale");
    if (b.scales.size() != 1) throw std::invalid_argument("b: per-tensor mode needs exactly one scale");
  }
}

std::vector<double> cublaslt_fp8_gemm(const GemmOperand& a, const GemmOperand& b, CublasLtMode mode, OutputFormat out,
                                      VecScaleLayout vec_layout) {
  validate_cublaslt_fp8_gemm(a, b, mode, out);
  require_device("cublaslt_fp8_gemm");
  const std::size_t m = a.rows, n = b.rows, k = a.cols;
  std::vector<float> sa = a.scales;
  if (mode == CublasLtMode::Block1x128x128 && vec_layout == VecScaleLayout::KBlockMajor) {
    const std::size_t kb = a.grid_cols();
    for (std::size_t r = 0; r < m; ++r)
      for (std::size_t j = 0; j < kb; ++j) sa[j * m + r] = a.scales[r * kb + j];
  }
  DeviceBuffer<std::uint8_t> da(e4m3_bytes(a)), db(e4m3_bytes(b));
  DeviceBuffer<float> dsa(sa), dsb(b.scales);
  const bool bf16 = out == OutputFormat::Bf16;
  DeviceBuffer<std::uint8_t> dd(m * n * (bf16 ? 2 : 4));
  LtCall(m, n, k, mode, out, dsa.data(), dsb.data()).run(da.data(), db.data(), dd.data());
  check_cuda(cudaDeviceSynchronize(), "cublasLtMatmul");
  const auto raw = dd.to_host();
  std::vector<double> d(m * n);
  for (std::size_t i = 0; i < m * n; ++i) {
    if (bf16) {
      std::uint16_t hb;
      std::memcpy(&hb, &raw[2 * i], 2);
      const std::uint32_t u = std::uint32_t(hb) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      d[i] = f;
    } else {
      float f;
      std::memcpy(&f, &raw[4 * i], 4);
      d[i] = f;
    }
  }
  return d;
}

double time_cublaslt_fp8_gemm(std::size_t m, std::size_t n, std::size_t k, CublasLtMode mode, int iters) {
  require_device("time_cublaslt_fp8_gemm");
  if (iters < 1) throw std::invalid_argument("iters: must be >= 1");
  std::vector<std::uint8_t> ha(m * k), hb(n * k);
  std::uint32_t x = 12345;
  for (auto* v : {&ha, &hb})
    for (auto& byte : *v) {
      x = x * 1664525u + 1013904223u;
      byte = static_cast<std::uint8_t>(x >> 24);
      if ((byte & 0x7F) == 0x7F) byte ^= 1;
    }
  DeviceBuffer<std::uint8_t> da(ha), db(hb), dd(m * n * 2);
  const std::size_t kb = (k + 127) / 128;
  const bool block = mode == CublasLtMode::Block1x128x128;
  DeviceBuffer<float> dsa(std::vector<float>(block ? m * kb : 1, 1.0f)),
      dsb(std::vector<float>(block ? ((n + 127) / 128) * kb : 1, 1.0f));
  LtCall call(m, n, k, mode, OutputFormat::Bf16, dsa.data(), dsb.data());
  call.run(da.data(), db.data(), dd.data());  // warm-up
  check_cuda(cudaDeviceSynchronize(), "cublasLt warm-up");
  return seconds_per_call(iters, [&] { call.run(da.data(), db.data(), dd.data()); }, "cublasLt timing");
}

}  // namespace fp8lab::gpu

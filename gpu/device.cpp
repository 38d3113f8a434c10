#include "gpu/device.hpp"

#include <cuda_runtime_api.h>

#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>

namespace fp8lab::gpu {

namespace {

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// The kernel module's release, as nvidia-smi reports "Driver Version" (NVML is not needed for it).
std::string read_driver_release() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  std::smatch m;
  static const std::regex release(R"((\d+\.\d+(\.\d+)?))");
  if (std::regex_search(line, m, release)) return m[1];
  return {};
}

DeviceStatus probe() {
  DeviceStatus s;
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaDriverGetVersion(&s.driver_api_version);
  s.driver_release = read_driver_release();
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    s.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky state so later calls report their own errors
    return s;
  }
  if (count == 0) {
    s.reason = "cudaGetDeviceCount returned 0 devices";
    return s;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    s.reason = "cudaGetDeviceProperties(0) failed";
    return s;
  }
  s.name = prop.name;
  s.cc_major = prop.major;
  s.cc_minor = prop.minor;
  s.sm_count = prop.multiProcessorCount;
  if (prop.major != 9 || prop.minor != 0) {
    s.reason = "device 0 is " + s.name + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
               "); gpu/ kernels are built for sm_90a (H100/H200) only";
    return s;
  }
  s.available = true;
  return s;
}

}  // namespace

std::string DeviceStatus::describe() const {
  std::ostringstream o;
  if (!available && name.empty()) {
    o << "no device: " << reason;
    return o.str();
  }
  o << name << " (sm_" << cc_major << cc_minor << ", " << sm_count << " SMs), driver "
    << (driver_release.empty() ? "?" : driver_release) << " (CUDA " << version_text(driver_api_version) << "), runtime "
    << version_text(runtime_version);
  if (!available) o << "; unusable: " << reason;
  return o.str();
}

const DeviceStatus& device_status() {
  static std::once_flag once;
  static DeviceStatus status;
  std::call_once(once, [] { status = probe(); });
  return status;
}

void require_device(const char* what) {
  const DeviceStatus& s = device_status();
  if (!s.available) throw NoDevice(std::string(what) + ": no device: " + s.reason);
}

void check_cuda(int code, const char* call) {
  const auto err = static_cast<cudaError_t>(code);
  if (err == cudaSuccess) return;
  throw CudaError(std::string(call) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace fp8lab::gpu

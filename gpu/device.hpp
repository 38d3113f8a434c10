// The one door to the CUDA runtime for everything in gpu/: whether a usable device is there (and
// if not, why, in words a test can print), what it is (name, compute capability, driver), and
// error checking that turns a CUDA error into an exception naming the call. Nothing here needs a
// device to compile or to run: without one, device_status() says so and every launcher throws
// NoDevice instead of crashing.
#pragma once

#include <stdexcept>
#include <string>

namespace fp8lab::gpu {

struct DeviceStatus {
  bool available = false;     // a device of compute capability 9.x is usable
  std::string reason;         // why not (empty when available)
  std::string name;           // e.g. "NVIDIA H200"
  int cc_major = 0, cc_minor = 0;
  int driver_api_version = 0;   // cudaDriverGetVersion, e.g. 13000
  int runtime_version = 0;      // cudaRuntimeGetVersion
  std::string driver_release;   // kernel module release from /proc/driver/nvidia/version, e.g. "580.95.05"
  int sm_count = 0;
  // One line: "NVIDIA H200 (sm_90, 132 SMs), driver 580.95.05 (CUDA 13.0), runtime 13.0" or
  // "no device: <reason>".
  std::string describe() const;
};

// Probed once per process (thread-safe). Kernels here are built for sm_90a only, so any device
// that is not compute capability 9.0 counts as unavailable, with the reason saying so.
const DeviceStatus& device_status();

// Thrown by every launcher when device_status() is not available.
struct NoDevice : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Thrown on a CUDA runtime / cuBLASLt error: "<call>: <error name>: <error string>".
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws NoDevice("<what>: no device: <reason>") unless a device is available.
void require_device(const char* what);
// Throws CudaError when `code` (a cudaError_t) is not cudaSuccess.
void check_cuda(int code, const char* call);

}  // namespace fp8lab::gpu

# GPU code is built whenever nvcc is found (or FP8LAB_CUDA=ON forces it); it needs a device only
# to run. FP8LAB_WITH_CUDA tells the rest of the build whether gpu/ is in.
set(FP8LAB_WITH_CUDA OFF)
if(NOT FP8LAB_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    set(FP8LAB_WITH_CUDA ON)
  elseif(FP8LAB_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FP8LAB_CUDA=ON but no CUDA compiler was found (looked for nvcc, /usr/local/cuda/bin/nvcc)")
  endif()
endif()
message(STATUS "fp8lab: GPU code ${FP8LAB_WITH_CUDA}")

# CUDA's host-side conversion functions (cuda_fp8.h, cuda_bf16.h, cuda_fp16.h) are the oracle the
# format tests compare against; they need only the headers, not a device or nvcc.
find_package(CUDAToolkit QUIET)
if(CUDAToolkit_FOUND AND EXISTS "${CUDAToolkit_INCLUDE_DIRS}/cuda_fp8.h")
  set(FP8LAB_HAVE_CUDA_HEADERS ON)
else()
  set(FP8LAB_HAVE_CUDA_HEADERS OFF)
endif()
message(STATUS "fp8lab: CUDA host headers for oracle tests: ${FP8LAB_HAVE_CUDA_HEADERS}")

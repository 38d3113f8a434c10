#!/usr/bin/env bash
# gpu/check.sh — the one script a session lent an sm_90 device (H100/H200) runs, once.
#
#   OUT=/dir bash gpu/check.sh                 configure + build with CUDA, then run everything
#   OUT=/dir BUILD_DIR=build/gpu-check bash gpu/check.sh   reuse a build (e.g. carried from a
#                                              machine that has the build dependencies)
#   bash gpu/check.sh --build-only             configure + build, run nothing (to carry the build)
#
# Runs: the GPU CTest tests (host tests, kernel-vs-emulator properties, SASS/resource/ptxas checks)
# and the hardware replay test; the tensor-core probe (features table vs the emulator's Hopper
# model, every disagreement a FINDING line); the search for the emulator spec of every GEMM
# kernel (ours and cuBLASLt's); the benchmarks (TFLOP/s ours vs cuBLASLt on DeepSeek-V3 shapes,
# ratio ours/cuBLASLt); and writes the hardware traces.
# Writes under $OUT (8 files, two folder levels, each far below 16 MiB):
#   check.log   everything, in order       summary.txt  probe table, spec matches, benchmark
#   ctest.log   the tests' output          traces/*.safetensors (5 files, fixtures/hardware/README.md)
# Budget: < 5 minutes on an H200 with 16 cores (build ~2 min, tests ~1 min, the rest < 1 min).
# Exit status: 0 when every step ran and passed; 1 when a step failed (the logs say which).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build_only=0
[[ "${1:-}" == "--build-only" ]] && build_only=1
OUT=${OUT:-$here/gpu-check-out}
BUILD_DIR=${BUILD_DIR:-$here/build/gpu-check}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT/traces"
log=$OUT/check.log
summary=$OUT/summary.txt
: >"$log"
: >"$summary"
status=0

say() { echo "$*" | tee -a "$log"; }
# step NAME TIMEOUT_S CMD...: runs CMD with a time limit, output to check.log (and the console),
# records a failure without stopping the script.
step() {
  local name=$1 limit=$2
  shift 2
  say "=== $name ($(date -u +%H:%M:%S))"
  local rc=0
  timeout "$limit" "$@" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    say "=== $name: FAILED (exit $rc)"
    status=1
  fi
  return 0
}

say "fp8lab gpu/check.sh at $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u)"
if command -v nvidia-smi >/dev/null; then
  step "nvidia-smi" 30 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm --format=csv
fi

if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    say "cmake/ninja missing: trying tools/install-deps.sh (needs the Debian mirror)"
    bash tools/install-deps.sh >>"$log" 2>&1 || say "install-deps failed; build elsewhere with --build-only and carry $BUILD_DIR"
  fi
  step "configure" 300 cmake -S "$here" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8LAB_CUDA=ON \
    -DFP8LAB_PYTHON=OFF -DFP8LAB_BENCH=OFF -DFP8LAB_NATIVE=OFF
fi
step "build" 600 cmake --build "$BUILD_DIR" -j "$JOBS" --target fp8lab_gpu_check test_gpu_host prop_gpu_kernels \
  test_gpu_replay
if [[ $build_only -eq 1 ]]; then
  say "build only: done (status $status)"
  exit $status
fi
check=$BUILD_DIR/gpu/fp8lab_gpu_check

step "device" 30 "$check" device
# Property tests: 50 cases per property keeps them near a minute; a failure prints the shrunk case.
RC_PARAMS=${RC_PARAMS:-"max_success=50"} \
  step "ctest (gpu + replay)" 600 bash -c "cd '$BUILD_DIR' && ctest -L gpu --output-on-failure \
    -j 4 >'$OUT/ctest.log' 2>&1; rc=\$?; tail -25 '$OUT/ctest.log'; exit \$rc"
# The replay test is labelled unit, not gpu: run it by name too (cheap; skips without traces).
step "replay" 120 bash -c "cd '$BUILD_DIR' && ctest -R GpuReplay --output-on-failure >>'$OUT/ctest.log' 2>&1; \
  rc=\$?; grep -E 'tests passed|Skipped|Failed' '$OUT/ctest.log' | tail -3; exit \$rc"

{
  echo "# Tensor-core probe"
} >>"$summary"
step "probe" 120 bash -c "'$check' probe | tee -a '$summary'"
echo "# Which emulator spec reproduces each GEMM kernel" >>"$summary"
step "match" 300 bash -c "'$check' match | tee -a '$summary'"
echo "# Benchmarks (DeepSeek-V3 shapes)" >>"$summary"
step "bench" 300 bash -c "'$check' bench | tee -a '$summary'"
step "traces" 300 "$check" traces "$OUT/traces"

say "=== files under $OUT:"
(cd "$OUT" && find . -type f -printf '%p %s bytes\n' | sort) | tee -a "$log"
say "=== gpu/check.sh finished: status $status ($(date -u +%H:%M:%S))"
exit $status

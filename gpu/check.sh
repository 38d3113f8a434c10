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
#   ctest.log   the test executables' output         traces/*.safetensors (5 files, fixtures/hardware/README.md)
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
# The test executables are run directly, not through ctest: a build carried from another machine
# keeps working even where its absolute paths do not exist. Property tests: 50 cases per
# property keeps them near a minute; a failure prints the shrunk counterexample.
tests_log=$OUT/ctest.log
: >"$tests_log"
run_test() {
  local name=$1
  shift
  local one=$OUT/.one-test.log rc=0
  timeout 600 "$@" >"$one" 2>&1 || rc=$?
  { echo "=== $name (exit $rc)"; cat "$one"; } >>"$tests_log"
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    say "$name: FAILED (exit $rc; see ctest.log)"
    status=1
  else
    local counts oks why
    counts=$(grep -E '^\[  (PASSED|SKIPPED) +\] [0-9]+ test' "$one" | sed 's/, listed below://' | tr -s ' ' | tr '\n' ' ' || true)
    oks=$(grep -c '^ok' "$one" || true)
    [[ $oks -gt 0 ]] || oks=
    why=$(grep -m1 -oE 'no device: .*|^SKIP: .*' "$one" || true)
    say "$name: ${counts}${oks:+ $oks checks ok}${why:+ ($why)}"
  fi
  rm -f "$one"
}
say "=== tests ($(date -u +%H:%M:%S))"
export RC_PARAMS=${RC_PARAMS:-"max_success=50"}
run_test test_gpu_host "$BUILD_DIR/gpu/test_gpu_host"
run_test prop_gpu_kernels "$BUILD_DIR/gpu/prop_gpu_kernels"
run_test test_gpu_replay "$BUILD_DIR/tests/cpp/test_gpu_replay"
cuobjdump=$(grep -E '^FP8LAB_CUOBJDUMP:' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null | cut -d= -f2- || true)
[[ -x "$cuobjdump" ]] || cuobjdump=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
run_test gpu_sass_and_resources bash "$here/gpu/tests/check_sass.sh" "$BUILD_DIR/gpu/libfp8lab_gpu.a" "$cuobjdump" \
  "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" "$here"

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

#!/usr/bin/env bash
# Determinism across compilers and optimisation levels (`make determinism`): builds the GEMM digest
# program (bench/bench_gemm_digest.cpp) the way the CMake presets default (GCC -O3), O0 (GCC -O0)
# and clang (Clang -O3) build the library, and portably (GCC -O3 without -march=native, run with
# FP8LAB_CPU=portable: the kernels' portable variant, common/isa.hpp), each in its own minimal build directory (no tests, no Python, no
# CUDA), runs each, and requires identical output — and, inside each run, identical results with
# 1 and 3 threads. Exit status 0 when everything agrees, 1 otherwise.
# Environment: FP8LAB_DET_JOBS (parallel build jobs, default 1), FP8LAB_DET_DIR (build root,
# default build/determinism).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${FP8LAB_DET_DIR:-build/determinism}"
jobs="${FP8LAB_DET_JOBS:-1}"
common=(-G Ninja -DFP8LAB_TESTS=OFF -DFP8LAB_PYTHON=OFF -DFP8LAB_CUDA=OFF -DFP8LAB_BENCH=ON)

configure() {  # name, extra cmake arguments... (mirroring CMakePresets.json)
  local name=$1
  shift
  cmake -S . -B "$root/$name" "${common[@]}" "$@" >"$root/$name.configure.log" 2>&1 ||
    { echo "determinism: configuring $name failed; see $root/$name.configure.log" >&2; exit 1; }
}

mkdir -p "$root"
builds=(default O0)
configure default -DCMAKE_BUILD_TYPE=Release
configure O0 -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g"
# Without -march=native, and run with FP8LAB_CPU=portable (below): the kernels' portable variant.
configure portable -DCMAKE_BUILD_TYPE=Release -DFP8LAB_NATIVE=OFF
builds+=(portable)
if command -v clang++ >/dev/null 2>&1; then
  configure clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++
  builds+=(clang)
else
  echo "determinism: clang++ not found; comparing GCC -O3 and -O0 only" >&2
fi

status=0
for b in "${builds[@]}"; do
  cmake --build "$root/$b" -j "$jobs" --target bench_gemm_digest >"$root/$b.build.log" 2>&1 ||
    { echo "determinism: building $b failed; see $root/$b.build.log" >&2; exit 1; }
  cpu=""
  [ "$b" = portable ] && cpu=portable
  FP8LAB_CPU=$cpu "$root/$b/bench/bench_gemm_digest" >"$root/$b.digest"
  # Thread-count independence inside one build: the threads=1 and threads=3 halves agree.
  if ! diff <(grep '^threads=1 ' "$root/$b.digest" | cut -d' ' -f2-) \
            <(grep '^threads=3 ' "$root/$b.digest" | cut -d' ' -f2-) >/dev/null; then
    echo "determinism: $b: results differ between 1 and 3 threads" >&2
    status=1
  fi
  echo "$b: $(tail -n 1 "$root/$b.digest")"
done
for b in "${builds[@]:1}"; do
  if ! diff -u "$root/${builds[0]}.digest" "$root/$b.digest" >"$root/$b.diff"; then
    echo "determinism: ${builds[0]} and $b differ (first lines of $root/$b.diff):" >&2
    head -n 8 "$root/$b.diff" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "determinism: all builds agree (${builds[*]})"
exit "$status"

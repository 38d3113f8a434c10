#!/usr/bin/env bash
# gpu/check.sh — the one script a session lent an sm_90 device (H100/H200) runs, once.
#
#   bash gpu/check.sh --build-only             configure + build here, run nothing (the build to
#                                              carry: build/gpu-check)
#   OUT=/dir FP8LAB_PREBUILT=1 BUILD_DIR=build/gpu-check bash gpu/check.sh
#                                              on the device: run a carried build, build nothing
#   OUT=/dir bash gpu/check.sh                 configure + build with CUDA there, then run everything
#   bash gpu/check.sh --rehearse               here, before spending device time: the device command
#                                              on a copy of what the device tool sends (see below)
#
# A carried build is detected (FP8LAB_PREBUILT=1, or its CMakeCache.txt names another source
# folder than this one): it is then neither configured nor built — ninja would re-run CMake, which
# fails where GTest/RapidCheck/Boost are missing — and its binaries are run as they are. Its
# compiled-in paths are not used: the fixtures folder, cuobjdump, nvdisasm and nvcc are found from
# this checkout and this machine (FP8LAB_HARDWARE_TRACES_DIR, CUOBJDUMP, NVCC override). If the
# carried binaries are missing or do not start, it says why and falls back to building here (in
# build/gpu-check-local), which needs cmake, ninja, GTest, RapidCheck and Boost.
# libcublasLt.so.13 not found by the loader: searched in /usr/local/cuda*/ and python3's
# site-packages (nvidia/*/lib) and put on LD_LIBRARY_PATH; check.log says where.
#
# Runs, in this order (what only hardware can give first, so that the time budget cuts the rest):
# the preflight (GPU, driver, tools, ldd, build info); device; the tensor-core probe (features
# table vs the emulator's Hopper model, every disagreement a FINDING line); the search for the
# emulator spec of every GEMM kernel (ours and cuBLASLt's); the hardware traces; the benchmarks
# (TFLOP/s ours vs cuBLASLt on DeepSeek-V3 shapes, ratio ours/cuBLASLt); the GPU tests
# (kernel-vs-emulator properties, host tests, replay of fixtures/hardware, SASS/resource/ptxas).
# Writes under $OUT (at most 8 files, two folder levels, each far below 16 MiB):
#   check.log   everything, in order       summary.txt  result line, probe table, spec matches, benchmark
#   ctest.log   the test executables' output         traces/*.safetensors (5 files, fixtures/hardware/README.md)
# Budget: FP8LAB_CHECK_BUDGET_S (default 360 s), counted from the start; a step that would run past
# it is cut short or not started (and the run counts as failed); configure/build are not cut. On an
# H200 with a carried build: well under 5 minutes. FP8LAB_CHECK_SKIP="..." skips steps by name
# (a rerun): probe match traces bench tests (= the four below) prop_gpu_kernels test_gpu_host
# test_gpu_replay sass.
# Exit status:
#   0  a device was found and every step ran and passed
#   1  a step failed or was not run (the logs say which); also "no device" where nvidia-smi lists a
#      GPU or FP8LAB_EXPECT_DEVICE=1 (the device recipe sets it)
#   3  NO DEVICE: the host-side checks passed, every device step was skipped. This is not a pass of
#      the device checks: nothing was measured on hardware, and no trace was written.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

# --rehearse: what the device tool does, here: copies the working tree (tracked + untracked files
# git does not ignore) to another folder with $BUILD_DIR as build/gpu-check, runs the device
# command there with cmake/ninja replaced by stubs that record any call, and checks the outcome:
# exit 0 or 3 (3 where there is no GPU), no configure/build attempted, what would travel <= 64 MiB,
# at most 8 files under OUT, names [A-Za-z0-9._-], at most two folders down, each < 16 MiB.
if [[ "${1:-}" == "--rehearse" ]]; then
  src_build=${BUILD_DIR:-build/gpu-check}
  [[ "$src_build" == /* ]] || src_build=$here/$src_build
  [[ -x "$src_build/gpu/fp8lab_gpu_check" ]] || { echo "rehearse: no $src_build: run 'bash gpu/check.sh --build-only' first"; exit 1; }
  sim=$(mktemp -d /tmp/fp8lab-devsim.XXXXXX)
  mkdir -p "$sim/tree/build" "$sim/stubs" "$sim/out"
  git -C "$here" ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$sim/tree" -xf -
  cp -a "$src_build" "$sim/tree/build/gpu-check"
  travel_mb=$(du -sm "$sim/tree" | cut -f1)
  for t in cmake ninja; do
    printf '#!/bin/sh\necho "%s $*" >>%s/stub-calls.log\nexit 97\n' "$t" "$sim" >"$sim/stubs/$t"
    chmod +x "$sim/stubs/$t"
  done
  echo "rehearse: tree + build = ${travel_mb} MiB in $sim/tree; running the device command there"
  t_start=$(date +%s)
  rc=0
  (cd "$sim/tree" && PATH=$sim/stubs:$PATH OUT=$sim/out FP8LAB_PREBUILT=1 BUILD_DIR=build/gpu-check \
    bash gpu/check.sh >"$sim/console.log" 2>&1) || rc=$?
  took=$(($(date +%s) - t_start))
  bad=0
  problem() { echo "rehearse: PROBLEM: $*"; bad=1; }
  [[ $rc -eq 0 || $rc -eq 3 ]] || problem "exit status $rc (see $sim/out/check.log)"
  [[ $travel_mb -le 60 ]] || problem "the working tree and the build are ${travel_mb} MiB (the device tool takes 64 MiB)"
  [[ ! -s "$sim/stub-calls.log" ]] || problem "cmake/ninja were called: $(tr '\n' ';' <"$sim/stub-calls.log")"
  nfiles=$(find "$sim/out" -type f | wc -l)
  [[ $nfiles -le 8 ]] || problem "$nfiles files under OUT (at most 8 come back)"
  (cd "$sim/out" && find . -mindepth 1 | sed 's|^\./||' | grep -vE '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,2}$') &&
    problem "names or depth the device tool would not bring back (above)"
  find "$sim/out" -type f -size +15M | grep . && problem "files over 15 MiB (above)"
  grep -q '^=== preflight' "$sim/out/check.log" || problem "no preflight in check.log"
  echo "rehearse: exit $rc in ${took}s; $(grep -m1 '^RESULT' "$sim/out/summary.txt" || echo 'no RESULT line')"
  echo "rehearse: files under OUT ($nfiles):"
  (cd "$sim/out" && find . -type f -printf '  %p %s bytes\n' | sort)
  rm -rf "$sim/tree"
  if [[ $bad -eq 0 ]]; then
    echo "rehearse: OK (logs kept in $sim/out)"
  else
    echo "rehearse: FAILED (logs kept in $sim/out, console in $sim/console.log)"
  fi
  exit $bad
fi

build_only=0
[[ "${1:-}" == "--build-only" ]] && build_only=1
OUT=${OUT:-$here/gpu-check-out}
BUILD_DIR=${BUILD_DIR:-build/gpu-check}
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR=$here/$BUILD_DIR
JOBS=${JOBS:-$(nproc)}
BUDGET_S=${FP8LAB_CHECK_BUDGET_S:-360}
SKIP=" ${FP8LAB_CHECK_SKIP:-} "
t0=$(date +%s)
mkdir -p "$OUT/traces"
log=$OUT/check.log
summary=$OUT/summary.txt
: >"$log"
: >"$summary"
tmp=$(mktemp -d)  # scratch outside $OUT: nothing there may exceed the 8 files that come back
trap 'rm -rf "$tmp"' EXIT
status=0
have_device=unknown
binaries=(gpu/fp8lab_gpu_check gpu/test_gpu_host gpu/prop_gpu_kernels tests/cpp/test_gpu_replay)
required=("${binaries[@]}" gpu/libfp8lab_gpu.a)

say() { echo "$*" | tee -a "$log"; }
elapsed() { echo $(($(date +%s) - t0)); }
# step NAME TIMEOUT_S CMD...: runs CMD with a time limit (cut to what is left of the budget), output
# to check.log (and the console); records a failure without stopping the script. Sets step_rc.
# Exit status 2 of a device step (fp8lab_gpu_check: no device) is a skip when no device was found.
step_rc=0
step() {
  local name=$1 limit=$2
  shift 2
  step_rc=0
  if [[ "$SKIP" == *" $name "* ]]; then
    say "=== $name: skipped (FP8LAB_CHECK_SKIP)"
    return 0
  fi
  if [[ $build_only -eq 0 && $name != configure && $name != build ]]; then
    local left=$((BUDGET_S - $(elapsed) - 5))
    if [[ $left -lt 10 ]]; then
      say "=== $name: NOT RUN: the time budget (FP8LAB_CHECK_BUDGET_S=$BUDGET_S) is spent"
      status=1
      step_rc=124
      return 0
    fi
    [[ $limit -le $left ]] || limit=$left
  fi
  say "=== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee -a "$log" || step_rc=${PIPESTATUS[0]}
  if [[ $step_rc -eq 2 && $have_device == no ]]; then
    say "=== $name: skipped (no device)"
  elif [[ $step_rc -ne 0 ]]; then
    say "=== $name: FAILED (exit $step_rc$([[ $step_rc -eq 124 ]] && echo ', timed out'))"
    status=1
  fi
  return 0
}

# find_tool NAME: the path of a CUDA tool on this machine — $NAME_UPPER if set, else PATH, else
# the toolkit folders, else the nvidia-cuda-* wheels (this checkout's .venv, then python3's).
py_nvidia_dirs() {
  command -v python3 >/dev/null || return 0
  timeout 30 python3 - <<'EOF' 2>/dev/null || true
import os, site, sys
roots = set()
try:
    roots.update(site.getsitepackages())
except Exception:
    pass
roots.update(p for p in sys.path if p.endswith("-packages"))
try:
    import nvidia
    roots.update(os.path.dirname(p) for p in nvidia.__path__)
except Exception:
    pass
for r in sorted(roots):
    d = os.path.join(r, "nvidia")
    if os.path.isdir(d):
        print(d)
EOF
}
find_tool() {
  local name=$1 var
  var=$(echo "$name" | tr a-z A-Z)
  if [[ -n "${!var:-}" ]]; then
    echo "${!var}"
    return 0
  fi
  command -v "$name" 2>/dev/null && return 0
  local c
  for c in /usr/local/cuda/bin/$name $(ls -d /usr/local/cuda-*/bin 2>/dev/null | sort -rV | sed "s|\$|/$name|") \
    $here/.venv/lib/python3*/site-packages/nvidia/cu*/bin/$name; do
    [[ -x "$c" ]] && { echo "$c"; return 0; }
  done
  local d
  for d in $(py_nvidia_dirs); do
    for c in "$d"/cu*/bin/$name "$d"/cuda_*/bin/$name; do
      [[ -x "$c" ]] && { echo "$c"; return 0; }
    done
  done
  return 1
}

# Folders that hold libcublasLt.so.13, best first.
cublaslt_dirs() {
  local c d
  for c in ${CUDA_HOME:+$CUDA_HOME/lib64 $CUDA_HOME/lib} /usr/local/cuda/lib64 /usr/local/cuda/lib \
    /usr/local/cuda/targets/*/lib $(ls -d /usr/local/cuda-* 2>/dev/null | sort -rV |
      sed 's|$|/lib64|; p; s|/lib64$|/lib|; p; s|/lib$|/targets/x86_64-linux/lib|'); do
    [[ -e "$c/libcublasLt.so.13" ]] && echo "$c"
  done
  for d in $(py_nvidia_dirs); do
    find "$d" -maxdepth 4 -name 'libcublasLt.so.13' -printf '%h\n' 2>/dev/null | sort -u
  done
  if command -v ldconfig >/dev/null; then
    ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 /{print $NF}' | xargs -r -n1 dirname
  fi
}

# The source digest: which sources a build was made from (no .git needed; the device's copy has none).
source_digest() {
  (cd "$here" && find CMakeLists.txt cmake emulator golden gpu tests/cpp -type f \
    \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cmake' \
    -o -name CMakeLists.txt \) 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}

# ---------------------------------------------------------------------------------------------
say "fp8lab gpu/check.sh at $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo 'no .git'), $(date -u)"
cache_home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
prebuilt=0
if [[ ${FP8LAB_PREBUILT:-auto} == 1 ]]; then
  prebuilt=1
elif [[ ${FP8LAB_PREBUILT:-auto} != 0 && -n "$cache_home" && "$(realpath -m "$cache_home")" != "$(realpath "$here")" ]]; then
  prebuilt=1
fi
[[ $build_only -eq 1 ]] && prebuilt=0

if [[ $build_only -eq 0 ]]; then
  {
    echo "=== preflight ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
    echo "machine: $(uname -srm), $(nproc) cores, $(ldd --version 2>/dev/null | sed -n 1p || true)"
    echo "repo root: $here"
    echo "build dir: $BUILD_DIR (configured for: ${cache_home:-none}; carried: $([[ $prebuilt -eq 1 ]] && echo yes || echo no))"
    echo "OUT: $OUT; budget ${BUDGET_S}s; skip:${SKIP% }"
    if command -v nvidia-smi >/dev/null; then
      timeout 30 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm --format=csv 2>&1 ||
        echo "nvidia-smi failed"
    else
      echo "nvidia-smi: not found"
    fi
    echo "/proc/driver/nvidia/version: $(sed -n 1p /proc/driver/nvidia/version 2>/dev/null ||
      echo 'unreadable (the traces will carry an empty driver release; nvidia-smi above has it)')"
    for t in nvcc cuobjdump nvdisasm cmake ninja python3 ldd; do
      printf '%-10s %s\n' "$t:" "$(find_tool "$t" || echo MISSING)"
    done
    nvcc_path=$(find_tool nvcc || true)
    [[ -n "$nvcc_path" ]] && echo "nvcc: $("$nvcc_path" --version 2>&1 | grep -E 'release' || echo '?')"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    if [[ -f "$BUILD_DIR/fp8lab-build-info.txt" ]]; then
      echo "build info ($BUILD_DIR/fp8lab-build-info.txt):"
      sed 's/^/  /' "$BUILD_DIR/fp8lab-build-info.txt"
      built_from=$(sed -n 's/^source digest: //p' "$BUILD_DIR/fp8lab-build-info.txt")
      here_digest=$(source_digest)
      if [[ "$built_from" == "$here_digest" ]]; then
        echo "source digest of this tree: $here_digest (the build was made from these sources)"
      else
        echo "WARNING: source digest of this tree $here_digest != the build's $built_from: the binaries" \
          "were built from other sources than this checkout's"
      fi
    else
      echo "build info: none ($BUILD_DIR/fp8lab-build-info.txt missing)"
    fi
    for b in "${binaries[@]}"; do
      echo "ldd $b:"
      if [[ -f "$BUILD_DIR/$b" ]]; then
        (ldd "$BUILD_DIR/$b" 2>&1 || true) | grep -vE 'linux-vdso|ld-linux' | sed 's/ (0x[0-9a-f]*)//; s/^\s*/  /'
      else
        echo "  (missing)"
      fi
    done
  } 2>&1 | tee -a "$log" || true
fi

# ---------------------------------------------------------------------------------------------
# Build (not for a carried build), or fall back to building here.
configure_and_build() {
  if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    say "cmake/ninja missing: trying tools/install-deps.sh (needs the Debian mirror)"
    timeout 120 bash tools/install-deps.sh >>"$log" 2>&1 ||
      say "install-deps failed; build elsewhere with --build-only and carry $BUILD_DIR"
  fi
  if [[ $build_only -eq 1 || ! -f "$BUILD_DIR/build.ninja" ]]; then
    # The usual CUDA library folders in the run path, for libcublasLt.so.13 on another machine.
    # libstdc++ stays shared: linked statically (GCC 12) it calls arc4random and needs glibc 2.36,
    # while shared it needs glibc 2.34 and GLIBCXX_3.4.29 (GCC 11; Ubuntu 22.04 and later have both).
    step "configure" 300 cmake -S "$here" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8LAB_CUDA=ON \
      -DFP8LAB_PYTHON=OFF -DFP8LAB_BENCH=OFF -DFP8LAB_NATIVE=OFF \
      "-DCMAKE_BUILD_RPATH=/usr/local/cuda/lib64;/usr/local/cuda/targets/x86_64-linux/lib"
    if [[ $step_rc -ne 0 ]]; then
      local why
      why=$(grep -A4 -m1 'CMake Error' "$log" | tr -s ' \n' ' ' | cut -c1-400 || true)
      say "configure FAILED${why:+ ($why)}. This machine cannot build fp8lab's GPU checks: build on a" \
        "machine with cmake, ninja, nvcc 13, GTest, RapidCheck and Boost with 'bash gpu/check.sh --build-only'," \
        "carry build/gpu-check and run with FP8LAB_PREBUILT=1 BUILD_DIR=build/gpu-check (gpu/README.md)."
      return 0
    fi
  fi
  step "build" 900 cmake --build "$BUILD_DIR" -j "$JOBS" --target fp8lab_gpu_check test_gpu_host prop_gpu_kernels \
    test_gpu_replay
  if [[ $step_rc -eq 0 ]]; then
    {
      echo "commit: $(git -C "$here" rev-parse HEAD 2>/dev/null || echo '?')"
      echo "uncommitted: $(git -C "$here" status --short --untracked-files=no 2>/dev/null | tr '\n' ' ' || echo '?')"
      echo "source digest: $(source_digest)"
      echo "built: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(ldd --version 2>/dev/null | sed -n 1p)"
      echo "compilers: $(c++ --version 2>/dev/null | sed -n 1p); $("$(find_tool nvcc || echo nvcc)" --version 2>/dev/null | grep release || echo 'nvcc ?')"
      echo "source dir: $here"
    } >"$BUILD_DIR/fp8lab-build-info.txt"
    sed 's/^/  /' "$BUILD_DIR/fp8lab-build-info.txt" | tee -a "$log"
  fi
}

if [[ $prebuilt -eq 1 ]]; then
  absent=()
  for f in "${required[@]}"; do [[ -f "$BUILD_DIR/$f" ]] || absent+=("$f"); done
  if [[ ${#absent[@]} -gt 0 ]]; then
    say "carried build $BUILD_DIR is incomplete (missing: ${absent[*]}): was it built with" \
      "'bash gpu/check.sh --build-only' and carried whole? Falling back to building here."
    prebuilt=0
    BUILD_DIR=$here/build/gpu-check-local
  else
    say "carried build (configured in ${cache_home:-?}): not configuring or building here, running its binaries"
    for f in "${binaries[@]}"; do chmod +x "$BUILD_DIR/$f" 2>/dev/null || true; done  # in case the copy lost the mode
  fi
fi
if [[ $prebuilt -eq 0 ]]; then
  if [[ -n "$cache_home" && "$(realpath -m "$cache_home")" != "$(realpath "$here")" && -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    if [[ $build_only -eq 1 ]]; then
      say "$BUILD_DIR was configured for $cache_home, not $here: remove it or choose another BUILD_DIR"
      exit 1
    fi
    say "$BUILD_DIR was configured for $cache_home, not $here: building in $here/build/gpu-check-local instead"
    BUILD_DIR=$here/build/gpu-check-local
  fi
  configure_and_build
fi
if [[ $build_only -eq 1 ]]; then
  say "build only: done (status $status)"
  exit $status
fi
if [[ ! -x "$BUILD_DIR/gpu/fp8lab_gpu_check" ]]; then
  say "=== nothing to run: $BUILD_DIR/gpu/fp8lab_gpu_check does not exist (the build failed, see above)"
  echo "RESULT: FAILED: no build to run (status 1; see check.log)" >>"$summary"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# The loader must find libcublasLt.so.13.
resolve_libraries() {
  command -v ldd >/dev/null || { say "ldd missing: not checking shared libraries"; return 0; }
  local b nf=""
  for b in "${binaries[@]}"; do
    [[ -f "$BUILD_DIR/$b" ]] && nf+=$(ldd "$BUILD_DIR/$b" 2>&1 | grep 'not found' || true)
  done
  [[ -z "$nf" ]] && { say "shared libraries: all found"; return 0; }
  say "shared libraries not found: $(echo "$nf" | awk '{print $1}' | sort -u | tr '\n' ' ')"
  if grep -q 'libcublasLt.so.13' <<<"$nf"; then
    local d
    d=$(cublaslt_dirs | sed -n 1p || true)
    if [[ -n "$d" ]]; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      say "libcublasLt.so.13 found in $d (other candidates: $(cublaslt_dirs | sed 1d | sort -u | tr '\n' ' ')); LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    else
      say "libcublasLt.so.13 not found in /usr/local/cuda*/, python3's site-packages/nvidia or ldconfig"
    fi
  fi
  nf=""
  for b in "${binaries[@]}"; do
    [[ -f "$BUILD_DIR/$b" ]] && nf+=$(ldd "$BUILD_DIR/$b" 2>&1 | grep 'not found' | sed "s|^\s*|$b: |; s|\$|; |" || true)
  done
  if [[ -n "$nf" ]]; then
    say "still not found (these binaries will not start): $nf"
  else
    say "shared libraries: all found now"
  fi
}
resolve_libraries

# device: exit 0 a device, 2 no device (not a failure here: the exit status 3 says it), else the
# binary does not run here.
device_step() {
  check=$BUILD_DIR/gpu/fp8lab_gpu_check
  say "=== device ($(date -u +%H:%M:%S))"
  step_rc=0
  timeout 60 "$check" device 2>&1 | tee -a "$log" || step_rc=${PIPESTATUS[0]}
  case $step_rc in
    0) have_device=yes ;;
    2) have_device=no
       say "=== NO DEVICE: every device step below is skipped (not passed)" ;;
    *) have_device=unknown ;;
  esac
}
device_step
if [[ $have_device == unknown && $prebuilt -eq 1 ]]; then
  say "the carried fp8lab_gpu_check does not start here (exit $step_rc, output above): falling back to building here"
  prebuilt=0
  BUILD_DIR=$here/build/gpu-check-local
  configure_and_build
  resolve_libraries
  device_step
fi
if [[ $have_device == unknown ]]; then
  say "=== device: FAILED (exit $step_rc): fp8lab_gpu_check does not run here, so nothing can be checked;" \
    "see the preflight's ldd lines and the output above"
  echo "RESULT: FAILED: fp8lab_gpu_check does not run on this machine (status 1; see check.log)" >>"$summary"
  exit 1
fi
if [[ $have_device == no ]]; then
  echo "NO DEVICE: nothing in this file was measured on hardware (see check.log)" >>"$summary"
  gpus=$(timeout 30 nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  if [[ ${gpus:-0} -gt 0 || ${FP8LAB_EXPECT_DEVICE:-0} == 1 ]]; then
    # On a device machine "no device" is a failure, never the benign exit status 3.
    say "=== device: FAILED: the CUDA runtime finds no usable device, yet nvidia-smi lists ${gpus:-0} GPU(s)" \
      "(FP8LAB_EXPECT_DEVICE=${FP8LAB_EXPECT_DEVICE:-0}); the reason is in the device line above"
    status=1
  fi
fi

# The hardware facts first: they are what only this run can give.
echo "# Tensor-core probe" >>"$summary"
step "probe" 120 bash -c "'$check' probe | tee -a '$summary'; exit \${PIPESTATUS[0]}"
echo "# Which emulator spec reproduces each GEMM kernel" >>"$summary"
step "match" 240 bash -c "'$check' match | tee -a '$summary'; exit \${PIPESTATUS[0]}"
step "traces" 240 "$check" traces "$OUT/traces"
echo "# Benchmarks (DeepSeek-V3 shapes)" >>"$summary"
step "bench" 180 bash -c "'$check' bench | tee -a '$summary'; exit \${PIPESTATUS[0]}"

# The test executables are run directly, not through ctest: a build carried from another machine
# keeps working even where its absolute paths do not exist. Property tests first (they need the
# device; the others run the same anywhere): 50 cases per property keeps them near a minute; a
# failure prints the shrunk counterexample (shrinking is cut by the time budget).
tests_log=$OUT/ctest.log
: >"$tests_log"
run_test() {
  local name=$1
  shift
  if [[ "$SKIP" == *" tests "* || "$SKIP" == *" $name "* ]]; then
    say "$name: skipped (FP8LAB_CHECK_SKIP)"
    return 0
  fi
  local left=$((BUDGET_S - $(elapsed) - 5)) limit=300 one=$tmp/one-test.log rc=0
  if [[ $left -lt 10 ]]; then
    say "$name: NOT RUN: the time budget (FP8LAB_CHECK_BUDGET_S=$BUDGET_S) is spent"
    status=1
    return 0
  fi
  [[ $limit -le $left ]] || limit=$left
  timeout "$limit" "$@" >"$one" 2>&1 || rc=$?
  { echo "=== $name (exit $rc)"; cat "$one"; } >>"$tests_log"
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    say "$name: FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", timed out after ${limit}s"); see ctest.log)"
    status=1
  else
    local counts oks why
    counts=$(grep -E '^\[  (PASSED|SKIPPED) +\] [0-9]+ test' "$one" | sed 's/, listed below://' | tr -s ' ' | tr '\n' ' ' || true)
    oks=$(grep -c '^ok' "$one" || true)
    [[ $oks -gt 0 ]] || oks=
    why=$(grep -m1 -oE 'no device: .*|^SKIP: .*|no hardware traces exist yet in [^:]*' "$one" || true)
    say "$name: ${counts}${oks:+ $oks checks ok}${why:+ ($why)}"
  fi
}
say "=== tests ($(date -u +%H:%M:%S))"
export RC_PARAMS=${RC_PARAMS:-"max_success=50"}
run_test prop_gpu_kernels "$BUILD_DIR/gpu/prop_gpu_kernels"
run_test test_gpu_host "$BUILD_DIR/gpu/test_gpu_host"
# The replay reads this checkout's fixtures/hardware, not the folder compiled into the build.
run_test test_gpu_replay env FP8LAB_HARDWARE_TRACES_DIR="$here/fixtures/hardware" \
  "$BUILD_DIR/tests/cpp/test_gpu_replay"
# The SASS checks: tools found on this machine (CUOBJDUMP / NVCC override); the path in a carried
# CMakeCache.txt is the build machine's.
cuobjdump=""
if [[ $prebuilt -eq 0 && -z "${CUOBJDUMP:-}" ]]; then
  cuobjdump=$(sed -n 's/^FP8LAB_CUOBJDUMP:FILEPATH=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
fi
[[ -x "$cuobjdump" ]] || cuobjdump=$(find_tool cuobjdump || echo "")
nvcc=$(find_tool nvcc || echo /usr/local/cuda/bin/nvcc)
say "SASS checks with cuobjdump=${cuobjdump:-none} nvcc=$nvcc"
run_test sass bash "$here/gpu/tests/check_sass.sh" "$BUILD_DIR/gpu/libfp8lab_gpu.a" "$cuobjdump" "$nvcc" "$here"


say "=== files under $OUT:"
(cd "$OUT" && find . -type f -printf '%p %s bytes\n' | sort) | tee -a "$log"
if [[ $status -ne 0 && $have_device == no ]]; then
  result="FAILED: no usable device, and this run expected one or a step failed (status 1; see check.log)"
elif [[ $status -ne 0 ]]; then
  result="FAILED: a step failed or was not run (status 1; see check.log)"
elif [[ $have_device == no ]]; then
  status=3
  result="NO DEVICE: host-side checks passed, every device check was SKIPPED (status 3; not a pass)"
else
  result="PASSED: every step ran on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed -n 1p || echo 'the device') and passed (status 0)"
fi
echo "RESULT: $result" >>"$summary"
say "=== gpu/check.sh finished after $(elapsed)s: $result ($(date -u +%H:%M:%S))"
exit $status

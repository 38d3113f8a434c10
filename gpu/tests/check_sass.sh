#!/usr/bin/env bash
# What the compiled GPU code must show, checked without a device (CTest gpu_sass_and_resources):
#   1. the promoted GEMM kernels issue FP8 E4M3 warpgroup MMAs (SASS HGMMA/QGMMA ...E4M3.E4M3;
#      nvdisasm 13 names the FP8 form QGMMA), the wgmma probe m64n8k32 E4M3 ones, the mma.sync
#      probe an E4M3 MMA;
#   2. the DeepGEMM-style promotion line `final += (sa*sb) * p` compiles to FMUL + FFMA, i.e. the
#      emulator's Combine::DeepGemm = fma(fl(sa*sb), p, acc), not FMUL + FMUL + FADD;
#   3. no kernel uses local memory or stack (where spills would go): cuobjdump -res-usage;
#   4. ptxas -v on the wgmma translation units reports 0 bytes of spill stores and loads.
# Usage: check_sass.sh LIBFP8LAB_GPU.a CUOBJDUMP NVCC SOURCE_DIR. Exit 77 (skip) without cuobjdump.
set -euo pipefail
lib=$1 cuobjdump=${2:-} nvcc=$3 src=$4
if [[ -z "$cuobjdump" || "$cuobjdump" == *NOTFOUND* || ! -x "$cuobjdump" ]]; then
  echo "SKIP: no cuobjdump (install the toolkit's, or pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)"
  exit 77
fi
export PATH="$(dirname "$cuobjdump"):$PATH"  # cuobjdump -sass runs nvdisasm
if ! command -v nvdisasm >/dev/null; then
  echo "SKIP: cuobjdump found but no nvdisasm next to it or on PATH"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$cuobjdump" -sass "$lib" >"$tmp/sass.txt"
# One file per function: lines after "Function : <name>" up to the next function.
awk -v dir="$tmp" '/Function : /{f=dir "/fn_" ++n ".txt"; print $0 > f; next} f{print $0 > f}' "$tmp/sass.txt"
fn_file() { grep -l "Function : .*$1" "$tmp"/fn_*.txt || true; }

gemm_fns=$(fn_file sm90_fp8_gemm_promoted_kernel)
count=$(echo "$gemm_fns" | grep -c . || true)
[[ $count -eq 6 ]] || bad "expected 6 sm90_fp8_gemm_promoted_kernel instantiations (3 combines x 2 outputs), found $count"
for f in $gemm_fns; do
  if grep -qE '[HQ]GMMA\.64x128x32\.F32\.E4M3\.E4M3' "$f"; then
    echo "ok: $(head -1 "$f" | sed 's/.*Function : //') issues $(grep -oE '[HQ]GMMA\.64x128x32\.F32\.E4M3\.E4M3' "$f" | head -1)"
  else
    bad "no E4M3 64x128x32 warpgroup MMA in $(head -1 "$f")"
  fi
done
f=$(fn_file wgmma_probe_kernel)
grep -qE '[HQ]GMMA\.64x8x32\.F32\.E4M3\.E4M3' $f && echo "ok: wgmma probe issues $(grep -oE '[HQ]GMMA\.64x8x32[.A-Z0-9]*' $f | head -1)" ||
  bad "wgmma probe: no 64x8x32 E4M3 warpgroup MMA"
# sm_90 has no FP8 mma.sync unit: ptxas converts the E4M3 fragments to FP16 (exact) and issues
# two HMMA.16816.F32 per m16n8k32. The probe's emulator column for mma.sync (hopper_fp16 x2)
# rests on this; if a future ptxas issues a native FP8 MMA instead, that model must change.
f=$(fn_file mma_sync_probe_kernel)
if grep -qE 'F2FP\.F16\.E4M3' $f && grep -qE 'HMMA\.16816\.F32' $f; then
  echo "ok (finding): FP8 mma.sync on sm_90a = F2FP.F16.E4M3 conversions + $(grep -c 'HMMA.16816.F32' $f) HMMA.16816.F32 per loop body"
else
  bad "mma.sync probe: expected F2FP.F16.E4M3 + HMMA.16816.F32, found $(grep -oE '[A-Z0-9]*MMA[.A-Z0-9]*|F2FP[.A-Z0-9]*' $f | sort -u | tr '\n' ' ')"
fi
f=$(fn_file deepgemm_style_promotion_kernel)
if grep -q 'FFMA' $f && ! grep -q 'FADD' $f; then
  echo "ok: DeepGEMM-style promotion compiles to FMUL + FFMA (fma(sa*sb, p, acc) = Combine::DeepGemm)"
else
  bad "DeepGEMM-style promotion is not FMUL + FFMA: $(grep -oE 'F(MUL|ADD|FMA)' $f | tr '\n' ' ')"
fi

"$cuobjdump" -res-usage "$lib" >"$tmp/res.txt"
kernels=$(grep -c 'REG:' "$tmp/res.txt" || true)
[[ $kernels -ge 10 ]] || bad "expected >= 10 kernels in the resource report, found $kernels"
if grep 'REG:' "$tmp/res.txt" | grep -vqE 'STACK:0 .*LOCAL:0 '; then
  bad "kernels with stack or local memory:"
  grep -B1 'REG:' "$tmp/res.txt" | grep -vE 'STACK:0 .*LOCAL:0 ' | grep -B1 'REG:' || true
else
  echo "ok: $kernels kernels, none uses stack or local memory"
fi

for cu in sm90_fp8_gemm_promoted.cu tc_probe.cu; do
  "$nvcc" -cubin -arch=sm_90a -std=c++20 --expt-relaxed-constexpr -O3 -I"$src" -I"$src/emulator" \
    -Xptxas -v -o "$tmp/x.cubin" "$src/gpu/$cu" >"$tmp/ptxas.txt" 2>&1 || { cat "$tmp/ptxas.txt"; bad "nvcc -cubin $cu failed"; continue; }
  spills=$(grep -E 'spill (stores|loads)' "$tmp/ptxas.txt" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads' || true)
  total=$(grep -cE 'spill (stores|loads)' "$tmp/ptxas.txt" || true)
  [[ $total -gt 0 ]] || bad "ptxas -v printed no spill lines for $cu"
  [[ $spills -eq 0 ]] && echo "ok: ptxas -v $cu: $total functions, 0 bytes spilled" || bad "ptxas -v $cu reports spills"
done
exit $fail

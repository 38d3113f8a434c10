#!/usr/bin/env bash
# tools/import-hardware-traces.sh — what to do with the files a device run of gpu/check.sh returned.
#
#   bash tools/import-hardware-traces.sh RETURNED_DIR [DEST]
#
# RETURNED_DIR  the folder the device tool copied $OUT into (its files_at): check.log, summary.txt,
#               ctest.log and traces/*.safetensors — or the traces folder itself.
# DEST          where committable traces go (default: fixtures/hardware of this checkout).
#
# For each returned trace: prints op, kernel, GPU, driver and `matched` from its __metadata__;
# rejects a file without the gpu and driver keys or with an empty gpu (not a hardware trace; an
# empty driver, where /proc/driver/nvidia/version was unreadable, is a warning); replays it alone against the
# emulator with test_gpu_replay (FP8LAB_HARDWARE_TRACES_DIR=<that one file's folder>); copies into
# DEST the ones fixtures/hardware/README.md says to commit — a "gemm" trace with matched=true or a
# "tc_probe" trace — and only when their replay is bit-identical. Every other trace is a FINDING
# (listed with the replay's first difference): it is not copied; report it, extend the emulator,
# and import it again once it replays. Then replays DEST as a whole, as CTest will. Commits nothing.
#
# BUILD_DIR (default build/gpu-check) holds test_gpu_replay; it is brought up to date there first
# (cmake --build, -j JOBS, default 1).
# Exit status: 0 when DEST replays bit-identically (findings, if any, are listed); 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -lt 1 || ! -d "$1" ]]; then
  echo "usage: bash tools/import-hardware-traces.sh RETURNED_DIR [DEST]   (RETURNED_DIR: a folder)" >&2
  exit 1
fi
src=$(cd "$1" && pwd)
dest=${2:-$here/fixtures/hardware}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
BUILD_DIR=${BUILD_DIR:-build/gpu-check}
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR=$here/$BUILD_DIR
replay=$BUILD_DIR/tests/cpp/test_gpu_replay
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ -f "$BUILD_DIR/build.ninja" ]]; then
  cmake --build "$BUILD_DIR" -j "${JOBS:-1}" --target test_gpu_replay >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; echo "building test_gpu_replay in $BUILD_DIR failed" >&2; exit 1; }
fi
if [[ ! -x "$replay" ]]; then
  echo "no $replay: build it with 'bash gpu/check.sh --build-only' (or set BUILD_DIR)" >&2
  exit 1
fi

# The device tool may put $OUT's files one folder down in files_at: look a few levels deep.
checklog=$(find "$src" -maxdepth 3 -name check.log -type f | sed -n 1p)
for f in "$(find "$src" -maxdepth 3 -name summary.txt -type f | sed -n 1p)" "$checklog"; do
  [[ -f "$f" ]] && grep -m1 -E '^RESULT: |gpu/check.sh finished' "$f" | sed "s|^|$(basename "$f"): |" || true
done

mapfile -t traces < <(find "$src" -maxdepth 4 -name '*.safetensors' -type f | LC_ALL=C sort)
if [[ ${#traces[@]} -eq 0 ]]; then
  echo "no *.safetensors under $src (searched 4 levels down): nothing to import" >&2
  exit 1
fi

# meta FILE: op|kernel|gpu|driver|matched from the safetensors header (stdlib only).
meta() {
  python3 - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    m = json.loads(f.read(n)).get("__metadata__", {})
print("|".join(m.get(k, "<missing>") for k in ("op", "kernel", "gpu", "driver", "matched")).replace("\n", " "))
EOF
}

imported=0
findings=0
rejected=0
for t in "${traces[@]}"; do
  name=$(basename "$t")
  IFS='|' read -r op kernel gpu driver matched < <(meta "$t" || echo "unreadable||||")
  echo "== $name: op=$op${kernel:+ kernel=$kernel} gpu='$gpu' driver='$driver' matched=${matched:-n/a}"
  if [[ -z "$gpu" || "$gpu" == "<missing>" || "$driver" == "<missing>" ]]; then
    echo "   REJECTED: no gpu/driver in __metadata__: not a hardware trace"
    rejected=$((rejected + 1))
    continue
  fi
  if [[ -z "$driver" ]]; then
    # fp8lab_gpu_check reads the release from /proc/driver/nvidia/version, absent on some sandboxes.
    echo "   WARNING: empty driver release in the trace; nvidia-smi in check.log says:" \
      "$(grep -m1 -A1 '^name, driver_version' "${checklog:-/dev/null}" 2>/dev/null | sed -n 2p || echo '?')"
  fi
  one=$tmp/one
  rm -rf "$one" && mkdir -p "$one" && cp "$t" "$one/"
  if FP8LAB_HARDWARE_TRACES_DIR=$one "$replay" >"$tmp/replay.log" 2>&1; then
    replay_ok=1
    echo "   replay: bit-identical to the emulator"
  else
    replay_ok=0
    # The test's message: "<file> (<producer>): <what differs>", else the first failure line.
    why=$(grep -m1 -E '\.safetensors \(.*\): ' "$tmp/replay.log" | sed 's/^.*safetensors ([^)]*): //' || true)
    [[ -n "$why" ]] || why=$(grep -m1 -A2 -E 'Failure|what\(\)|error' "$tmp/replay.log" | tr -s ' \n' ' ' || true)
    echo "   replay: DIFFERS: $(echo "$why" | cut -c1-600)"
  fi
  committable=0
  [[ "$op" == tc_probe || ("$op" == gemm && "$matched" == true) ]] && committable=1
  if [[ $committable -eq 1 && $replay_ok -eq 1 ]]; then
    if [[ -f "$dest/$name" ]] && ! cmp -s "$t" "$dest/$name"; then
      echo "   replacing the different $dest/$name"
    fi
    cp "$t" "$dest/$name"
    chmod 644 "$dest/$name"
    echo "   imported into $dest/"
    imported=$((imported + 1))
  else
    findings=$((findings + 1))
    echo "   FINDING, not imported ($([[ $committable -eq 0 ]] && echo "matched=$matched: no emulator spec reproduced this kernel on the device" || echo "the emulator does not reproduce it"))"
  fi
done

echo "== replay of $dest as a whole:"
rc=0
FP8LAB_HARDWARE_TRACES_DIR=$dest "$replay" >"$tmp/all.log" 2>&1 || rc=$?
grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$tmp/all.log" || tail -5 "$tmp/all.log"
echo "imported $imported, findings (not imported) $findings, rejected $rejected; replay of $dest: $([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")"
if [[ $imported -gt 0 && "$dest" == "$here/fixtures/hardware" ]]; then
  echo "next: git add fixtures/hardware/*.safetensors && git commit -m 'hardware traces: <GPU>, driver <version>'"
fi
exit $rc

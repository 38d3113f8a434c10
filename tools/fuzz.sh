#!/usr/bin/env bash
# `make fuzz`: libFuzzer (with ASan + UBSan) on the golden-trace parser for a bounded number of
# executions (FUZZ_RUNS, default 200000), seeded with the committed fixtures and a few hand-made
# files. Exits non-zero on a crash, leak, timeout or sanitizer report; the reproducer is left in
# build/fuzz/ (crash-*, leak-*, timeout-*).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/fuzz"
runs="${FUZZ_RUNS:-200000}"
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found (libFuzzer needs clang; tools/install-deps.sh installs it)" >&2
  exit 2
fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DFP8LAB_FUZZ=ON -DFP8LAB_TESTS=OFF -DFP8LAB_BENCH=OFF -DFP8LAB_PYTHON=OFF -DFP8LAB_CUDA=OFF \
  -DFP8LAB_NATIVE=OFF >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target fuzz_trace_parser

# Seed corpus: every committed trace, plus small hand-made files that reach the error paths.
seeds="$build/seeds"
rm -rf "$seeds"
mkdir -p "$seeds" "$build/corpus"
cp "$root"/fixtures/golden/*.safetensors "$seeds"/ 2>/dev/null || true
seed() {  # seed NAME HEADER [BUFFER-BYTES]: an 8-byte little-endian length, the header, zero bytes
  local name="$1" header="$2" nbuf="${3:-0}"
  python3 - "$seeds/$name" "$header" "$nbuf" <<'PY'
import struct, sys
path, header, nbuf = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
open(path, "wb").write(struct.pack("<Q", len(header)) + header + bytes(nbuf))
PY
}
seed empty '{}'
seed one_u8 '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}' 4
seed two_f8 '{"__metadata__":{"k":"v"},"a":{"dtype":"F8_E4M3","shape":[2,1],"data_offsets":[0,2]},"b":{"dtype":"F8_E5M2","shape":[],"data_offsets":[2,3]}}' 3
seed escapes '{"__metadata__":{"s":"\u00e9\ud83d\ude00\n\"x\""},"t":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}' 2
seed trace_meta '{"__metadata__":{"format":"fp8lab-trace/1","op":"cast","spec":"{}","spec_sha256":"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","producer":"p","seed":"0","roles":"{}","sha256":"{}"}}'

# A dictionary of the tokens the grammar is made of speeds the search up.
dict="$build/safetensors.dict"
cat > "$dict" <<'DICT'
"__metadata__"
"dtype"
"shape"
"data_offsets"
"F8_E4M3"
"F8_E5M2"
"BF16"
"F32"
"F64"
"U64"
"\\u"
"\\ud83d"
"\\udc00"
"spec_sha256"
"sha256"
"roles"
"fp8lab-trace/1"
DICT

start=$(date +%s)
"$build/golden/fuzz_trace_parser" -runs="$runs" -max_len=12288 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$dict" -artifact_prefix="$build/" "$build/corpus" "$seeds"
echo "fuzz: $runs executions of fuzz_trace_parser without a crash in $(( $(date +%s) - start )) s"

"""Casts at memory speed: float32 -> e4m3 (`fp8lab.encode`, nearest-even, saturate) and e4m3 ->
float32/float64 (`fp8lab.decode`), each against baselines measured in the same run:

* the copy bound: a numpy copy of a 256 MiB float32 array (np.copyto into a preallocated array)
  gives the memory bandwidth B (bytes read + written per second); a cast that reads r and writes w
  bytes per element is bounded by B / (r + w) elements per second (5 bytes for f32 <-> e4m3, 9 for
  e4m3 -> f64). The issue-15 rows are these ratios;
* ml_dtypes' astype of the same array.

ml_dtypes' cast is non-saturating (values from 464 up become NaN), so the input is drawn inside the
finite range where the two agree bit for bit, and the bench checks they do before timing.

    PYTHONPATH=bindings/python:<build>/python python bench/bench_formats.py [--mib 256] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os

import ml_dtypes
import numpy as np

import fp8lab
from _timing import best_of


def row(label, n, t, bound=None, base=None):
    text = f"  {label:38s} {n / t / 1e9:7.2f} G elem/s"
    if bound is not None:
        text += f"   {n / t / bound:5.2f} of the copy bound"
    if base is not None:
        text += f"   {base / t:6.2f}x ml_dtypes"
    print(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="size of the float32 input in MiB")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.mib * (1 << 20) // 4
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n, dtype=np.float32) * 64).astype(np.float32)
    copy = np.empty_like(x)
    np.copyto(copy, x)
    t_copy = best_of(lambda: np.copyto(copy, x), args.repeat)
    bandwidth = 2 * x.nbytes / t_copy
    bound_5, bound_9 = bandwidth / 5, bandwidth / 9

    bits = np.empty(n, np.uint8)
    fp8lab.encode(x, "e4m3", out=bits)
    theirs = x.astype(ml_dtypes.float8_e4m3fn)
    mismatches = int(np.count_nonzero(bits != theirs.view(np.uint8)))
    f32, f64 = np.empty(n, np.float32), np.empty(n, np.float64)
    fp8lab.decode(bits, "e4m3", out=f32)
    fp8lab.decode(bits, "e4m3", out=f64)
    dec_mismatches = int(np.count_nonzero(f32 != theirs.astype(np.float32))) + int(
        np.count_nonzero(f64 != theirs.astype(np.float64)))

    print(f"casts, {n} elements ({args.mib} MiB of float32), {fp8lab.num_threads()} threads, "
          f"load {os.getloadavg()[0]:.1f}; mismatches vs ml_dtypes: encode {mismatches}, decode {dec_mismatches}")
    print(f"  numpy copy (the bound)                 {bandwidth / 1e9:7.2f} GB/s = {bound_5 / 1e9:.2f} G elem/s at 5 B, "
          f"{bound_9 / 1e9:.2f} at 9 B")
    t_ml = best_of(lambda: x.astype(ml_dtypes.float8_e4m3fn), args.repeat)
    row("ml_dtypes astype f32 -> e4m3", n, t_ml, bound_5)
    row("fp8lab.encode f32 -> e4m3, out=", n, best_of(lambda: fp8lab.encode(x, "e4m3", out=bits), args.repeat), bound_5, t_ml)
    row("fp8lab.encode f32 -> e4m3 (new array)", n, best_of(lambda: fp8lab.encode(x, "e4m3"), args.repeat), bound_5, t_ml)
    fp8lab.set_num_threads(1)
    row("fp8lab.encode, out=, 1 thread", n, best_of(lambda: fp8lab.encode(x, "e4m3", out=bits), args.repeat), bound_5, t_ml)
    fp8lab.set_num_threads(0)
    t_ml32 = best_of(lambda: theirs.astype(np.float32), args.repeat)
    row("ml_dtypes astype e4m3 -> f32", n, t_ml32, bound_5)
    row("fp8lab.decode e4m3 -> f32, out=", n, best_of(lambda: fp8lab.decode(bits, "e4m3", out=f32), args.repeat), bound_5, t_ml32)
    row("fp8lab.decode e4m3 -> f32 (new array)", n,
        best_of(lambda: fp8lab.decode(bits, "e4m3", dtype=np.float32), args.repeat), bound_5, t_ml32)
    t_ml64 = best_of(lambda: theirs.astype(np.float64), args.repeat)
    row("ml_dtypes astype e4m3 -> f64", n, t_ml64, bound_9)
    row("fp8lab.decode e4m3 -> f64, out=", n, best_of(lambda: fp8lab.decode(bits, "e4m3", out=f64), args.repeat), bound_9, t_ml64)
    row("fp8lab.decode e4m3 -> f64 (new array)", n, best_of(lambda: fp8lab.decode(bits, "e4m3"), args.repeat), bound_9, t_ml64)
    return 0 if mismatches == 0 and dec_mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

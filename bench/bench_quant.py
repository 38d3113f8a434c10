"""Benchmark: 1x128 block quantisation of a 4096 x 7168 float32 matrix (a DeepSeek-V3 activation
tile shape) with the `deepseek` rule, fp8lab's C++ path against a vectorised numpy implementation
of the same rule (amax over tiles, max(amax, 1e-4), s = amax / 448, x / s, satfinite cast via
ml_dtypes) measured in the same run. The two must produce identical bits; the ratio is printed.

    PYTHONPATH=bindings/python:<build>/python python bench/bench_quant.py [--rows R --cols C --repeat N]
"""
from __future__ import annotations

import argparse
import time

import ml_dtypes
import numpy as np

import fp8lab


def numpy_deepseek(x: np.ndarray):
    r, c = x.shape
    v = x.reshape(r, c // 128, 128)
    a = np.fmax.reduce(np.abs(v), axis=2, keepdims=True)  # Triton max skips NaN
    s = np.fmax(a, np.float32(1e-4)) / np.float32(448.0)
    q = np.clip(v / s, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    return q.reshape(r, c), s[:, :, 0]


def best(fn, repeat):
    t = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t.append(time.perf_counter() - t0)
    return min(t), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=7168)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.cols % 128:
        ap.error("--cols must be a multiple of 128 (the numpy baseline reshapes into 1x128 tiles)")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.cols), dtype=np.float32)
         * np.exp2(rng.integers(-8, 8, size=(args.rows, 1))).astype(np.float32))
    t_np, (bits_np, s_np) = best(lambda: numpy_deepseek(x), args.repeat)
    t_cpp, q = best(lambda: fp8lab.quantize(x, tile=(1, 128), fmt="e4m3", rule="deepseek"), args.repeat)
    same = np.array_equal(q.bits, bits_np) and np.array_equal(q.scales, s_np)
    n = x.size
    print(f"quantize 1x128 deepseek e4m3, {args.rows}x{args.cols} float32, threads={fp8lab.num_threads()}")
    print(f"  numpy (vectorised, same rule): {t_np * 1e3:8.1f} ms  ({n / t_np / 1e6:7.1f} Melem/s)")
    print(f"  fp8lab C++:                    {t_cpp * 1e3:8.1f} ms  ({n / t_cpp / 1e6:7.1f} Melem/s)")
    print(f"  ratio numpy / fp8lab = {t_np / t_cpp:.2f}x   bits identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

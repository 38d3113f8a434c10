"""Benchmark: block quantisation of a 4096 x 7168 float32 matrix (DeepSeek-V3 dims) with the
`deepseek` rule into E4M3, 1x128 (activations) and 128x128 (weights) tiles, against baselines
measured in the same run:

* the copy bound: a numpy copy of the input (np.copyto into a preallocated array) gives the memory
  bandwidth B; quantisation reads 4 bytes and writes 1 byte per element plus 4 per tile, so it is
  bounded by B / (5 + 4 / tile elements) elements per second (the issue-15 row is this ratio, for
  `fp8lab.quantize(...)` returning a QTensor, whose bits are 1 byte per element filled by the same
  fused pass, and for `fp8lab.quantize(..., out=(bits, scales))`);
* a vectorised numpy implementation of the same rule (amax over tiles, max(amax, 1e-4),
  s = amax / 448, x / s, satfinite cast via ml_dtypes), and torch's formula for it when torch is
  installed (its float8_e4m3fn cast saturates nothing, so values are clamped to +-448 first, as the
  reference kernels' inputs never exceed it: x / s <= 448).
All must produce identical bits and scales, checked before timing.

    PYTHONPATH=bindings/python:<build>/python python bench/bench_quant.py [--rows R --cols C --repeat N]
"""
from __future__ import annotations

import argparse
import os

import ml_dtypes
import numpy as np

import fp8lab
from _timing import best_of


def numpy_deepseek(x: np.ndarray, tr: int, tc: int):
    r, c = x.shape
    v = x.reshape(r // tr, tr, c // tc, tc)
    a = np.fmax.reduce(np.fmax.reduce(np.abs(v), axis=3, keepdims=True), axis=1, keepdims=True)  # Triton max skips NaN
    s = np.fmax(a, np.float32(1e-4)) / np.float32(448.0)
    q = np.clip(v / s, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    return q.reshape(r, c), s[:, 0, :, 0]


def torch_deepseek(torch, x, tr: int, tc: int):
    r, c = x.shape
    v = x.view(r // tr, tr, c // tc, tc)
    a = v.abs().amax(dim=(1, 3), keepdim=True)
    s = a.clamp(min=1e-4) / 448.0
    q = (v / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q.view(r, c), s[:, 0, :, 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=7168)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.cols % 128 or args.rows % 128:
        ap.error("--rows and --cols must be multiples of 128 (the baselines reshape into 128x128 tiles)")
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.cols), dtype=np.float32)
         * np.exp2(rng.integers(-8, 8, size=(args.rows, 1))).astype(np.float32))
    n = x.size
    copy = np.empty_like(x)
    np.copyto(copy, x)
    bandwidth = 2 * x.nbytes / best_of(lambda: np.copyto(copy, x), args.repeat)
    print(f"quantize deepseek e4m3, {args.rows}x{args.cols} float32, threads={fp8lab.num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}; numpy copy {bandwidth / 1e9:.2f} GB/s")
    ok = True
    for tr, tc in ((1, 128), (128, 128)):
        bound = bandwidth / (5 + 4 / (tr * tc))
        bits = np.empty(x.shape, np.uint8)
        scales = np.empty((args.rows // tr, args.cols // tc), np.float32)
        fp8lab.quantize(x, tile=(tr, tc), fmt="e4m3", rule="deepseek", out=(bits, scales))
        q = fp8lab.quantize(x, tile=(tr, tc), fmt="e4m3", rule="deepseek")
        bits_np, s_np = numpy_deepseek(x, tr, tc)
        same = (np.array_equal(bits, bits_np) and np.array_equal(scales, s_np) and np.array_equal(q.bits, bits)
                and np.array_equal(q.scales, scales))
        rows = [("numpy (vectorised, same rule)", best_of(lambda: numpy_deepseek(x, tr, tc), args.repeat))]
        if torch is not None:
            tx = torch.from_numpy(x)
            tq, ts = torch_deepseek(torch, tx, tr, tc)
            same = same and np.array_equal(tq.view(torch.uint8).numpy(), bits) and np.array_equal(ts.numpy(), scales)
            rows.append(("torch formula (same rule)", best_of(lambda: torch_deepseek(torch, tx, tr, tc), args.repeat)))
        t_np = rows[0][1]
        rows.append(("fp8lab.quantize -> QTensor", best_of(lambda: fp8lab.quantize(x, tile=(tr, tc), fmt="e4m3", rule="deepseek"), args.repeat)))
        rows.append(("fp8lab.quantize out=(bits, scales)", best_of(
            lambda: fp8lab.quantize(x, tile=(tr, tc), fmt="e4m3", rule="deepseek", out=(bits, scales)), args.repeat)))
        print(f"  tile {tr}x{tc}: bound {bound / 1e9:.2f} G elem/s; bits and scales identical: {same}")
        for label, t in rows:
            print(f"    {label:36s} {t * 1e3:8.1f} ms  {n / t / 1e9:6.2f} G elem/s  {n / t / bound:5.2f} of the bound"
                  f"  {t_np / t:6.2f}x numpy")
        ok = ok and same
        # Dequantisation back to float64 (QTensor.dequantize: element * tile scale, exact) against
        # ml_dtypes' E4M3 decode and numpy's broadcast scale multiply; float32 in mla's
        # dequantize_block_fp8 (128x128 only) against the same in float32.
        bits_u8 = np.ascontiguousarray(q.bits)
        sc = np.ascontiguousarray(q.scales)

        def ml_dequant(dt):
            v = bits_u8.view(ml_dtypes.float8_e4m3fn).astype(dt).reshape(args.rows // tr, tr, args.cols // tc, tc)
            return (v * sc.astype(dt)[:, None, :, None]).reshape(args.rows, args.cols)

        same_dq = np.array_equal(q.dequantize(), ml_dequant(np.float64))
        t_ml = best_of(lambda: ml_dequant(np.float64), args.repeat)
        t_dq = best_of(lambda: q.dequantize(), args.repeat)
        print(f"    dequantize -> float64 (identical to ml_dtypes + numpy: {same_dq}): fp8lab {t_dq * 1e3:.1f} ms "
              f"{n / t_dq / 1e9:.2f} G elem/s; ml_dtypes+numpy {t_ml * 1e3:.1f} ms; {t_ml / t_dq:.2f}x ml_dtypes")
        ok = ok and same_dq
        if tr == 128:
            from fp8lab import mla
            e4 = bits_u8.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
            same_bf = np.array_equal(mla.dequantize_block_fp8(e4, sc), ml_dequant(np.float32))
            t_ml32 = best_of(lambda: ml_dequant(np.float32), args.repeat)
            t_bf = best_of(lambda: mla.dequantize_block_fp8(e4, sc), args.repeat)
            print(f"    mla.dequantize_block_fp8 (float32 elements -> float32, identical: {same_bf}): {t_bf * 1e3:.1f} ms; "
                  f"ml_dtypes+numpy from the bytes {t_ml32 * 1e3:.1f} ms; {t_ml32 / t_bf:.2f}x")
            ok = ok and same_bf
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

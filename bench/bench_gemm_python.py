"""Benchmark: ``fp8lab.gemm`` promoted (deepseek_v3_fp8_linear: E4M3, 1x128 / 128x128 tiles,
N_C = 128, BF16 out) called from Python on QTensors, against (1) the C++ ``fp8lab::gemm`` call inside
it — the stage timer's representability checks + kernel + output rounding of the same calls, which
is what bench/bench_gemm.cpp times — and (2) numpy float32 matmul (sgemm) on the same shape, all in
this process. Prints the Python path's overhead ratio (goal <= 1.10) and the ratio to sgemm.

    PYTHONPATH=bindings/python:<build>/python python bench/bench_gemm_python.py [--quick] [--repeat N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np

import fp8lab
from fp8lab import _core


def stage_seconds() -> dict:
    return {k: v["seconds"] for k, v in _core.stage_seconds().items()}


def run(M: int, N: int, K: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((N, K), dtype=np.float32)
    a, b = fp8lab.quantize(x, operand="a"), fp8lab.quantize(w, operand="b")
    walls, cxx, prep, frees = [], [], [], []
    _core.set_profiling(True)
    try:
        for _ in range(repeat):
            before = stage_seconds()
            with contextlib.redirect_stderr(io.StringIO()):  # the per-call profile lines
                t0 = time.perf_counter()
                d = fp8lab.gemm(a, b)  # held: freeing the M x N result is the caller's cost, timed below
                walls.append(time.perf_counter() - t0)
            after = stage_seconds()
            t0 = time.perf_counter()
            del d
            frees.append(time.perf_counter() - t0)
            d = {k: after[k] - before[k] for k in after}
            cxx.append(d["representability checks"] + d["kernel"] + d["output rounding"])
            prep.append(d["operand preparation"])
    finally:
        _core.set_profiling(False)
    i = int(np.argmin(walls))
    # sgemm after every emulated call (OpenBLAS's threads keep spinning after a call).
    xf, wf = a.dequantize().astype(np.float32), b.dequantize().astype(np.float32)
    t_sgemm = min(_timed(lambda: xf @ wf.T) for _ in range(repeat + 1))
    flop = 2.0 * M * N * K
    print(f"shape M={M} N={N} K={K} threads={fp8lab.num_threads()} kernel variant={fp8lab.build_info()['cpu']}")
    print(f"  fp8lab.gemm from Python:      {walls[i]:8.3f} s  {flop / walls[i] * 1e-9:8.2f} GFLOP/s-equivalent"
          f"  (operand preparation {prep[i] * 1e3:.1f} ms)")
    print(f"  C++ gemm() inside that call:  {cxx[i]:8.3f} s  {flop / cxx[i] * 1e-9:8.2f} GFLOP/s-equivalent")
    print(f"  in neither stage: {(walls[i] - cxx[i] - prep[i]) * 1e3:.1f} ms; freeing the result afterwards "
          f"(the caller's del): {frees[i] * 1e3:.1f} ms")
    print(f"  numpy float32 matmul (sgemm): {t_sgemm:8.3f} s  {flop / t_sgemm * 1e-9:8.2f} GFLOP/s")
    print(f"  ratio Python / C++ call: {walls[i] / cxx[i]:.3f}x (goal <= 1.10x)")
    print(f"  ratio emulated (Python) / sgemm: {t_sgemm / walls[i]:.3f}x (goal >= 0.25x)")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape (smoke run)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    shapes = [(256, 256, 1024)] if args.quick else [(2048, 2048, 2048), (2048, 7168, 2048)]
    for M, N, K in shapes:
        run(M, N, K, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

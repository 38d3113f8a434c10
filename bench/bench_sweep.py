"""Sweep throughput: a 64-task GEMM-error grid (4 K x 2 N_C x 2 input distributions x 4 samples, one
sample per task; M = N = 32) run sequentially in this process, then on the embedded local process
pool, measured in the same run. Prints both wall times, their ratio (the pool's speed-up, pool
start-up included) and whether the two runs gave the same bits (result digests).

On N otherwise idle cores the ratio is at most N (2x on the 2-core development machine); a loaded
machine shows less — the load average is printed next to the ratio. fp8lab's own threads are set to
1 in both runs, so the ratio measures the pool, not fp8lab's internal parallelism.

    PYTHONPATH=bindings/python:build/<dir>/python python bench/bench_sweep.py [--workers N] [--dask]
"""
from __future__ import annotations

import argparse
import os
import time


GRID = {"kind": "gemm_error", "axes": {"K": [1024, 2048, 4096, 8192], "nc": [32, 128],
                                       "dist": ["gaussian", "uniform_positive"]},
        "params": {"M": 32, "N": 32}, "samples": 4, "shard": 1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: CPU count)")
    ap.add_argument("--dask", action="store_true", help="also run on a distributed.LocalCluster of --workers")
    args = ap.parse_args()

    import fp8lab
    from fp8lab.sweep import parse_grid

    fp8lab.set_num_threads(1)
    grid = parse_grid(GRID)
    assert len(grid) == 64
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    seq = fp8lab.sweep(grid, executor="serial", progress=False)
    t_seq = time.perf_counter() - t0
    from fp8lab.sweep import PoolExecutor

    t0 = time.perf_counter()
    with PoolExecutor(args.workers) as pool:
        pool.map(abs, range(4 * args.workers))  # start-up: spawn the workers, import fp8lab in each
        t_start = time.perf_counter() - t0
        par = fp8lab.sweep(grid, executor=pool, progress=False)
    t_pool = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    same = seq.digest() == par.digest()
    print(f"sweep bench: {len(grid)} gemm_error tasks ({seq.counts()['ok']} ok), {os.cpu_count()} cores, "
          f"load average {load0:.1f} -> {load1:.1f}")
    print(f"  sequential (in process)      {t_seq:8.2f} s")
    print(f"  local pool ({args.workers} workers)       {t_pool:8.2f} s   ratio {t_seq / t_pool:5.2f}x   "
          f"bit-identical: {same}")
    print(f"    of which pool start-up     {t_start:8.2f} s   ratio without it {t_seq / (t_pool - t_start):5.2f}x")
    if args.dask:
        t0 = time.perf_counter()
        dk = fp8lab.sweep(grid, executor="dask:local", workers=args.workers, progress=False)
        t_dask = time.perf_counter() - t0
        print(f"  Dask LocalCluster ({args.workers} workers) {t_dask:8.2f} s   ratio {t_seq / t_dask:5.2f}x   "
              f"bit-identical: {seq.digest() == dk.digest()}   (cluster start-up included)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

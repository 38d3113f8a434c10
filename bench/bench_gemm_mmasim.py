"""fp8lab's emulated Hopper E4M3 GEMM against MMA-Sim (Microsoft, arXiv 2511.10909; PyPI ``mmasim``)
on a small case: both chain K/32 ``wgmma.m64nNk32.f32.e4m3.e4m3`` instructions with C = the previous
D (no promotion). Prints MACs/s of each, the ratio, and whether the results are bit-identical.

Optional: needs ``mmasim`` (and the torch it brings); exits 0 with a message when it is missing.
Run: PYTHONPATH=bindings/python:<build>/python python bench/bench_gemm_mmasim.py
"""
import sys
import time

import numpy as np

import fp8lab


def main() -> int:
    try:
        import torch
        from mmasim.nv_ptx import WGMMA
    except ImportError as err:
        print(f"bench_gemm_mmasim: skipped ({err}); pip install mmasim to run it")
        return 0
    M, N, K = 64, 64, 512
    rng = np.random.default_rng(0)
    a = fp8lab.decode(fp8lab.encode(rng.standard_normal((M, K)) * 64, "e4m3"), "e4m3").astype(np.float32)
    b = fp8lab.decode(fp8lab.encode(rng.standard_normal((N, K)) * 64, "e4m3"), "e4m3").astype(np.float32)

    t0 = time.perf_counter()
    ours = fp8lab.gemm(a, b, accumulate="tensorcore", out="fp32")
    t_ours = time.perf_counter() - t0

    op = WGMMA("Hopper", f"m64n{N}k32.f32.e4m3.e4m3")
    ta = torch.from_numpy(a).to(torch.float8_e4m3fn)
    tb = torch.from_numpy(b).to(torch.float8_e4m3fn)
    d = torch.zeros((M, N), dtype=torch.float32)
    op(ta[:, :32], tb[:, :32].T.contiguous(), d)  # warm-up: mmasim may build its C++ extension first
    t0 = time.perf_counter()
    for kc in range(0, K, 32):
        d = op(ta[:, kc:kc + 32], tb[:, kc:kc + 32].T.contiguous(), d)
    t_sim = time.perf_counter() - t0

    macs = M * N * K
    same = np.array_equal(ours.astype(np.float32).view(np.uint32), d.numpy().view(np.uint32))
    print(f"shape M={M} N={N} K={K} (chained wgmma k=32, no promotion)")
    print(f"  fp8lab: {t_ours:.4f} s  {macs / t_ours / 1e6:10.1f} MMAC/s")
    print(f"  mmasim: {t_sim:.4f} s  {macs / t_sim / 1e6:10.1f} MMAC/s")
    print(f"  speed-up fp8lab / mmasim: {t_sim / t_ours:.1f}x; bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""``fp8lab.dot`` batched (the hopper_fp8 preset: one Hopper E4M3 ``wgmma`` instruction of k = 32 per
row, C given) against MMA-Sim (Microsoft, arXiv 2511.10909; PyPI ``mmasim``) in the same run.
fp8lab: 262144 independent instructions in one call (random E4M3 operands, random FP32 C); mmasim:
``wgmma.m64n8k32.f32.e4m3.e4m3`` instructions (64 x 8 dot products of 32 each, C = D of the previous
one). Prints ns per multiply-accumulate of each and the ratio, and checks on one instruction's
64 x 8 dots that fp8lab.dot gives mmasim's bits. Goal (issue 15): <= 1 ns/MAC, >= 100x mmasim.

Optional: needs ``mmasim`` (and the torch it brings); without it prints fp8lab's figure alone.
Run: PYTHONPATH=bindings/python:<build>/python python bench/bench_dot_mmasim.py
"""
import sys

import numpy as np

import fp8lab
from _timing import best_of


def e4m3(rng, shape, sigma=64.0):
    return fp8lab.decode(fp8lab.encode(rng.standard_normal(shape) * sigma, "e4m3"), "e4m3").astype(np.float32)


def main() -> int:
    batch, k = 262144, 32
    rng = np.random.default_rng(0)
    a, b = e4m3(rng, (batch, k)), e4m3(rng, (batch, k))
    c = (rng.standard_normal(batch) * 1e4).astype(np.float32)
    fp8lab.dot(a[:16], b[:16], c[:16])  # warm-up
    t_ours = best_of(lambda: fp8lab.dot(a, b, c, instruction="hopper_fp8"), 5)
    ns_ours = t_ours / (batch * k) * 1e9
    print(f"fp8lab.dot hopper_fp8, {batch} instructions x k={k}, threads={fp8lab.num_threads()}:")
    print(f"  fp8lab: {t_ours:.4f} s  {ns_ours:8.3f} ns/MAC (goal <= 1 ns/MAC)")
    try:
        import torch
        from mmasim.nv_ptx import WGMMA
    except ImportError as err:
        print(f"  mmasim: skipped ({err}); pip install mmasim for the ratio")
        return 0
    M, N, reps = 64, 8, 64
    op = WGMMA("Hopper", f"m64n{N}k32.f32.e4m3.e4m3")
    xa, xb = e4m3(rng, (M, k)), e4m3(rng, (N, k))
    xc = (rng.standard_normal((M, N)) * 1e4).astype(np.float32)
    ta = torch.from_numpy(xa).to(torch.float8_e4m3fn)
    tb = torch.from_numpy(xb).to(torch.float8_e4m3fn).T.contiguous()
    d = op(ta, tb, torch.from_numpy(xc.copy()))  # warm-up (mmasim may build its extension first)
    # The check: every (i, j) of one instruction is one fp8lab.dot row.
    ours = fp8lab.dot(np.repeat(xa, N, axis=0), np.tile(xb, (M, 1)), xc.reshape(-1), instruction="hopper_fp8")
    same = np.array_equal(ours.view(np.uint32), d.numpy().reshape(-1).view(np.uint32))
    dd = torch.from_numpy(xc.copy())

    def chain():
        nonlocal dd
        for _ in range(reps):
            dd = op(ta, tb, dd)

    t_sim = best_of(chain, 3)
    ns_sim = t_sim / (reps * M * N * k) * 1e9
    print(f"  mmasim: {t_sim:.4f} s for {reps} x m64n{N}k32  {ns_sim:8.3f} ns/MAC")
    print(f"  ratio mmasim / fp8lab (ns per MAC): {ns_sim / ns_ours:.1f}x (goal >= 100x); bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""A block-scaled FP8 GEMM with promotion every 128 (DeepSeek-V3 ``inference/kernel.py`` fp8_gemm):
``C = A @ B.T`` with A ``[M, K]`` E4M3 in 1x128 tiles (scales ``[M, K/128]``), B ``[N, K]`` E4M3 in
128x128 blocks (scales ``[ceil(N/128), K/128]``), C BF16.

Each 128-wide K block is one ``tl.dot`` from a zero accumulator (the tensor-core partial sum),
scaled and added to the FP32 accumulator as DeepSeek writes it: ``acc += dot * sa * sb``. With
Triton's FP fusion on this compiles to ``fma(fl(p*sa), sb, acc)`` (fp8lab's ``cublas`` combine).
Which tensor-core instruction the dot becomes depends on the tile: 64-row tiles with 4 warps give
Hopper FP8 ``wgmma ... e4m3``; 16-row tiles give FP16 ``mma.sync.m16n8k16`` after an exact
conversion of the operands. The audit says which.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def fp8_gemm_kernel(a_ptr, b_ptr, c_ptr, as_ptr, bs_ptr, M, N, K: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m = tl.program_id(axis=0)
    pid_n = tl.program_id(axis=1)
    nk: tl.constexpr = K // BK
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    # Rows/columns past the edge read row 0 / column 0 (kept in bounds) and are never stored.
    rm = tl.where(rows < M, rows, 0)
    cn = tl.where(cols < N, cols, 0)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for i in range(nk):
        a = tl.load(a_ptr + rm[:, None] * K + i * BK + ks[None, :])
        b = tl.load(b_ptr + cn[None, :] * K + i * BK + ks[:, None])
        sa = tl.load(as_ptr + rm * nk + i)
        sb = tl.load(bs_ptr + (cn // BK) * nk + i)
        acc += tl.dot(a, b) * sa[:, None] * sb[None, :]
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    tl.store(c_ptr + rows[:, None] * N + cols[None, :], acc.to(c_ptr.dtype.element_ty), mask=mask)


def fp8_gemm(a, a_s, b, b_s, bm: int = 64, bn: int = 64, kernel=fp8_gemm_kernel):
    """a: [M, K] float8_e4m3fn, a_s: [M, ceil(K/128)] float32, b: [N, K] float8_e4m3fn,
    b_s: [ceil(N/128), ceil(K/128)] float32 (CPU torch tensors) -> C [M, N] bfloat16. A ragged K is
    padded with zeros to a multiple of 128."""
    import torch

    for name, t, dt in (("a", a, torch.float8_e4m3fn), ("b", b, torch.float8_e4m3fn),
                        ("a_s", a_s, torch.float32), ("b_s", b_s, torch.float32)):
        if t.dtype != dt:
            raise TypeError(f"{name}: expected {dt}, got {t.dtype}")
    m, k = a.shape
    n = b.shape[0]
    nk = -(-k // 128)
    if b.shape[1] != k:
        raise ValueError(f"b: shape {tuple(b.shape)} must be [N, K] with K = {k}")
    if tuple(a_s.shape) != (m, nk) or tuple(b_s.shape) != (-(-n // 128), nk):
        raise ValueError(f"a_s/b_s: shapes {tuple(a_s.shape)}/{tuple(b_s.shape)} do not match the 1x128 / "
                         f"128x128 tile grids ({m}, {nk}) / ({-(-n // 128)}, {nk})")
    if 128 % bn:
        raise ValueError(f"bn: {bn} must divide 128 (one weight scale per column block)")
    if m == 0 or n == 0 or k == 0:
        return torch.zeros((m, n), dtype=torch.bfloat16)
    if k % 128:  # a ragged last K block: zero elements under the block's own scale add nothing
        a = torch.cat([a.view(torch.uint8), torch.zeros((m, nk * 128 - k), dtype=torch.uint8)], 1).view(a.dtype)
        b = torch.cat([b.view(torch.uint8), torch.zeros((n, nk * 128 - k), dtype=torch.uint8)], 1).view(b.dtype)
        k = nk * 128
    c = torch.empty((m, n), dtype=torch.bfloat16)
    grid = (-(-m // bm), -(-n // bn))
    kernel[grid](a.contiguous(), b.contiguous(), c, a_s.contiguous(), b_s.contiguous(), m, n, K=k,
                 BM=bm, BN=bn, BK=128)
    return c


_SIG = {"a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv", "c_ptr": "*bf16", "as_ptr": "*fp32", "bs_ptr": "*fp32",
        "M": "i32", "N": "i32"}
# What the kernel declares (its indexing); the audit adds the instruction and combine it compiles to.
_SPEC = {"a_format": "e4m3", "a_tile": [1, 128], "b_format": "e4m3", "b_tile": [128, 128], "accumulate": "promoted",
         "promote_every": 128, "out": "bf16"}
AUDIT = {
    "fp8_gemm_64": {"fn": "fp8_gemm_kernel", "op": "gemm", "signature": _SIG,
                    "constexprs": {"K": 256, "BM": 64, "BN": 64, "BK": 128}, "spec": _SPEC},
    "fp8_gemm_16": {"fn": "fp8_gemm_kernel", "op": "gemm", "signature": _SIG,
                    "constexprs": {"K": 256, "BM": 16, "BN": 64, "BK": 128}, "spec": _SPEC},
}

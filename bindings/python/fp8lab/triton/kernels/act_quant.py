"""A DeepSeek-style 1x128 activation quantiser (DeepSeek-V3 ``inference/kernel.py`` act_quant):
per 128 consecutive elements of a row, ``s = max(amax, 1e-4) / 448`` and ``y = e4m3(x / s)``.

fp8lab's ``deepseek`` scale rule divides with IEEE division; Triton lowers a plain ``/`` on fp32 to
the approximate ``div.full.f32`` (PTX ISA: "max. 2 ulp"), so this kernel divides with
``tl.div_rn`` (``div.rn.f32``) to be a pinned function. ``DIV_RN=False`` is the kernel as DeepSeek
writes it: the audit names its two ``div.full.f32`` with their source lines, and the faithful
interpreter refuses it.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def act_quant_kernel(x_ptr, y_ptr, s_ptr, BLOCK: tl.constexpr, DIV_RN: tl.constexpr):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x)), 1e-4)
    if DIV_RN:
        s = tl.div_rn(amax, 448.0)
        y = tl.div_rn(x, s)
    else:
        s = amax / 448.0
        y = x / s
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty))
    tl.store(s_ptr + pid, s)


def act_quant(x, block: int = 128, div_rn: bool = True, kernel=act_quant_kernel):
    """x: float32 [rows, cols] torch tensor -> (e4m3 [rows, cols], float32 scales [rows,
    ceil(cols/block)]). A ragged last tile is padded with zeros, which leave its amax unchanged.
    ``kernel`` lets the faithful interpreter pass its own copy."""
    import torch

    if x.dtype != torch.float32:
        raise TypeError(f"x: expected a float32 tensor, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D tensor (rows, cols), got shape {tuple(x.shape)}")
    rows, cols = x.shape
    tiles = -(-cols // block)
    if rows == 0 or cols == 0:
        return torch.empty((rows, cols), dtype=torch.float8_e4m3fn), torch.empty((rows, tiles), dtype=torch.float32)
    xp = torch.zeros((rows, tiles * block), dtype=torch.float32)
    xp[:, :cols] = x
    y = torch.empty((rows, tiles * block), dtype=torch.float8_e4m3fn)
    s = torch.empty((rows, tiles), dtype=torch.float32)
    kernel[(rows * tiles,)](xp, y, s, BLOCK=block, DIV_RN=div_rn)
    return y[:, :cols].contiguous(), s


AUDIT = {
    "act_quant": {"fn": "act_quant_kernel", "op": "quantize",
                  "signature": {"x_ptr": "*fp32", "y_ptr": "*fp8e4nv", "s_ptr": "*fp32"},
                  "constexprs": {"BLOCK": 128, "DIV_RN": True},
                  "spec": {"rule": "deepseek", "tile": [1, 128], "fmt": "e4m3"}},
    "act_quant_div": {"fn": "act_quant_kernel", "op": "quantize",
                      "signature": {"x_ptr": "*fp32", "y_ptr": "*fp8e4nv", "s_ptr": "*fp32"},
                      "constexprs": {"BLOCK": 128, "DIV_RN": False},
                      "spec": {"rule": "deepseek", "tile": [1, 128], "fmt": "e4m3"}},
}

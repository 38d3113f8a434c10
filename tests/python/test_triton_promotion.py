"""Which fp8lab combine order DeepSeek-V3's Triton fp8_gemm really runs (a compiled-code check, no
GPU needed): inference/kernel.py promotes with ``accumulator += tl.dot(a, b) * a_s[:, None] *
b_s[None, :]`` every 128 elements. Written left to right that is fp8lab's ``triton`` order,
fl(fl(fl(p*sa)*sb) + acc); but Triton contracts a multiply feeding an add into an FMA while its FP
fusion is on (the default through Triton 3.9, and in the triton==3.0.0 that DeepSeek-V3's
inference/requirements.txt pins), which gives fma(fl(p*sa), sb, acc): fp8lab's ``cublas`` order.
The two differ in the last bit whenever the scales are not powers of two. This test compiles the
same promotion step for sm_90 (Triton's bundled ptxas toolchain; no device) and reads the PTX.

Triton is an optional peer (``make peers`` installs torch, which brings it); without it the test
is skipped and says so."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import fp8lab

triton = pytest.importorskip("triton", reason="triton is not installed (make peers): the Triton lowering check is skipped")
tl = pytest.importorskip("triton.language")
pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")


@triton.jit
def _promote_probe(a_ptr, b_ptr, as_ptr, bs_ptr, c_ptr, K: tl.constexpr, BM: tl.constexpr):
    # One output tile, K in blocks of 128 with per-block scales, promoted as kernel.py does.
    rows = tl.arange(0, BM)
    ks = tl.arange(0, 128)
    acc = tl.zeros((BM, BM), dtype=tl.float32)
    for i in range(K // 128):
        a = tl.load(a_ptr + rows[:, None] * K + i * 128 + ks[None, :])
        b = tl.load(b_ptr + rows[None, :] * K + i * 128 + ks[:, None])
        sa = tl.load(as_ptr + rows * (K // 128) + i)
        sb = tl.load(bs_ptr + rows * (K // 128) + i)
        acc += tl.dot(a, b) * sa[:, None] * sb[None, :]
    tl.store(c_ptr + rows[:, None] * BM + rows[None, :], acc)


def _ptx(bm: int, fusion: bool | None) -> str:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {"a_ptr": "*fp8e4nv", "b_ptr": "*fp8e4nv", "as_ptr": "*fp32", "bs_ptr": "*fp32", "c_ptr": "*fp32",
           "K": "constexpr", "BM": "constexpr"}
    src = ASTSource(fn=_promote_probe, signature=sig, constexprs={"K": 256, "BM": bm})
    options = {"num_warps": 4}
    if fusion is not None:
        options["enable_fp_fusion"] = fusion
    # A Triton build without its CUDA backend cannot compile for sm_90: skip there. With the backend
    # present (every PyPI wheel, and CI) a compile error is a failure, not a skip.
    from triton.backends import backends
    if "nvidia" not in backends:
        pytest.skip("this Triton build has no CUDA backend")
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]


def _promotion_ops(ptx: str) -> list[str]:
    """The FP32 arithmetic after the last tensor-core instruction of the loop body: the promotion."""
    last_mma = max(m.end() for m in re.finditer(r"\b(wgmma\.mma_async|mma\.sync)[^\n]*", ptx))
    return re.findall(r"\b(fma\.rn\.f32|mul(?:\.rn)?\.f32|add(?:\.rn)?\.f32)\b", ptx[last_mma:])


@pytest.mark.parametrize("bm", [16, 64])
def test_fused_promotion_is_the_cublas_order(bm):
    ops = _promotion_ops(_ptx(bm, fusion=True))
    # Per element one multiply (p*sa, rounded) and one FMA (.. * sb + acc); no separate add.
    assert ops.count("fma.rn.f32") > 0 and not any(o.startswith("add") for o in ops), ops
    assert ops.count("fma.rn.f32") == sum(o.startswith("mul") for o in ops), ops


@pytest.mark.parametrize("bm", [16, 64])
def test_unfused_promotion_is_the_triton_order(bm):
    ops = _promotion_ops(_ptx(bm, fusion=False))
    # Two rounded multiplies and one rounded add per element (.rn: ptxas may not contract them).
    assert "fma.rn.f32" not in ops, ops
    assert ops.count("mul.rn.f32") == 2 * ops.count("add.rn.f32") > 0, ops


def test_default_fusion_depends_on_the_triton_version():
    # Unless TRITON_DEFAULT_FP_FUSION says otherwise, Triton before 3.10 fuses (3.9 warns that
    # 3.10 turns the default off); DeepSeek-V3 pins triton==3.0.0.
    setting = os.environ.get("TRITON_DEFAULT_FP_FUSION")
    major, minor = (int(x) for x in triton.__version__.split(".")[:2])
    fused_by_default = setting not in ("0", "false", "False") if setting else (major, minor) < (3, 10)
    ops = _promotion_ops(_ptx(64, fusion=None))
    assert ("fma.rn.f32" in ops) == fused_by_default, (triton.__version__, setting, ops)


def test_the_tile_size_picks_the_tensor_core_instruction():
    # Small tiles (kernel.py autotunes BLOCK_SIZE_M over 16, 32, 64) lower the FP8 dot to FP16
    # mma.sync after converting the operands; 64-row tiles with 4 warps use FP8 wgmma. The two
    # accumulate differently (fp8lab's hopper_fp16 vs hopper_fp8 models), so which one a shape
    # gets decides the bits as much as the combine does.
    assert re.search(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32", _ptx(16, fusion=True))
    assert re.search(r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k32\.f32\.e4m3\.e4m3", _ptx(64, fusion=True))


def test_the_two_orders_differ_in_fp8lab_with_fp32_scales():
    # Why the finding matters: with the "deepseek" rule's FP32 scales the two combines disagree.
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((8, 512)).astype(np.float32), rng.standard_normal((16, 512)).astype(np.float32)
    qa = fp8lab.quantize(x, tile=(1, 128), rule="deepseek")
    qb = fp8lab.quantize(w, tile=(128, 128), rule="deepseek")
    cublas = fp8lab.gemm(qa, qb, combine="cublas", out="fp32")
    left_to_right = fp8lab.gemm(qa, qb, combine="triton", out="fp32")
    assert not np.array_equal(cublas, left_to_right)
    assert np.allclose(cublas, left_to_right, rtol=1e-6, atol=0)

"""The NVFP4 GEMM recipe (nvfp4_te) end to end against an independent formulation, zero tolerance:
each operand quantised by the numpy transcription of TransformerEngine's reference quantiser
(test_quant_nvfp4.ref_nvfp4: 1x16 activations, 16x16 weights, E4M3 block scales, S_enc = 448*6/amax);
the product chained over K through MMA-Sim's block-scaled tcgen05 instruction
(TCGen05MMABlockScale m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3, one accumulator, C =
previous D); then the epilogue in numpy float32 as TransformerEngine orders it
(transformer_engine/common/recipe/nvfp4.cu compute_nvfp4_per_tensor_scale_kernel:
alpha = alpha_in * amax_A * amax_B * factor_inv, factor_inv = (float)(1.0 / (6*6*448*448)), called
from common/gemm/cublaslt_gemm.cu with alpha_in = 1; cuBLASLt D = alpha * acc in the FP32 scale
type) and BF16 by ml_dtypes. Plus the certified bound against exact integer arithmetic, the
refusals, and the bound of the other instruction forms (kind::mxf4nvf4 UE8M0, AMD CDNA3)."""
from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import fp8lab
from test_quant_nvfp4 import ref_nvfp4

F = np.float32
RECIPE = "nvfp4_te"
PRESET = "blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue4m3"
FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float64)


def test_row_is_what_the_sources_say():
    r = fp8lab.recipe(RECIPE)
    assert (r["a"]["format"], r["b"]["format"]) == ("e2m1", "e2m1")
    assert (r["a"]["tile"], r["b"]["tile"], r["a"]["rule"], r["b"]["rule"]) == ([1, 16], [16, 16], "nvfp4", "nvfp4")
    assert r["gemm"]["accumulate"] == "tensorcore" and r["gemm"]["out"] == "bf16"
    assert r["gemm"]["instruction"] == PRESET
    assert "nvfp4.cu" in r["source"] and "reference_nvfp4.py" in r["source"]


def _inputs(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((m, k)) * np.exp2(rng.integers(-6, 6, (m, 1)))).astype(F)
    a[1, 5] = 700.0  # an outlier: the other blocks' E4M3 scales fall to subnormals and zeros
    a[2] *= F(2.0 ** -40)  # far below amax/2688: zero block scales
    a[3] = 0
    b = (rng.standard_normal((n, k)) * 0.05).astype(F)
    b[0, :16] = 0  # an all-zero 16x16 weight tile corner
    return a, b


def _quantised(x, tile):
    """fp8lab's quantisation, checked against the numpy transcription of TE's reference, and the
    reference's codes, per-element block scales (rows x K) and S_dec."""
    q = fp8lab.quantize(x, recipe=RECIPE, operand="a" if tile == (1, 16) else "b")
    codes, ds, s_dec = ref_nvfp4(x, tile)
    assert q.global_scale == s_dec and q.global_amax == F(np.max(np.abs(x)))
    assert np.array_equal(q.bits, codes) and np.array_equal(q.scales.view(np.uint32), ds.view(np.uint32))
    per_elem = np.repeat(np.repeat(ds, tile[0], 0), 16, 1)[: x.shape[0], : x.shape[1]]
    return q, codes.astype(np.uint8), per_elem.astype(F)


def _mmasim_chain(ca, sa, cb, sb):
    """acc[i, j] of MMA-Sim's instruction chained over K (zero-padded to 64), one batch of dpa per
    64-wide K step over every (i, j)."""
    import torch

    from mmasim.nv_ptx.sim import TCGen05MMABlockScale

    sim = TCGen05MMABlockScale("Blackwell", "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    (m, k), n = ca.shape, cb.shape[0]
    kp = -(-k // 64) * 64
    pad = lambda x, v: np.pad(x, ((0, 0), (0, kp - k)), constant_values=v)  # noqa: E731
    ca, cb, sa, sb = pad(ca, 0), pad(cb, 0), pad(sa, 1.0), pad(sb, 1.0)
    ii, jj = np.divmod(np.arange(m * n), n)
    d = torch.zeros(m * n, dtype=torch.float32)
    for c0 in range(0, kp, 64):
        ea, eb = ca[ii, c0:c0 + 64], cb[jj, c0:c0 + 64]
        pack = lambda e: torch.from_numpy(((e[:, 0::2] << 4) | e[:, 1::2]).astype(np.uint8))  # noqa: E731
        scale = lambda s: torch.from_numpy(  # noqa: E731
            np.ascontiguousarray(s[:, c0:c0 + 64:16]).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)).view(
                torch.float8_e4m3fn)
        d = sim.dpa(pack(ea), pack(eb), d, scale(sa[ii]), scale(sb[jj])).float()
    return d.numpy().reshape(m, n)


SHAPES = [(32, 24, 256), (17, 40, 200), (8, 16, 1040)]  # ragged K: 200, 1040 (not a multiple of 64)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_matches_mmasim_chain_and_te_epilogue_bit_for_bit(m, n, k):
    pytest.importorskip("torch", reason="mmasim needs torch")
    pytest.importorskip("mmasim.nv_ptx.sim", reason="mmasim is not installed")
    a, b = _inputs(m, n, k, seed=m + k)
    qa, ca, sa = _quantised(a, (1, 16))
    qb, cb, sb = _quantised(b, (16, 16))
    acc = _mmasim_chain(ca, sa, cb, sb)
    amax_a, amax_b = F(np.max(np.abs(a))), F(np.max(np.abs(b)))
    factor_inv = F(1.0 / (6.0 * 6.0 * 448.0 * 448.0))
    alpha = F(F(F(F(1.0) * amax_a) * amax_b) * factor_inv)
    d32 = (alpha * acc).astype(F)
    c = np.random.default_rng(k).standard_normal((m, n)).astype(F)
    cases = {
        "bf16": (fp8lab.gemm(qa, qb, recipe=RECIPE), d32.astype(ml_dtypes.bfloat16).astype(np.float64)),
        "fp32": (fp8lab.gemm(qa, qb, recipe=RECIPE, out="fp32"), d32.astype(np.float64)),
        "bf16 + C": (fp8lab.gemm(qa, qb, recipe=RECIPE, c=c),  # D = fl(fl(alpha * acc) + C): assumed order
                     (d32 + c).astype(F).astype(ml_dtypes.bfloat16).astype(np.float64)),
    }
    for what, (got, want) in cases.items():
        bad = np.argwhere(got.view(np.uint64) != want.view(np.uint64))
        print(f"mmasim nvfp4_te {m}x{n}x{k} {what}: {got.size} outputs, {len(bad)} mismatches")
        assert bad.size == 0, f"{what}: first mismatch at {bad[0]}: got {got[tuple(bad[0])]}, want {want[tuple(bad[0])]}"


def _exact(ca, sa, s_dec_a, cb, sb, s_dec_b):
    """The exact C-free product of the dequantised operands as Fractions: integers for the element
    halves (E2M1 values are multiples of 0.5) and the block scales in units of 2^-9 (E4M3's least
    subnormal), summed in int64 (below 2^62 for these shapes)."""
    ia = np.rint(FP4[ca] * 2).astype(np.int64) * np.rint(sa.astype(np.float64) * 512).astype(np.int64)
    ib = np.rint(FP4[cb] * 2).astype(np.int64) * np.rint(sb.astype(np.float64) * 512).astype(np.int64)
    s = ia @ ib.T
    g = Fraction(float(s_dec_a)) * Fraction(float(s_dec_b)) / (4 * 512 * 512)
    return [[Fraction(int(v)) * g for v in row] for row in s]


def test_bound_is_certified_against_exact_arithmetic():
    for m, n, k, seed in ((16, 24, 512, 1), (5, 7, 100, 2)):
        a, b = _inputs(m, n, k, seed)
        qa, ca, sa = _quantised(a, (1, 16))
        qb, cb, sb = _quantised(b, (16, 16))
        for out in ("bf16", "fp32"):
            d = fp8lab.gemm(qa, qb, recipe=RECIPE, out=out)
            bound = fp8lab.gemm_bound(qa, qb, recipe=RECIPE, out=out)
            exact = _exact(ca, sa, qa.global_scale, cb, sb, qb.global_scale)
            err = np.array([[abs(Fraction(float(d[i, j])) - exact[i][j]) for j in range(n)] for i in range(m)])
            assert all(err[i, j] <= Fraction(float(bound[i, j])) for i in range(m) for j in range(n)), out
            ex = np.array([[float(v) for v in row] for row in exact])
            tight = bound <= (0.01 if out == "bf16" else 1e-4) * np.abs(ex) + 1e-30
            assert tight[np.abs(ex) > 0].mean() > 0.5, out  # not vacuous


def test_ue4m3_scales_are_decoded_by_the_format_row():
    # One-level E2M1 operands with UE4M3 scales that are not powers of two (1.5, 0.375, 0.013671875 =
    # 7 * 2^-9, a subnormal): an exponent-only decode would take 1, 0.25 and 2^-7.
    bits = np.full((1, 64), 2, np.uint8)  # 1.0 everywhere
    scales = np.array([[1.5, 0.375, 0.013671875, 448.0]], F)
    q = fp8lab.from_parts(bits, scales, "e2m1", (1, 16), "deepseek")
    one = fp8lab.from_parts(bits, np.ones((1, 4), F), "e2m1", (1, 16), "deepseek")
    d = fp8lab.gemm(q, one, accumulate="tensorcore", instruction=PRESET, out="fp32")
    assert d[0, 0] == 16 * (1.5 + 0.375 + 0.013671875 + 448.0)


def test_refusals():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 64)).astype(F)
    qa = fp8lab.quantize(x, recipe=RECIPE, operand="a")
    qb = fp8lab.quantize(x, recipe=RECIPE, operand="b")
    with pytest.raises(ValueError, match="a: is two-level .* not accumulate='fp32'"):
        fp8lab.gemm(qa, qb, accumulate="fp32")
    with pytest.raises(ValueError, match="a: is two-level .* not accumulate='promoted' on instruction hopper_fp8"):
        fp8lab.gemm(qa, qb, recipe="deepseek_v3_fp8_linear")
    with pytest.raises(ValueError, match="a: is two-level .* not the exact reference"):
        fp8lab.gemm_exact(qa, qb)
    ones = np.ones((16, 64), F)  # E2M1 values with one level of scales (1)
    with pytest.raises(ValueError, match="b: has one level of scales but the other operand is two-level"):
        fp8lab.gemm(qa, ones, recipe=RECIPE)
    # A two-level tensor wrapped without its amax: the epilogue cannot form alpha.
    w = fp8lab.from_parts(qb.bits, qb.scales, "e2m1", (16, 16), "nvfp4", global_scale=qb.global_scale)
    with pytest.raises(ValueError, match=r"b: two-level QTensor .*pass global_amax to from_parts"):
        fp8lab.gemm(qa, w, recipe=RECIPE)
    w = fp8lab.from_parts(qb.bits, qb.scales, "e2m1", (16, 16), "nvfp4", global_scale=qb.global_scale,
                          global_amax=qb.global_amax)
    assert np.array_equal(fp8lab.gemm(qa, w, recipe=RECIPE), fp8lab.gemm(qa, qb, recipe=RECIPE))
    # An Inf or NaN in the input: the quantiser does what TE's does (global scale 1, saturated
    # blocks), but alpha would not be finite, so the GEMM names the operand and the cause.
    for special in (np.inf, -np.inf, np.nan):
        xs = x.copy()
        xs[3, 7] = special
        qs = fp8lab.quantize(xs, recipe=RECIPE, operand="a")
        with pytest.raises(ValueError, match=r"a: two-level QTensor .*tensor amax (inf|nan) \(its input held Inf or NaN\)"):
            fp8lab.gemm(qs, qb, recipe=RECIPE)
    with pytest.raises(ValueError, match="global_amax: rule 'deepseek' has one level"):
        fp8lab.from_parts(qb.bits, qb.scales, "e2m1", (16, 16), "deepseek", global_amax=2.0)
    bad = fp8lab.from_parts(np.zeros((1, 16), np.uint8), np.array([[0.3]], F), "e2m1", (1, 16), "deepseek")
    with pytest.raises(ValueError, match=f"a: scale 0 is 0.300000; instruction {PRESET} takes UE4M3 scales"):
        fp8lab.gemm(bad, bad, accumulate="tensorcore", instruction=PRESET)


def _bound_holds(qa, qb, **spec):
    d = fp8lab.gemm(qa, qb, **spec)
    bound = fp8lab.gemm_bound(qa, qb, **spec)
    exact = fp8lab.gemm_exact(qa, qb)
    assert (np.abs(d - exact) <= bound).all()
    return bound, exact


def test_bound_of_mxf4nvf4_ue8m0_forms():
    rng = np.random.default_rng(4)
    for preset, tile in (("blackwell_tcgen05_mxf4nvf4_block32_f32_e2m1_ue8m0", (1, 32)),
                         ("blackwell_tcgen05_mxf4nvf4_block16_f32_e2m1_ue8m0", (1, 16))):
        a = (rng.standard_normal((12, 320)) * np.exp2(rng.integers(-30, 30, (12, 1)))).astype(F)
        b = rng.standard_normal((10, 320)).astype(F)
        qa, qb = (fp8lab.quantize(x, tile, "e2m1", "deepseek_ue8m0") for x in (a, b))
        bound, exact = _bound_holds(qa, qb, accumulate="tensorcore", instruction=preset, out="fp32")
        assert (bound <= 1e-5 * np.abs(exact) + 1e-30)[exact != 0].mean() > 0.5


def test_bound_of_cdna3_mfma():
    rng = np.random.default_rng(5)
    for preset, fmt in (("cdna3_mfma_f32_16x16x32_fp8", "e4m3fnuz"), ("cdna3_mfma_f32_16x16x32_bf8", "e5m2fnuz")):
        for k in (256, 72):  # 72: a ragged last instruction
            a = (rng.standard_normal((9, k)) * np.exp2(rng.integers(-8, 8, (9, k)))).astype(F)
            b = rng.standard_normal((11, k)).astype(F)
            qa, qb = fp8lab.quantize(a, (1, 0), fmt, "deepseek"), fp8lab.quantize(b, (1, 0), fmt, "deepseek")
            for acc in ("tensorcore", "promoted"):
                bound, exact = _bound_holds(qa, qb, accumulate=acc, promote_every=32, instruction=preset, out="fp32")
                assert (bound <= 1e-5 * np.abs(exact) + 1e-30)[exact != 0].mean() > 0.5, (preset, k, acc)


def test_gemm_and_bound_with_mixed_operand_kinds():
    # kind::mxf8f6f4 with E4M3 activations and E2M1 weights (MX, UE8M0 per 32): B is checked against
    # B's format, the bound is certified against the exact sum.
    rng = np.random.default_rng(6)
    a = (rng.standard_normal((9, 200)) * np.exp2(rng.integers(-20, 20, (9, 1)))).astype(F)
    b = rng.standard_normal((7, 200)).astype(F)
    qa, qb = fp8lab.quantize(a, (1, 32), "e4m3", "mx"), fp8lab.quantize(b, (1, 32), "e2m1", "mx")
    preset = "blackwell_tcgen05_mxf8f6f4_f32_e4m3_e2m1"
    bound, exact = _bound_holds(qa, qb, accumulate="tensorcore", instruction=preset, out="fp32")
    assert (bound <= 1e-5 * np.abs(exact) + 1e-30)[exact != 0].mean() > 0.5
    with pytest.raises(ValueError, match="b: element .* is not an e2m1 value"):
        fp8lab.gemm(qa, qa, accumulate="tensorcore", instruction=preset)

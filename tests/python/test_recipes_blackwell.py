"""Blackwell GEMM recipes (DeepGEMM SM100 FP8, MXFP8) end to end against an independent oracle:
each operand quantised by the numpy transcription of its source (test_quant_rules: DeepGEMM
per_token/per_block_cast_to_fp8 with ceil_to_ue8m0, TransformerEngine quantize_mxfp8.cuh, torchao
RCEIL), the product chained through MMA-Sim's TCGen05MMABlockScale (one tensor-memory accumulator
over the whole K, C = previous D), BF16 out by ml_dtypes — zero tolerance. Plus certified bounds
and the refusals."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fp8lab
from test_quant_rules import ref_deepgemm, ref_te_mxfp8, ref_torchao_mx

F = np.float32

ROWS = {  # recipe -> (A tile, B tile, numpy quantiser: (x, tile) -> (bits, scales as float32 or UE8M0 bytes))
    "deepgemm_sm100_fp8": ((1, 128), (128, 128), lambda x, t: ref_deepgemm(x, t, "e4m3", ue8m0=True)),
    "mxfp8_te": ((1, 32), (1, 32), lambda x, t: ref_te_mxfp8(x, t, "e4m3")),
    "mxfp8_torchao_rceil": ((1, 32), (1, 32), lambda x, t: ref_torchao_mx(x, t, "e4m3", "rceil")),
}


def test_rows_are_what_the_sources_say():
    r = fp8lab.recipe("deepgemm_sm100_fp8")
    assert (r["a"]["tile"], r["b"]["tile"], r["a"]["rule"], r["b"]["rule"]) == ([1, 128], [128, 128], "deepgemm_ue8m0",
                                                                                "deepgemm_ue8m0")
    assert r["gemm"]["accumulate"] == "tensorcore" and r["gemm"]["out"] == "bf16"
    assert r["gemm"]["instruction"] == "blackwell_tcgen05_mxf8f6f4_f32_e4m3"
    for name, rule in (("mxfp8_te", "te_mxfp8"), ("mxfp8_torchao_rceil", "mx_rceil")):
        r = fp8lab.recipe(name)
        assert r["a"]["tile"] == r["b"]["tile"] == [1, 32] and r["a"]["rule"] == r["b"]["rule"] == rule


def _exponents(scales, tile, rows, k):
    """Per row and per 32-element K chunk, the unbiased exponent of the tile scale covering it."""
    s = np.asarray(scales)
    v = np.exp2(s.astype(np.float64) - 127) if s.dtype == np.uint8 else s.astype(np.float64)
    e = np.log2(v)
    assert np.array_equal(e, np.round(e))
    out = np.empty((rows, k // 32), np.int32)
    for r in range(rows):
        for c in range(k // 32):
            out[r, c] = int(e[r // tile[0], (c * 32) // tile[1]])
    return out


@pytest.mark.parametrize("recipe", sorted(ROWS))
def test_gemm_matches_mmasim_chain_bit_for_bit(recipe):
    pytest.importorskip("torch", reason="mmasim needs torch")
    sim_mod = pytest.importorskip("mmasim.nv_ptx.sim", reason="mmasim is not installed")
    import torch

    sim = sim_mod.TCGen05MMABlockScale("Blackwell", "m128n8k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0")
    rng = np.random.default_rng(11)
    m, n, k = 128, 8, 256
    a = (rng.standard_normal((m, k)) * np.exp2(rng.integers(-8, 8, (m, 1)))).astype(F)
    a[3, 17] = 3e4  # an outlier
    b = (rng.standard_normal((n, k)) * 0.05).astype(F)
    ta, tb, ref = ROWS[recipe]
    qa = fp8lab.quantize(a, recipe=recipe, operand="a")
    qb = fp8lab.quantize(b, recipe=recipe, operand="b")
    bits_a, sa = ref(a, ta)
    bits_b, sb = ref(b, tb)
    assert np.array_equal(qa.bits, bits_a) and np.array_equal(qb.bits, bits_b)
    ea, eb = _exponents(sa, ta, m, k), _exponents(sb, tb, n, k)
    A = torch.from_numpy(bits_a.view(ml_dtypes.float8_e4m3fn).astype(F)).to(torch.float8_e4m3fn)
    B = torch.from_numpy(bits_b.view(ml_dtypes.float8_e4m3fn).astype(F)).to(torch.float8_e4m3fn)
    D = torch.zeros(m, n, dtype=torch.float32)
    for c in range(k // 32):  # accumulate = (c > 0): one accumulator over the whole K
        alpha = torch.from_numpy(np.ldexp(1.0, ea[:, c:c + 1]).astype(F)).to(torch.float8_e8m0fnu)
        beta = torch.from_numpy(np.ldexp(1.0, eb[:, c:c + 1].T).astype(F)).to(torch.float8_e8m0fnu)
        D = sim(A[:, c * 32:(c + 1) * 32], B[:, c * 32:(c + 1) * 32].T.contiguous(), D, alpha, beta).float()
    want = D.numpy().astype(ml_dtypes.bfloat16).astype(np.float64)
    got = fp8lab.gemm(qa, qb, recipe=recipe)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("recipe", sorted(ROWS))
def test_bound_is_certified(recipe):
    rng = np.random.default_rng(12)
    for m, n, k in ((16, 24, 512), (5, 7, 100)):
        a = (rng.standard_normal((m, k)) * np.exp2(rng.integers(-20, 20, (m, 1)))).astype(F)
        b = rng.standard_normal((n, k)).astype(F)
        qa = fp8lab.quantize(a, recipe=recipe, operand="a")
        qb = fp8lab.quantize(b, recipe=recipe, operand="b")
        d = fp8lab.gemm(qa, qb, recipe=recipe)
        bound = fp8lab.gemm_bound(qa, qb, recipe=recipe)
        exact = fp8lab.gemm_exact(qa, qb)
        assert (np.abs(d - exact) <= bound).all()
        assert (bound <= 0.02 * np.abs(exact) + 1e-30).mean() > 0.5  # not vacuous


def test_sm100_accumulates_in_tensor_memory_not_by_promotion():
    # The same UE8M0 operands through DeepGEMM's SM90 promotion and SM100's one chain differ.
    rng = np.random.default_rng(13)
    a = rng.standard_normal((32, 1024)).astype(F)
    b = rng.standard_normal((32, 1024)).astype(F)
    qa = fp8lab.quantize(a, recipe="deepgemm_sm100_fp8", operand="a")
    qb = fp8lab.quantize(b, recipe="deepgemm_sm100_fp8", operand="b")
    sm100 = fp8lab.gemm(qa, qb, recipe="deepgemm_sm100_fp8")
    sm90 = fp8lab.gemm(qa, qb, accumulate="promoted", promote_every=128, combine="deepgemm", instruction="hopper_fp8",
                       out="bf16")
    assert not np.array_equal(sm100, sm90)


def test_block_scaled_refusals():
    x = np.random.default_rng(14).standard_normal((8, 64)).astype(F)
    q = fp8lab.quantize(x, (1, 32), "e4m3", "te_mxfp8")
    with pytest.raises(ValueError, match="accumulate: instruction blackwell_tcgen05_mxf8f6f4_f32_e4m3 applies block scales"):
        fp8lab.gemm(q, q, accumulate="promoted", promote_every=32, instruction="blackwell_tcgen05_mxf8f6f4_f32_e4m3")
    q32 = fp8lab.quantize(x, (1, 32), "e4m3", "deepseek")  # FP32 scales: not UE8M0
    with pytest.raises(ValueError, match="a: scale 0 is .*UE8M0 scales"):
        fp8lab.gemm(q32, q, accumulate="tensorcore", instruction="blackwell_tcgen05_mxf8f6f4_f32_e4m3")
    q16 = fp8lab.quantize(x, (1, 16), "e4m3", "deepseek_ue8m0")
    with pytest.raises(ValueError, match="b: its scales .* vary within the instruction's scale block of 32"):
        fp8lab.gemm(q, q16, accumulate="tensorcore", instruction="blackwell_tcgen05_mxf8f6f4_f32_e4m3")

"""The report section "Blackwell and microscaling": its numbers against independent computations
(numpy quantisers from test_quant_rules / test_quant_nvfp4, float64 products), run alone in quick mode."""
import numpy as np
import pytest

from fp8lab.report import loss_cost, sec_microscaling
from fp8lab.report.context import Context
from fp8lab.report.inputs import operands
from fp8lab.report.metrics import relative_errors
from test_quant_nvfp4 import FP4_VALUES, ref_nvfp4
from test_quant_rules import ref_torchao_mx

try:
    import fp8lab.torch as ft
except ImportError:  # no torch in this environment: the section must say the loss cost was not measured
    ft = None

F = np.float32


@pytest.fixture(scope="module")
def sec():
    return sec_microscaling.run(Context("quick", 3))


def test_section_has_every_row_and_measures_the_loss_cost(sec):
    d = sec.data
    for dist in sec_microscaling.DISTS:
        assert set(d["quantisation"][dist]) == {x[0] for x in sec_microscaling.MX_RULES} | {x[0] for x in sec_microscaling.NVFP4}
        assert set(d["gemm"][dist]) == {x[0] for x in sec_microscaling.GEMM_RECIPES}
    assert d["errors"] == {}
    loss = d["loss_cost"]
    if ft is None:
        assert not loss["available"] and "not measured" in sec.conclusion
        return
    known = set(ft.recipes())
    want = {n for _, n in loss_cost.RECIPES if n in known}
    assert {"deepgemm_sm100_fp8", "mxfp8_te", "mxfp8_torchao_rceil"} <= want
    assert set(loss["recipes"]) == want | {"deepseek_fp8"} and set(loss["not_measured"]) == {n for _, n in loss_cost.RECIPES} - want
    bf = loss["bf16_final_val"]
    assert len(bf) == 3 and loss["noise_floor_bf16"] == pytest.approx((max(bf) - min(bf)) / np.mean(bf), rel=1e-12)
    ds = loss["recipes"]["deepseek_fp8"]["final_val"]
    for name, r in loss["recipes"].items():
        assert np.isfinite(r["final_val"]) and not r["diverged"], name
        assert r["rel_error_vs_bf16"] == pytest.approx((r["final_val"] - bf[0]) / bf[0], rel=1e-12)  # paired: seed 3
        if name != "deepseek_fp8":
            assert r["rel_error_vs_deepseek_fp8"] == pytest.approx((r["final_val"] - ds) / ds, rel=1e-12)
    assert "Loss cost after 8 steps" in sec.conclusion and "not measured" not in sec.conclusion
    assert len(d["gemm_error_vs_k"]) == len(sec_microscaling.GEMM_RECIPES) + 1
    assert any(b["kind"] == "figure" for b in sec.blocks)


def test_mx_rceil_and_nvfp4_numbers_match_numpy_quantisers(sec):
    m, n, k = sec.data["M"], sec.data["N"], sec.data["K"]
    a, b = operands("llm_outliers", m, n, k, Context("quick", 3).rng("microscaling", "llm_outliers"))
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    # MXFP8 RCEIL (torchao): decode the reference bits and bytes, multiply in float64.
    def mx(x):
        bits, byte = ref_torchao_mx(x, (1, 32), "e4m3", "rceil")
        import ml_dtypes
        s = np.repeat(np.exp2(byte.astype(np.float64) - 127), 32, axis=1)[:, : x.shape[1]]
        return bits.view(ml_dtypes.float8_e4m3fn).astype(np.float64) * s
    want = relative_errors(mx(a) @ mx(b).T, ref)
    assert sec.data["quantisation"]["llm_outliers"]["torchao RCEIL"] == want
    # NVFP4 (1x16 activations, 16x16 weights), TE's reference quantiser.
    def nv(x, tile):
        codes, ds, s_dec = ref_nvfp4(x, tile)
        s = np.repeat(np.repeat(ds.astype(np.float64), tile[0], 0), 16, 1)[: x.shape[0], : x.shape[1]]
        return FP4_VALUES[codes].astype(np.float64) * s * float(s_dec)
    want = relative_errors(nv(a, (1, 16)) @ nv(b, (16, 16)).T, ref)
    assert sec.data["quantisation"]["llm_outliers"][sec_microscaling.NVFP4[0][0]] == want

"""The report's cost model: two of its outputs recomputed independently (MLA KV bytes per token;
FP8 vs BF16 weight bytes, from a per-matrix walk of the model), its totals against the published
DeepSeek-V3 figures, and its bookkeeping (every figure sourced, every formula re-evaluable)."""
import math

import pytest

from fp8lab.report import cost_model

# DeepSeek-V3 (deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json), written out again here.
CFG = dict(vocab=129280, dim=7168, inter=18432, moe_inter=2048, layers=61, dense_layers=3, heads=128,
           routed=256, shared=1, active=8, q_lora=1536, kv_lora=512, nope=128, rope=64, v=128)


@pytest.fixture(scope="module")
def cm():
    return cost_model.build()


def test_mla_kv_bytes_per_token_recomputed_from_the_cache_layouts(cm):
    c = CFG
    # BF16 latent cache: the normalised 512-wide latent and the 64-wide RoPE key, 2 bytes each.
    mla_bf16 = (c["kv_lora"] + c["rope"]) * 2
    # FlashMLA FP8 cache: 512 E4M3 bytes, one FP32 scale per 128 of them, the RoPE key in BF16.
    mla_fp8 = c["kv_lora"] + 4 * (c["kv_lora"] // 128) + 2 * c["rope"]
    # MHA with the same heads: a 192-wide key and a 128-wide value per head.
    mha_bf16 = c["heads"] * ((c["nope"] + c["rope"]) + c["v"]) * 2
    assert (cm["kv_mla_bf16"], cm["kv_mla_fp8"], cm["kv_mha_bf16"]) == (1152, 656, 81920)
    assert (cm["kv_mla_bf16"], cm["kv_mla_fp8"], cm["kv_mha_bf16"]) == (mla_bf16, mla_fp8, mha_bf16)
    assert cm["kv_mla_bf16_model"] == c["layers"] * mla_bf16 == 70272  # ISCA 2025 Table 1: 70.272 KB
    assert cm["kv_mla_fp8_model"] == c["layers"] * mla_fp8
    assert cm["mla_vs_mha"] == pytest.approx(mha_bf16 / mla_bf16, rel=1e-15)
    mla = pytest.importorskip("fp8lab.mla")
    # A third formulation: the MLA emulator's own cache layout (C++).
    kv = mla.kv_bytes_per_token()
    assert (kv["mla_bf16"], kv["mla_fp8"], kv["mha_bf16"]) == (mla_bf16, mla_fp8, mha_bf16)


def _matrices():
    """Every weight of the main model as (shape, quantised-in-the-FP8-checkpoint)."""
    c = CFG
    mats = [((c["vocab"], c["dim"]), False), ((c["vocab"], c["dim"]), False), ((c["dim"],), False)]
    for layer in range(c["layers"]):
        mats += [((c["q_lora"], c["dim"]), True), ((c["heads"] * (c["nope"] + c["rope"]), c["q_lora"]), True),
                 ((c["kv_lora"] + c["rope"], c["dim"]), True), ((c["heads"] * (c["nope"] + c["v"]), c["kv_lora"]), True),
                 ((c["dim"], c["heads"] * c["v"]), True),
                 ((c["dim"],), False), ((c["dim"],), False), ((c["q_lora"],), False), ((c["kv_lora"],), False)]
        if layer < c["dense_layers"]:
            mats += [((c["inter"], c["dim"]), True), ((c["inter"], c["dim"]), True), ((c["dim"], c["inter"]), True)]
        else:
            for _ in range(c["routed"] + c["shared"]):
                mats += [((c["moe_inter"], c["dim"]), True), ((c["moe_inter"], c["dim"]), True),
                         ((c["dim"], c["moe_inter"]), True)]
            mats += [((c["routed"], c["dim"]), False), ((c["routed"],), False)]
    return mats


def test_fp8_and_bf16_weight_bytes_from_a_walk_over_every_matrix(cm):
    params = fp8 = 0
    for shape, quantised in _matrices():
        n = math.prod(shape)
        params += n
        if quantised:  # E4M3 values + one FP32 scale per (ragged) 128x128 block
            fp8 += n + 4 * math.ceil(shape[0] / 128) * math.ceil(shape[1] / 128)
        else:
            fp8 += 2 * n
    assert cm["total_params"] == params
    assert cm["weights_bytes_bf16"] == 2 * params
    assert cm["weights_bytes_fp8"] == fp8
    assert 0.5 < cm["weights_fp8_over_bf16"] < 0.502


def test_totals_match_the_published_figures(cm):
    # Technical report: 671B total, 37B activated; ISCA 2025 Table 2: 250 GFLOPs per training token.
    assert cm["total_params"] / 1e9 == pytest.approx(671, rel=0.005)
    assert cm["active_params"] / 1e9 == pytest.approx(37, rel=0.03)
    assert cm["train_flops_per_token"] / 1e9 == pytest.approx(250, rel=0.01)
    for g in cost_model.GPUS:
        assert cm[f"{g}_fp8_over_bf16_peak"] == 2.0
    # One FFMA per output per 128 K at 67 TFLOP/s against 256 FLOPs at 1979: 1979 / (33.5 * 256).
    assert cm["H800_promotion_time_share"] == pytest.approx(1979 / (33.5 * 256), rel=1e-12)


def test_every_figure_has_a_source_or_a_formula_that_reevaluates(cm):
    figs = cm.figures
    order = list(figs)
    for i, (name, f) in enumerate(figs.items()):
        assert f["source"] in cost_model.SOURCES, name
        assert f["unit"], name
        if f["formula"] is None:
            assert f["source"] != "derived" and f["inputs"] == []
            continue
        assert all(order.index(n) < i for n in f["inputs"]), name  # only earlier figures
        env = {n: figs[n]["value"] for n in f["inputs"]}
        got = eval(f["formula"], {"__builtins__": {}, "ceil": math.ceil, "max": max, "min": min}, env)
        assert got == f["value"], name
    js = cm.to_json()
    assert set(js["sources"]) == {f["source"] for f in figs.values()}


def test_bad_figures_are_refused_with_their_name():
    m = cost_model.CostModel()
    m.given("a", 1, "x", "v3_report")
    with pytest.raises(ValueError, match="'a' defined twice"):
        m.given("a", 2, "x", "v3_report")
    with pytest.raises(ValueError, match=r"'b' names undefined figures \['zz'\]"):
        m.derive("b", "a + zz", "x")
    with pytest.raises(ValueError, match="unknown source 'nowhere'"):
        m.given("c", 1, "x", "nowhere")
    with pytest.raises(SyntaxError):
        m.derive("d", "a +", "x")

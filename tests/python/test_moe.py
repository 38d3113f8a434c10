"""fp8lab.moe from Python: route against an independent numpy formulation (judged by the tie-aware
verdict), the NaN / tie definitions, balance, dispatch/combine, and argument errors."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from fp8lab import moe

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _numpy_route():
    spec = importlib.util.spec_from_file_location("bench_moe", ROOT / "bench" / "bench_moe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.numpy_route


def _logits(t=512, e=256, seed=0, std=1.0):
    return (np.random.default_rng(seed).standard_normal((t, e)) * std).astype(np.float32)


def test_recipes_and_spec():
    assert {"deepseek_v3", "deepseek_v3_hf", "deepseek_v2", "sglang_output_scale"} <= set(moe.recipes())
    s = moe.spec("deepseek_v3")
    assert (s["experts"], s["topk"], s["groups"], s["topk_groups"], s["routed_scale"]) == (256, 8, 8, 4, 2.5)
    assert s["gate_format"] == "bf16" and s["tie_policy"] == "lowest_index_first"
    j = json.loads(moe.spec_json({"base": "deepseek_v3_hf", "nodes": 8, "max_nodes": 4}))
    assert j["nodes"] == 8 and j["gate_format"] == "fp32" and j["renorm_epsilon"] == 1e-20
    assert moe.spec("deepseek_v2")["score"] == "softmax"


def _bf16_rne(w):
    """float32 -> bfloat16 -> float32, nearest even, by the bit trick (finite values)."""
    u = w.view(np.uint32).astype(np.uint64)
    return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def test_weights_format_set_through_json_rounds_the_returned_weights_once():
    """RouterSpec.weights_format = bf16 (vLLM csrc/moe/grouped_topk_kernels.cu: weights computed in
    float, stored once in the scores' dtype): the same experts, and weights that are the FP32
    gate's weights rounded once to BF16 — bits the FP32 spec does not give."""
    x = _logits(1024, seed=7)
    bias = (np.random.default_rng(8).standard_normal(256) * 0.02).astype(np.float32)
    assert moe.spec("deepseek_v3_hf")["weights_format"] == "fp32"
    spec = json.loads('{"base": "deepseek_v3_hf", "weights_format": "bf16"}')
    assert json.loads(moe.spec_json(spec))["weights_format"] == "bf16"
    ids32, w32 = moe.route(x, bias, "deepseek_v3_hf")
    ids16, w16 = moe.route(x, bias, spec)
    assert np.array_equal(ids16, ids32)
    assert np.array_equal(w16.view(np.uint32), _bf16_rne(w32).view(np.uint32))
    assert (w16 != w32).mean() > 0.9  # the bits change
    assert moe.compare(ids16, w16, ids16, w16, x, spec, bias).ok
    # Under the DeepSeek reference's BF16 gate every step is already BF16: nothing changes.
    a = moe.route(x, bias, "deepseek_v3")
    b = moe.route(x, bias, {"base": "deepseek_v3", "weights_format": "bf16"})
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="RouterSpec.weights_format: unknown value 'fp16'"):
        moe.spec({"base": "deepseek_v3", "weights_format": "fp16"})


def test_route_shapes_and_invariants():
    x = _logits()
    bias = (np.random.default_rng(1).standard_normal(256) * 0.05).astype(np.float32)
    for name in ("deepseek_v3", "deepseek_v3_hf", "sglang_output_scale"):
        ids, w = moe.route(x, bias, name)
        assert ids.dtype == np.int32 and ids.shape == (512, 8) and w.dtype == np.float32
        assert all(len(set(r)) == 8 for r in ids.tolist())
        assert max(len(set(r)) for r in (ids // 32).tolist()) <= 4  # at most topk_groups groups
        target = 1.0 if name == "sglang_output_scale" else 2.5
        assert np.allclose(w.sum(1), target, rtol=8 * 2.0**-8)


def test_numpy_formulation_is_judged_within_bound():
    """numpy's float32 exp is not correctly rounded: its routing may swap near-ties with fp8lab's,
    and the verdict must accept exactly those (naming them), never call them violations."""
    numpy_route = _numpy_route()
    x = _logits(2048, seed=3)
    bias = (np.random.default_rng(4).standard_normal(256) * 0.02).astype(np.float32)
    ids_np, w_np = numpy_route(x, bias)
    ids, w = moe.route(x, bias, "deepseek_v3_hf")
    v = moe.compare(ids_np, w_np, ids, w, x, "deepseek_v3_hf", bias)
    assert v.ok, v["summary"]
    assert v["tokens"] == 2048
    assert v["identical_tokens"] + v["weight_only_tokens"] + v["reordered_tokens"] + v["tie_swapped_tokens"] == 2048
    # Same expert sets on the vast majority of tokens.
    same = np.all(np.sort(ids, 1) == np.sort(ids_np, 1), axis=1).mean()
    assert same > 0.99
    # A deliberately wrong kernel (group masked with 0 instead of -inf) is caught.
    bad_ids = ids.copy()
    bad_ids[5, 7] = [e for e in range(256) if e // 32 not in set((ids[5] // 32).tolist())][0]
    bad = moe.compare(bad_ids, w, ids, w, x, "deepseek_v3_hf", bias)
    assert not bad.ok and bad["violations"][0]["token"] == 5


def test_compare_defaults_to_own_reference_and_pinned():
    x = _logits(64)
    ids, w = moe.route(x, None, "deepseek_v3")
    v = moe.compare(ids, w, None, None, x, "deepseek_v3")
    assert v["kind"] == "bit-identical" and v.ok
    w2 = w.copy()
    w2[0, 0] = np.nextafter(w2[0, 0], np.float32(10))
    assert moe.compare(ids, w2, None, None, x, "deepseek_v3")["kind"] == "within-bound"
    assert moe.compare(ids, w2, None, None, x, "deepseek_v3", pinned=True)["kind"] == "violation"
    assert json.loads(v.to_json())["kind"] == "bit-identical"


def test_permuting_tokens_permutes_outputs():
    x = _logits(300, seed=5)
    perm = np.random.default_rng(6).permutation(300)
    ids, w = moe.route(x, None, "deepseek_v3")
    ids_p, w_p = moe.route(x[perm], None, "deepseek_v3")
    assert np.array_equal(ids[perm], ids_p)
    assert np.array_equal(w[perm].view(np.uint32), w_p.view(np.uint32))


def test_ties_and_nan():
    s = np.full((1, 256), 0.25, np.float32)
    ids, w = moe.route(s, None, "deepseek_v3", from_scores=True)
    assert ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7]]
    assert np.all(w == 0.3125)
    x = np.full((1, 256), np.nan, np.float32)
    x[0, 200] = x[0, 201] = 1.0  # group 6: the only group whose top-2 sum is a number
    ids, w = moe.route(x, None, "deepseek_v3_hf")
    # NaN ranks lowest: group 6 first, then groups 0..2 by index; experts 200, 201, then NaN
    # experts by index; the NaN scores poison the weights.
    assert ids.tolist() == [[200, 201, 0, 1, 2, 3, 4, 5]]
    assert np.all(np.isnan(w))


def test_bf16_input_is_widened_exactly():
    ml = pytest.importorskip("ml_dtypes")
    x = _logits(16).astype(ml.bfloat16)
    a = moe.route(x, None, "deepseek_v3")
    b = moe.route(x.astype(np.float32), None, "deepseek_v3")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_softmax_recipe():
    x = _logits(64, e=160, seed=8)
    sc = moe.gate_scores(x, "deepseek_v2")
    assert np.allclose(sc.sum(1), 1.0, atol=1e-5)
    ids, w = moe.route(x, None, "deepseek_v2")
    assert ids.shape == (64, 6)
    # No renormalisation: weights are 16 x the selected softmax probabilities (fp32 product).
    assert np.array_equal(w, np.take_along_axis(sc, ids, 1) * np.float32(16))


def test_balance_functions():
    ids = np.array([[0, 2], [0, 1], [3, 0], [2, 3]], np.int32)
    assert moe.expert_loads(ids, 4).tolist() == [3, 1, 2, 2]
    nb = moe.update_bias(np.zeros(4, np.float32), ids, 0.25)
    assert nb.tolist() == [-0.25, 0.25, 0.0, 0.0]
    uniform = np.full((2, 4), 0.3, np.float32)
    assert moe.balance_loss(uniform, np.array([[0, 1], [2, 3]], np.int32), alpha=1e-4) == pytest.approx(1e-4, rel=1e-12)
    st = moe.node_stats(ids, 4, 2)
    assert st["nodes_per_token"].tolist() == [2, 1, 2, 1] and st["max"] == 2


def test_dispatch_combine_identity_experts():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((100, 16)).astype(np.float32)
    logits = _logits(100, seed=10)
    ids, w = moe.route(logits, None, "deepseek_v3")
    for kind in ("contiguous", "masked"):
        lay = moe.dispatch(ids, alignment=128, experts=256)
        rows = moe.gather(x, lay, kind)
        if kind == "contiguous":
            assert rows.shape[0] % 128 == 0
            pad = lay["m_indices"] == -1
            assert np.all(lay["row_token"][pad] == -1)
            assert np.array_equal(lay["psum_layout"], lay["offsets"][:-1] + lay["counts"])
            assert np.all(rows[pad] == 0)
            rows[pad] = np.nan  # padding must never be combined
        else:
            assert rows.shape == (256, lay["capacity"], 16)
            rows[lay["masked_token"] == -1] = np.nan
        out = moe.combine(rows, lay, w, kind)
        expect = np.zeros_like(x)
        for j in range(8):
            expect = expect + w[:, j:j + 1] * x
        assert np.array_equal(out, expect)


def test_argument_errors():
    x = _logits(4)
    with pytest.raises(TypeError, match="logits"):
        moe.route(x.astype(np.float64))
    with pytest.raises(ValueError, match="logits"):
        moe.route(x[:, :100])
    with pytest.raises(ValueError, match="bias"):
        moe.route(x, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="unknown router recipe"):
        moe.route(x, None, "deepseek_v9")
    with pytest.raises(ValueError, match="unknown field"):
        moe.route(x, None, {"base": "deepseek_v3", "topkk": 3})
    with pytest.raises(ValueError, match="topk_groups"):
        moe.spec({"base": "deepseek_v3", "topk_groups": 0})
    with pytest.raises(TypeError, match="spec"):
        moe.route(x, None, 3)
    with pytest.raises(ValueError, match="gamma"):
        moe.update_bias(np.zeros(4, np.float32), np.zeros((1, 2), np.int32), -1.0)
    with pytest.raises(ValueError, match="ids"):
        moe.dispatch(np.array([[1, 1]], np.int32), alignment=4, experts=4)
    with pytest.raises(ValueError, match="ids"):
        moe.expert_loads(np.array([[0, 9]], np.int32), 4)
    with pytest.raises(ValueError, match="alignment"):
        moe.dispatch(np.array([[0, 1]], np.int32), alignment=0, experts=4)


def test_cli_moe(capsys):
    from fp8lab import cli

    assert cli.main(["moe", "recipes"]) == 0
    assert "deepseek_v3_hf" in capsys.readouterr().out
    assert cli.main(["moe", "spec", "deepseek_v2"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == "softmax"
    assert cli.main(["moe", "figure", "--tokens", "512", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tokens"] == 512 and 0 < r["differing_tokens"] < 512
    assert cli.main(["moe", "figure", "--tokens", "0"]) == 2
    assert "--tokens" in capsys.readouterr().err


def test_spec_json_round_trip_and_empty_batch():
    for name in moe.recipes():
        assert moe.spec(json.loads(moe.spec_json(name))) == moe.spec(name)
    custom = {"base": "deepseek_v3_hf", "nodes": 8, "max_nodes": 4, "groups": 1, "topk_groups": 1}
    assert moe.spec(json.loads(moe.spec_json(custom))) == moe.spec(custom)
    ids, w = moe.route(np.zeros((0, 256), np.float32), None, "deepseek_v3")
    assert ids.shape == (0, 8) and w.shape == (0, 8)


def test_bf16_kernel_in_numpy_is_judged_within_bound():
    """A torch-like BF16 gate with a BF16 bias written in numpy + ml_dtypes (float32 math with numpy's
    exp, rounded to bf16 after each step, stable sorts) against its recipe, deepseek_v3_2025_02: any difference must be a
    near-tie swap or a weight within the bf16 bound — never a violation."""
    ml = pytest.importorskip("ml_dtypes")

    def r(a):
        return np.asarray(a, np.float32).astype(ml.bfloat16).astype(np.float32)

    x = _logits(2048, seed=13)
    bias = r((np.random.default_rng(14).standard_normal(256) * 0.02).astype(np.float32))
    t = x.shape[0]
    s = r(np.float32(1) / (np.float32(1) + np.exp(-r(x))))
    sel = r(s + bias)
    top2 = np.sort(sel.reshape(t, 8, 32), axis=-1)[..., -2:]
    gs = r(top2[..., 0] + top2[..., 1])
    gidx = np.argsort(-gs, axis=1, kind="stable")[:, :4]
    keep = np.zeros((t, 8), bool)
    np.put_along_axis(keep, gidx, True, axis=1)
    masked = np.where(np.repeat(keep, 32, axis=1), sel, np.float32(-np.inf))
    ids = np.argsort(-masked, axis=1, kind="stable")[:, :8].astype(np.int32)
    w = np.take_along_axis(s, ids, 1)
    w = r(r(w / r(w.sum(1, keepdims=True, dtype=np.float32))) * np.float32(2.5))
    v = moe.compare(ids, w, None, None, x, "deepseek_v3_2025_02", bias)
    assert v.ok, v["summary"]
    assert v["identical_tokens"] > 0.9 * t
    # The same kernel with the 0-mask bug (unselected groups filled with 0, not -inf) and biases
    # that make every biased score negative: masked experts win, and every such token is a violation.
    bneg = r(bias - 1.0)
    sel = r(s + bneg)
    top2 = np.sort(sel.reshape(t, 8, 32), axis=-1)[..., -2:]
    gidx = np.argsort(-r(top2[..., 0] + top2[..., 1]), axis=1, kind="stable")[:, :4]
    keep = np.zeros((t, 8), bool)
    np.put_along_axis(keep, gidx, True, axis=1)
    ids0 = np.argsort(-np.where(np.repeat(keep, 32, axis=1), sel, np.float32(0)), axis=1, kind="stable")[:, :8]
    ids0 = ids0.astype(np.int32)
    w0 = np.take_along_axis(s, ids0, 1)
    w0 = r(r(w0 / r(w0.sum(1, keepdims=True, dtype=np.float32))) * np.float32(2.5))
    v0 = moe.compare(ids0, w0, None, None, x, "deepseek_v3_2025_02", bneg)
    assert not v0.ok and v0["violation_tokens"] == t


@pytest.mark.parametrize("recipe", ["deepseek_v3", "deepseek_v3_2025_02", "deepseek_v3_hf", "deepseek_v2",
                                    "sglang_output_scale"])
def test_route_writes_its_result_arrays_for_every_token_count(recipe):
    """The binding routes into fresh result arrays: every recipe, weights format and token count
    (0, 1, odd, across the router's blocks of 16 and chunks of 256) gives the rows of routing each
    token alone, from logits with NaN, +-inf, -0 and huge values, and from scores."""
    e = moe.spec(recipe)["experts"]
    for fmt in ("fp32", "bf16"):
        spec = {"base": recipe, "weights_format": fmt}
        x = _logits(t=300, e=e, seed=5, std=3.0)
        x[1, :] = np.nan
        x[2, ::3] = np.inf
        x[3, ::5] = -np.inf
        x[4, :] = -0.0
        x[5, ::7] = 3e38
        bias = (np.random.default_rng(6).standard_normal(e) * 0.05).astype(np.float32)
        for t in (0, 1, 17, 257, 300):
            ids, w = moe.route(x[:t], bias, spec)
            assert ids.shape == (t, moe.spec(spec)["topk"]) and ids.dtype == np.int32 and w.dtype == np.float32
            for i in {0, t // 2, t - 1} if t else ():
                one_ids, one_w = moe.route(x[i:i + 1], bias, spec)
                assert np.array_equal(ids[i], one_ids[0])
                assert np.array_equal(w[i].view(np.uint32), one_w[0].view(np.uint32))
        s = moe.gate_scores(x, recipe)
        ids, w = moe.route(x, bias, spec)
        ids_s, w_s = moe.route(s, bias, spec, from_scores=True)
        assert np.array_equal(ids, ids_s) and np.array_equal(w.view(np.uint32), w_s.view(np.uint32))
        # An all-NaN token keeps today's answer: experts 0..topk-1, NaN weights.
        assert list(ids[1]) == list(range(ids.shape[1])) and np.isnan(w[1]).all()

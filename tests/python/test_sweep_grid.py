"""fp8lab.sweep grids: canonical form and hash, task enumeration, seeds, kinds and bad input.
Everything here runs in this process (executor="serial")."""
import json
import math

import numpy as np
import pytest

import fp8lab
from fp8lab.sweep import Grid, kinds, parse_grid

import sweep_tasks

GEMM = {"kind": "gemm_error", "axes": {"K": [256, 512], "nc": [32, 128]}, "params": {"M": 4, "N": 4}}


def test_defaults_filled_and_hash_ignores_key_order():
    g = parse_grid(GEMM)
    assert g.axes["rule"] == ("deepseek",) and g.axes["instruction"] == ("hopper_fp8",)
    assert g.params == {"M": 4, "N": 4, "out": "fp32"}
    assert (g.samples, g.shard, g.seed) == (1, 1, 0)
    swapped = {"params": {"N": 4, "M": 4}, "axes": {"nc": [32, 128], "K": [256, 512]}, "kind": "gemm_error"}
    assert parse_grid(swapped).hash == g.hash
    # the stored canonical form parses back to the same grid
    assert parse_grid(g.to_json()).hash == g.hash
    # any change in the grid changes the hash
    assert parse_grid({**GEMM, "seed": 1}).hash != g.hash
    assert parse_grid({**GEMM, "axes": {"K": [512, 256], "nc": [32, 128]}}).hash != g.hash


def test_tasks_cover_every_point_and_sample_once():
    g = parse_grid({"fn": "sweep_tasks:draws", "axes": {"a": [1, 2, 3], "b": ["x", "y"]}, "samples": 5, "shard": 2})
    tasks = list(g.tasks())
    assert len(g) == len(tasks) == 3 * 2 * 3
    assert [t.index for t in tasks] == list(range(len(tasks)))
    assert [(t.lo, t.hi) for t in tasks[:3]] == [(0, 2), (2, 4), (4, 5)]
    points = [(t.point["a"], t.point["b"]) for t in tasks[::3]]
    assert points == [(a, b) for a in (1, 2, 3) for b in ("x", "y")]  # last axis fastest


def test_samples_do_not_depend_on_shard_size_or_non_seed_axes():
    base = {"fn": "sweep_tasks:draws", "axes": {"a": [1, 2], "b": [10, 20]}, "samples": 6, "seed": 7,
            "seed_axes": ["a"]}
    r1 = fp8lab.sweep({**base, "shard": 1}, fn=sweep_tasks.draws, executor="serial", progress=False)
    r4 = fp8lab.sweep({**base, "shard": 4}, fn=sweep_tasks.draws, executor="serial", progress=False)
    key = lambda rows: {(r["a"], r["b"], r["sample"]): r["x"] for r in rows}  # noqa: E731
    k1, k4 = key(r1.rows()), key(r4.rows())
    assert len(k1) == 2 * 2 * 6 and k1 == k4
    # b is not a seed axis: both values of b see the same numbers; a is: different numbers
    assert k1[(1, 10, 3)] == k1[(1, 20, 3)]
    assert k1[(1, 10, 3)] != k1[(2, 10, 3)]
    # sample j's stream is SeedSequence(task seed, spawn_key=(j,)), as documented
    t = next(parse_grid({**base, "shard": 1}).tasks())
    assert k1[(1, 10, 0)] == np.random.default_rng(np.random.SeedSequence(t.seed, spawn_key=(0,))).standard_normal(3).tolist()
    with pytest.raises(ValueError, match="outside this task's range"):
        t.rng(1)


def test_gemm_error_kind_matches_a_direct_computation():
    res = fp8lab.sweep({**GEMM, "samples": 2}, executor="serial", progress=False)
    assert res.counts()["ok"] == 8 and not res.errors
    rec = res.by_index[1]  # K=256, nc=32, sample 1
    assert rec["point"]["K"] == 256 and rec["point"]["nc"] == 32 and (rec["lo"], rec["hi"]) == (1, 2)
    from fp8lab.report.inputs import operands
    task = next(t for t in parse_grid({**GEMM, "samples": 2}).tasks() if t.index == 1)
    a, b = operands("gaussian", 4, 4, 256, task.rng(1))
    qa = fp8lab.quantize(a, tile=(1, 128), rule="deepseek")
    qb = fp8lab.quantize(b, tile=(128, 128), rule="deepseek")
    d = fp8lab.gemm(qa, qb, promote_every=32, out="fp32")
    ex = fp8lab.gemm_exact(qa, qb)
    assert rec["values"]["normwise"] == [float(np.linalg.norm(d - ex) / np.linalg.norm(ex))]
    ref = a.astype(np.float64) @ b.astype(np.float64).T
    assert rec["values"]["total_normwise"] == [float(np.linalg.norm(d - ref) / np.linalg.norm(ref))]
    assert rec["values"]["max_rel_error"] == [fp8lab.metrics(d, ex, out="fp32")["max_rel_error"]]
    # the same inputs for every nc (seed axes K, dist): quantisation dominates the total error, so the
    # two promotion intervals give close but not identical totals on the same matrices
    t32, t128 = res.table("total_normwise", ["K", "nc"]).get((256, 32)), res.table("total_normwise", ["K", "nc"])[(256, 128)]
    assert t32 != t128 and abs(t32 - t128) < 0.1 * t32


def test_routing_flips_kind_counts_set_differences():
    spec = {"kind": "routing_flips", "axes": {"gate": ["deepseek_v3", "deepseek_v3_hf"], "bias_std": [0.0, 0.05]},
            "params": {"tokens": 256}}
    res = fp8lab.sweep(spec, executor="serial", progress=False)
    t = res.table("flips", ["gate", "bias_std"])
    assert t[("deepseek_v3_hf", 0.0)] == 0 and t[("deepseek_v3_hf", 0.05)] == 0  # the reference against itself
    task = next(x for x in parse_grid(spec).tasks() if x.point == {"gate": "deepseek_v3", "bias_std": 0.05,
                                                                   "logit_std": 1.0})
    rng = task.rng(0)
    logits = rng.standard_normal((256, 256)).astype(np.float32)
    bias = (0.05 * rng.standard_normal(256)).astype(np.float32)
    ids, _ = fp8lab.moe.route(logits, bias=bias, spec="deepseek_v3")
    ref, _ = fp8lab.moe.route(logits, bias=bias, spec="deepseek_v3_hf")
    want = sum(set(map(int, x)) != set(map(int, y)) for x, y in zip(ids, ref))
    assert t[("deepseek_v3", 0.05)] == want


def test_a_task_that_raises_is_recorded_and_the_sweep_completes():
    res = fp8lab.sweep({"fn": "sweep_tasks:raises_on_b2", "axes": {"a": [1, 2], "b": [1, 2, 3]}},
                       fn=sweep_tasks.raises_on_b2, executor="serial", progress=False)
    c = res.counts()
    assert (c["ok"], c["error"], c["missing"]) == (4, 2, 0)
    assert {r["point"]["a"] for r in res.errors} == {1, 2}
    assert all(r["error"].startswith("ArithmeticError: refusing b=2") and "raises_on_b2" in r["traceback"]
               for r in res.errors)
    bad = fp8lab.sweep({"fn": "sweep_tasks:not_json", "axes": {"a": [1]}}, fn=sweep_tasks.not_json,
                       executor="serial", progress=False)
    assert "is not a JSON value" in bad.errors[0]["error"]


@pytest.mark.parametrize("spec, exc, words", [
    ({**GEMM, "axes": {"KK": [256]}}, ValueError, ["unknown axis 'KK'", "gemm_error", "nc"]),
    ({**GEMM, "axes": {"rule": ["deepsek"]}}, ValueError, ["rule", "unknown value 'deepsek'", "deepseek_ue8m0"]),
    ({**GEMM, "axes": {"instruction": ["hopper_fp9"]}}, ValueError, ["instruction", "hopper_fp9"]),
    ({**GEMM, "axes": {"dist": ["cauchy"]}}, ValueError, ["dist", "cauchy", "student_t3"]),
    ({**GEMM, "axes": {"K": [256, True]}}, TypeError, ["K", "expected an integer"]),
    ({**GEMM, "axes": {"K": [0]}}, ValueError, ["K", "outside [1, 65536]"]),
    ({**GEMM, "axes": {"nc": ["never"]}}, TypeError, ["nc", "'none'"]),
    ({**GEMM, "axes": {"K": [256, 256]}}, ValueError, ["K", "listed twice"]),
    ({**GEMM, "axes": {"K": []}}, ValueError, ["K", "empty"]),
    ({**GEMM, "axes": {"K": 256}}, TypeError, ["K", "expected a list"]),
    ({**GEMM, "params": {"M": 4, "L": 2}}, ValueError, ["unknown parameter 'L'"]),
    ({"kind": "routing_flips", "axes": {"bias_std": [float("nan")]}}, ValueError, ["bias_std", "nan"]),
    ({"kind": "gemm", "axes": {}}, ValueError, ["unknown kind 'gemm'", "gemm_error", "routing_flips"]),
    ({**GEMM, "samples": 0}, ValueError, ["samples", ">= 1"]),
    ({**GEMM, "sampels": 3}, ValueError, ["unknown key", "sampels"]),
    ({"axes": {"a": [1]}}, ValueError, ["needs a 'kind'"]),
    ({"fn": "sweep_tasks:draws", "axes": {"a": [1]}, "seed_axes": ["b"]}, ValueError, ["seed_axes", "'b'"]),
])
def test_bad_grids_are_refused_with_the_axis_and_value_named(spec, exc, words):
    with pytest.raises(exc) as info:
        fp8lab.sweep(spec, executor="serial", progress=False)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_fn_name_is_part_of_the_grid_and_must_import():
    g1 = parse_grid({"axes": {"a": [1]}}, fn=sweep_tasks.draws)
    g2 = parse_grid({"axes": {"a": [1]}}, fn=sweep_tasks.slow)
    assert g1.fn == "sweep_tasks:draws" and g1.hash != g2.hash
    with pytest.raises(ValueError, match="cannot import 'sweep_tasks:nope'"):
        fp8lab.sweep({"fn": "sweep_tasks:nope", "axes": {"a": [1]}}, executor="serial", progress=False)
    with pytest.raises(ValueError, match="the spec names 'sweep_tasks:slow'"):
        parse_grid({"fn": "sweep_tasks:slow", "axes": {"a": [1]}}, fn=sweep_tasks.draws)


def test_kinds_are_listed_with_their_axes():
    names = {k["name"]: k for k in kinds()}
    assert {"gemm_error", "routing_flips"} <= set(names)
    assert names["gemm_error"]["seed_axes"] == ["K", "dist"]
    assert math.isclose(names["routing_flips"]["axes"]["bias_std"]["default"], 0.0)
    assert json.dumps(names)  # JSON-ready (fp8lab sweep kinds --json)
    assert isinstance(parse_grid(GEMM), Grid)

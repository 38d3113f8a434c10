"""One verdict for `golden check` and `golden diff` (issue #14 item 1), metrics that do not hide
NaN (item 4), and reports that show the first offenders decoded (item 5)."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import fp8lab
from fp8lab import golden
from fp8lab import verification

ROOT = Path(__file__).resolve().parents[2]


def nudge(values: np.ndarray, fmt: str, ulps: int) -> np.ndarray:
    """``values`` moved ``ulps`` steps of format ``fmt`` (through its bit patterns)."""
    bits = fp8lab.encode(values, fmt)
    return fp8lab.decode((bits.astype(np.int64) + ulps).astype(bits.dtype), fmt)


def changed_trace(a: golden.Trace, rng: np.random.Generator, fmt: str, name: str):
    """A kernel that returns trace ``a``'s output ``name`` with a random change (none, a few elements
    some ULPs off, a big error, or a NaN), and the trace recorded from it."""
    o = golden.OPERATIONS[a.op]
    spec = o.normalize_spec(a.spec)
    want = golden.values_of(a.tensors[name].array, a.tensors[name].dtype, fmt).copy()
    flat = want.reshape(-1)
    how = rng.choice(["none", "ulps", "big", "nan"], p=[0.15, 0.55, 0.15, 0.15])  # small moves: where bounds matter
    for i in rng.choice(flat.size, size=min(flat.size, int(rng.integers(1, 4))), replace=False):
        if how == "ulps" and flat[i] != 0 and np.isfinite(flat[i]):
            flat[i] = nudge(flat[i:i + 1], fmt, int(rng.choice([-2, -1, 1, 2])))[0]
        elif how == "big" and np.isfinite(flat[i]):
            flat[i] = nudge(np.array([flat[i] or 1.0]), fmt, 40)[0]
        elif how == "nan":
            flat[i] = np.nan

    if a.op == "gemm":
        def fn(*args):
            return want.astype(np.float32)
    else:
        def fn(x, spec_):
            return fp8lab.encode(want, fmt)
    b = golden.record(a.op, spec, inputs=a.inputs(), fn=fn, producer=f"changed ({how})")
    return fn, b


SPECS = [("gemm", {}), ("gemm", {"out": "fp32", "accumulate": "fp32"}), ("gemm", {"pinned": False}),
         ("gemm", {"pinned": False, "out": "fp32"}), ("cast", {"to": "e4m3"}), ("cast", {"to": "bf16"})]


@pytest.mark.parametrize("seed", range(24))
def test_check_and_diff_always_agree(seed):
    """Property: for any change to a trace's outputs, `golden check` with a kernel returning the
    changed outputs and `golden diff` against the trace recorded from that kernel give one verdict."""
    rng = np.random.default_rng(seed)
    op, spec = SPECS[seed % len(SPECS)]
    a = golden.record(op, spec, seed=seed, kind=["random", "ragged", "extreme"][seed % 3])
    name = "d" if op == "gemm" else "y"
    o = golden.OPERATIONS[op]
    fmt = o.value_format(o.normalize_spec(a.spec), name, a.tensors[name].dtype)
    fn, b = changed_trace(a, rng, fmt, name)
    checked = golden.check(a, fn)
    diffed = golden.diff(a, b).verdict
    assert checked.kind == diffed.kind, (b.producer, checked.summary, diffed.summary)
    if b.producer == "changed (none)":
        assert checked.kind == "bit-identical"


def test_one_ulp_under_the_pinned_default_spec_is_a_violation_for_both(tmp_path):
    a = golden.record("gemm", None, seed=3, kind="random")
    assert a.extra["pinned"] == "true"  # stored beside to_json(GemmSpec), which has no "pinned"
    want = golden.values_of(a.tensors["d"].array, "BF16").copy()
    i = int(np.flatnonzero(want)[0])
    want.flat[i] = nudge(want.flat[i:i + 1], "bf16", 1)[0]

    def one_ulp(*args):
        return want.astype(np.float32)

    b = golden.record("gemm", None, seed=3, kind="random", fn=one_ulp, producer="one ulp")
    a.write(tmp_path / "a.safetensors")
    b.write(tmp_path / "b.safetensors")
    assert golden.check(a, one_ulp).kind == "violation"
    assert golden.diff(a, b).verdict.kind == "violation"
    r = subprocess.run([sys.executable, "-m", "fp8lab", "golden", "diff", tmp_path / "a.safetensors",
                        tmp_path / "b.safetensors"], capture_output=True, text=True)
    assert r.returncode == 1 and "the spec pins these bits" in r.stdout


# -- item 4 ---------------------------------------------------------------------------------------


def test_metrics_count_nan_and_inf_and_give_the_normwise_error():
    exact = np.array([[1.0, 2.0], [4.0, -8.0]])
    result = np.array([[1.0, np.nan], [4.5, np.inf]])
    m = fp8lab.metrics(result, exact, out="fp32")
    assert m["nan_results"] == 1 and m["inf_results"] == 1 and m["nonfinite_where_exact_finite"] == 2
    assert m["max_rel_error"] == np.inf and m["normwise_rel_error"] == np.inf and m["max_abs_error"] == np.inf
    finite = np.array([[1.0, 2.0], [4.5, -8.0]])
    m = fp8lab.metrics(finite, exact, out="fp32")
    assert m["nan_results"] == 0 and m["max_rel_error"] == 0.125
    assert m["normwise_rel_error"] == pytest.approx(np.linalg.norm(finite - exact) / np.linalg.norm(exact), rel=1e-15)


# -- item 5 ---------------------------------------------------------------------------------------


def test_pinned_violation_reports_relative_error_and_decoded_offenders(tmp_path):
    spec = {"accumulate": "fp32", "out": "fp32"}
    o = golden.OPERATIONS["gemm"]
    truth = golden.record("gemm", spec, seed=2, kind="random")
    want = golden.values_of(truth.tensors["d"].array, "F32")

    def off(*args):  # 72 % too large everywhere, like a mis-scaled kernel
        return (want * 1.72).astype(np.float32)

    v = golden.check(truth, off)
    assert v.kind == "violation"
    assert v.details["max_rel_error"] == pytest.approx(0.72, rel=1e-6)
    offenders = v.details["first_violations"]
    assert 1 <= len(offenders) <= 8 and offenders[0]["got"] == pytest.approx(offenders[0]["expected"] * 1.72, rel=1e-6)
    # The CLI's text, JSON and JUnit show the offenders as values with coordinates, and the
    # counterexample's FP8 inputs decoded (bits kept alongside).
    r = verification.CaseResult("c", v, inputs=truth.inputs(), op="gemm", spec=o.normalize_spec(spec))
    d = r.to_dict()
    assert d["offenders"][0]["coordinate"] == offenders[0]["coordinate"]
    a = d["counterexample"]["a"]
    assert a["dtype"] == "F8_E4M3" and a["bits"][0].startswith("0x")
    assert a["values"][0] == float(fp8lab.decode(truth.tensors["a"].array.ravel()[:1], "e4m3")[0])
    lines = verification.offender_lines(v)
    assert lines and f"got {offenders[0]['got']}" in lines[0] and str(offenders[0]["coordinate"]) in lines[0]
    xml = verification.junit_xml([r])
    failure = ET.fromstring(xml).find("testcase/failure")
    assert lines[0] in failure.text
    path = tmp_path / "t.safetensors"
    bad = golden.record("gemm", spec, inputs=truth.inputs(), fn=off, producer="off by 72%")
    bad.write(path)
    res = subprocess.run([sys.executable, "-m", "fp8lab", "golden", "check", "--json", path],
                         capture_output=True, text=True)
    out = json.loads(res.stdout)
    assert res.returncode == 1 and out["results"][0]["verdict"]["max_rel_error"] == pytest.approx(0.72 / 1.72, rel=1e-6)
    assert out["results"][0]["offenders"][0]["got"] != out["results"][0]["offenders"][0]["expected"]
    res = subprocess.run([sys.executable, "-m", "fp8lab", "golden", "check", path], capture_output=True, text=True)
    assert "at [0, 0]: got " in res.stdout

"""`fp8lab verify` on kernels that are not ours: a C plug-in built from tests/plugins (a correct
build and one with a planted off-by-one-ULP bug), Python callables, exit codes, JUnit and JSON."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import fp8lab
from fp8lab import golden
from fp8lab import verification as verify_mod
ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fp8lab", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    """The plug-in compiled with the system C compiler, as an outside user would."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the test plug-ins")
    out = tmp_path_factory.mktemp("plugins")
    libs = {}
    for name, flags in (("correct", []), ("planted_bug", ["-DPLANTED_BUG"])):
        lib = out / f"libref_{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-ffp-contract=off", *flags, "-I", str(ROOT / "golden"),
                        "-o", str(lib), str(ROOT / "tests" / "plugins" / "reference_kernels.c"), "-lm"], check=True)
        libs[name] = lib
    return libs


# -- the C ABI: cast ---------------------------------------------------------------------------


def test_correct_cast_plugin_passes(plugins):
    r = cli("verify", "--kernel", f"{plugins['correct']}:fp8lab_cast", "--op", "cast", "--cases", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cast_e4m3_nearest_even_saturate.safetensors" in r.stdout  # the matching trace was run
    assert "60 generated cases" in r.stdout


def test_planted_bug_cast_plugin_is_caught_with_a_readable_verdict(plugins):
    r = cli("verify", "--kernel", f"{plugins['planted_bug']}:fp8lab_cast", "--op", "cast", "--cases", "60")
    assert r.returncode == 1, r.stdout + r.stderr
    # Ties away from zero instead of to even: the shrunk case is one element, a tie, one ULP off.
    line = next(l for l in r.stdout.splitlines() if "generated cases" in l)
    assert "(ties, shrunk)" in line and "violation at [0]" in line and "1 of 1 elements differ" in line
    assert "shrunk counterexample: x[1]" in r.stdout


def test_kernel_loader_errors_are_usage_errors(plugins, tmp_path):
    for args, msg in [
        (["--kernel", f"{plugins['correct']}", "--op", "cast"], "LIBRARY:SYMBOL"),
        (["--kernel", f"{plugins['correct']}:no_such_symbol", "--op", "cast"], "exports no symbol 'no_such_symbol'"),
        (["--kernel", f"{tmp_path}/missing.so:f", "--op", "cast"], "does not exist"),
        (["--kernel", f"{plugins['correct']}:fp8lab_cast"], "exactly one --op"),
        (["--op", "nope"], "unknown operation"),
        (["--cases", "-1"], "--cases"),
    ]:
        r = cli("verify", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr, (args, r.stderr)


def test_kernel_refusing_the_spec_is_an_error_not_a_verdict(plugins):
    r = cli("verify", "--no-golden", "--kernel", f"{plugins['correct']}:fp8lab_cast", "--op", "cast",
            "--spec", '{"to": "e5m2"}', "--cases", "3")
    assert r.returncode == 2
    assert "implements only e4m3" in r.stdout


def test_junit_and_json_outputs(plugins, tmp_path):
    junit = tmp_path / "verify.xml"
    r = cli("verify", "--kernel", f"{plugins['planted_bug']}:fp8lab_cast", "--op", "cast", "--cases", "20",
            "--junit", junit, "--json")
    assert r.returncode == 1
    results = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert results["exit_code"] == 1
    assert {x["kind"] for x in results["results"]} == {"violation"}
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and int(suite.get("failures")) == len(suite.findall("testcase")) >= 2
    assert all(f.get("type") == "violation" for f in suite.iter("failure"))


# -- Python callables --------------------------------------------------------------------------


def numpy_cast_with_bug(x, spec):
    """An 'external' cast written with ml_dtypes, with a planted bug: 1 ULP up for |x| in [64, 128)."""
    import ml_dtypes

    y = np.clip(x.astype(np.float64), -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8).copy()
    bad = (np.abs(x) >= 64) & (np.abs(x) < 128) & np.isfinite(x)
    y[bad] += 1
    return y


def test_python_verify_finds_and_shrinks_a_bug():
    r = fp8lab.verify(numpy_cast_with_bug, op="cast", spec={"to": "e4m3"}, cases=50, seed=0)
    assert r.kind == "violation" and not r.ok
    (x,) = r.counterexample.values()
    assert x.size == 1 and 64 <= abs(float(x[0])) < 128
    assert "1 of 1 elements differ" in r.verdict.summary


def test_python_verify_passes_an_independent_correct_cast():
    o = golden.OPERATIONS["cast"]
    for spec in ({"to": "e4m3"}, {"to": "e5m2", "overflow": "inf_or_nan"}, {"to": "bf16", "rounding": "toward_zero"}):
        r = fp8lab.verify(o.oracle, op="cast", spec=spec, cases=35, seed=1)
        assert r.kind == "bit-identical", (spec, str(r))


def test_python_verify_argument_errors():
    with pytest.raises(TypeError, match="fn"):
        fp8lab.verify(42, op="cast")
    with pytest.raises(ValueError, match="cases"):
        fp8lab.verify(numpy_cast_with_bug, op="cast", cases=0)
    with pytest.raises(ValueError, match="op"):
        fp8lab.verify(numpy_cast_with_bug, op="nope")
    with pytest.raises(ValueError, match="spec: unknown key"):
        fp8lab.verify(numpy_cast_with_bug, op="cast", spec={"bogus": 1})


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")

    def torch_cast(x, spec):
        return torch.from_numpy(golden.OPERATIONS["cast"].oracle(x, spec))

    assert fp8lab.verify(torch_cast, op="cast", spec={"to": "e4m3"}, cases=14).kind == "bit-identical"

    def torch_in_cast(x, spec):
        assert isinstance(x, torch.Tensor)
        return golden.OPERATIONS["cast"].oracle(x.numpy(), spec)

    assert fp8lab.verify(torch_in_cast, op="cast", spec={"to": "e4m3"}, cases=14, torch=True).kind == "bit-identical"


def test_torch_flag_without_torch_is_a_clear_error():
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="torch: torch=True but torch is not installed"):
        fp8lab.verify(numpy_cast_with_bug, op="cast", torch=True)


# -- exit codes --------------------------------------------------------------------------------


def test_exit_codes_and_accept_within_bound():
    V, C = golden.Verdict, verify_mod.CaseResult
    same = C("a", V("bit-identical", "a"))
    within = C("b", V("within-bound", "b"))
    bad = C("c", V("violation", "c"))
    err = C("d", None, "d: broken")
    assert verify_mod.exit_code([same]) == 0
    assert verify_mod.exit_code([same, within]) == 3
    assert verify_mod.exit_code([same, within], accept_within_bound=True) == 0
    assert verify_mod.exit_code([within, bad]) == 1
    assert verify_mod.exit_code([bad, err]) == 1  # an error elsewhere never hides a violation (#14 item 11)
    assert verify_mod.exit_code([same, err]) == 2
    xml = verify_mod.junit_xml([same, within], accept_within_bound=True)
    assert 'failures="0"' in xml and "(accepted)" in xml


# -- the C ABI: gemm ---------------------------------------------------------------------------

GEMM_SPEC = json.dumps({"accumulate": "fp32", "out": "fp32"})  # what the plug-in implements


def test_correct_gemm_plugin_passes_traces_and_generated_cases(plugins, tmp_path):
    trace = golden.record("gemm", json.loads(GEMM_SPEC), seed=4, kind="ragged")
    trace.write(tmp_path / "gemm_fp32.safetensors")
    golden.record("cast", None, seed=1).write(tmp_path / "other_op.safetensors")  # not the kernel's op: skipped
    r = cli("verify", "--golden", tmp_path, "--kernel", f"{plugins['correct']}:fp8lab_gemm", "--op", "gemm",
            "--spec", GEMM_SPEC, "--cases", "40")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gemm_fp32.safetensors" in r.stdout and "other_op" not in r.stdout
    assert "bit-identical on all 40 cases" in r.stdout


def test_planted_bug_gemm_plugin_is_caught_and_shrunk(plugins):
    r = cli("verify", "--no-golden", "--kernel", f"{plugins['planted_bug']}:fp8lab_gemm", "--op", "gemm",
            "--spec", GEMM_SPEC, "--cases", "40")
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(l for l in r.stdout.splitlines() if "generated cases" in l)
    # One ULP of FP32 up, found on a ragged K and shrunk to a 1 x 1 GEMM.
    assert "violation at [0, 0]" in line and "1 of 1 elements differ" in line
    assert "shrunk counterexample: a[1, " in r.stdout


def test_unpinned_spec_gives_within_bound_and_accept(plugins, tmp_path):
    spec = json.dumps({"accumulate": "fp32", "out": "fp32", "pinned": False})
    args = ["verify", "--no-golden", "--kernel", f"{plugins['planted_bug']}:fp8lab_gemm", "--op", "gemm",
            "--spec", spec, "--cases", "16"]
    r = cli(*args)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "within-bound" in r.stdout and "max 1 ULP" in r.stdout
    junit = tmp_path / "j.xml"
    r = cli(*args, "--accept", "within-bound", "--junit", junit)
    assert r.returncode == 0
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_python_verify_gemm_with_numpy_kernels():
    o = golden.OPERATIONS["gemm"]
    spec = o.oracle_spec()
    assert fp8lab.verify(o.oracle, op="gemm", spec=spec, cases=21, seed=2).kind == "bit-identical"

    def buggy(a, a_scales, b, b_scales, spec):
        d = o.oracle(a, a_scales, b, b_scales, spec)
        if a.shape[1] > 100:  # a bug that needs K > 100: the shrinker must keep K above it
            d = d.copy()
            d.flat[0] = np.nextafter(d.flat[0], np.float32(np.inf)) if spec["out"] == "fp32" else d.flat[0] * 2
        return d

    r = fp8lab.verify(buggy, op="gemm", spec=spec, cases=30, seed=2)
    assert r.kind == "violation"
    assert r.counterexample["a"].shape[0] == 1 and r.counterexample["b"].shape[0] == 1
    assert 100 < r.counterexample["a"].shape[1]


def test_promoted_trace_partials_add_up_to_the_output():
    """Independent check of a committed trace's intermediates: with the Triton combine the
    promotion is acc = fl(fl(fl(p*sa)*sb) + acc) in FP32, block by block (DeepSeek-V3
    inference/kernel.py fp8_gemm), and d = bf16(acc) — recomputed here in numpy float32."""
    t = golden.read_trace(ROOT / "fixtures" / "golden" / "gemm_promoted_triton_bf16.safetensors")
    assert t.spec["combine"] == "triton" and t.spec["promote_every"] == 128
    parts = t.tensors["block_partials"].array              # blocks x M x N
    sa = t.tensors["a_scales"].array                       # M x blocks (1x128 tiles)
    sb = t.tensors["b_scales"].array                       # ceil(N/128) x blocks (128x128 tiles)
    n = parts.shape[2]
    acc = np.zeros(parts.shape[1:], dtype=np.float32)
    for j, p in enumerate(parts):
        col = np.repeat(sb[:, j], 128)[:n][None, :]
        acc = ((p * sa[:, j:j + 1]).astype(np.float32) * col).astype(np.float32) + acc
        acc = acc.astype(np.float32)
    u = acc.view(np.uint32).astype(np.uint64)
    bf16 = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    np.testing.assert_array_equal(bf16, t.tensors["d"].array)


def test_record_a_kernel_trace_then_check_and_diff_it(plugins, tmp_path):
    """The hardware path: record a kernel's bits once, then check the emulator against them."""
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    base = ["golden", "record", "--op", "cast", "--seed", "7", "--kind", "ties"]
    r = cli(*base, "--kernel", f"{plugins['correct']}:fp8lab_cast", "--out", good)
    assert r.returncode == 2 and "producer" in r.stderr
    assert cli(*base, "--kernel", f"{plugins['correct']}:fp8lab_cast", "--producer", "plugin correct",
               "--out", good).returncode == 0
    assert cli(*base, "--kernel", f"{plugins['planted_bug']}:fp8lab_cast", "--producer", "plugin bug",
               "--out", bad).returncode == 0
    assert golden.read_trace(bad).producer == "plugin bug"
    assert cli("golden", "check", good).returncode == 0  # the emulator reproduces the correct kernel
    r = cli("golden", "check", bad)
    assert r.returncode == 1 and "violation at [" in r.stdout
    r = cli("golden", "diff", good, bad)
    assert r.returncode == 1
    assert "`plugin correct` → `plugin bug`" in r.stdout and "\n1 | " in r.stdout


def test_python_verify_catches_a_router_tie_bug():
    """A router that breaks exact ties toward the higher expert index (torch.topk leaves tie order
    unspecified; the pinned policy is lowest index first): the ties generator finds it."""
    o = golden.OPERATIONS["moe_route"]

    def high_index_ties(logits, bias, spec):
        ids, w = o.oracle(logits, bias, spec)
        ids = ids.copy()
        # Reversing the index order of experts is exactly "ties to the higher index" for the
        # selection, since every expert's score is permuted along with it.
        rev_ids, rev_w = o.oracle(np.ascontiguousarray(logits[:, ::-1]), np.ascontiguousarray(bias[::-1]), spec)
        return (logits.shape[1] - 1 - rev_ids).astype(np.int32), rev_w

    r = fp8lab.verify(high_index_ties, op="moe_route", spec={"base": "deepseek_v3", "experts": 32, "topk": 4,
                                                             "groups": 1, "topk_groups": 1}, cases=20, seed=0)
    assert r.kind == "violation", str(r)
    assert r.counterexample["logits"].shape[0] == 1
    assert "ids" in r.verdict.summary or "weights" in r.verdict.summary


def test_python_verify_catches_a_quantiser_without_the_amax_floor():
    """The DeepSeek act_quant bug of REFERENCE.md: no epsilon floor, so an all-zero block gets scale
    0 and NaN elements. The zero_block generator finds it; the case shrinks to one tile."""
    o = golden.OPERATIONS["quantize"]

    def no_floor(x, spec):
        q, s = o.oracle(x, spec)
        tc = spec["tile"][1]
        q, s = q.copy(), s.copy()
        for r in range(x.shape[0]):
            for j in range(s.shape[1]):
                if x.shape[1] and np.all(x[r, j * tc:(j + 1) * tc] == 0):
                    s[r, j] = 0.0
                    q[r, j * tc:(j + 1) * tc] = 0x7F  # 0/0 = NaN
        return q, s

    r = fp8lab.verify(no_floor, op="quantize", spec={"rule": "deepseek", "tile": [1, 128]}, cases=14, seed=0)
    assert r.kind == "violation", str(r)
    x = r.counterexample["x"]
    assert x.shape[0] == 1 and x.shape[1] <= 128 and np.all(x == 0)


def test_quantize_traces_cover_every_scale_rule():
    from fp8lab import _core

    rules = {golden.read_trace(p).spec["rule"] for p in (ROOT / "fixtures" / "golden").glob("quantize_*.safetensors")}
    assert rules == set(_core.scale_rules())

"""`fp8lab verify` on kernels that are not ours: a C plug-in built from tests/plugins (a correct
build and one with a planted off-by-one-ULP bug), Python callables, exit codes, JUnit and JSON."""
from __future__ import annotations

import importlib
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

verify_mod = importlib.import_module("fp8lab.verify")
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
        (["--op", "nope"], "unknown or unavailable operation"),
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
    results = json.loads(r.stdout)
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
    assert verify_mod.exit_code([bad, err]) == 2
    xml = verify_mod.junit_xml([same, within], accept_within_bound=True)
    assert 'failures="0"' in xml and "(accepted)" in xml

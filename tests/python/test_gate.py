"""The gate under hostile kernels (issue #14): C kernels that crash, abort, loop, are one ULP off,
mis-scaled or unpromoted (tests/plugins/hostile_kernels.c, built here with `cc`), Python kernels
that return natural framework outputs or raise, and file errors that must not hide violations."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import fp8lab
from fp8lab import golden
from fp8lab import verification

ROOT = Path(__file__).resolve().parents[2]
FP32_SPEC = json.dumps({"accumulate": "fp32", "out": "fp32"})  # what the reference GEMM implements


def cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "fp8lab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the test kernels")
    out = tmp_path_factory.mktemp("hostile")
    libs = {}
    for name, flags in (("ok", []), ("abi2", ["-DABI_VERSION=2"])):
        lib = out / f"libhostile_{name}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-ffp-contract=off", *flags, "-I", str(ROOT / "golden"),
                        "-I", str(ROOT / "tests" / "plugins"), "-o", str(lib),
                        str(ROOT / "tests" / "plugins" / "hostile_kernels.c"), "-lm"], check=True)
        libs[name] = lib
    return libs


def gemm_trace_dir(tmp_path, spec=FP32_SPEC):
    """One gemm trace with K = 300 (the 'mixed' kind), recorded under ``spec``."""
    d = tmp_path / "golden"
    d.mkdir()
    golden.record("gemm", json.loads(spec), seed=5, kind="mixed").write(d / "gemm_k300.safetensors")
    return d


# -- item 6: crashes and hangs are violations of their case, the run goes on ------------------------


@pytest.mark.parametrize("symbol,signal", [("gemm_segv", "SIGSEGV"), ("gemm_abort", "SIGABRT")])
def test_crashing_kernel_is_a_named_violation_with_junit_and_a_saved_trace(hostile, tmp_path, symbol, signal):
    junit, failures = tmp_path / "verify.xml", tmp_path / "failures"
    r = cli("verify", "--golden", gemm_trace_dir(tmp_path), "--kernel", f"{hostile['ok']}:{symbol}", "--op", "gemm",
            "--spec", FP32_SPEC, "--cases", "6", "--junit", junit, "--failures", failures, "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    results = json.loads(r.stdout)["results"]
    assert [x["kind"] for x in results] == ["violation", "violation"], results
    trace_result, case_result = results
    assert signal in trace_result["verdict"]["summary"] and "gemm_k300.safetensors" in trace_result["name"]
    assert signal in case_result["verdict"]["summary"] and "case " in case_result["verdict"]["summary"]
    assert case_result["verdict"]["crash"] == signal
    # The JUnit file is written and names the signal in both failures.
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "2" and all(signal in f.get("message") for f in suite.iter("failure"))
    # The crashing case's inputs are a trace that replays the crash.
    (saved,) = failures.glob("*.safetensors")
    t = golden.read_trace(saved)
    assert t.op == "gemm" and t.tensors["a"].array.shape[1] > 100
    r = cli("golden", "check", "--kernel", f"{hostile['ok']}:{symbol}", "--op", "gemm", saved)
    assert r.returncode == 1 and signal in r.stdout


def test_looping_kernel_times_out_per_case(hostile, tmp_path):
    r = cli("verify", "--no-golden", "--kernel", f"{hostile['ok']}:gemm_loop", "--op", "gemm", "--spec", FP32_SPEC,
            "--cases", "6", "--timeout", "1", "--failures", tmp_path / "f")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not return within 1 s" in r.stdout and "inputs saved as" in r.stdout
    with pytest.raises(ValueError, match="timeout"):
        verification.load_kernel(f"{hostile['ok']}:gemm_loop", "gemm", timeout=0)


def test_abi_version_is_checked(hostile):
    r = cli("verify", "--no-golden", "--kernel", f"{hostile['abi2']}:gemm_one_ulp", "--op", "gemm", "--cases", "1")
    assert r.returncode == 2 and "ABI version 2" in r.stderr, r.stdout + r.stderr
    with pytest.raises(ValueError, match="no entry point for 'quantize'; it defines cast, gemm, mla_sparse_decode, moe_route"):
        verification.load_kernel(f"{hostile['ok']}:fp8lab_gemm", "quantize")


@pytest.mark.parametrize("symbol,spec", [("gemm_one_ulp", FP32_SPEC), ("gemm_misscaled", FP32_SPEC),
                                         ("gemm_unpromoted", None)])
def test_wrong_but_well_behaved_kernels_are_violations(hostile, symbol, spec):
    args = ["--spec", spec] if spec else []  # None: the default spec (promoted, bf16 out)
    r = cli("verify", "--no-golden", "--kernel", f"{hostile['ok']}:{symbol}", "--op", "gemm", *args, "--cases", "20")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "VIOLATION" in r.stdout and " at [" in r.stdout


# -- item 7: natural kernel outputs -------------------------------------------------------------


def emulator_gemm(spec):
    o = golden.OPERATIONS["gemm"]

    def fn(a, sa, b, sb, spec_):
        return golden.values_of(o.run(spec, {"a": a, "a_scales": sa, "b": b, "b_scales": sb})["d"].array,
                                "BF16")
    return fn


def test_bf16_outputs_from_torch_ml_dtypes_and_dlpack():
    import torch

    spec = golden.OPERATIONS["gemm"].default_spec()
    values = emulator_gemm(spec)

    class DLPackOnly:  # a foreign array library: only the DLPack protocol
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    kernels = {
        "torch bf16": lambda *a: torch.from_numpy(values(*a).astype(np.float32)).to(torch.bfloat16),
        "torch fp16 values": lambda *a: torch.from_numpy(values(*a).astype(np.float32)).to(torch.float64),
        "ml_dtypes bf16": lambda *a: values(*a).astype(ml_dtypes.bfloat16),
        "dlpack float32": lambda *a: DLPackOnly(values(*a).astype(np.float32)),
        "dlpack torch bf16": lambda *a: DLPackOnly(torch.from_numpy(values(*a).astype(np.float32)).to(torch.bfloat16)),
    }
    for name, fn in kernels.items():
        r = fp8lab.verify(fn, op="gemm", cases=7, seed=3)
        assert r.kind == "bit-identical", (name, str(r))


def test_fp8_cast_outputs_as_framework_float8():
    import torch

    o = golden.OPERATIONS["cast"]
    r = fp8lab.verify(lambda x, spec: o.oracle(x, spec).view(ml_dtypes.float8_e4m3fn), op="cast", cases=7)
    assert r.kind == "bit-identical", str(r)
    r = fp8lab.verify(lambda x, spec: torch.from_numpy(o.oracle(x, spec)).view(torch.float8_e4m3fn), op="cast",
                      cases=7)
    assert r.kind == "bit-identical", str(r)


def test_none_wrong_values_and_raising_kernels():
    values = emulator_gemm(golden.OPERATIONS["gemm"].default_spec())
    r = fp8lab.verify(lambda *a: None, op="gemm", cases=2, shrink=False)
    assert r.kind == "violation" and "returned None" in r.verdict.summary
    # float32 values that are not bf16 values: wrong, and named
    r = fp8lab.verify(lambda *a: values(*a).astype(np.float32) * np.float32(1 + 2 ** -12), op="gemm", cases=3,
                      shrink=False)
    assert r.kind == "violation" and "is not a bf16 value" in r.verdict.summary

    def raising(a, *rest):
        if a.shape[1] > 100:
            raise RuntimeError("CUDA error: an illegal memory access")
        return values(a, *rest)

    with pytest.raises(verification.KernelError, match=r"gemm case \d+ \(\w+\): the kernel raised RuntimeError: "
                                                       "CUDA error"):
        fp8lab.verify(raising, op="gemm", cases=8)


# -- item 8: golden check --kernel takes the op from the trace -------------------------------------


def test_golden_check_kernel_without_op(hostile, tmp_path):
    d = gemm_trace_dir(tmp_path)
    r = cli("golden", "check", "--kernel", f"{hostile['ok']}:fp8lab_gemm", d / "gemm_k300.safetensors")
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("golden", "check", "--kernel", f"{hostile['ok']}:gemm_one_ulp", d / "gemm_k300.safetensors")
    assert r.returncode == 1 and "VIOLATION" in r.stdout, r.stdout + r.stderr


# -- item 9: the default golden set ships with the package ------------------------------------------


def test_installed_package_finds_its_golden_set(tmp_path):
    """The layout a wheel installs (bindings/CMakeLists.txt): fp8lab/ with _core and
    fp8lab/fixtures/golden; run from a folder with no fixtures and no source tree above it."""
    site = tmp_path / "site"
    pkg = site / "fp8lab"
    shutil.copytree(ROOT / "bindings" / "python" / "fp8lab", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    core = next(Path(p) for p in fp8lab.__path__ if list(Path(p).glob("_core*.so")))
    for so in core.glob("_core*.so"):
        shutil.copy(so, pkg)
    shutil.copytree(ROOT / "fixtures" / "golden", pkg / "fixtures" / "golden")
    assert "fixtures/golden" in (ROOT / "bindings" / "CMakeLists.txt").read_text()  # the install rule
    env = {k: v for k, v in os.environ.items() if k not in ("FP8LAB_GOLDEN_DIR",)}
    env["PYTHONPATH"] = str(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = cli("verify", "--cases", "0", "--op", "cast", cwd=work, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cast_e4m3_nearest_even_saturate.safetensors" in r.stdout
    shutil.rmtree(pkg / "fixtures")
    r = cli("verify", "--cases", "0", "--op", "cast", cwd=work, env=env)
    assert r.returncode == 2 and "--golden DIR" in r.stderr and "FP8LAB_GOLDEN_DIR" in r.stderr


# -- item 11: file errors are exit 2 and never hide a violation -------------------------------------


def test_file_errors_are_usage_errors_and_do_not_hide_violations(tmp_path):
    good = golden.record("cast", {"to": "e4m3"}, seed=1, kind="ties")
    bad = golden.Trace(op=good.op, spec=good.spec, tensors={k: golden.TraceTensor(t.role, t.dtype, t.array.copy())
                                                            for k, t in good.tensors.items()})
    bad.tensors["y"].array[0] ^= 1  # the emulator disagrees: a violation
    d = tmp_path / "set"
    d.mkdir()
    bad.write(d / "violating.safetensors")
    (d / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    os.symlink(tmp_path / "gone", tmp_path / "dangling.safetensors")
    for path, msg in [(d, "is a directory"), (tmp_path / "missing.safetensors", "no such file"),
                      (tmp_path / "dangling.safetensors", "no such file")]:
        r = cli("golden", "check", path)
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        assert msg in r.stdout + r.stderr and "Traceback" not in r.stderr
    r = cli("golden", "diff", d, d / "violating.safetensors")
    assert r.returncode == 2 and "is a directory" in r.stderr and "Traceback" not in r.stderr
    for args in (["golden", "check", d / "corrupt.safetensors", d / "violating.safetensors"],
                 ["verify", "--golden", d, "--cases", "0", "--op", "cast"]):
        r = cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "ERROR" in r.stdout and "corrupt.safetensors" in r.stdout
        assert "VIOLATION" in r.stdout and "violating.safetensors" in r.stdout

"""The wheel as a user installs it (issue 15): ``pip wheel`` of this tree with the wheel's own
settings (pyproject.toml: no -march=native; every kernel variant), ``pip install`` into a fresh
venv (tools/wheel_venv.py), then, outside the source tree: the dispatched kernel is the best one
/proc/cpuinfo allows (AVX-512 on an AVX-512 machine), and every variant the installed package runs
gives the same bits as its portable one and as this checkout's dev build (-march=native).

Building the wheel reuses build/wheel-user (incremental). The test is skipped only when no wheel
can be built here at all (no C++ compiler or CMake); any other failure fails it.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import fp8lab
from cpu_support import expected_variant

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import wheel_venv  # noqa: E402

M, N, K = 67, 45, 640

# The operands from integers only, so that the installed package (maybe another numpy) and this
# process build the same QTensors.
PROBLEM = f"""
import numpy as np
def operands(fp8lab):
    i = np.arange({M} * {K}, dtype=np.int64)
    j = np.arange({N} * {K}, dtype=np.int64)
    x = (((i * 2654435761) % 2001) - 1000).astype(np.float32).reshape({M}, {K}) * np.float32(2.0 ** -7)
    y = (((j * 40503 + 7) % 1999) - 999).astype(np.float32).reshape({N}, {K}) * np.exp2(
        ((j * 7919) % 13).reshape({N}, {K}) - 6).astype(np.float32)
    return fp8lab.quantize(x, operand="a"), fp8lab.quantize(y, operand="b")
"""

CHECK = PROBLEM + """
import hashlib, json, fp8lab
a, b = operands(fp8lab)
info = fp8lab.build_info()
bits = {}
for v in info["variants_runnable"]:
    fp8lab.set_cpu(v)
    d = fp8lab.gemm(a, b, out="fp32")
    bits[v] = hashlib.sha256(d.tobytes()).hexdigest()
fp8lab.set_cpu(None)
print(json.dumps({"info": info, "file": fp8lab.__file__, "core": fp8lab._core.__file__, "bits": bits,
                  "nonzero": int(np.count_nonzero(d))}))
"""


def test_installed_wheel_dispatches_to_the_best_variant_with_the_same_bits(tmp_path):
    if shutil.which("cmake") is None or (shutil.which("c++") is None and shutil.which("g++") is None):
        pytest.skip("no CMake or C++ compiler here: a wheel cannot be built")
    py, seconds = wheel_venv.installed(tmp_path)
    print("wheel install steps (s):", seconds)
    got = wheel_venv.run_json(py, CHECK, cwd=tmp_path)
    site = str(tmp_path / "venv")
    assert got["file"].startswith(site) and got["core"].startswith(site), got  # not this checkout
    info = got["info"]
    assert info["variants_built"] == ["portable", "avx2", "avx512"]
    assert info["cpu"] == expected_variant(info["variants_built"]) and info["cpu_override"] is None
    # This machine (the project's CI and dev machines) has AVX-512: the wheel must use it.
    if expected_variant(info["variants_built"]) == "avx512":
        assert info["cpu"] == "avx512"
    assert got["nonzero"] > M * N // 2
    # The dev build's bits (compiled with -march=native, in this process).
    scope = {}
    exec(PROBLEM, scope)
    a, b = scope["operands"](fp8lab)
    dev = hashlib.sha256(fp8lab.gemm(a, b, out="fp32").tobytes()).hexdigest()
    assert set(got["bits"]) == set(info["variants_runnable"])
    for v, h in got["bits"].items():
        assert h == got["bits"]["portable"] == dev, v
    # A forced variant through the environment, in the installed package.
    forced = wheel_venv.run_json(py, "import json, fp8lab; print(json.dumps(fp8lab.build_info()))", cwd=tmp_path,
                                 FP8LAB_CPU="portable")
    assert forced["cpu"] == "portable" and forced["cpu_override"] == "portable"

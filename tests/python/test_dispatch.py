"""Runtime CPU dispatch (emulator/common/isa.hpp) and the stage timer (fp8lab profile).

The variant chosen must be the best one /proc/cpuinfo says this CPU runs, every variant this CPU
runs must give the same bits through the Python path, and FP8LAB_CPU / set_cpu must refuse what
they cannot do. The kernel variants against the instruction-by-instruction model are checked in
C++ (test_gemm HopperFp8Kernel, prop_gemm, the gemm_digest_every_isa ctest).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import fp8lab

from cpu_support import NEEDS, cpu_flags, expected_variant  # noqa: E402


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("FP8LAB_CPU", None)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_build_info_names_the_best_variant_cpuinfo_allows():
    info = fp8lab.build_info()
    assert info["variants_built"][0] == "portable"
    if platform.machine() in ("x86_64", "AMD64"):
        assert info["variants_built"] == ["portable", "avx2", "avx512"]
        assert "-mavx512bw" in info["variant_flags"]["avx512"] and "-mavx2" in info["variant_flags"]["avx2"]
    assert info["cpu"] == expected_variant(info["variants_built"])
    flags = cpu_flags()
    assert info["variants_runnable"] == ["portable"] + [v for v in ("avx2", "avx512")
                                                        if v in info["variants_built"] and NEEDS[v] <= flags]


def quantised_operands(M, N, K, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((M, K)) * np.exp2(rng.integers(-6, 6, (M, K)))).astype(np.float32)
    y = (rng.standard_normal((N, K)) * np.exp2(rng.integers(-6, 6, (N, K)))).astype(np.float32)
    return fp8lab.quantize(x, operand="a"), fp8lab.quantize(y, operand="b")


@pytest.mark.parametrize("accumulate,promote_every", [("promoted", 128), ("promoted", 32), ("tensorcore", 128)])
def test_every_runnable_variant_gives_the_same_bits(accumulate, promote_every):
    a, b = quantised_operands(37, 53, 300, 7)
    if accumulate == "tensorcore":  # per-row / per-tensor scales
        rng = np.random.default_rng(8)
        a = fp8lab.quantize(rng.standard_normal((37, 300), dtype=np.float32), tile=(1, 0), rule="deepseek")
        b = fp8lab.quantize(rng.standard_normal((53, 300), dtype=np.float32), tile=(0, 0), rule="deepseek")
    results = {}
    try:
        for v in fp8lab.build_info()["variants_runnable"]:
            fp8lab.set_cpu(v)
            assert fp8lab.build_info()["cpu"] == v
            results[v] = fp8lab.gemm(a, b, accumulate=accumulate, promote_every=promote_every, out="fp32")
    finally:
        fp8lab.set_cpu(None)
    ref = results["portable"]
    assert np.count_nonzero(ref) > ref.size // 2
    for v, r in results.items():
        assert r.tobytes() == ref.tobytes(), v
    # The kernel's results are the instruction model's: the exact product sums differ from them.
    exact = fp8lab.gemm_exact(a, b)
    assert np.max(np.abs(ref - exact)) > 0
    assert np.allclose(ref, exact, rtol=1e-2, atol=1e-3 * np.max(np.abs(exact)))


def test_fp8lab_cpu_forces_a_variant_and_refuses_bad_names():
    built = fp8lab.build_info()["variants_runnable"]
    for v in built:
        r = run_py("import fp8lab; print(fp8lab.build_info()['cpu'])", FP8LAB_CPU=v)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == v
    r = run_py("import fp8lab", FP8LAB_CPU="avx1024")  # checked at import
    assert r.returncode != 0
    assert "FP8LAB_CPU = 'avx1024': expected one of portable, avx2, avx512" in r.stderr
    with pytest.raises(ValueError, match="cpu = 'sse': expected one of"):
        fp8lab.set_cpu("sse")
    with pytest.raises(TypeError, match="cpu: expected a variant name"):
        fp8lab.set_cpu(3)
    for v in ("avx2", "avx512"):
        if v not in built:
            with pytest.raises(ValueError, match=f"cpu = '{v}'"):
                fp8lab.set_cpu(v)
    assert fp8lab.build_info()["cpu"] == built[-1]


def test_fp8lab_profile_env_prints_each_stage_of_a_gemm_call():
    code = ("import fp8lab, numpy as np; x = np.ones((40, 96), np.float32); "
            "a = fp8lab.quantize(x, operand='a'); b = fp8lab.quantize(x[:24], operand='b'); fp8lab.gemm(a, b)")
    on = run_py(code, FP8LAB_PROFILE="1")
    assert on.returncode == 0, on.stderr
    line = [ln for ln in on.stderr.splitlines() if ln.startswith("fp8lab profile: gemm 40x24x96:")]
    assert len(line) == 1, on.stderr
    for stage in ("operand preparation", "representability checks", "kernel", "output rounding", "total"):
        assert f" {stage} " in line[0]
    off = run_py(code, FP8LAB_PROFILE="0")
    assert off.returncode == 0 and "fp8lab profile" not in off.stderr


def test_fp8lab_profile_command(capsys):
    from fp8lab import cli

    assert cli.main(["profile", "gemm", "--shape", "24", "40", "256"]) == 0
    out = capsys.readouterr()
    assert "fp8lab profile gemm 24x40x256, kernel variant" in out.out
    assert "fp8lab profile: gemm 24x40x256:" in out.err
    for stage in ("operand preparation", "representability checks", "kernel", "output rounding"):
        assert f"  {stage} " in out.err
    assert cli.main(["profile", "tensor-cores"]) == 0
    assert "hopper_fp8" in capsys.readouterr().out
    assert cli.main(["profile"]) == 2
    assert "profile: name what to run" in capsys.readouterr().err
    assert not fp8lab._core.profiling()

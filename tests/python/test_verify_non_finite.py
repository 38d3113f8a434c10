"""`fp8lab.verify` generates GEMM cases with NaN and Inf operands (the "non_finite" kind), so a
kernel that zeroes NaNs, or turns Inf into NaN, fails; a kernel that follows the GEMM's NaN/Inf
policy (emulator/gemm/non_finite.hpp) passes, whatever NaN payload it writes."""
from __future__ import annotations

import numpy as np
import pytest

import fp8lab
from fp8lab import golden
from fp8lab.formats import decode

GEMM = golden.OPERATIONS["gemm"]


def emulator_kernel(a, a_scales, b, b_scales, spec):
    inputs = {"a": a, "a_scales": a_scales, "b": b, "b_scales": b_scales}
    return fp8lab._core.gemm(GEMM._operand(spec, inputs, "a"), GEMM._operand(spec, inputs, "b"),
                             spec["accumulate"], int(spec["promote_every"]), spec["combine"], spec["instruction"],
                             spec["out"], None)


def test_generated_gemm_cases_hold_nan_and_inf():
    spec = GEMM.normalize_spec({**GEMM.default_spec(), "a_format": "e5m2", "b_format": "e5m2",
                                "instruction": "hopper_fp8_e5m2"})
    inputs = GEMM.generate(spec, np.random.default_rng(0), "non_finite")
    a = decode(inputs["a"], "e5m2")
    assert np.isnan(a).any() or np.isinf(a).any()
    d = emulator_kernel(inputs["a"], inputs["a_scales"], inputs["b"], inputs["b_scales"], spec)
    assert np.isnan(d).any() and not np.isnan(d).all()


@pytest.mark.parametrize("spec", [None, {"a_format": "e5m2", "b_format": "e5m2", "instruction": "hopper_fp8_e5m2"},
                                  {"out": "fp32"}])
def test_a_kernel_that_zeroes_nan_fails_and_one_that_propagates_passes(spec):
    spec = GEMM.normalize_spec({**GEMM.default_spec(), **(spec or {})})
    n = len(GEMM.kinds) * 2
    assert fp8lab.verify(emulator_kernel, op="gemm", spec=spec, cases=n, seed=3).kind == "bit-identical"

    def negative_nan(*args):  # another NaN payload (x86's default NaN is negative): still NaN
        d = np.asarray(emulator_kernel(*args), dtype=np.float32)
        return np.where(np.isnan(d), np.float32(-np.nan), d)

    assert fp8lab.verify(negative_nan, op="gemm", spec=spec, cases=n, seed=3).kind == "bit-identical"

    def zeroes_nan(*args):
        return np.nan_to_num(np.asarray(emulator_kernel(*args)), nan=0.0, posinf=np.inf, neginf=-np.inf)

    r = fp8lab.verify(zeroes_nan, op="gemm", spec=spec, cases=n, seed=3)
    assert r.kind == "violation"


def test_numpy_ieee_oracle_agrees_on_non_finite_cases():
    """The independent numpy GEMM (IEEE FP32) puts NaN and Inf where the emulator does."""
    spec = GEMM.normalize_spec({**GEMM.oracle_spec(), "a_format": "e5m2", "b_format": "e5m2"})
    with np.errstate(invalid="ignore"):  # numpy says so when Inf - Inf gives its NaN
        r = fp8lab.verify(GEMM.oracle, op="gemm", spec=spec, cases=len(GEMM.kinds) * 2, seed=5)
    assert r.kind == "bit-identical"

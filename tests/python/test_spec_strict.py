"""#14 item 12: specs and arguments are strictly typed, and every error names the argument or field,
the value and what it takes. Each case here was accepted (or failed with a raw message) before."""
import os

import numpy as np
import pytest

import fp8lab
from fp8lab.golden import ops as golden_ops

F = np.float32
X = np.linspace(-3, 3, 4 * 128, dtype=F).reshape(4, 128)


def gemm_op():
    return golden_ops.operation("gemm")


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_pinned_must_be_a_json_boolean(value):
    with pytest.raises(ValueError, match=r"pinned = .*: expected true or false"):
        gemm_op().normalize_spec({"pinned": value})


def test_golden_gemm_spec_fields_are_typed_by_the_gemm_schema():
    with pytest.raises(ValueError, match=r'GemmSpec.promote_every = "128": expected an integer'):
        gemm_op().normalize_spec({"promote_every": "128"})
    with pytest.raises(ValueError, match=r"GemmSpec.combine: unknown value 'fast'"):
        gemm_op().normalize_spec({"combine": "fast"})
    assert gemm_op().normalize_spec({"pinned": False})["pinned"] is False


def test_empty_or_partial_rule_dict_is_an_error():
    with pytest.raises(ValueError, match=r"ScaleRule: missing key\(s\) amax_nan, apply.*\"base\""):
        fp8lab.quantize(X, rule={})
    with pytest.raises(ValueError, match=r"missing key\(s\)"):
        fp8lab.quantize(X, rule={"form": "amax_over_fmax"})
    # An explicit base says which defaults apply.
    q = fp8lab.quantize(X, rule={"base": "deepseek", "epsilon": 1e-4})
    assert np.array_equal(q.bits, fp8lab.quantize(X, rule="deepseek").bits)
    with pytest.raises(ValueError, match=r'ScaleRule.clamp_before_cast = "false": expected true or false'):
        fp8lab.quantize(X, rule={"base": "deepseek", "clamp_before_cast": "false"})


def test_unsigned_format_refuses_negative_data():
    with pytest.raises(ValueError, match=r"x: element \[0, 0\] = -3 is negative.*ue8m0 is unsigned"):
        fp8lab.quantize(X, fmt="ue8m0", rule="mx", tile=(1, 32))
    q = fp8lab.quantize(np.abs(X), fmt="ue8m0", rule="mx", tile=(1, 32))  # |x| is what it can hold
    assert q.fmt == "ue8m0"


@pytest.mark.parametrize("bad", [-1.0, 0.0, np.nan, np.inf, -np.inf])
def test_from_parts_refuses_scales_that_are_not_positive_finite(bad):
    bits = np.zeros((2, 4), np.uint8)
    scales = np.array([[1.0], [bad]], F)
    with pytest.raises(ValueError, match=r"scales: tile \[1, 0\] = .*: expected a finite scale > 0"):
        fp8lab.from_parts(bits, scales, "e4m3", (1, 4), "deepseek")
    if np.isfinite(bad) and bad > 0:
        return
    if not (bad < 0 or bad == 0):  # NaN / +-Inf: what a quantiser makes of NaN/Inf input, on request
        if bad > 0 or np.isnan(bad):
            fp8lab.from_parts(bits, scales, "e4m3", (1, 4), "deepseek", allow_nonfinite=True)
    ue = np.array([[127], [255]], np.uint8)
    with pytest.raises(ValueError, match=r"scales: tile \[1, 0\] = 0xFF \(NaN in UE8M0\)"):
        fp8lab.from_parts(np.zeros((2, 32), np.uint8), ue, "e4m3", (1, 32), "mx")


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2x", ""])
def test_bad_fp8lab_threads_is_an_error(monkeypatch, value):
    fp8lab.set_num_threads(0)  # no override: the environment decides
    monkeypatch.setenv("FP8LAB_THREADS", value)
    with pytest.raises(ValueError, match="FP8LAB_THREADS = '" + value + "': expected a positive integer"):
        fp8lab.num_threads()
    with pytest.raises(ValueError, match="FP8LAB_THREADS"):
        fp8lab.quantize(X)
    fp8lab.set_num_threads(3)  # an explicit count wins over the environment
    assert fp8lab.num_threads() == 3
    fp8lab.set_num_threads(0)
    monkeypatch.setenv("FP8LAB_THREADS", "2")
    assert fp8lab.num_threads() == 2


@pytest.mark.parametrize("call, arg", [
    (lambda: fp8lab.gemm(X, X, promote_every=2 ** 40), "promote_every"),
    (lambda: fp8lab.set_num_threads(2 ** 40), "n"),
    (lambda: fp8lab.quantize(X, tile=(2 ** 70, 1)), "tile"),
    (lambda: fp8lab.encode(X, "e4m3", rounding="stochastic", seed=2 ** 70), "seed"),
    (lambda: fp8lab.encode(X, "e4m3", rounding="stochastic", seed=-1), "seed"),
])
def test_integers_out_of_range_name_the_argument(call, arg):
    with pytest.raises((ValueError, OverflowError)) as e:
        call()
    msg = str(e.value)
    assert msg.startswith(arg) and "incompatible function arguments" not in msg, msg

"""fp8lab.quantize(..., out=(bits, scales)): the QTensor's bits and scales written into caller
arrays (every single-level rule, several tiles, ml_dtypes destinations), and errors naming out."""
import ml_dtypes
import numpy as np
import pytest

import fp8lab

RULES = [r for r in fp8lab.scale_rules()
         if fp8lab.scale_rule(r)["form"] != "nvfp4_two_level" and not fp8lab.scale_rule(r)["four_over_six"]]


def grid(shape, tile):
    tr, tc = tile[0] or shape[0], tile[1] or shape[1]
    return -(-shape[0] // tr), -(-shape[1] // tc)


@pytest.mark.parametrize("rule", RULES)
def test_out_equals_the_qtensor(rule):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((96, 256)) * np.exp2(rng.integers(-6, 6, size=(96, 1)))).astype(np.float32)
    x[3, 7], x[50, 100] = np.nan, np.inf
    fmt = "e2m1" if "fp4" in rule else "e4m3"
    scale_dtype = np.uint8 if fp8lab.scale_rule(rule)["storage"] == "ue8m0" else np.float32
    for tile in ((1, 128), (32, 32), (1, 32), (0, 0)):
        try:
            q = fp8lab.quantize(x, tile, fmt, rule)
        except ValueError:
            with pytest.raises(ValueError):
                fp8lab.quantize(x, tile, fmt, rule, out=(np.empty(x.shape, np.uint8), np.empty(grid(x.shape, tile), scale_dtype)))
            continue
        bits = np.empty(x.shape, np.uint8)
        scales = np.empty(grid(x.shape, tile), q.scales.dtype)
        got = fp8lab.quantize(x, tile, fmt, rule, out=(bits, scales))
        assert got[0] is bits and got[1] is scales
        np.testing.assert_array_equal(bits, q.bits)
        assert scales.tobytes() == q.scales.tobytes()  # bit for bit, NaN scales included


def test_out_bits_may_be_ml_dtypes_and_decode_to_the_qtensor_values():
    x = np.random.default_rng(8).standard_normal((4, 256)).astype(np.float32)
    bits = np.empty(x.shape, ml_dtypes.float8_e4m3fn)
    scales = np.empty((4, 2), np.float32)
    fp8lab.quantize(x, (1, 128), "e4m3", "deepseek", out=(bits, scales))
    q = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek")
    np.testing.assert_array_equal(bits.astype(np.float64) * np.repeat(scales, 128, axis=1), q.dequantize())


def test_out_errors_name_out():
    x = np.ones((4, 256), np.float32)
    ok_bits, ok_scales = np.empty((4, 256), np.uint8), np.empty((4, 2), np.float32)
    cases = [
        (ok_bits, TypeError, r"out: expected a pair \(bits, scales\)"),
        ((ok_bits,), TypeError, r"out: expected a pair"),
        ((np.empty((4, 256), np.uint16), ok_scales), TypeError, r"out\[0\] \(bits\): expected dtype uint8"),
        ((np.empty((256, 4), np.uint8), ok_scales), ValueError, r"out\[0\] \(bits\): expected shape \(4, 256\)"),
        ((ok_bits, np.empty((4, 3), np.float32)), ValueError, r"out\[1\] \(scales\): expected shape \(4, 2\)"),
        ((ok_bits, np.empty((4, 2), np.float64)), TypeError, r"out\[1\] \(scales\): expected dtype float32"),
        ((np.empty((4, 512), np.uint8)[:, ::2], ok_scales), ValueError, r"out\[0\] \(bits\): must be C-contiguous"),
        ((ok_bits, ok_bits.view(np.float32)[:, :64].reshape(-1)[:8].reshape(4, 2)), ValueError, r"out\[1\] \(scales\): shares memory with out\[0\]"),
        ((x.view(np.uint8).reshape(-1)[:1024].reshape(4, 256), ok_scales), ValueError, r"out\[0\] \(bits\): shares memory with x"),
    ]
    for out, err, msg in cases:
        with pytest.raises(err, match=msg):
            fp8lab.quantize(x, (1, 128), "e4m3", "deepseek", out=out)
    with pytest.raises(TypeError, match=r"out\[1\] \(scales\): expected dtype uint8"):  # UE8M0 rules store bytes
        fp8lab.quantize(x, (1, 128), "e4m3", "deepgemm_ue8m0", out=(ok_bits, ok_scales))
    with pytest.raises(ValueError, match="out: rule 'nvfp4' needs the tensor-level"):
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", out=(ok_bits, np.empty((4, 16), np.float32)))
    with pytest.raises(TypeError, match="x: out= takes float32 input"):
        fp8lab.quantize(x.astype(np.float64), (1, 128), "e4m3", "deepseek", out=(ok_bits, ok_scales))
    assert (x == 1).all()

"""The dequantisation paths against their element-by-element statements, bit for bit, on hostile
inputs: QTensor.dequantize (a table of every pattern and one scale per tile, written straight into
the result) and mla.dequantize_block_fp8 (one band of rows at a time)."""
import ml_dtypes
import numpy as np
import pytest

import fp8lab
from fp8lab import mla


def old_block_dequant(weight, scale_inv, block=128):
    rows, cols = weight.shape
    s = np.repeat(np.repeat(scale_inv.astype(np.float32), block, axis=0), block, axis=1)[:rows, :cols]
    return (weight.astype(np.float32) * s).astype(np.float32)


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


HOSTILE = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 2.0 ** -149, -(2.0 ** -130), 448.0, -448.0, 3.4e38],
                   dtype=np.float32)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (1, 1), (7, 300), (129, 257), (256, 128)])
@pytest.mark.parametrize("block", [128, 7])
def test_dequantize_block_fp8_is_the_repeated_scale_product(shape, block):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + block)
    w = rng.standard_normal(shape).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    gr, gc = -(-shape[0] // block), -(-shape[1] // block)
    s = np.exp2(rng.integers(-20, 20, (gr, gc))).astype(np.float32) * rng.uniform(1, 2, (gr, gc)).astype(np.float32)
    if w.size:
        w.flat[::3] = np.resize(HOSTILE, w.flat[::3].size)
    if s.size:
        s.flat[::2] = np.resize(HOSTILE, s.flat[::2].size)
    with np.errstate(over="ignore", invalid="ignore"):
        got = mla.dequantize_block_fp8(w, s, block)
        assert same_bits(got, old_block_dequant(w, s, block))
        # float64 inputs are rounded to float32 first, as before
        assert same_bits(mla.dequantize_block_fp8(w.astype(np.float64), s.astype(np.float64), block),
                         old_block_dequant(w.astype(np.float64), s.astype(np.float64), block))


def test_dequantize_block_fp8_names_the_bad_scale_shape():
    with pytest.raises(ValueError, match="weight_scale_inv"):
        mla.dequantize_block_fp8(np.zeros((130, 10), np.float32), np.ones((1, 1), np.float32))


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "e2m1", "bf16"])
@pytest.mark.parametrize("shape,tile", [((1, 1), (1, 128)), ((129, 300), (128, 128)), ((300, 17), (1, 128)),
                                        ((260, 260), (7, 5)), ((0, 0), (1, 128))])
def test_qtensor_dequantize_is_element_times_scale(fmt, shape, tile):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(30)
    if x.size:
        x.flat[::5] = 0.0
        x.flat[1::7] = 2.0 ** -140
    q = fp8lab.quantize(x, tile=tile, fmt=fmt, rule="deepseek" if fmt != "bf16" else "te")
    got = q.dequantize()
    assert got.dtype == np.float64 and got.shape == shape
    tr = tile[0] or max(shape[0], 1)
    tc = tile[1] or max(shape[1], 1)
    scale = np.repeat(np.repeat(np.asarray(q.scale_values, np.float64), tr, 0), tc, 1)[:shape[0], :shape[1]]
    decoded = fp8lab.decode(np.ascontiguousarray(q.bits), fmt) if q.bits.size else np.zeros(shape)
    want = np.asarray(decoded, np.float64).reshape(shape) * scale
    assert np.array_equal(got, want, equal_nan=True)

"""fp8lab.quantize(..., rbits=): stochastic rounding of the scaled elements with given random bits,
as NVIDIA's NVFP4 recipe rounds gradients. Oracle: TransformerEngine's NVFP4 reference scales
re-derived in numpy (test_quant_nvfp4.ref_nvfp4), the element multiplier fl32(1 / fl32(ds * S_dec))
applied in float32, then fp8lab.stochastic_round (itself checked bit for bit against TE's software
twin in test_microscale.py) with the same words."""
import numpy as np
import pytest

import fp8lab
from test_quant_nvfp4 import blocks, finite_inputs, ref_nvfp4, unblock

F = np.float32
FLT_MAX = F(np.finfo(np.float32).max)


def _oracle(x, tile, rbits):
    _, ds, s_dec = ref_nvfp4(x, tile)
    with np.errstate(all="ignore"):
        enc = np.minimum((F(1.0) / (ds[:, None, :, None] * s_dec)).astype(F), FLT_MAX)
    scaled = unblock((blocks(x, tile) * enc).astype(F), x.shape)
    return fp8lab.stochastic_round(np.ascontiguousarray(scaled), "e2m1", rbits), ds


@pytest.mark.parametrize("tile", [(1, 16), (16, 16)])
def test_nvfp4_with_rbits_is_the_rule_scales_then_stochastic_round(tile):
    rng = np.random.default_rng(11)
    x = finite_inputs((48, 80), 5)
    rbits = rng.integers(0, 256, size=x.shape, dtype=np.uint32)
    q = fp8lab.quantize(x, tile, "e2m1", "nvfp4", rbits=rbits)
    want, ds = _oracle(x, tile, rbits)
    np.testing.assert_array_equal(q.bits, want)
    rn = fp8lab.quantize(x, tile, "e2m1", "nvfp4")
    np.testing.assert_array_equal(q.scale_values, rn.scale_values)  # the scales are the rule's
    np.testing.assert_array_equal(q.scale_values, ds.astype(np.float32))
    assert q.global_scale == rn.global_scale
    assert not np.array_equal(q.bits, rn.bits)  # random bits really change elements


def test_zero_bits_truncate_and_full_bits_round_every_inexact_element_away():
    x = (np.random.default_rng(2).standard_normal((4, 32)) * 3).astype(F)
    rn = fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4").dequantize()
    lo = fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=np.zeros(x.shape, np.uint32)).dequantize()
    hi = fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=np.full(x.shape, 255, np.uint32)).dequantize()
    assert np.all(np.abs(lo) <= np.abs(rn)) and np.all(np.abs(hi) >= np.abs(rn)) and np.any(lo != hi)


def test_bad_rbits_are_clear_errors():
    x = np.ones((2, 16), F)
    with pytest.raises(ValueError, match="rbits: shape must equal x's"):
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=np.zeros((2, 8), np.uint32))
    with pytest.raises(TypeError, match="rbits"):
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=np.zeros((2, 16), np.int64))
    with pytest.raises(ValueError, match=r"rbits: word 3 = 256 has bits above its width 8"):
        r = np.zeros((2, 16), np.uint32)
        r[0, 3] = 256
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=r)
    with pytest.raises(ValueError, match="width: given without rbits"):
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", width=8)
    with pytest.raises(ValueError, match=r"width: random bits per value must be in \[1, 32\], got 0"):
        fp8lab.quantize(x, (1, 16), "e2m1", "nvfp4", rbits=np.zeros((2, 16), np.uint32), width=0)
    with pytest.raises(TypeError, match="x: stochastic rounding takes float32 x"):
        fp8lab.quantize(x.astype(np.float64), (1, 16), "e2m1", "nvfp4", rbits=np.zeros((2, 16), np.uint32))

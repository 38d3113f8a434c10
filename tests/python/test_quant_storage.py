"""QTensor.bits: the element patterns at the format's storage width (uint8 for formats up to 8 bits,
uint16 for bf16/fp16), handed to Python as a read-only view of the QTensor's own buffer; the same
bits as the out= path; and from_parts' errors for bits of the wrong width, outside the format or of
the wrong shape."""
import gc

import numpy as np
import pytest

import fp8lab

F = np.float32


def hostile(shape, seed=3):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-10, 10, size=(shape[0], 1)))).astype(F)
    x[0, :5] = [0.0, -0.0, np.finfo(F).smallest_subnormal, np.finfo(F).max, -np.finfo(F).max]
    x[1, :128] = 448.0
    x[1, 1] = 1.0625  # a tie under scale 1
    x[2, 3], x[2, 4] = np.nan, np.inf
    return x


@pytest.mark.parametrize("fmt,dtype", [("e4m3", np.uint8), ("e2m1", np.uint8), ("bf16", np.uint16), ("fp16", np.uint16)])
@pytest.mark.parametrize("tile", [(1, 128), (128, 128), (1, 32)])
def test_bits_are_a_read_only_view_at_the_storage_width_equal_to_out(fmt, dtype, tile):
    x = hostile((130, 300))
    q = fp8lab.quantize(x, tile, fmt, "deepseek")
    b = q.bits
    assert b.dtype == dtype and b.shape == x.shape and b.flags.c_contiguous
    assert not b.flags.writeable
    with pytest.raises(ValueError):
        b[0, 0] = 1
    assert np.shares_memory(b, q.bits)  # no copy per access: both views of the QTensor's buffer
    bits = np.empty(x.shape, dtype)
    scales = np.empty(q.scales.shape, F)
    fp8lab.quantize(x, tile, fmt, "deepseek", out=(bits, scales))
    np.testing.assert_array_equal(b, bits)
    writable = np.array(q.bits)  # a copy is the user's to change
    writable[0, 0] ^= 1
    assert q.bits[0, 0] != writable[0, 0]


def test_the_view_keeps_its_qtensor_alive():
    x = hostile((64, 256))
    q = fp8lab.quantize(x)
    b, want = q.bits, np.array(q.bits)
    del q
    gc.collect()
    for _ in range(3):
        fp8lab.quantize(x * F(0.5))  # reuse of freed memory would show here
    np.testing.assert_array_equal(b, want)


def test_from_parts_round_trips_and_copies_its_input():
    x = hostile((128, 256))
    q = fp8lab.quantize(x, (1, 128), "e4m3", "deepseek")
    bits = np.array(q.bits)
    w = fp8lab.from_parts(bits, q.scales, "e4m3", (1, 128), "deepseek", allow_nonfinite=True)
    bits[:] = 0  # the QTensor took its own copy
    np.testing.assert_array_equal(w.bits, q.bits)
    np.testing.assert_array_equal(w.dequantize(), q.dequantize())
    t = fp8lab.from_parts(np.asfortranarray(q.bits), q.scales, "e4m3", (1, 128), "deepseek", allow_nonfinite=True)
    np.testing.assert_array_equal(t.bits, q.bits)  # a non-contiguous input is made contiguous first


def test_from_parts_rejects_bad_bits_by_name():
    s = np.ones((2, 1), F)
    with pytest.raises(TypeError, match=r"bits: format e4m3 is stored as uint8, got dtype uint16"):
        fp8lab.from_parts(np.zeros((2, 2), np.uint16), s, "e4m3", (1, 2), "deepseek")
    with pytest.raises(TypeError, match=r"bits: format bf16 is stored as uint16, got dtype uint8"):
        fp8lab.from_parts(np.zeros((2, 2), np.uint8), s, "bf16", (1, 2), "deepseek")
    with pytest.raises(TypeError, match=r"bits: format e4m3 is stored as uint8, got dtype float32"):
        fp8lab.from_parts(np.zeros((2, 2), F), s, "e4m3", (1, 2), "deepseek")
    bad = np.zeros((2, 2), np.uint8)
    bad[1, 0] = 0x10  # bit 4 of an E2M1 byte
    with pytest.raises(ValueError, match=r"bits: element 2 has bits above the 4-bit format 'e2m1'"):
        fp8lab.from_parts(bad, s, "e2m1", (1, 2), "deepseek")
    with pytest.raises(ValueError, match=r"bits: expected a 2-D array, got 1 dimensions"):
        fp8lab.from_parts(np.zeros(4, np.uint8), s, "e4m3", (1, 2), "deepseek")
